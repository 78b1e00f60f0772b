"""What an installer and a service manager expect of the command: ``--version``, exit 78
for configuration errors, every config error at once, checked log options, JSON logs,
``config check`` and tables whose columns line up."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import pytest

from proxy.cli import EX_CONFIG, build_parser
from proxy.config import load_config
from proxy.logs import configure_logging
from proxy.recording_state import RecordingState
from proxy.storage.catalog import CallDirection, NewCall, NewRecording, SqliteCatalog
from proxy.text_table import format_table
from tests.cli.test_cli import recproxy
from tests.e2e.proxy_process import ProxyProcess, ProxySettings, reserve_ports, write_config

THREE_MISTAKES = """
[sip]
lisen = "127.0.0.1:5060"
[recording]
segment_seconds = 0
[logging]
format = "xml"
"""


def test_version_is_the_installed_package_version(tmp_path: Path) -> None:
    result = recproxy("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"recproxy {version('recproxy')}\n"


@pytest.mark.parametrize(
    "command",
    [
        ["serve"],
        ["config", "check"],
        ["recordings", "list"],
        ["dnr", "list"],
        ["audit", "verify"],
        ["audit", "show"],
        ["keygen", "--out", "keys", "--no-passphrase"],
        ["holds", "list"],
        ["users", "list"],
        ["export", "some-id", "--format", "wav", "--out", "x.wav", "--reason", "test"],
    ],
)
def test_a_bad_config_exits_78_naming_every_mistake_at_once(
    tmp_path: Path, command: list[str]
) -> None:
    (tmp_path / "bad.toml").write_text(THREE_MISTAKES)
    result = recproxy(*command, "--config", "bad.toml", cwd=tmp_path)
    assert result.returncode == EX_CONFIG == 78
    assert "3 configuration errors" in result.stderr
    for key in ("sip.lisen", "recording.segment_seconds", "logging.format"):
        assert f"\n  {key}: " in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # nothing was started or created


def test_a_missing_config_file_is_a_configuration_error(tmp_path: Path) -> None:
    result = recproxy("config", "check", "--config", "nope.toml", cwd=tmp_path)
    assert result.returncode == 78 and "cannot read config file" in result.stderr


def test_log_level_is_checked_and_any_case() -> None:
    parser = build_parser()
    assert parser.parse_args(["serve", "--log-level", "debug"]).log_level == "DEBUG"
    assert parser.parse_args(["serve"]).log_level is None  # the config's logging.level
    for bad in (["--log-level", "LOUD"], ["--log-format", "xml"]):
        with pytest.raises(SystemExit) as caught:
            parser.parse_args(["serve", *bad])
        assert caught.value.code == 2


def config_check_ok(tmp_path: Path, text: str) -> list[str]:
    """``recproxy config check`` of a config file of ``text``: it says OK; its lines."""
    (tmp_path / "checked.toml").write_text(text)
    result = recproxy("config", "check", "--config", "checked.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "OK"
    return lines


def test_config_check_says_ok_with_a_summary_and_starts_nothing(tmp_path: Path) -> None:
    lines = config_check_ok(tmp_path, '[http]\nlisten = "127.0.0.1:9999"\n')
    assert any(re.fullmatch(r"  http +127\.0\.0\.1:9999", line) for line in lines)
    assert any("notice.prompt" in line and " s)" in line for line in lines)
    assert any("public key" in line and "missing" in line for line in lines)
    assert not (tmp_path / "data").exists()  # no key pair, folder or catalog made


DEPRECATED_ULAW = "recording.encoding: 'ulaw' is deprecated, write 'g711' (same meaning)"


def test_config_check_reports_a_deprecated_value_and_still_says_ok(tmp_path: Path) -> None:
    lines = config_check_ok(tmp_path, '[recording]\nencoding = "ulaw"\n')
    assert [line.split()[0] for line in lines if DEPRECATED_ULAW in line] == ["warning"]


def serve_once(tmp_path: Path, settings: ProxySettings, edit: Callable[[str], str]) -> list[str]:
    """Start ``recproxy serve`` on the test config as ``edit`` changes its text, wait
    until it is healthy, stop it (it must exit 0); its log lines."""
    ports = reserve_ports()
    try:
        config = write_config(tmp_path, ports, load_config(None).notice.prompt, settings)
        config.write_text(edit(config.read_text()))
        proxy = ProxyProcess(config, ports, tmp_path / "proxy.log")
        try:
            proxy.wait_healthy()
            assert proxy.stop(timeout=10) == 0
        finally:
            proxy.close()
    finally:
        ports.release()
    return (tmp_path / "proxy.log").read_text().splitlines()


def test_serve_logs_one_line_for_a_deprecated_value(tmp_path: Path) -> None:
    def old_name(text: str) -> str:
        assert "[recording]\n" in text and "encoding" not in text
        return text.replace("[recording]\n", '[recording]\nencoding = "ulaw"\n')

    warned = [line for line in serve_once(tmp_path, ProxySettings(), old_name) if "ulaw" in line]
    assert len(warned) == 1 and DEPRECATED_ULAW in warned[0], warned
    assert "WARNING" in warned[0]


def test_the_files_the_config_names_are_checked_before_serving(tmp_path: Path) -> None:
    (tmp_path / "noise.wav").write_bytes(b"not audio")
    (tmp_path / "data" / "keys").mkdir(parents=True)
    (tmp_path / "data" / "keys" / "recording.pub").write_text("not a key")
    (tmp_path / "c.toml").write_text(
        '[notice]\nprompt = "missing.wav"\nno_record_prompt = "noise.wav"\n'
    )
    for command in ("config", "check"), ("serve",):  # serve judges it as check does
        result = recproxy(*command, "--config", "c.toml", cwd=tmp_path)
        assert result.returncode == 78, command
        assert "3 configuration errors" in result.stderr
        for key in ("notice.prompt", "notice.no_record_prompt", "recording.public_key"):
            assert f"\n  {key}" in result.stderr
        assert "Traceback" not in result.stderr


# --- logs ---------------------------------------------------------------------------------


def test_json_log_records_are_one_object_a_line_with_only_the_agreed_fields() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        log = logging.getLogger("recproxy.test")
        log.debug("not shown")
        log.info("call %s answered\nsecond line", "c-1", extra={"token": "s3cret"})
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            log.exception("tick failed")
    finally:
        configure_logging("WARNING", "text")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert set(first) == {"time", "level", "logger", "message"}
    assert first["message"] == "call c-1 answered\nsecond line"
    assert (first["level"], first["logger"]) == ("INFO", "recproxy.test")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert "s3cret" not in stream.getvalue()
    assert set(second) == {"time", "level", "logger", "message", "exception"}
    assert "ZeroDivisionError" in second["exception"]


def test_serve_with_json_logging_in_the_config_logs_only_json(tmp_path: Path) -> None:
    settings = ProxySettings(extra='[logging]\nformat = "json"\n')
    lines = serve_once(tmp_path, settings, lambda text: text)
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert records and all(
        {"time", "level", "logger", "message"} <= set(r) <= {"time", "level", "logger",
                                                             "message", "exception"}
        for r in records
    )  # fmt: skip
    assert any(r["message"].startswith("config ") for r in records)


# --- tables -------------------------------------------------------------------------------


def test_table_columns_fit_their_widest_cell() -> None:
    rows = [("long cell", "7", "x"), ("b", "1234", "")]
    lines = format_table(("a", "n", "z"), rows, right=("n",))
    assert lines == [
        "a             n  z",
        "long cell     7  x",
        "b          1234",  # no trailing spaces
    ]


def test_a_table_row_of_the_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError, match="a row of 1 cells in a table of 2 columns"):
        format_table(("a", "b"), [("x",)])


def fields(line: str) -> list[tuple[int, int]]:
    """The spans of a table line's cells (cells are apart by two spaces or more)."""
    return [m.span() for m in re.finditer(r"\S+(?: \S+)*", line)]


