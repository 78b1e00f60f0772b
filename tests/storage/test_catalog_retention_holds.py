"""Holds that keep a recording past its retention (issue 14): placed and released with
their audit entries in the same transaction, refused on a recording without audio,
listed all / active / per recording / due for review.  (``test_catalog_holds.py`` is
about a party putting the *call* on hold.)"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import date

import pytest

from proxy.recording_state import RecordingState
from proxy.storage.catalog import (
    Attribution,
    HoldRefusedError,
    NewHold,
    NotFoundError,
    SqlCatalog,
)
from tests.catalog_backends import Backend

from .test_catalog import FakeClock, at, new_call, new_recording


@pytest.fixture
async def catalog(backend: Backend) -> AsyncIterator[SqlCatalog]:
    async with backend.catalog(clock=FakeClock(at(3600))) as opened:
        yield opened


async def ended_recording(catalog: SqlCatalog, state: RecordingState) -> str:
    rec_id = await new_recording(catalog, await new_call(catalog))
    await catalog.recordings.set_recording_state(rec_id, state, Attribution(at=at(30)))
    return rec_id


def complaint(rec_id: str, review: date | None = None) -> NewHold:
    return NewHold(rec_id, "complaint", "C-1", "alice", review, "patient letter")


async def test_place_writes_the_hold_and_its_audit_entry_together(catalog: SqlCatalog) -> None:
    rec_id = await ended_recording(catalog, RecordingState.COMPLETE)
    hold = await catalog.holds.place(complaint(rec_id, date(2024, 6, 1)), at=at(100))
    assert (hold.kind, hold.reference, hold.placed_by, hold.placed_at) == (
        "complaint",
        "C-1",
        "alice",
        at(100),
    )
    assert await catalog.holds.get(hold.id) == hold
    assert await catalog.holds.active_for(rec_id) == [hold]
    [entry] = await catalog.audit.entries(action="hold.place")
    assert (entry.actor, entry.object) == ("alice", f"recording:{rec_id}")
    assert entry.detail == {
        "hold": hold.id,
        "kind": "complaint",
        "reference": "C-1",
        "review_at": "2024-06-01",
    }
    assert (await catalog.audit.verify()).intact


async def test_release_ends_the_hold_once_with_its_audit_entry(catalog: SqlCatalog) -> None:
    rec_id = await ended_recording(catalog, RecordingState.COMPLETE)
    hold = await catalog.holds.place(complaint(rec_id))
    released = await catalog.holds.release(hold.id, by="bob", reason="resolved", at=at(200))
    assert (released.released_by, released.released_at, released.release_reason) == (
        "bob",
        at(200),
        "resolved",
    )
    assert not released.active
    assert await catalog.holds.active_for(rec_id) == []
    with pytest.raises(HoldRefusedError, match="already released"):
        await catalog.holds.release(hold.id, by="bob", reason="again")
    entries = await catalog.audit.entries(action="hold.release")
    assert [(e.actor, e.reason) for e in entries] == [("bob", "resolved")]


@pytest.mark.parametrize(
    "state", [RecordingState.DISCARDED, RecordingState.DELETING, RecordingState.DELETED]
)
async def test_no_hold_on_a_recording_without_audio(
    catalog: SqlCatalog, state: RecordingState, backend: Backend
) -> None:
    rec_id = await new_recording(catalog, await new_call(catalog))
    with backend.raw() as db:  # the retention part moves states; set it here
        db.execute("UPDATE recordings SET state = ? WHERE id = ?", (state.value, rec_id))
    with pytest.raises(HoldRefusedError, match=state.value):
        await catalog.holds.place(complaint(rec_id))
    assert await catalog.holds.holds() == []
    assert await catalog.audit.entries() == []


async def test_unknown_ids_change_nothing(catalog: SqlCatalog) -> None:
    with pytest.raises(NotFoundError, match="recording"):
        await catalog.holds.place(complaint("00000000-0000-4000-8000-000000000000"))
    with pytest.raises(NotFoundError, match="hold"):
        await catalog.holds.release("nope", by="bob", reason="x")
    assert await catalog.holds.holds() == []
    assert await catalog.audit.entries() == []


async def test_listing_all_active_per_recording_and_due(catalog: SqlCatalog) -> None:
    first = await ended_recording(catalog, RecordingState.COMPLETE)
    second = await ended_recording(catalog, RecordingState.INTERRUPTED)
    due = await catalog.holds.place(complaint(first, date(1970, 1, 1)), at=at(1))
    later = await catalog.holds.place(
        NewHold(second, "training", "T-9", "carol", date(2100, 1, 1)), at=at(2)
    )
    gone = await catalog.holds.place(complaint(second, date(1970, 1, 1)), at=at(3))
    gone = await catalog.holds.release(gone.id, by="bob", reason="done", at=at(4))
    holds = catalog.holds
    assert await holds.holds() == [due, later, gone]
    assert await holds.holds(active_only=True) == [due, later]
    assert await holds.holds(recording_id=second) == [later, gone]
    assert await holds.holds(due_as_of=at(0)) == [due]
    assert due.due(at(0)) and not later.due(at(0)) and not gone.due(at(0))
    counts = await holds.counts(at(0))
    assert (dict(counts.active_by_kind), counts.due_for_review) == (
        {"complaint": 1, "training": 1},
        1,
    )


async def test_a_failed_audit_append_leaves_no_hold(catalog: SqlCatalog, backend: Backend) -> None:
    rec_id = await ended_recording(catalog, RecordingState.COMPLETE)
    with backend.raw() as db:  # break the log so the append fails
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'no'); END"
        )
    with pytest.raises(sqlite3.IntegrityError):
        await catalog.holds.place(complaint(rec_id))
    assert await catalog.holds.holds() == []
