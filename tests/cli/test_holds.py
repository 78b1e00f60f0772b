"""``recproxy holds place|release|list`` (issue 14): the real command on a real catalog.
Bad input is one line on stderr, a non-zero exit, and nothing changed — no hold, no
audit entry."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from proxy.recording_state import RecordingState
from proxy.storage.catalog import (
    Attribution,
    CallDirection,
    NewCall,
    NewRecording,
    SqliteCatalog,
)

from .test_cli import recproxy

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
UNKNOWN = "00000000-0000-4000-8000-000000000000"


async def catalogue(folder: Path, state: RecordingState = RecordingState.COMPLETE) -> str:
    """One ended recording in ``folder``'s default catalog; its id."""
    (folder / "data").mkdir(exist_ok=True)
    async with SqliteCatalog(folder / "data" / "catalog.sqlite3") as catalog:
        call = await catalog.calls.create_call(
            NewCall(f"{datetime.now().timestamp()}@t", "+441234567890", "reception",
                    CallDirection.INBOUND, started_at=T0)
        )  # fmt: skip
        recording = await catalog.recordings.create_recording(
            NewRecording(call.id, directory=f"2024/05/01/{call.id}", encoding="pcmu",
                         sample_rate=8000, channels=2, started_at=T0)
        )  # fmt: skip
        await catalog.recordings.set_recording_state(
            recording.id, RecordingState.COMPLETE, Attribution(at=T0)
        )
    if state is not RecordingState.COMPLETE:  # deleting/deleted belong to the sweeper
        with sqlite3.connect(folder / "data" / "catalog.sqlite3") as db:
            db.execute("UPDATE recordings SET state = ? WHERE id = ?", (state.value, recording.id))
    return recording.id


