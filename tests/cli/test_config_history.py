"""``recproxy config history``, the version in ``config check`` and ``recordings list
--json`` (P22): the real command, on a real catalog."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from proxy.config import load_config
from proxy.config_version import EffectiveConfig, version_of
from proxy.storage.catalog import CallDirection, NewCall, NewRecording, SqliteCatalog
from tests.cli.test_cli import recproxy

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def effective(path: Path) -> EffectiveConfig:
    config = load_config(path)
    digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for _, p in config.prompt_files()}
    return version_of(config, digests)


def two_versions(tmp_path: Path) -> tuple[Path, EffectiveConfig, EffectiveConfig]:
    """A catalog where serve ran under a config, then under it with jitter_ms changed."""
    config = tmp_path / "recproxy.toml"
    config.write_text("[media]\njitter_ms = 80\n")
    first = effective(config)
    config.write_text('[media]\njitter_ms = 100\n[dtmf]\nstop = "*7"\n')
    second = effective(config)

    async def record() -> None:
        (tmp_path / "data").mkdir()
        async with SqliteCatalog(tmp_path / "data" / "catalog.sqlite3") as catalog:
            for minutes, version in enumerate((first, second)):
                await catalog.config_versions.record(
                    version.version,
                    version.settings,
                    actor="recproxy",
                    at=T0 + timedelta(minutes=minutes),
                )

    asyncio.run(record())
    return config, first, second


def test_history_lists_each_version_with_the_keys_changed(tmp_path: Path) -> None:
    config, first, second = two_versions(tmp_path)
    result = recproxy("config", "history", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["first", "seen", "(UTC)", "version", "changed", "keys"]
    assert rows[0].split() == ["2026-12-06T09:00:00.000Z", first.short, "(first)"]
    assert rows[1].split() == [
        "2026-12-06T09:01:00.000Z",
        second.short,
        "dtmf.stop,",
        "media.jitter_ms",
    ]


def test_history_json_holds_the_diff_from_the_previous_version(tmp_path: Path) -> None:
    config, first, second = two_versions(tmp_path)
    result = recproxy("config", "history", "--config", str(config), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {
            "version": first.version,
            "first_seen_at": "2026-12-06T09:00:00.000Z",
            "last_seen_at": "2026-12-06T09:00:00.000Z",
            "previous": None,
            "changed": {},
            "added": {},
            "removed": {},
        },
        {
            "version": second.version,
            "first_seen_at": "2026-12-06T09:01:00.000Z",
            "last_seen_at": "2026-12-06T09:01:00.000Z",
            "previous": first.version,
            "changed": {"dtmf.stop": ["*0", "*7"], "media.jitter_ms": [80, 100]},
            "added": {},
            "removed": {},
        },
    ]


def test_history_without_a_catalog_is_a_clear_error_and_makes_none(tmp_path: Path) -> None:
    result = recproxy("config", "history", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("recproxy: no catalog at ")
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "data").exists()
    usage = recproxy("config", "history", "--since", "yesterday", cwd=tmp_path)
    assert usage.returncode == 2 and "unrecognized arguments: --since" in usage.stderr


def test_history_of_a_catalog_serve_never_ran_on_says_so(tmp_path: Path) -> None:
    async def create() -> None:
        async with SqliteCatalog(tmp_path / "data" / "catalog.sqlite3"):
            pass

    (tmp_path / "data").mkdir()
    asyncio.run(create())
    result = recproxy("config", "history", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("no configuration versions yet")
    empty = recproxy("config", "history", "--json", cwd=tmp_path)
    assert json.loads(empty.stdout) == []


def test_config_check_shows_the_version_serve_would_run_as(tmp_path: Path) -> None:
    config = tmp_path / "recproxy.toml"
    config.write_text("[media]\njitter_ms = 80\n")
    result = recproxy("config", "check", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [line] = [line.split() for line in result.stdout.splitlines() if "version" in line.split()]
    assert line == ["version", effective(config).short]


def test_recordings_list_json_names_the_config_version_of_each_call(tmp_path: Path) -> None:
    async def fill() -> None:
        async with SqliteCatalog(tmp_path / "data" / "catalog.sqlite3") as catalog:
            for n, version in enumerate(("a" * 64, None)):
                call = await catalog.calls.create_call(NewCall(
                    sip_call_id=f"c{n}", caller="+441", callee="reception",
                    direction=CallDirection.INBOUND, started_at=T0 + timedelta(minutes=n),
                    config_version=version,
                ))  # fmt: skip
                await catalog.recordings.create_recording(NewRecording(
                    call.id, directory=f"r{n}", encoding="g711", sample_rate=8000,
                    channels=2, started_at=T0,
                ))  # fmt: skip

    (tmp_path / "data").mkdir()
    asyncio.run(fill())
    result = recproxy("recordings", "list", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [row["config_version"] for row in json.loads(result.stdout)] == [None, "a" * 64]