def test_recordings_list_columns_line_up_and_nothing_is_cut_off(tmp_path: Path) -> None:
    long_caller = "sip:+441234567890123@carrier.example.net"

    async def fill() -> None:
        async with SqliteCatalog(tmp_path / "data" / "catalog.sqlite3") as catalog:
            for i, (caller, state) in enumerate(
                [(long_caller, RecordingState.COMPLETE), ("+441", RecordingState.INTERRUPTED)]
            ):
                started = datetime(2026, 3, 2, 9, i, tzinfo=UTC)
                call = await catalog.calls.create_call(NewCall(
                    sip_call_id=f"c{i}", caller=caller, callee="reception",
                    direction=CallDirection.INBOUND, started_at=started,
                ))  # fmt: skip
                recording = await catalog.recordings.create_recording(NewRecording(
                    call.id, directory=f"r{i}", encoding="ulaw", sample_rate=8000,
                    channels=2, started_at=started,
                ))  # fmt: skip
                await catalog.recordings.set_recording_state(recording.id, state)

    (tmp_path / "data").mkdir()
    asyncio.run(fill())
    result = recproxy("recordings", "list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and long_caller in result.stdout
    spans = [fields(line) for line in lines]
    assert all(len(s) == 7 for s in spans), lines
    for column in range(7):
        right = column in (4, 6)  # duration, segments
        edges = {s[column][1] if right else s[column][0] for s in spans}
        assert len(edges) == 1, (column, lines)
    assert not any(line.endswith(" ") for line in lines)
