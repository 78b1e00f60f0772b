"""The holds use case on a real catalog: the policy (kind, reference, person, review
date, reason), the catalog's refusals as the use case's errors, the events published,
and that releasing the last hold leaves the recording with no active hold — the one fact
the retention sweeper reads."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from proxy.events import HoldPlaced, HoldReleased
from proxy.recording_state import RecordingState
from proxy.records.errors import HoldRefused, InvalidHoldRequest, RecordNotFound
from proxy.records.holds import HoldDesk, review_date
from proxy.storage.catalog import Attribution, NewSarCase, SqliteCatalog

from ..storage.test_catalog import FakeClock, at, new_call, new_recording

KINDS = ("complaint", "training", "conduct")


@pytest.fixture
async def catalog(tmp_path: Path) -> AsyncIterator[SqliteCatalog]:
    async with SqliteCatalog(tmp_path / "catalog.db", clock=FakeClock(at(3600))) as opened:
        yield opened


async def ended(catalog: SqliteCatalog) -> str:
    rec_id = await new_recording(catalog, await new_call(catalog))
    await catalog.recordings.set_recording_state(
        rec_id, RecordingState.COMPLETE, Attribution(at=at(30))
    )
    return rec_id


def test_review_dates_are_strict_calendar_dates() -> None:
    assert review_date("2027-01-31") == date(2027, 1, 31)
    assert review_date(None) is None
    for bad in ("20270131", "2027-1-31", "31/01/2027", "2027-01-31T00:00", 20270131, ""):
        with pytest.raises(InvalidHoldRequest, match="YYYY-MM-DD"):
            review_date(bad)
    with pytest.raises(InvalidHoldRequest, match="not a calendar date"):
        review_date("2027-02-29")


async def test_place_and_release_publish_and_re_arm_expiry(catalog: SqliteCatalog) -> None:
    published: list[object] = []
    desk = HoldDesk(catalog.holds, KINDS, clock=lambda: at(0), publish=published.append)
    rec_id = await ended(catalog)
    first = await desk.place(rec_id, kind="complaint", reference=" C-1 ", by="alice")
    second = await desk.place(rec_id, kind="training", reference="T-1", by="bob", note="  ")
    assert (first.reference, second.note) == ("C-1", None)
    await desk.release(first.id, by="carol", reason="closed")
    assert [h.id for h in await catalog.holds.active_for(rec_id)] == [second.id]
    await desk.release(second.id, by="carol", reason="done")
    assert published == [
        HoldPlaced(first.id, rec_id, "complaint", "alice"),
        HoldPlaced(second.id, rec_id, "training", "bob"),
        HoldReleased(first.id, rec_id, "complaint", "carol", "closed"),
        HoldReleased(second.id, rec_id, "training", "carol", "done"),
    ]
    # what the sweeper asks: is there a hold with released_at IS NULL?  No: it may expire
    with sqlite3.connect(catalog.path) as db:
        active = db.execute(
            "SELECT COUNT(*) FROM holds WHERE recording_id = ? AND released_at IS NULL",
            (rec_id,),
        ).fetchone()[0]
    assert active == 0


@pytest.mark.parametrize(
    ("fields", "error", "words"),
    [
        ({"kind": "gossip", "reference": "r", "by": "a"}, InvalidHoldRequest, "kind must be"),
        ({"kind": None, "reference": "r", "by": "a"}, InvalidHoldRequest, "kind must be"),
        ({"kind": "complaint", "reference": "", "by": "a"}, InvalidHoldRequest, "reference"),
        ({"kind": "complaint", "reference": "r", "by": None}, InvalidHoldRequest, "by"),
        ({"kind": "complaint", "reference": "x" * 501, "by": "a"}, InvalidHoldRequest, "500"),
        ({"kind": "complaint", "reference": "r", "by": "a", "note": 7}, InvalidHoldRequest, "text"),
    ],
)
async def test_bad_requests_change_nothing(
    catalog: SqliteCatalog, fields: dict[str, object], error: type[Exception], words: str
) -> None:
    published: list[object] = []
    desk = HoldDesk(catalog.holds, KINDS, publish=published.append)
    rec_id = await ended(catalog)
    with pytest.raises(error, match=words):
        await desk.place(rec_id, **fields)  # type: ignore[arg-type]
    assert await catalog.holds.holds() == [] and published == []


async def test_catalog_refusals_become_use_case_errors(catalog: SqliteCatalog) -> None:
    desk = HoldDesk(catalog.holds, KINDS)
    with pytest.raises(RecordNotFound, match="does not exist"):
        await desk.place("no-such", kind="complaint", reference="r", by="a")
    with pytest.raises(RecordNotFound, match="does not exist"):
        await desk.release("no-such", by="a", reason="r")
    hold = await desk.place(await ended(catalog), kind="conduct", reference="r", by="a")
    await desk.release(hold.id, by="a", reason="r")
    with pytest.raises(HoldRefused, match="already released"):
        await desk.release(hold.id, by="a", reason="r")


async def test_a_subject_access_hold_is_released_only_by_closing_its_case(
    catalog: SqliteCatalog,
) -> None:
    recording_id = await ended(catalog)
    case = await catalog.sar.open(
        NewSarCase("Pat", "passport", ("+441632960123",), at(0), at(60), at(60),
                   at(60) + timedelta(days=30), "olive", (recording_id,))
    )  # fmt: skip
    hold_id = case.recordings[0].hold_id
    assert hold_id is not None
    desk = HoldDesk(catalog.holds, KINDS)
    with pytest.raises(HoldRefused, match=f"subject access case {case.id}.*sar close"):
        await desk.release(hold_id, by="a", reason="tidying up")
    held = await catalog.holds.get(hold_id)
    assert held is not None and held.active
    await catalog.sar.close(case.id, by="olive", reason="answered")
    released = await catalog.holds.get(hold_id)
    assert released is not None and not released.active


async def test_listing_marks_holds_due_for_review(catalog: SqliteCatalog) -> None:
    today = at(0).date()
    desk = HoldDesk(catalog.holds, KINDS, clock=lambda: at(0))
    rec_id = await ended(catalog)
    due = await desk.place(rec_id, kind="complaint", reference="r", by="a", review=str(today))
    tomorrow = str(today + timedelta(days=1))
    later = await desk.place(rec_id, kind="complaint", reference="r", by="a", review=tomorrow)
    assert [h.id for h in await desk.listing(due_only=True)] == [due.id]
    assert [desk.describe(h)["due"] for h in await desk.listing()] == [True, False]
    assert later.review_on == today + timedelta(days=1)
