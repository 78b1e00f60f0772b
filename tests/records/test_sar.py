"""The subject access desk (issue 16) against a real catalog: the search that attaches
a case's calls (E.164 and as dialled, caller and callee, the window, the operator), the
statutory deadline, who may do what (every decision audited), and bad input that
changes nothing, not even the audit chain."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from proxy.config import NumberSettings, SarSettings
from proxy.recording_state import RecordingState
from proxy.records import sar
from proxy.records.errors import (
    AccessDenied,
    AccessRequestConflict,
    InvalidAccessRequest,
    RecordNotFound,
)
from proxy.records.policy import Actor
from proxy.records.sar import SarDesk, deadline_for, describe_deadline
from proxy.storage.catalog import CallDirection, Release, SarState

from .access_world import ADAM, ALICE, DEE, MAX, MONA, OLIVE, World, world
from .test_search_filters import add_call

__all__ = ["world"]

LONDON = ZoneInfo("Europe/London")
NUMBERS = NumberSettings("GB")


def desk(w: World, months: int = 1) -> SarDesk:
    return SarDesk(w.gate, w.catalog, NUMBERS, SarSettings(deadline_months=months))


def request(**changes: object) -> dict[str, Any]:
    """A request for the world's transferred call's number, around both its calls."""
    fields: dict[str, Any] = {
        "requester": "Pat Caller",
        "identity_check": "passport seen at reception",
        "number": "01234 567890",
        "window_from": "2024-05-01T09:00:00Z",
        "window_to": "2024-05-01T11:00:00Z",
    }
    return fields | changes


def finished(w: World, *recording_ids: str) -> None:
    """The recordings ended (as the call flow would have ended them)."""
    with sqlite3.connect(w.catalog.path) as db:
        for rec_id in recording_ids:
            db.execute(
                "UPDATE recordings SET state = ? WHERE id = ?",
                (RecordingState.COMPLETE.value, rec_id),
            )


async def attached(w: World, **changes: object) -> list[str]:
    view = await desk(w).open(OLIVE, **request(**changes))
    return [r.recording_id for r in view.case.recordings]


# ---------------------------------------------------------------- the search


async def test_the_number_in_any_form_finds_calls_as_caller_and_callee(world: World) -> None:
    outbound = await add_call(
        world, caller="2001", callee="+441234567890", direction=CallDirection.OUTBOUND,
        service="results", seconds=200,
    )  # fmt: skip
    expected = [world.transferred, outbound]
    for number in ("01234 567890", "+441234567890", "+44 (0)1234 567890"):
        assert await attached(world, number=number) == expected
    assert await attached(world, number=["+442079460000", "01234567890"]) == [
        world.transferred,
        world.single,
        outbound,
    ]


async def test_a_number_as_dialled_that_is_no_e164_is_found_as_stored(world: World) -> None:
    withheld = await add_call(
        world, caller="anonymous", callee="reception", direction=CallDirection.INBOUND,
        service="triage", seconds=400,
    )  # fmt: skip
    assert await attached(world, number="anonymous") == [withheld]


async def test_only_calls_within_the_window_are_attached(world: World) -> None:
    assert await attached(world, window_from="2024-05-01T09:31:00Z") == []
    assert await attached(world, window_to="2024-05-01T09:30:00Z") == []
    assert await attached(world, window_to="2024-05-01T09:30:01Z") == [world.transferred]


async def test_the_operator_narrows_to_calls_they_took_part_in(world: World) -> None:
    assert await attached(world, operator="bob") == [world.transferred]
    assert await attached(world, operator="carl") == []
    assert await attached(world, number="+442079460000", operator="carl") == [world.single]


async def test_an_open_case_holds_its_calls_and_shows_their_metadata(world: World) -> None:
    view = await desk(world).open(OLIVE, **request(contact="pat@example.org"))
    case = view.case
    assert (case.requester, case.opened_by, case.contact) == (
        "Pat Caller",
        "olive",
        "pat@example.org",
    )
    assert case.numbers == ("01234 567890",)
    assert [h.kind for h in await world.catalog.holds.active_for(world.transferred)] == [
        "subject_access"
    ]
    document = view.as_dict()
    assert document["recordings"][0]["call"]["id"] == world.transferred
    shown = await desk(world).show(DEE, case.id)
    assert shown.as_dict() == document
    assert [c.id for c in await desk(world).cases(DEE, "open")] == [case.id]
    assert await desk(world).cases(DEE, "closed") == []


# ---------------------------------------------------------------- the deadline


@pytest.mark.parametrize(
    ("received", "months", "due"),
    [
        # 15 January: due at the end of 15 February (winter: London is UTC)
        (datetime(2027, 1, 15, 10, 0, tzinfo=UTC), 1, datetime(2027, 2, 16, 0, 0, tzinfo=UTC)),
        # 31 January: February has no 31st, so its last day (28, or 29 in a leap year)
        (datetime(2027, 1, 31, 12, 0, tzinfo=UTC), 1, datetime(2027, 3, 1, 0, 0, tzinfo=UTC)),
        (datetime(2028, 1, 31, 12, 0, tzinfo=UTC), 1, datetime(2028, 3, 1, 0, 0, tzinfo=UTC)),
        # 23:30 UTC on 14 June is 00:30 on 15 June in London (BST): due 15 July's end,
        # which is 23:00 UTC
        (datetime(2027, 6, 14, 23, 30, tzinfo=UTC), 1, datetime(2027, 7, 15, 23, 0, tzinfo=UTC)),
        # a complex request: three months, across the year's end
        (datetime(2027, 11, 30, 9, 0, tzinfo=UTC), 3, datetime(2028, 3, 1, 0, 0, tzinfo=UTC)),
    ],
)
def test_the_deadline_is_the_end_of_the_local_day_months_later(
    received: datetime, months: int, due: datetime
) -> None:
    assert deadline_for(received, months, LONDON) == due


async def test_a_case_is_due_from_the_day_received(world: World) -> None:
    view = await desk(world, months=3).open(OLIVE, **request(received="2024-04-30T08:00:00+01:00"))
    assert view.case.received_at == datetime(2024, 4, 30, 7, 0, tzinfo=UTC)
    assert view.case.deadline_at == datetime(2024, 7, 30, 23, 0, tzinfo=UTC)
    assert describe_deadline(view.case, datetime(2024, 7, 28, 23, 0, tzinfo=UTC)) == (
        "due 2024-07-30T23:00:00.000Z (2 days left)"
    )
    assert describe_deadline(view.case, datetime(2024, 7, 31, 23, 0, tzinfo=UTC)).startswith(
        "OVERDUE by 1 day (due 2024-07-30"
    )
    assert describe_deadline(view.case, datetime(2024, 8, 1, 0, 0, tzinfo=UTC)).startswith(
        "OVERDUE by 2 days"
    )


# ---------------------------------------------------------------- who may do what


@pytest.mark.parametrize("actor", [ALICE, MONA, ADAM, MAX])
async def test_only_officers_open_or_read_cases_and_each_refusal_is_audited(
    world: World, actor: Actor
) -> None:
    with pytest.raises(AccessDenied, match="only records officers and the DPO"):
        await desk(world).open(actor, **request())
    assert await world.catalog.sar.cases() == []
    with pytest.raises(AccessDenied):
        await desk(world).cases(actor)
    refused = await world.catalog.audit.entries(action="access.refused")
    assert [(e.actor, e.detail["action"]) for e in refused] == [
        (actor.name, "open_sar"),
        (actor.name, "view_sar"),
    ]


async def test_an_officer_opens_and_closes_but_only_the_dpo_decides(world: World) -> None:
    finished(world, world.transferred)
    case = (await desk(world).open(OLIVE, **request())).case
    with pytest.raises(AccessDenied, match="only the DPO decides"):
        await desk(world).decide(OLIVE, case.id, world.transferred, "caller", "staff privacy")
    with pytest.raises(AccessDenied, match="only the DPO decides"):
        await desk(world).decide(ALICE, case.id, world.transferred, "caller", "staff privacy")
    untouched = await world.catalog.sar.get(case.id)
    assert untouched is not None and untouched.recordings[0].release is None
    decided = await desk(world).decide(DEE, case.id, world.transferred, " caller ", "staff privacy")
    assert decided.recordings[0].release is Release.CALLER
    assert decided.recordings[0].decided_by == "dee"
    closed = await desk(world).close(OLIVE, case.id, "answered")
    assert closed.state is SarState.CLOSED
    with pytest.raises(AccessRequestConflict, match="closed"):
        await desk(world).decide(DEE, case.id, world.transferred, "refuse", "late")
    actions = [
        (e.actor, e.action, e.detail.get("action"))
        for e in await world.catalog.audit.entries()
        if e.action.startswith(("access.", "sar."))
    ]
    assert actions == [
        ("olive", "access.allowed", "open_sar"),
        ("olive", "sar.open", None),
        ("olive", "access.refused", "decide_sar"),
        ("alice", "access.refused", "decide_sar"),
        ("dee", "access.allowed", "decide_sar"),
        ("dee", "sar.decide", None),
        ("olive", "access.allowed", "close_sar"),
        ("olive", "sar.close", None),
    ]  # a decision on the closed case is refused before the gate: no access entry


async def test_who_may_not_handle_cases_learns_nothing_of_one(world: World) -> None:
    """Staff asking about a case get the policy's refusal (audited) whether or not the
    case exists or the call is in it: case ids are sequential, so a 404 would tell."""
    finished(world, world.transferred)
    case = (await desk(world).open(OLIVE, **request())).case
    for case_id in (case.id, "SAR-1999-0001"):
        with pytest.raises(AccessDenied, match="only records officers and the DPO"):
            await desk(world).show(ALICE, case_id)
        with pytest.raises(AccessDenied, match="only the DPO decides"):
            await desk(world).decide(ALICE, case_id, "not-a-recording", "both", "x")
        with pytest.raises(AccessDenied, match="only records officers and the DPO"):
            await desk(world).close(ALICE, case_id, "x")
    refused = await world.catalog.audit.entries(action="access.refused")
    assert len(refused) == 6 and {e.actor for e in refused} == {"alice"}


async def test_unknown_cases_and_recordings_not_in_the_case_are_not_found(world: World) -> None:
    case = (await desk(world).open(OLIVE, **request())).case
    before = await world.catalog.audit.entries()
    with pytest.raises(RecordNotFound, match="no subject access case SAR-1999-0001"):
        await desk(world).decide(DEE, "SAR-1999-0001", world.transferred, "both", "x")
    with pytest.raises(RecordNotFound, match=f"{world.single} is not in case {case.id}"):
        await desk(world).decide(DEE, case.id, world.single, "both", "x")
    with pytest.raises(RecordNotFound, match="no subject access case"):
        await desk(world).close(OLIVE, "SAR-1999-0001", "x")
    assert await world.catalog.audit.entries() == before


async def test_a_deleted_recording_is_refused_not_released(world: World) -> None:
    case = (await desk(world).open(OLIVE, **request())).case
    with sqlite3.connect(world.catalog.path) as db:
        db.execute("UPDATE recordings SET state = 'deleted' WHERE id = ?", (world.transferred,))
    with pytest.raises(AccessRequestConflict, match="deleted: it has no audio"):
        await desk(world).decide(DEE, case.id, world.transferred, "both", "ok")
    refused = await desk(world).decide(DEE, case.id, world.transferred, "refuse", "deleted")
    assert refused.recordings[0].release is Release.REFUSE


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"requester": "  "}, "requester"),
        ({"requester": None}, "requester must be text"),
        ({"identity_check": ""}, "identity_check"),
        ({"number": None}, "number must be"),
        ({"number": []}, "number must be"),
        ({"number": [""]}, "each number"),
        ({"number": [str(n) for n in range(11)]}, "at most 10 numbers"),
        ({"window_from": None}, "from and to"),
        ({"window_to": ""}, "from and to"),
        ({"window_from": "yesterday"}, "from:"),
        ({"window_to": "2024-05-01T09:00:00Z"}, "to must be after from"),
        ({"received": "2999-01-01T00:00:00Z"}, "received is in the future"),
        ({"operator": 7}, "operator must be text"),
    ],
)
async def test_bad_requests_open_nothing(
    world: World, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidAccessRequest, match=message):
        await desk(world).open(OLIVE, **request(**changes))
    assert await world.catalog.sar.cases() == []
    assert await world.catalog.audit.entries() == []


async def test_a_search_finding_too_many_recordings_opens_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sar, "MAX_RECORDINGS", 1)
    with pytest.raises(InvalidAccessRequest, match="more than 1 recordings: narrow"):
        await desk(world).open(OLIVE, **request(number=["01234567890", "02079460000"]))
    assert await world.catalog.sar.cases() == []
    assert await world.catalog.holds.holds() == []
    assert await world.catalog.audit.entries() == []


async def test_bad_words_change_nothing(world: World) -> None:
    case = (await desk(world).open(OLIVE, **request())).case
    before = await world.catalog.audit.entries()
    with pytest.raises(InvalidAccessRequest, match="state must be one of open, answered"):
        await desk(world).cases(DEE, "pending")
    with pytest.raises(InvalidAccessRequest, match="release must be one of both, caller, refuse"):
        await desk(world).decide(DEE, case.id, world.transferred, "everything", "x")
    with pytest.raises(InvalidAccessRequest, match="needs a reason"):
        await desk(world).decide(DEE, case.id, world.transferred, "both", " ")
    with pytest.raises(InvalidAccessRequest, match="reason must be text"):
        await desk(world).close(OLIVE, case.id, None)
    with pytest.raises(InvalidAccessRequest, match="closing a case needs a reason"):
        await desk(world).close(OLIVE, case.id, "")
    assert await world.catalog.audit.entries() == before
    assert await world.catalog.sar.get(case.id) == case
