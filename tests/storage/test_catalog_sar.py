"""Subject access cases in the catalog (issue 16, migration 14): a case opens with the
recordings found and a ``subject_access`` hold on each that has audio; ids count per
year; the DPO's decisions are recorded, revised and audited; a closed case changes no
more and its holds are released; an export marks it answered; the counts the alert
reads; and bad fields change nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from proxy.recording_state import RecordingState
from proxy.storage.catalog import (
    SAR_HOLD_KIND,
    InvalidFieldError,
    NewSarCase,
    NotFoundError,
    Release,
    SarCaseError,
    SarCounts,
    SarState,
    SqlCatalog,
)
from tests.catalog_backends import Backend, raw

from .test_catalog import T0, FakeClock, at, new_call, new_recording

DAY = timedelta(days=1)
DIGEST = "ab" * 32


@pytest.fixture
async def catalog(backend: Backend) -> AsyncIterator[SqlCatalog]:
    async with backend.catalog(clock=FakeClock(at(3600))) as opened:
        yield opened


async def recording(catalog: SqlCatalog, state: RecordingState, seconds: float = 0) -> str:
    """A recording in ``state`` (set behind the catalog's back, as retention would)."""
    rec_id = await new_recording(catalog, await new_call(catalog, started=at(seconds)))
    with raw(catalog) as db:
        db.execute("UPDATE recordings SET state = ? WHERE id = ?", (state.value, rec_id))
    return rec_id


def new_case(*recording_ids: str, **changes: object) -> NewSarCase:
    case = NewSarCase(
        requester="Pat Caller",
        identity_check="passport seen at reception",
        numbers=("+441234567890", "01234 567890"),
        window_from=at(-3600),
        window_to=at(7200),
        received_at=at(0),
        deadline_at=at(0) + 31 * DAY,
        opened_by="olive",
        recording_ids=recording_ids,
        operator="alice",
        contact="pat@example.org",
    )
    return replace(case, **changes)  # type: ignore[arg-type]


async def test_a_case_opens_with_its_recordings_each_with_audio_held(
    catalog: SqlCatalog,
) -> None:
    kept = await recording(catalog, RecordingState.COMPLETE)
    gone = await recording(catalog, RecordingState.DELETED, seconds=100)
    case = await catalog.sar.open(new_case(kept, gone), at=at(50))
    assert case.id == f"SAR-{T0.year}-0001"
    assert case.state is SarState.OPEN
    assert [(r.recording_id, r.position, r.release) for r in case.recordings] == [
        (kept, 1, None),
        (gone, 2, None),
    ]
    assert case.recording(gone) is not None and case.recording(gone).hold_id is None  # type: ignore[union-attr]
    [hold] = await catalog.holds.active_for(kept)
    assert (hold.kind, hold.reference, hold.placed_by) == (SAR_HOLD_KIND, case.id, "olive")
    assert case.recordings[0].hold_id == hold.id
    assert await catalog.holds.active_for(gone) == []
    assert await catalog.sar.get(case.id) == case
    [opened] = await catalog.audit.entries(action="sar.open")
    assert (opened.actor, opened.object) == ("olive", f"sar:{case.id}")
    assert opened.detail["recordings"] == [kept, gone]
    assert opened.detail["numbers"] == ["+441234567890", "01234 567890"]
    assert [e.action for e in await catalog.audit.entries()] == ["sar.open", "hold.place"]


async def test_ids_count_per_year(catalog: SqlCatalog) -> None:
    first = await catalog.sar.open(new_case(), at=datetime(2026, 12, 31, 23, 0, tzinfo=T0.tzinfo))
    second = await catalog.sar.open(new_case(), at=datetime(2026, 12, 31, 23, 30, tzinfo=T0.tzinfo))
    third = await catalog.sar.open(new_case(), at=datetime(2027, 1, 1, 0, 1, tzinfo=T0.tzinfo))
    assert [first.id, second.id, third.id] == ["SAR-2026-0001", "SAR-2026-0002", "SAR-2027-0001"]


async def test_decisions_are_recorded_revised_and_audited(catalog: SqlCatalog) -> None:
    rec_id = await recording(catalog, RecordingState.COMPLETE)
    case = await catalog.sar.open(new_case(rec_id))
    decided = await catalog.sar.decide(
        case.id, rec_id, release=Release.CALLER, by="dee", reason="staff privacy", at=at(4000)
    )
    attached = decided.recording(rec_id)
    assert attached is not None
    assert (attached.release, attached.decided_by, attached.decision_reason) == (
        Release.CALLER,
        "dee",
        "staff privacy",
    )
    assert attached.decided_at == at(4000) and attached.released
    revised = await catalog.sar.decide(
        case.id, rec_id, release=Release.REFUSE, by="dee", reason="third party named"
    )
    assert revised.recording(rec_id).release is Release.REFUSE  # type: ignore[union-attr]
    assert revised.released == () and revised.undecided == ()
    entries = await catalog.audit.entries(action="sar.decide")
    assert [(e.reason, e.detail["release"], e.detail["previous"]) for e in entries] == [
        ("staff privacy", "caller", None),
        ("third party named", "refuse", "caller"),
    ]


async def test_a_recording_not_in_the_case_or_an_unknown_case_is_not_found(
    catalog: SqlCatalog,
) -> None:
    inside = await recording(catalog, RecordingState.COMPLETE)
    outside = await recording(catalog, RecordingState.COMPLETE, seconds=100)
    case = await catalog.sar.open(new_case(inside))
    before = await catalog.audit.entries()
    with pytest.raises(NotFoundError, match=f"{outside} is not in case {case.id}"):
        await catalog.sar.decide(case.id, outside, release=Release.BOTH, by="dee", reason="x")
    with pytest.raises(NotFoundError, match="no subject access case SAR-1999-0001"):
        await catalog.sar.decide("SAR-1999-0001", inside, release=Release.BOTH, by="d", reason="x")
    assert await catalog.sar.get("SAR-1999-0001") is None
    assert await catalog.audit.entries() == before


@pytest.mark.parametrize("state", [RecordingState.DELETED, RecordingState.DISCARDED])
async def test_a_recording_without_audio_is_refused_not_released(
    catalog: SqlCatalog, state: RecordingState
) -> None:
    rec_id = await recording(catalog, state)
    case = await catalog.sar.open(new_case(rec_id))
    for release in (Release.BOTH, Release.CALLER):
        with pytest.raises(SarCaseError, match=f"{rec_id} is {state.value}"):
            await catalog.sar.decide(case.id, rec_id, release=release, by="dee", reason="x")
    assert (await catalog.sar.get(case.id)).recordings[0].release is None  # type: ignore[union-attr]
    refused = await catalog.sar.decide(
        case.id, rec_id, release=Release.REFUSE, by="dee", reason="deleted under retention"
    )
    assert refused.recordings[0].release is Release.REFUSE


async def test_a_recording_still_being_recorded_is_not_released(catalog: SqlCatalog) -> None:
    rec_id = await recording(catalog, RecordingState.RECORDING)
    case = await catalog.sar.open(new_case(rec_id))
    with pytest.raises(SarCaseError, match="still being recorded"):
        await catalog.sar.decide(case.id, rec_id, release=Release.BOTH, by="dee", reason="x")


async def test_close_releases_the_holds_and_ends_all_change(catalog: SqlCatalog) -> None:
    first = await recording(catalog, RecordingState.COMPLETE)
    second = await recording(catalog, RecordingState.COMPLETE, seconds=100)
    case = await catalog.sar.open(new_case(first, second))
    by_hand = case.recordings[1].hold_id
    assert by_hand is not None
    await catalog.holds.release(by_hand, by="olive", reason="released by hand")
    closed = await catalog.sar.close(case.id, by="olive", reason="answered by post", at=at(9000))
    assert (closed.state, closed.closed_by, closed.close_reason) == (
        SarState.CLOSED,
        "olive",
        "answered by post",
    )
    assert closed.closed_at == at(9000)
    assert await catalog.holds.active_for(first) == []
    releases = await catalog.audit.entries(action="hold.release")
    assert [e.reason for e in releases] == [
        "released by hand",
        f"subject access case {case.id} closed",
    ]
    before = await catalog.audit.entries()
    with pytest.raises(SarCaseError, match="closed"):
        await catalog.sar.decide(case.id, first, release=Release.BOTH, by="dee", reason="x")
    with pytest.raises(SarCaseError, match="closed"):
        await catalog.sar.close(case.id, by="olive", reason="again")
    with pytest.raises(SarCaseError, match="closed"):
        await catalog.sar.record_export(
            case.id, by="olive", bundle="/b", manifest_sha256=DIGEST,
            releases={first: Release.BOTH},
        )  # fmt: skip
    assert await catalog.audit.entries() == before


async def test_an_export_marks_the_case_answered(catalog: SqlCatalog) -> None:
    released = await recording(catalog, RecordingState.COMPLETE)
    refused = await recording(catalog, RecordingState.COMPLETE, seconds=100)
    case = await catalog.sar.open(new_case(released, refused))
    await catalog.sar.decide(case.id, released, release=Release.BOTH, by="dee", reason="ok")
    both = {released: Release.BOTH}
    early = await catalog.sar.record_export(
        case.id, by="olive", bundle="/srv/b0", manifest_sha256=DIGEST, releases=both
    )
    still = await catalog.sar.get(case.id)  # a call undecided: the deadline still counts
    assert still is not None and still.state is SarState.OPEN
    await catalog.sar.decide(case.id, refused, release=Release.REFUSE, by="dee", reason="no")
    with pytest.raises(SarCaseError, match=f"{refused} is not released"):
        await catalog.sar.record_export(
            case.id, by="olive", bundle="/b", manifest_sha256=DIGEST,
            releases={refused: Release.BOTH},
        )  # fmt: skip
    with pytest.raises(SarCaseError, match=f"decision on recording {released} changed"):
        await catalog.sar.record_export(
            case.id, by="olive", bundle="/b", manifest_sha256=DIGEST,
            releases={released: Release.CALLER},
        )  # fmt: skip
    with pytest.raises(InvalidFieldError, match="one or more"):
        await catalog.sar.record_export(
            case.id, by="olive", bundle="/b", manifest_sha256=DIGEST, releases={}
        )
    export = await catalog.sar.record_export(
        case.id, by="olive", bundle="/srv/b1", manifest_sha256=DIGEST, releases=both
    )
    assert (export.number, export.bundle, export.recording_ids) == (2, "/srv/b1", (released,))
    again = await catalog.sar.record_export(
        case.id, by="olive", bundle="/srv/b2", manifest_sha256=DIGEST, releases=both
    )
    assert again.number == 3
    answered = await catalog.sar.get(case.id)
    assert answered is not None and answered.state is SarState.ANSWERED
    assert answered.exports == (early, export, again)
    assert [c.id for c in await catalog.sar.cases(state=SarState.ANSWERED)] == [case.id]
    assert await catalog.sar.cases(state=SarState.OPEN) == []
    [_, entry, _] = await catalog.audit.entries(action="sar.export")
    assert entry.detail == {
        "bundle": "/srv/b1",
        "manifest_sha256": DIGEST,
        "recordings": {released: "both"},
    }


async def test_counts_tell_open_due_soon_and_overdue(catalog: SqlCatalog, backend: Backend) -> None:
    now = at(0) + 40 * DAY
    overdue = await catalog.sar.open(new_case(deadline_at=now - DAY))
    soon = await catalog.sar.open(new_case(deadline_at=now + 3 * DAY))
    later = await catalog.sar.open(new_case(deadline_at=now + 20 * DAY))
    answered = await catalog.sar.open(new_case(deadline_at=now + 2 * DAY))
    closed = await catalog.sar.open(new_case(deadline_at=now - 2 * DAY))
    with backend.raw() as db:
        db.execute("UPDATE sar_cases SET state = 'answered' WHERE id = ?", (answered.id,))
    await catalog.sar.close(closed.id, by="olive", reason="withdrawn")
    assert await catalog.sar.counts(now, int(7 * DAY.total_seconds() * 1000)) == SarCounts(3, 1, 1)
    listed = [c.id for c in await catalog.sar.cases()]
    assert listed == [closed.id, overdue.id, answered.id, soon.id, later.id]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"numbers": ()}, "one or more numbers"),
        ({"numbers": ("  ",)}, "number"),
        ({"requester": ""}, "requester"),
        ({"identity_check": ""}, "identity_check"),
        ({"window_to": at(-3600)}, "end must be after its start"),
        ({"deadline_at": at(0)}, "deadline must be after"),
        ({"recording_ids": ("r", "r")}, "attached to a case once"),
    ],
)
async def test_bad_fields_open_nothing(
    catalog: SqlCatalog, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidFieldError, match=message):
        await catalog.sar.open(new_case(**changes))
    assert await catalog.sar.cases() == []
    assert await catalog.audit.entries() == []


async def test_an_unknown_recording_opens_nothing(catalog: SqlCatalog) -> None:
    kept = await recording(catalog, RecordingState.COMPLETE)
    with pytest.raises(NotFoundError):
        await catalog.sar.open(new_case(kept, "00000000-0000-4000-8000-000000000000"))
    assert await catalog.sar.cases() == []
    assert await catalog.holds.holds() == []
    assert await catalog.audit.entries() == []


async def test_bad_decision_fields_change_nothing(catalog: SqlCatalog) -> None:
    rec_id = await recording(catalog, RecordingState.COMPLETE)
    case = await catalog.sar.open(new_case(rec_id))
    before = await catalog.audit.entries()
    with pytest.raises(ValueError):
        await catalog.sar.decide(case.id, rec_id, release="all", by="dee", reason="x")  # type: ignore[arg-type]
    with pytest.raises(InvalidFieldError, match="reason"):
        await catalog.sar.decide(case.id, rec_id, release=Release.BOTH, by="dee", reason="")
    with pytest.raises(InvalidFieldError, match="reason"):
        await catalog.sar.close(case.id, by="olive", reason="")
    assert await catalog.sar.get(case.id) == case
    assert await catalog.audit.entries() == before
