"""The metadata commands (``dnr``, ``recordings list``, ``audit show``, ``users list``,
``holds list``, ``retention sweep``) keep ``--by`` and each use is an audit entry naming
the OS account and the person it acts for (issue 15): run as the real command on a real
catalog, the chain read back and verified.  ``audit verify`` reads no personal data and
writes nothing, so the head it anchors stays put."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from proxy.records.actor import os_account
from proxy.storage.catalog import SqliteCatalog
from proxy.storage.catalog.audit import AuditEntry

from .test_cli import recproxy

CATALOG = "data/catalog.sqlite3"  # the default catalog.path, under the test's folder


def run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = recproxy(*args, cwd=folder)
    assert result.returncode == 0, result.stderr
    return result


def entries(folder: Path) -> list[AuditEntry]:
    async def read() -> list[AuditEntry]:
        async with SqliteCatalog(folder / CATALOG) as catalog:
            assert (await catalog.audit.verify()).intact
            return await catalog.audit.entries()

    return asyncio.run(read())


def test_dnr_add_remove_and_list_are_audited_with_by(tmp_path: Path) -> None:
    me = os_account()
    run(tmp_path, "dnr", "add", "01632 960 001", "--reference", "letter 12", "--by", "Dr Jones")
    run(tmp_path, "dnr", "list", "--by", "Dr Jones")
    run(tmp_path, "dnr", "remove", "01632 960 001")
    audited = [(e.actor, e.action, e.object, e.reason) for e in entries(tmp_path)]
    assert audited == [
        (f"{me} (by Dr Jones)", "dnr.add", "number:+441632960001", "letter 12"),
        (f"{me} (by Dr Jones)", "dnr.list", None, None),
        (me, "dnr.remove", "number:+441632960001", None),
    ]
    assert run(tmp_path, "dnr", "list").stdout == ""  # the list is empty again


def test_a_refused_dnr_change_leaves_no_entry(tmp_path: Path) -> None:
    run(tmp_path, "dnr", "add", "01632 960 001", "--reference", "letter 12")
    before = len(entries(tmp_path))
    again = recproxy("dnr", "add", "01632 960 001", "--reference", "dup", cwd=tmp_path)
    missing = recproxy("dnr", "remove", "01632 960 999", cwd=tmp_path)
    blank = recproxy("dnr", "add", "01632 960 002", "--reference", "x", "--by", " ", cwd=tmp_path)
    assert (again.returncode, missing.returncode, blank.returncode) == (1, 1, 1)
    assert "--by must name" in blank.stderr
    assert len(entries(tmp_path)) == before  # the refused commands wrote nothing


@pytest.mark.parametrize(
    ("command", "action", "detail"),
    [
        (["recordings", "list", "--limit", "5"], "search", {"limit": 5}),
        (["audit", "show", "--action", "dnr.add"], "audit.show", None),
        (["users", "list"], "users.list", None),
        (["holds", "list", "--due"], "holds.list", {"due": True, "active": False}),
    ],
)
def test_each_metadata_read_is_an_audit_entry_naming_by(
    tmp_path: Path, command: list[str], action: str, detail: dict[str, object] | None
) -> None:
    run(tmp_path, "dnr", "add", "01632 960 001", "--reference", "letter 12")  # a catalog
    run(tmp_path, *command, "--by", "Ms Patel")
    last = entries(tmp_path)[-1]
    assert (last.actor, last.action) == (f"{os_account()} (by Ms Patel)", action)
    if detail is not None:
        assert last.detail == detail


def test_a_retention_sweep_is_audited_with_by(tmp_path: Path) -> None:
    run(tmp_path, "dnr", "add", "01632 960 001", "--reference", "letter 12")
    run(tmp_path, "retention", "sweep", "--by", "Ms Patel")  # nothing due: still audited
    last = entries(tmp_path)[-1]
    assert (last.actor, last.action) == (f"{os_account()} (by Ms Patel)", "retention.sweep")


def test_audit_verify_writes_no_entry_so_the_anchored_head_stays(tmp_path: Path) -> None:
    run(tmp_path, "dnr", "add", "01632 960 001", "--reference", "letter 12")
    before = entries(tmp_path)
    run(tmp_path, "audit", "verify")
    assert entries(tmp_path) == before  # an integrity check reads no personal data