def holds(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return recproxy("holds", *args, cwd=folder)


def place(folder: Path, rec_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return holds(folder, "place", rec_id, "--kind", "complaint", "--reference", "C-7", *extra)


def listed(folder: Path, *extra: str) -> list[dict[str, object]]:
    result = holds(folder, "list", "--json", *extra)
    assert result.returncode == 0, result.stderr
    value: list[dict[str, object]] = json.loads(result.stdout)
    return value


def audit_actions(folder: Path) -> list[str]:
    """The hold entries of the audit log, in order (listing recordings is a search, with
    its own entry)."""
    with sqlite3.connect(folder / "data" / "catalog.sqlite3") as db:
        query = "SELECT action FROM audit_log WHERE action LIKE 'hold.%' ORDER BY seq"
        return [row[0] for row in db.execute(query)]


def refused(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode != 0, result.stdout
    assert words in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


async def test_place_list_release_round_trip(tmp_path: Path) -> None:
    rec_id = await catalogue(tmp_path)
    placed = place(tmp_path, rec_id, "--by", "alice", "--review", "2000-01-31", "--note", "n")
    assert placed.returncode == 0, placed.stderr
    hold_id = placed.stdout.strip()
    [hold] = listed(tmp_path)
    assert {k: hold[k] for k in ("id", "recording_id", "kind", "reference", "placed_by")} == {
        "id": hold_id,
        "recording_id": rec_id,
        "kind": "complaint",
        "reference": "C-7",
        "placed_by": "alice",
    }
    assert (hold["review_at"], hold["released_at"], hold["due"]) == ("2000-01-31", None, True)
    assert isinstance(hold["placed_at"], str) and hold["placed_at"].endswith("Z")
    assert [h["id"] for h in listed(tmp_path, "--due")] == [hold_id]
    table = holds(tmp_path, "list")
    assert table.returncode == 0 and hold_id in table.stdout and "DUE" in table.stdout
    recordings = json.loads(recproxy("recordings", "list", "--json", cwd=tmp_path).stdout)
    assert recordings[0]["holds"] == [{"id": hold_id, "kind": "complaint", "reference": "C-7"}]

    released = holds(tmp_path, "release", hold_id, "--by", "bob", "--reason", "resolved")
    assert released.returncode == 0, released.stderr
    [hold] = listed(tmp_path)
    assert hold["released_at"] is not None and hold["due"] is False
    assert listed(tmp_path, "--active") == [] and listed(tmp_path, "--due") == []
    recordings = json.loads(recproxy("recordings", "list", "--json", cwd=tmp_path).stdout)
    assert recordings[0]["holds"] == []
    assert audit_actions(tmp_path) == ["hold.place", "hold.release"]
    again = holds(tmp_path, "release", hold_id, "--by", "bob", "--reason", "twice")
    refused(again, "already released")
    assert audit_actions(tmp_path) == ["hold.place", "hold.release"]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (("--by", "alice", "--kind", "gossip"), "kind must be one of complaint, training"),
        (("--kind", "complaint"), "by (who places the hold) is required"),
        (("--by", "alice", "--kind", "complaint", "--review", "31/01/2027"), "YYYY-MM-DD"),
        (("--by", "alice", "--kind", "complaint", "--review", "2027-02-30"), "calendar date"),
        (("--by", "alice", "--kind", "complaint", "--review", "20270131"), "YYYY-MM-DD"),
        (("--by", " ", "--kind", "training"), "by (who places the hold) is required"),
    ],
)
async def test_bad_place_is_one_line_and_changes_nothing(
    tmp_path: Path, extra: tuple[str, ...], words: str
) -> None:
    rec_id = await catalogue(tmp_path)
    result = holds(tmp_path, "place", rec_id, "--reference", "C-7", *extra)
    refused(result, words)
    assert listed(tmp_path) == [] and audit_actions(tmp_path) == []


async def test_unknown_recording_and_hold_ids_are_refused(tmp_path: Path) -> None:
    await catalogue(tmp_path)
    refused(place(tmp_path, UNKNOWN, "--by", "alice"), f"recording {UNKNOWN} does not exist")
    refused(
        holds(tmp_path, "release", UNKNOWN, "--by", "bob", "--reason", "x"),
        f"hold {UNKNOWN} does not exist",
    )
    assert listed(tmp_path) == [] and audit_actions(tmp_path) == []


@pytest.mark.parametrize("state", [RecordingState.DELETED, RecordingState.DISCARDED])
async def test_no_hold_on_a_deleted_or_discarded_recording(
    tmp_path: Path, state: RecordingState
) -> None:
    rec_id = await catalogue(tmp_path, state)
    refused(place(tmp_path, rec_id, "--by", "alice"), f"is {state.value}")
    assert listed(tmp_path) == [] and audit_actions(tmp_path) == []


async def test_release_needs_by_and_reason(tmp_path: Path) -> None:
    rec_id = await catalogue(tmp_path)
    hold_id = place(tmp_path, rec_id, "--by", "alice").stdout.strip()
    refused(holds(tmp_path, "release", hold_id, "--reason", "done"), "who releases the hold")
    refused(holds(tmp_path, "release", hold_id, "--by", "bob"), "reason is required")
    [hold] = listed(tmp_path)
    assert hold["released_at"] is None and audit_actions(tmp_path) == ["hold.place"]


async def test_kinds_come_from_the_configuration(tmp_path: Path) -> None:
    rec_id = await catalogue(tmp_path)
    config = tmp_path / "recproxy.toml"
    config.write_text('[catalog]\npath = "data/catalog.sqlite3"\n[holds]\nkinds = ["audit"]\n')
    ok = holds(tmp_path, "place", rec_id, "--kind", "audit", "--reference", "A-1", "--by", "a",
               "--config", str(config))  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    refused(place(tmp_path, rec_id, "--by", "alice", "--config", str(config)), "one of audit")
    bad = tmp_path / "bad.toml"
    bad.write_text('[holds]\nkinds = ["a", "a"]\n')
    result = holds(tmp_path, "list", "--config", str(bad))
    assert result.returncode == 78 and "holds.kinds: 'a' is listed twice" in result.stderr


def test_no_catalog_is_a_clear_error(tmp_path: Path) -> None:
    refused(holds(tmp_path, "list"), "no catalog at")
