"""``recproxy audit verify`` and ``audit show``, and the entries other commands write,
run as the real command on a real SQLite catalog.  Tampering is done as someone with
the file would: raw SQL after dropping the triggers that refuse UPDATE and DELETE."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proxy.records.actor import os_account
from proxy.storage import crypto
from proxy.storage.catalog import SqliteCatalog

from .test_cli import recproxy

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
CATALOG = "data/catalog.sqlite3"  # the default catalog.path, under the test's folder


def chain(folder: Path, entries: int = 5) -> Path:
    """A catalog in ``folder`` with ``entries`` audit entries a minute apart."""

    async def build() -> None:
        async with SqliteCatalog(path) as catalog:
            for n in range(entries):
                await catalog.audit.append(
                    actor=("alice", "bob")[n % 2], action=("export", "search")[n % 2],
                    object=f"recording:r{n}", reason=f"complaint {n}", detail={"n": n},
                    at=T0 + timedelta(minutes=n),
                )  # fmt: skip

    path = folder / CATALOG
    path.parent.mkdir(parents=True)
    asyncio.run(build())
    return path


def tamper(path: Path, *statements: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("DROP TRIGGER audit_log_no_delete")
        for statement in statements:
            conn.execute(statement)


def audit(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return recproxy("audit", *args, cwd=folder)


def failed(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode == 1, result
    assert words in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_verify_prints_the_count_and_head_and_anchors_it(tmp_path: Path) -> None:
    path = chain(tmp_path)
    with sqlite3.connect(path) as conn:
        head = conn.execute("SELECT sha256 FROM audit_log WHERE seq = 5").fetchone()[0]
    result = audit(tmp_path, "verify")
    assert result.returncode == 0, result.stderr
    assert f"audit chain intact: 5 entries, head 5 {head}" in result.stdout
    anchors = path.with_name(path.name + ".anchor")
    assert stat.S_IMODE(anchors.stat().st_mode) == 0o600
    (line,) = anchors.read_text().splitlines()
    assert line.endswith(f" 5 {head}")
    assert audit(tmp_path, "verify").returncode == 0
    assert len(anchors.read_text().splitlines()) == 1  # the head did not move


@pytest.mark.parametrize(
    ("statements", "seq", "why"),
    [
        (["UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 3"], 3, "edited"),
        (["UPDATE audit_log SET at = at + 1 WHERE seq = 1"], 1, "edited"),
        (["UPDATE audit_log SET detail = '{\"n\":9}' WHERE seq = 5"], 5, "edited"),
        (["DELETE FROM audit_log WHERE seq = 3"], 3, "entry 3 is missing (next is 4)"),
        (
            [  # swap entries 2 and 4
                "UPDATE audit_log SET seq = 1000 WHERE seq = 2",
                "UPDATE audit_log SET seq = 2 WHERE seq = 4",
                "UPDATE audit_log SET seq = 4 WHERE seq = 1000",
            ],
            2,
            "prev",
        ),
    ],
    ids=["edit-reason", "edit-time", "edit-last-detail", "delete", "swap"],
)
def test_verify_names_the_first_tampered_row(
    tmp_path: Path, statements: list[str], seq: int, why: str
) -> None:
    path = chain(tmp_path)
    tamper(path, *statements)
    result = audit(tmp_path, "verify")
    failed(result, f"audit chain broken at entry {seq}: ")
    assert why in result.stderr
    assert not path.with_name(path.name + ".anchor").exists()  # a broken chain is not anchored


def test_rows_cut_off_after_anchoring_are_caught(tmp_path: Path) -> None:
    path = chain(tmp_path)
    assert audit(tmp_path, "verify").returncode == 0  # anchored at 5
    tamper(path, "DELETE FROM audit_log WHERE seq > 3")
    failed(audit(tmp_path, "verify"), "the chain ends at 3 but was anchored at 5")


def test_a_mangled_anchor_file_is_a_clear_error(tmp_path: Path) -> None:
    path = chain(tmp_path)
    path.with_name(path.name + ".anchor").write_text("not an anchor\n")
    failed(audit(tmp_path, "verify"), "line 1: expected: ISO-TIME SEQ SHA256")


def test_verify_without_a_catalog_is_a_clear_error(tmp_path: Path) -> None:
    failed(audit(tmp_path, "verify"), "no catalog at")
    assert not (tmp_path / "data").exists()


def test_show_filters_and_prints_one_json_object_per_entry(tmp_path: Path) -> None:
    chain(tmp_path)
    result = audit(tmp_path, "show", "--json", "--actor", "alice", "--since", "2026-12-06T09:01")
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["seq"] for e in entries] == [3, 5]
    first = entries[0]
    assert set(first) == {
        "seq", "at", "actor", "action", "object", "reason", "detail", "prev", "sha256"
    }  # fmt: skip
    assert (first["at"], first["actor"], first["action"], first["reason"], first["detail"]) == (
        "2026-12-06T09:02:00.000Z", "alice", "export", "complaint 2", {"n": 2},
    )  # fmt: skip
    by_action = audit(tmp_path, "show", "--json", "--action", "search")
    assert [json.loads(line)["seq"] for line in by_action.stdout.splitlines()] == [2, 4]


def test_show_prints_a_table(tmp_path: Path) -> None:
    chain(tmp_path, 2)
    lines = audit(tmp_path, "show").stdout.splitlines()
    assert lines[0].split() == ["seq", "at", "(UTC)", "actor", "action", "object", "reason"]
    assert lines[1].split() == [
        "1", "2026-12-06T09:00:00.000Z", "alice", "export", "recording:r0", "complaint", "0"
    ]  # fmt: skip
    assert len(lines) == 3
    assert audit(tmp_path, "show", "--actor", "nobody").stdout == "no audit entries\n"


def test_a_malformed_since_is_a_clear_error_and_changes_nothing(tmp_path: Path) -> None:
    path = chain(tmp_path)
    before = path.read_bytes()
    failed(audit(tmp_path, "show", "--since", "last tuesday"), "--since: not an ISO 8601")
    assert path.read_bytes() == before


def entries(path: Path) -> list[tuple[str, str, str | None, str]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT actor, action, object, detail FROM audit_log ORDER BY seq")
        return [tuple(row) for row in rows]


def test_a_recordings_search_writes_one_entry_with_its_filters(tmp_path: Path) -> None:
    path = chain(tmp_path, 0)
    result = recproxy("recordings", "list", "--json", "--limit", "7", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert entries(path) == [(os_account(), "search", None, '{"limit":7}')]


def test_keygen_writes_one_entry_naming_the_public_keys_sha256(tmp_path: Path) -> None:
    env = {"RECPROXY_KEY_PASSPHRASE": ""}
    refused = recproxy("keygen", "--out", "keys", cwd=tmp_path, env=env)
    assert refused.returncode == 1 and not (tmp_path / "data").exists()  # no entry, no catalog
    made = recproxy("keygen", "--out", "keys", "--no-passphrase", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    public = crypto.load_public_key(tmp_path / "keys" / "recording.pub")
    digest = hashlib.sha256(crypto.public_key_bytes(public)).hexdigest()
    ((actor, action, obj, detail),) = entries(tmp_path / CATALOG)
    assert (actor, action, obj) == (os_account(), "key.generate", f"key:{digest[:16]}")
    assert json.loads(detail) == {"public_key_sha256": digest}
    private = (tmp_path / "keys" / "recording.key").read_bytes()
    assert private.hex() not in detail and digest in detail
    again = recproxy("keygen", "--out", "keys", "--no-passphrase", cwd=tmp_path)
    assert again.returncode == 1
    assert len(entries(tmp_path / CATALOG)) == 1  # a refused keygen writes nothing
