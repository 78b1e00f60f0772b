"""``recproxy sar open|show|list|decide|close`` (issue 16): the real command on a real
catalog, each step by a named user account.  A refusal is one line on stderr, exit 1,
and changes no case; argparse's refusals exit 2."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proxy.config import AccountsSettings
from proxy.recording_state import RecordingState
from proxy.records.accounts import Accounts
from proxy.storage.catalog import (
    Attribution,
    CallDirection,
    NewCall,
    NewRecording,
    SqliteCatalog,
)

from .test_cli import recproxy

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
OPEN = ("--requester", "Pat Caller", "--number", "01234 567890", "--from",
        "2024-05-01T08:00:00Z", "--to", "2024-05-01T12:00:00Z",
        "--identity-check", "passport seen at reception")  # fmt: skip
ACCOUNTS = [("dee", "dpo", None), ("olive", "records_officer", None),
            ("alice", "staff", "alice"), ("ex", "records_officer", None)]  # fmt: skip
CALLS = [("alice", "+441234567890", "alice", 0), ("bob", "+441234567890", "bob", 30),
         ("other", "+442079460000", "alice", 60)]  # fmt: skip


async def _world(folder: Path) -> dict[str, str]:
    """Accounts (dee the DPO, olive a records officer, alice staff, ex a disabled
    officer) and three ended calls: two from the requester's number (alice's, bob's) and
    one from another number."""
    (folder / "data").mkdir()
    async with SqliteCatalog(folder / "data" / "catalog.sqlite3") as catalog:
        accounts = Accounts(catalog.users, AccountsSettings())
        for name, role, operator in ACCOUNTS:
            await accounts.add_user(
                name, role_name=role, password=PASSWORD, by="setup", operator=operator
            )
        await accounts.disable("ex", by="setup")
        ids = {}
        for key, caller, operator, minutes in CALLS:
            started = T0 + timedelta(minutes=minutes)
            call = await catalog.calls.create_call(
                NewCall(f"{key}@t", caller, "reception", CallDirection.INBOUND, started)
            )
            recording = await catalog.recordings.create_recording(
                NewRecording(call.id, directory=f"2024/05/01/{call.id}", encoding="pcmu",
                             sample_rate=8000, channels=2, started_at=started)
            )  # fmt: skip
            await catalog.parts.begin(recording.id, operator=operator, team="desk", at=started)
            await catalog.recordings.set_recording_state(
                recording.id,
                RecordingState.COMPLETE,
                Attribution(at=started + timedelta(minutes=2)),
            )
            ids[key] = recording.id
    return ids


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def calls(folder: Path) -> dict[str, str]:
    return asyncio.run(_world(folder))


def sar(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return recproxy("sar", *args, cwd=folder)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], words: str, status: int = 1) -> None:
    assert result.returncode == status, (result.stdout, result.stderr)
    assert words in result.stderr, result.stderr
    if status == 1:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def sar_rows(folder: Path) -> list[tuple[object, ...]]:
    """Every case row, attached recording and audit entry: what "nothing changed" means."""
    with sqlite3.connect(folder / "data" / "catalog.sqlite3") as db:
        found = db.execute("SELECT * FROM sar_cases").fetchall()
        found += db.execute("SELECT * FROM sar_case_recordings").fetchall()
        return found + db.execute("SELECT * FROM audit_log ORDER BY seq").fetchall()


def test_open_show_decide_and_close(folder: Path, calls: dict[str, str]) -> None:
    opened = sar(folder, "open", *OPEN, "--by", "olive")
    case_id = ok(opened).strip()
    assert case_id == f"SAR-{datetime.now(UTC).year}-0001"
    assert f"{case_id}: 2 calls attached; due " in opened.stderr

    shown = ok(sar(folder, "show", case_id, "--by", "olive"))
    assert "requester:      Pat Caller" in shown
    assert "identity check: passport seen at reception" in shown
    assert "numbers:        01234 567890" in shown
    assert re.search(r"deadline: +due \S+ \((2[89]|3[01]) days left\)", shown), shown
    rows = [line for line in shown.splitlines() if line.startswith((calls["alice"], calls["bob"]))]
    assert [line.split()[0] for line in rows] == [calls["alice"], calls["bob"]]
    assert all("+441234567890" in line and "undecided" in line for line in rows)
    assert "alice" in rows[0] and "bob" in rows[1]
    assert calls["other"] not in shown

    decided = sar(folder, "decide", case_id, calls["alice"], "--release", "caller",
                  "--by", "dee", "--reason", "the call taker's privacy")  # fmt: skip
    assert ok(decided) == f"{case_id}: recording {calls['alice']}: caller\n"
    ok(sar(folder, "decide", case_id, calls["bob"], "--release", "refuse", "--by", "dee",
           "--reason", "a third party is discussed"))  # fmt: skip

    document = json.loads(ok(sar(folder, "show", case_id, "--json", "--by", "dee")))
    assert document["id"] == case_id and document["state"] == "open"
    assert [(r["recording_id"], r["release"], r["decided_by"]) for r in document["recordings"]] == [
        (calls["alice"], "caller", "dee"),
        (calls["bob"], "refuse", "dee"),
    ]
    assert document["recordings"][0]["call"]["parts"][0]["operator"] == "alice"

    listed = json.loads(ok(sar(folder, "list", "--state", "open", "--json", "--by", "olive")))
    assert [c["id"] for c in listed] == [case_id]
    assert listed[0]["deadline"].startswith("due ")
    assert case_id in ok(sar(folder, "list", "--by", "olive"))

    closed = sar(folder, "close", case_id, "--by", "olive", "--reason", "copy sent by post")
    assert ok(closed) == f"{case_id} closed; its holds are released\n"
    assert ok(sar(folder, "list", "--state", "open", "--by", "olive")) == "no cases\n"
    assert "closed" in ok(sar(folder, "list", "--state", "closed", "--by", "olive"))

    with sqlite3.connect(folder / "data" / "catalog.sqlite3") as db:
        query = "SELECT actor, action FROM audit_log WHERE action LIKE 'sar.%' ORDER BY seq"
        assert db.execute(query).fetchall() == [
            ("olive", "sar.open"),
            ("dee", "sar.decide"),
            ("dee", "sar.decide"),
            ("olive", "sar.close"),
        ]
        query = "SELECT COUNT(*) FROM holds WHERE kind = 'subject_access' AND released_at IS NULL"
        assert db.execute(query).fetchone() == (0,)


def test_open_as_json_with_every_option(folder: Path, calls: dict[str, str]) -> None:
    opened = sar(folder, "open", *OPEN, "--number", "020 7946 0000", "--operator", "alice",
                 "--contact", "pat@example.org", "--received", "2024-05-02T10:00:00Z",
                 "--by", "dee", "--json")  # fmt: skip
    document = json.loads(ok(opened))
    assert document["numbers"] == ["01234 567890", "020 7946 0000"]
    assert [r["recording_id"] for r in document["recordings"]] == [calls["alice"], calls["other"]]
    assert (document["operator"], document["contact"]) == ("alice", "pat@example.org")
    assert document["deadline_at"] == "2024-06-02T23:00:00.000Z"  # end of 2 June, BST
    assert "OVERDUE" in opened.stderr


def test_only_the_dpo_decides(folder: Path, calls: dict[str, str]) -> None:
    case_id = ok(sar(folder, "open", *OPEN, "--by", "olive")).strip()
    before = sar_rows(folder)
    for who in ("alice", "olive"):
        result = sar(folder, "decide", case_id, calls["alice"], "--release", "both",
                     "--by", who, "--reason", "ok")  # fmt: skip
        refused(result, "only the DPO decides what a subject access case releases")
    refused(sar(folder, "show", case_id, "--by", "alice"), "only records officers and the DPO")
    refused(sar(folder, "open", *OPEN, "--by", "alice"), "only records officers and the DPO")
    after = sar_rows(folder)
    assert after[: len(before)] == before  # the cases untouched; the refusals audited
    added = [row for row in after[len(before) :]]
    assert len(added) == 4 and all("access.refused" in row for row in added)


def test_unknown_case_and_recording_not_in_the_case(folder: Path, calls: dict[str, str]) -> None:
    case_id = ok(sar(folder, "open", *OPEN, "--by", "olive")).strip()
    before = sar_rows(folder)
    refused(
        sar(folder, "decide", "SAR-1999-0001", calls["alice"], "--release", "both", "--by",
            "dee", "--reason", "ok"),
        "no subject access case SAR-1999-0001",
    )  # fmt: skip
    refused(
        sar(folder, "decide", case_id, calls["other"], "--release", "both", "--by", "dee",
            "--reason", "ok"),
        f"recording {calls['other']} is not in case {case_id}",
    )  # fmt: skip
    refused(
        sar(folder, "close", "SAR-1999-0001", "--by", "olive", "--reason", "x"),
        "no subject access case SAR-1999-0001",
    )
    assert sar_rows(folder) == before


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("open", *OPEN, "--by", "nobody"), "no user account 'nobody'"),
        (("open", *OPEN, "--by", "ex"), "user account ex is disabled"),
        (("open", *OPEN[:-2], "--identity-check", " ", "--by", "olive"), "identity_check"),
        (("open", *OPEN, "--to", "2024-05-01T07:00:00Z", "--by", "olive"), "to must be after"),
        (
            ("open", *OPEN, "--received", "2999-01-01T00:00:00Z", "--by", "olive"),
            "received is in the future",
        ),
        (("open", *OPEN, "--from", "last week", "--by", "olive"), "from:"),
        (("list", "--state", "pending", "--by", "olive"), "state must be one of"),
        (("show", "SAR-1999-0001", "--by", "olive"), "no subject access case"),
    ],
)
def test_bad_input_is_one_line_and_opens_nothing(
    folder: Path, calls: dict[str, str], args: tuple[str, ...], words: str
) -> None:
    before = sar_rows(folder)
    refused(sar(folder, *args), words)
    after = sar_rows(folder)
    assert [row for row in after if "access.allowed" not in row] == before  # show: audited read
    with sqlite3.connect(folder / "data" / "catalog.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM sar_cases").fetchone() == (0,)


def test_a_bad_release_word_changes_nothing(folder: Path, calls: dict[str, str]) -> None:
    case_id = ok(sar(folder, "open", *OPEN, "--by", "olive")).strip()
    before = sar_rows(folder)
    refused(
        sar(folder, "decide", case_id, calls["alice"], "--release", "all", "--by", "dee",
            "--reason", "ok"),
        "release must be one of both, caller, refuse",
    )  # fmt: skip
    assert sar_rows(folder) == before


@pytest.mark.parametrize(
    "args",
    [
        ("open", *OPEN),  # no --by
        ("open", "--requester", "Pat", "--by", "olive"),  # no number, window or check
        ("decide", "SAR-2024-0001", "--release", "both", "--by", "dee", "--reason", "x"),
        ("close", "SAR-2024-0001", "--by", "olive"),  # no reason
        ("show",),
    ],
)
def test_missing_arguments_are_usage_errors(folder: Path, args: tuple[str, ...]) -> None:
    refused(sar(folder, *args), "usage:", status=2)


def test_without_a_catalog_nothing_is_made(folder: Path) -> None:
    refused(sar(folder, "list", "--by", "olive"), "no catalog at")
    assert not (folder / "data").exists()
