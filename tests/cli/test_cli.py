"""The recproxy command's own behaviour: do-not-record list, tokens, keys, errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from proxy.storage.catalog import SqliteCatalog


def recproxy(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_do_not_record_list_round_trip(tmp_path: Path) -> None:
    added = recproxy("dnr", "add", "01234 567890", "--reference", "letter 12", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert "+441234567890" in added.stdout
    listed = recproxy("dnr", "list", "--json", cwd=tmp_path)
    entries = json.loads(listed.stdout)
    assert [(e["number"], e["reference"]) for e in entries] == [("+441234567890", "letter 12")]
    assert recproxy("dnr", "remove", "+44 1234 567890", cwd=tmp_path).returncode == 0
    again = recproxy("dnr", "remove", "01234567890", cwd=tmp_path)
    assert again.returncode == 1 and "not on the do-not-record list" in again.stderr
    bad = recproxy("dnr", "add", "reception", "--reference", "x", cwd=tmp_path)
    assert bad.returncode == 1 and "not a telephone number" in bad.stderr


def test_do_not_record_list_takes_every_uk_form_as_one_number(tmp_path: Path) -> None:
    def add(number: str, reference: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return recproxy("dnr", "add", number, "--reference", reference, *extra, cwd=tmp_path)

    first = add("+44 (0)1234 567890", "letter 2026-03-01")
    assert first.returncode == 0 and "+441234567890 will not" in first.stdout, first.stderr
    for form in ("0044 1234 567890", "01234 567890", "+441234567890"):
        again = add(form, "dup")
        assert again.returncode == 1, form
        assert "+441234567890 is already on the do-not-record list" in again.stderr, form
        assert "--replace" in again.stderr and "Traceback" not in again.stderr
    listed = json.loads(recproxy("dnr", "list", "--json", cwd=tmp_path).stdout)
    assert [(e["number"], e["reference"]) for e in listed] == [
        ("+441234567890", "letter 2026-03-01")
    ]
    assert add("01234 567890", "email 2026-04-02", "--replace").returncode == 0
    listed = json.loads(recproxy("dnr", "list", "--json", cwd=tmp_path).stdout)
    assert [e["reference"] for e in listed] == ["email 2026-04-02"]
    short = add("+44 (0)1234", "letter")
    assert short.returncode == 1 and "'+44 (0)1234' is not a telephone number" in short.stderr
    assert "Traceback" not in short.stderr


async def test_an_entry_listed_before_normalising_is_removed_as_listed(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    async with SqliteCatalog(tmp_path / "data" / "catalog.sqlite3") as catalog:
        # what `dnr add "+44 (0)1234 567890"` stored before numbers were parsed
        await catalog.do_not_record.add("+4401234567890", reference="old", added_by="dpo")
    removed = recproxy("dnr", "remove", "+4401234567890", cwd=tmp_path)
    assert removed.returncode == 0 and "+4401234567890 removed" in removed.stdout, removed.stderr
    assert json.loads(recproxy("dnr", "list", "--json", cwd=tmp_path).stdout) == []


def test_dnr_list_prints_aligned_columns(tmp_path: Path) -> None:
    for number, reference in (("01234 567890", "letter 12"), ("+1 202 555 0143", "e")):
        added = recproxy("dnr", "add", number, "--reference", reference, cwd=tmp_path)
        assert added.returncode == 0, added.stderr
    listed = recproxy("dnr", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["number", "added", "by", "reference"]
    assert len(rows) == 2
    for column in ("added", "by", "reference"):  # each column starts where its title does
        start = header.index(column)
        assert all(row[start - 1] == " " and row[start] != " " for row in rows), listed.stdout


def test_operator_token_prints_a_token_and_its_hash(tmp_path: Path) -> None:
    out = recproxy("operator-token", cwd=tmp_path).stdout.splitlines()
    token = out[0].rsplit(" ", 1)[1]
    digest = out[1].split('"')[1]
    assert hashlib.sha256(token.encode()).hexdigest() == digest


def test_keygen_needs_a_passphrase_and_never_overwrites(tmp_path: Path) -> None:
    env = {"RECPROXY_KEY_PASSPHRASE": ""}
    refused = recproxy("keygen", "--out", "keys", cwd=tmp_path, env=env)
    assert refused.returncode == 1 and "RECPROXY_KEY_PASSPHRASE" in refused.stderr
    made = recproxy(
        "keygen", "--out", "keys", cwd=tmp_path, env={"RECPROXY_KEY_PASSPHRASE": "s3cret pass"}
    )
    assert made.returncode == 0, made.stderr
    key = (tmp_path / "keys" / "recording.key").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in key
    assert (tmp_path / "keys" / "recording.key").stat().st_mode & 0o077 == 0
    again = recproxy("keygen", "--out", "keys", cwd=tmp_path, env={"RECPROXY_KEY_PASSPHRASE": "x"})
    assert again.returncode == 1 and "never overwritten" in again.stderr
    assert (tmp_path / "keys" / "recording.key").read_bytes() == key


def test_a_bad_config_key_stops_serve_naming_it(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[recording]\nsegment_seconds = 0\n")
    result = recproxy("serve", "--config", "bad.toml", cwd=tmp_path)
    assert result.returncode == 78  # EX_CONFIG: systemd's RestartPreventExitStatus
    assert "recording.segment_seconds" in result.stderr
    assert "Traceback" not in result.stderr


def test_export_of_an_unknown_recording_is_a_clear_error(tmp_path: Path) -> None:
    recproxy("dnr", "list", cwd=tmp_path)  # creates the catalog
    result = recproxy(
        "export", "no-such-id", "--format", "wav", "--out", "x.wav", "--reason", "test",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1 and "no recording no-such-id" in result.stderr


def test_a_tls_key_that_is_not_the_certificates_stops_serve_and_config_check_naming_it(
    tmp_path: Path,
) -> None:
    from tests.sip.tls_ca import make_ca

    ca = make_ca(tmp_path / "tls")
    (tmp_path / "tls.toml").write_text(
        '[sip]\nlisten = "127.0.0.1:0"\ntls_listen = "127.0.0.1:0"\n'
        f'tls_cert = "{ca.server.cert}"\ntls_key = "{ca.client.key}"\n'
    )
    for command in (("config", "check"), ("serve",)):
        result = recproxy(*command, "--config", "tls.toml", cwd=tmp_path)
        assert result.returncode == 78, (command, result.stderr)  # EX_CONFIG
        assert (
            "sip.tls_key: " in result.stderr and "is not the key of sip.tls_cert" in result.stderr
        )
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # nothing was made: no catalog, no key
