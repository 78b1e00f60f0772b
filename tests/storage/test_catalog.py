"""The recording catalog, against real SQLite files and a real PostgreSQL server (the
``backend`` fixture runs each test on both)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from proxy.recording_state import RecordingState
from proxy.storage.catalog import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Attribution,
    Call,
    CallDirection,
    CallOutcome,
    Catalog,
    CatalogClosedError,
    ChannelQuality,
    ConsentReceipt,
    DuplicateError,
    EventChannel,
    InvalidFieldError,
    InvalidTransitionError,
    Migration,
    NewCall,
    NewRecording,
    NewSegment,
    NotFoundError,
    NoticeMode,
    RecordingAction,
    SchemaTooNewError,
    SegmentFacts,
    SqlCatalog,
    SqliteCatalog,
    format_utc,
)
from proxy.storage.catalog.recordings import catalog_allows
from tests.catalog_backends import Backend

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 5, 1, 9, 30, 0, 250_000, tzinfo=UTC)
HASH_A = "a" * 64
HASH_B = "b" * 64


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def catalog(backend: Backend) -> AsyncIterator[SqlCatalog]:
    async with backend.catalog(clock=FakeClock(at(3600))) as opened:
        yield opened


async def new_call(catalog: Catalog, started: datetime = T0, caller: str = "+441234567890") -> Call:
    return await catalog.calls.create_call(
        NewCall(
            sip_call_id=f"{started.timestamp()}-{caller}@trunk",
            caller=caller,
            callee="reception",
            direction=CallDirection.INBOUND,
            started_at=started,
            service="general",
        )
    )


async def new_recording(
    catalog: Catalog, call: Call, directory: str | None = None, started: datetime | None = None
) -> str:
    recording = await catalog.recordings.create_recording(
        NewRecording(
            call.id,
            directory=f"2024/05/01/{call.id}" if directory is None else directory,
            encoding="pcmu",
            sample_rate=8000,
            channels=2,
            started_at=started or call.started_at + timedelta(seconds=5),
        )
    )
    return recording.id


async def state_of(catalog: Catalog, rec_id: str) -> RecordingState:
    recording = await catalog.recordings.get_recording(rec_id)
    assert recording is not None
    return recording.state


# ------------------------------------------------------------------------ migrations


async def test_opening_an_empty_file_applies_every_migration(backend: Backend) -> None:
    async with backend.catalog() as catalog:
        assert await catalog.schema_version() == SCHEMA_VERSION
    with backend.raw() as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations")]
        tables = backend.names(conn)
    assert versions == [m.version for m in MIGRATIONS]
    assert {
        "calls",
        "recordings",
        "segments",
        "consent_receipts",
        "recording_events",
        "recordings_by_state",
        "calls_by_caller",
        "calls_by_sip_call_id",
    } <= tables


async def test_reopening_applies_nothing_twice_and_keeps_data(backend: Backend) -> None:
    async with backend.catalog() as catalog:
        call = await new_call(catalog)
    with backend.raw() as conn:
        before = conn.execute("SELECT * FROM schema_migrations").fetchall()
    async with backend.catalog() as catalog:
        assert await catalog.calls.get_call(call.id) == call
    with backend.raw() as conn:
        assert conn.execute("SELECT * FROM schema_migrations").fetchall() == before


async def test_a_new_migration_is_applied_once_on_reopen(backend: Backend) -> None:
    async with backend.catalog():
        pass
    extra = (*MIGRATIONS, Migration(SCHEMA_VERSION + 1, "notes", ("CREATE TABLE notes (x TEXT)",)))
    for _ in range(2):
        async with backend.catalog(migrations=extra) as catalog:
            assert await catalog.schema_version() == SCHEMA_VERSION + 1
    with backend.raw() as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [row[0] for row in rows] == [*range(1, SCHEMA_VERSION + 2)]


async def test_a_failing_migration_is_rolled_back_whole(backend: Backend) -> None:
    async with backend.catalog():
        pass
    broken = Migration(
        SCHEMA_VERSION + 1, "broken", ("CREATE TABLE half (x TEXT)", "NOT SQL AT ALL")
    )
    with pytest.raises((sqlite3.OperationalError, psycopg.ProgrammingError)):
        await backend.catalog(migrations=(*MIGRATIONS, broken)).open()
    with backend.raw() as conn:
        assert "half" not in backend.names(conn)
        assert conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone() == (
            SCHEMA_VERSION,
        )
    async with backend.catalog() as catalog:  # the old code still opens it
        assert await catalog.schema_version() == SCHEMA_VERSION


async def test_a_database_from_newer_code_is_refused(backend: Backend) -> None:
    async with backend.catalog():
        pass
    newer = SCHEMA_VERSION + 1
    with backend.raw() as conn:
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future', 0)",
            (newer,),
        )
    with pytest.raises(SchemaTooNewError, match=rf"schema version {newer}.*up to {SCHEMA_VERSION}"):
        await backend.catalog().open()


async def test_the_file_is_in_wal_mode(tmp_path: Path) -> None:  # SQLite's own
    db_path = tmp_path / "catalog.db"
    async with SqliteCatalog(db_path) as catalog:
        await new_call(catalog)
        assert db_path.with_name("catalog.db-wal").exists()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_a_closed_catalog_refuses_use(backend: Backend) -> None:
    catalog = backend.catalog()
    with pytest.raises(CatalogClosedError):
        await catalog.calls.get_call("x")
    await catalog.open()
    await catalog.close()
    with pytest.raises(CatalogClosedError):
        await new_call(catalog)


# ------------------------------------------------------------------------------ calls


async def test_call_round_trip(catalog: SqlCatalog) -> None:
    call = await new_call(catalog)
    assert call.direction is CallDirection.INBOUND
    assert call.started_at == T0
    assert call.outcome is None and call.ended_at is None
    assert await catalog.calls.get_call(call.id) == call
    assert await catalog.calls.get_call("00000000-0000-0000-0000-000000000000") is None


async def test_update_call_sets_only_the_given_fields(catalog: SqlCatalog) -> None:
    call = await new_call(catalog)
    updated = await catalog.calls.update_call(
        call.id,
        answered_at=at(1),
        bridged_at=at(9),
        operator="jsmith",
        config_version="2024-04.3",
    )
    assert updated.answered_at == at(1) and updated.bridged_at == at(9)
    assert updated.operator == "jsmith" and updated.service == "general"
    ended = await catalog.calls.update_call(call.id, ended_at=at(60), outcome=CallOutcome.COMPLETED)
    assert ended.outcome is CallOutcome.COMPLETED
    assert ended.operator == "jsmith"
    assert await catalog.calls.get_call(call.id) == ended


async def test_times_keep_milliseconds_and_come_back_in_utc(catalog: SqlCatalog) -> None:
    local = datetime(2024, 5, 1, 11, 30, 0, 250_999, tzinfo=timezone(timedelta(hours=2)))
    call = await new_call(catalog, started=local)
    assert call.started_at == T0  # 11:30:00.250999+02:00 is 09:30:00.250Z, µs dropped
    assert call.started_at.tzinfo is UTC
    assert format_utc(call.started_at) == "2024-05-01T09:30:00.250Z"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ended_at": T0 - timedelta(seconds=1)}, "ended_at .* is before started_at"),
        ({"answered_at": at(10), "bridged_at": at(5)}, "bridged_at .* is before answered_at"),
        ({"answered_at": datetime(2024, 5, 1, 10, 0)}, "timezone-aware"),
        ({"outcome": "hung_up_happy"}, "outcome must be one of"),
        ({"caller": "+440000"}, "cannot set caller"),
        ({"callee": ""}, "callee must be a non-empty string"),
    ],
)
async def test_update_call_refuses_bad_values(
    catalog: SqlCatalog, fields: dict[str, Any], message: str
) -> None:
    call = await new_call(catalog)
    with pytest.raises(InvalidFieldError, match=message):
        await catalog.calls.update_call(call.id, **fields)
    assert await catalog.calls.get_call(call.id) == call


async def test_update_of_a_missing_call_is_not_found(catalog: SqlCatalog) -> None:
    with pytest.raises(NotFoundError):
        await catalog.calls.update_call("00000000-0000-0000-0000-000000000000", operator="x")


async def test_create_call_refuses_naive_times_and_duplicate_ids(catalog: SqlCatalog) -> None:
    with pytest.raises(InvalidFieldError, match="timezone-aware"):
        await new_call(catalog, started=datetime(2024, 5, 1, 9, 30))
    call = await new_call(catalog)
    with pytest.raises(DuplicateError):
        await catalog.calls.create_call(
            NewCall(
                call_id=call.id,
                sip_call_id="other",
                caller="a",
                callee="b",
                direction=CallDirection.OUTBOUND,
                started_at=T0,
            )
        )


# ------------------------------------------------------------------------- recordings


async def test_recording_round_trip_logs_its_start(catalog: SqlCatalog) -> None:
    call = await new_call(catalog)
    recording = await catalog.recordings.create_recording(
        NewRecording(
            call.id,
            directory="2024/05/01/rec-1",
            encoding="pcmu",
            sample_rate=8000,
            channels=2,
            started_at=at(5),
            wrapped_key_sha256=HASH_A,
        )
    )
    assert recording.state is RecordingState.RECORDING
    assert recording.call_id == call.id and recording.wrapped_key_sha256 == HASH_A
    assert recording.ended_at is None and recording.duration_ms is None
    assert await catalog.recordings.get_recording(recording.id) == recording
    [start] = await catalog.events.recording_events(recording.id)
    assert (start.action, start.at, start.channel) == (
        RecordingAction.START,
        at(5),
        EventChannel.SYSTEM,
    )


@pytest.mark.parametrize("directory", ["/var/recordings/x", "../escape", "a/../../b", ".", ""])
async def test_recording_directory_must_be_relative_inside(
    catalog: SqlCatalog, directory: str
) -> None:
    call = await new_call(catalog)
    with pytest.raises(InvalidFieldError, match="directory"):
        await new_recording(catalog, call, directory=directory)


async def test_two_recordings_cannot_share_a_directory(catalog: SqlCatalog) -> None:
    call = await new_call(catalog)
    await new_recording(catalog, call, directory="same")
    with pytest.raises(DuplicateError):
        await new_recording(catalog, call, directory="same")


async def test_update_recording_sets_times_and_the_key_hash_once(catalog: SqlCatalog) -> None:
    call = await new_call(catalog)
    rec_id = await new_recording(catalog, call)
    updated = await catalog.recordings.update_recording(
        rec_id, wrapped_key_sha256=HASH_A, duration_ms=1234
    )
    assert (updated.wrapped_key_sha256, updated.duration_ms) == (HASH_A, 1234)
    await catalog.recordings.update_recording(rec_id, wrapped_key_sha256=HASH_A)  # same value: fine
    with pytest.raises(InvalidFieldError, match="never changes"):
        await catalog.recordings.update_recording(rec_id, wrapped_key_sha256=HASH_B)
    with pytest.raises(InvalidFieldError, match="before started_at"):
        await catalog.recordings.update_recording(rec_id, ended_at=T0)
    with pytest.raises(InvalidFieldError, match="cannot set state"):
        await catalog.recordings.update_recording(rec_id, state="complete")  # type: ignore[call-arg]
    assert (await catalog.recordings.get_recording(rec_id)) == updated


# --------------------------------------------------------------------------- segments


async def test_segment_progress_and_sealing(catalog: SqlCatalog) -> None:
    call = await new_call(catalog)
    rec_id = await new_recording(catalog, call)
    first = await catalog.recordings.add_segment(
        NewSegment(rec_id, 0, file_name="000000.seg", first_frame=0)
    )
    assert (first.chunks, first.frames, first.size_bytes, first.sha256, first.closed) == (
        0,
        0,
        0,
        None,
        False,
    )
    await catalog.recordings.update_segment(
        rec_id, 0, SegmentFacts(chunks=3, frames=24000, size_bytes=48_200)
    )
    with pytest.raises(InvalidFieldError, match="needs its sha256"):
        await catalog.recordings.update_segment(rec_id, 0, SegmentFacts(closed=True))
    sealed = await catalog.recordings.update_segment(
        rec_id, 0, SegmentFacts(chunks=10, frames=80000, sha256=HASH_A, closed=True)
    )
    assert (sealed.chunks, sealed.frames, sealed.size_bytes, sealed.sha256, sealed.closed) == (
        10,
        80000,
        48_200,
        HASH_A,
        True,
    )
    with pytest.raises(InvalidTransitionError, match="closed"):
        await catalog.recordings.update_segment(rec_id, 0, SegmentFacts(frames=1))
    second = await catalog.recordings.add_segment(
        NewSegment(rec_id, 1, file_name="000001.seg", first_frame=80000)
    )
    assert await catalog.recordings.segments(rec_id) == [sealed, second]


async def test_a_sealed_segment_is_catalogued_whole_in_one_write(catalog: SqlCatalog) -> None:
    call = await new_call(catalog)
    rec_id = await new_recording(catalog, call)
    with pytest.raises(InvalidFieldError, match="needs its sha256"):
        await catalog.recordings.add_segment(
            NewSegment(
                rec_id,
                0,
                file_name="000000.seg",
                first_frame=0,
                facts=SegmentFacts(frames=80000, closed=True),
            )
        )
    assert await catalog.recordings.segments(rec_id) == []
    sealed = await catalog.recordings.add_segment(
        NewSegment(
            rec_id,
            0,
            file_name="000000.seg",
            first_frame=0,
            facts=SegmentFacts(
                chunks=10, frames=80000, size_bytes=80_500, sha256=HASH_A, closed=True
            ),
        )
    )
    assert (sealed.chunks, sealed.frames, sealed.size_bytes, sealed.sha256, sealed.closed) == (
        10,
        80000,
        80_500,
        HASH_A,
        True,
    )
    with pytest.raises(InvalidTransitionError, match="closed"):
        await catalog.recordings.update_segment(rec_id, 0, SegmentFacts(frames=1))
    assert await catalog.recordings.segments(rec_id) == [sealed]


async def test_segment_index_and_file_name_are_unique_per_recording(
    catalog: SqlCatalog,
) -> None:
    call = await new_call(catalog)
    rec_id = await new_recording(catalog, call)
    await catalog.recordings.add_segment(
        NewSegment(rec_id, 0, file_name="000000.seg", first_frame=0)
    )
    with pytest.raises(DuplicateError):
        await catalog.recordings.add_segment(
            NewSegment(rec_id, 0, file_name="other.seg", first_frame=0)
        )
    with pytest.raises(DuplicateError):
        await catalog.recordings.add_segment(
            NewSegment(rec_id, 1, file_name="000000.seg", first_frame=80000)
        )
    with pytest.raises(InvalidFieldError):
        await catalog.recordings.add_segment(
            NewSegment(rec_id, 1, file_name="../000001.seg", first_frame=80000)
        )
    with pytest.raises(InvalidFieldError):
        await catalog.recordings.update_segment(rec_id, 0, SegmentFacts(frames=-1))
    with pytest.raises(NotFoundError):
        await catalog.recordings.update_segment(rec_id, 7, SegmentFacts(frames=1))


# ------------------------------------------------------------------ consent receipts


async def test_consent_receipt_round_trip(catalog: SqlCatalog) -> None:
    call = await new_call(catalog)
    assert await catalog.calls.consent_receipt(call.id) is None
    receipt = await catalog.calls.add_consent_receipt(
        ConsentReceipt(
            call.id,
            mode=NoticeMode.EARLY_MEDIA,
            notice_sha256=HASH_A,
            notice_version="notice-2024-04",
            started_at=at(0.5),
            played_ms=3200,
            notice_ms=9400,
            completed=False,
            caller_left_during_notice=True,
            do_not_record=False,
        )
    )
    assert receipt.mode is NoticeMode.EARLY_MEDIA
    assert (receipt.played_ms, receipt.notice_ms, receipt.started_at) == (3200, 9400, at(0.5))
    assert receipt.caller_left_during_notice and not receipt.completed
    assert await catalog.calls.consent_receipt(call.id) == receipt
    with pytest.raises(DuplicateError):
        await catalog.calls.add_consent_receipt(
            ConsentReceipt(
                call.id,
                mode=NoticeMode.NONE,
                notice_sha256=None,
                notice_version=None,
                started_at=None,
                played_ms=0,
                notice_ms=0,
                completed=False,
                caller_left_during_notice=False,
                do_not_record=False,
            )
        )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"notice_sha256": None}, "needs notice_sha256"),
        ({"started_at": None}, "needs started_at"),
        ({"notice_sha256": "ABC"}, "64 lowercase hex"),
        ({"completed": True, "caller_left_during_notice": True}, "both complete and be left"),
        ({"played_ms": -1}, "played_ms"),
        ({"mode": "carrier-pigeon"}, "mode must be one of"),
    ],
)
async def test_consent_receipt_refuses_inconsistent_values(
    catalog: SqlCatalog, changes: dict[str, Any], message: str
) -> None:
    call = await new_call(catalog)
    fields: dict[str, Any] = {
        "mode": NoticeMode.ANSWER,
        "notice_sha256": HASH_A,
        "notice_version": "v1",
        "started_at": at(1),
        "played_ms": 9400,
        "notice_ms": 9400,
        "completed": True,
        "caller_left_during_notice": False,
        "do_not_record": False,
    } | changes
    with pytest.raises(InvalidFieldError, match=message):
        await catalog.calls.add_consent_receipt(ConsentReceipt(call.id, **fields))
    assert await catalog.calls.consent_receipt(call.id) is None


# ------------------------------------------------------------------------ foreign keys


MISSING = "00000000-0000-4000-8000-000000000000"


async def test_foreign_keys_are_enforced(catalog: SqlCatalog, backend: Backend) -> None:
    with pytest.raises(NotFoundError, match=f"call {MISSING}"):
        await catalog.recordings.create_recording(
            NewRecording(
                MISSING, directory="x", encoding="pcmu", sample_rate=8000, channels=2, started_at=T0
            )
        )
    with pytest.raises(NotFoundError, match=f"recording {MISSING}"):
        await catalog.recordings.add_segment(
            NewSegment(MISSING, 0, file_name="000000.seg", first_frame=0)
        )
    with pytest.raises(NotFoundError, match=f"call {MISSING}"):
        await catalog.calls.add_consent_receipt(
            ConsentReceipt(
                MISSING,
                mode=NoticeMode.NONE,
                notice_sha256=None,
                notice_version=None,
                started_at=None,
                played_ms=0,
                notice_ms=0,
                completed=False,
                caller_left_during_notice=False,
                do_not_record=False,
            )
        )
    with backend.raw() as conn:
        for table in ("recordings", "segments", "consent_receipts", "recording_events"):
            assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone() == (0,)


# ------------------------------------------------------------------------ state machine

# How to bring a fresh recording into each state the catalog stores (it stores no
# ``paused``: a pause is an event of a running recording).
PATHS: dict[RecordingState, list[RecordingState]] = {
    RecordingState.RECORDING: [],
    RecordingState.STOPPED: [RecordingState.STOPPED],
    RecordingState.COMPLETE: [RecordingState.COMPLETE],
    RecordingState.DEGRADED: [RecordingState.DEGRADED],
    RecordingState.INTERRUPTED: [RecordingState.INTERRUPTED],
    RecordingState.FAILED: [RecordingState.FAILED],
    RecordingState.DISCARDED: [RecordingState.DISCARDED],
}

# proxy.recording_state's table, into the states the catalog stores: final states stay
# final, except that a failed recording's partial files may still be discarded.
ALLOWED = {
    (RecordingState.RECORDING, RecordingState.COMPLETE),
    (RecordingState.RECORDING, RecordingState.DEGRADED),
    (RecordingState.RECORDING, RecordingState.STOPPED),
    (RecordingState.RECORDING, RecordingState.INTERRUPTED),
    (RecordingState.RECORDING, RecordingState.FAILED),
    (RecordingState.RECORDING, RecordingState.DISCARDED),
    (RecordingState.STOPPED, RecordingState.RECORDING),
    (RecordingState.STOPPED, RecordingState.COMPLETE),
    (RecordingState.STOPPED, RecordingState.DEGRADED),
    (RecordingState.STOPPED, RecordingState.INTERRUPTED),
    (RecordingState.STOPPED, RecordingState.FAILED),
    (RecordingState.STOPPED, RecordingState.DISCARDED),
    (RecordingState.FAILED, RecordingState.DISCARDED),
}


async def move(catalog: Catalog, rec_id: str, state: RecordingState, when: datetime) -> None:
    await catalog.recordings.set_recording_state(
        rec_id, state, Attribution(actor="jsmith", channel=EventChannel.API, reason="test", at=when)
    )


def test_the_transition_table_is_the_documented_one() -> None:
    table = {
        (old, new) for old in RecordingState for new in RecordingState if catalog_allows(old, new)
    }
    assert table == ALLOWED
    assert all(old.can_become(new) for old, new in ALLOWED)  # the one shared table


@pytest.mark.parametrize("old", list(PATHS))
@pytest.mark.parametrize("new", list(RecordingState))
async def test_every_transition_is_allowed_or_refused_as_documented(
    catalog: SqlCatalog, old: RecordingState, new: RecordingState
) -> None:
    call = await new_call(catalog)
    rec_id = await new_recording(catalog, call)
    for step in PATHS[old]:
        await move(catalog, rec_id, step, at(10))
    before = await catalog.recordings.get_recording(rec_id)
    events_before = await catalog.events.recording_events(rec_id)
    if (old, new) in ALLOWED:
        after = await catalog.recordings.set_recording_state(
            rec_id, new, Attribution(actor="jsmith", reason="why", at=at(20))
        )
        assert after.state is new
        assert len(await catalog.events.recording_events(rec_id)) == len(events_before) + 1
    else:
        with pytest.raises(InvalidTransitionError, match=f"from {old.value} to {new.value}"):
            await catalog.recordings.set_recording_state(
                rec_id, new, Attribution(actor="jsmith", reason="why", at=at(20))
            )
        assert await catalog.recordings.get_recording(rec_id) == before
        assert await catalog.events.recording_events(rec_id) == events_before


async def test_stop_resume_complete_is_audited(catalog: SqlCatalog) -> None:
    call = await new_call(catalog)
    rec_id = await new_recording(catalog, call)
    stopped = await catalog.recordings.set_recording_state(
        rec_id,
        RecordingState.STOPPED,
        Attribution(
            actor="ext-201", channel=EventChannel.DTMF, reason="caller distressed", at=at(30)
        ),
    )
    assert stopped.ended_at == at(30)
    resumed = await catalog.recordings.set_recording_state(
        rec_id,
        RecordingState.RECORDING,
        Attribution(actor="ext-201", channel=EventChannel.DTMF, at=at(40)),
    )
    assert resumed.ended_at is None
    await catalog.events.add_recording_event(
        rec_id, RecordingAction.PAUSE, Attribution(reason="hold", at=at(45))
    )
    await catalog.events.add_recording_event(
        rec_id, RecordingAction.RESUME, Attribution(reason="hold", at=at(50))
    )
    done = await catalog.recordings.set_recording_state(
        rec_id, RecordingState.COMPLETE, Attribution(at=at(90))
    )
    assert done.ended_at == at(90)
    events = await catalog.events.recording_events(rec_id)
    assert [(e.action, e.at, e.actor, e.channel, e.reason) for e in events] == [
        (RecordingAction.START, at(5), None, EventChannel.SYSTEM, None),
        (RecordingAction.STOP, at(30), "ext-201", EventChannel.DTMF, "caller distressed"),
        (RecordingAction.RESUME, at(40), "ext-201", EventChannel.DTMF, None),
        (RecordingAction.PAUSE, at(45), None, EventChannel.SYSTEM, "hold"),
        (RecordingAction.RESUME, at(50), None, EventChannel.SYSTEM, "hold"),
        (RecordingAction.COMPLETE, at(90), None, EventChannel.SYSTEM, None),
    ]


async def test_discard_needs_who_and_why_and_is_terminal(catalog: SqlCatalog) -> None:
    call = await new_call(catalog)
    rec_id = await new_recording(catalog, call)
    await catalog.recordings.add_segment(
        NewSegment(rec_id, 0, file_name="seg-000000.rec", first_frame=0)
    )
    with pytest.raises(InvalidFieldError, match="actor and a reason"):
        await catalog.recordings.set_recording_state(
            rec_id, RecordingState.DISCARDED, Attribution(actor="jsmith")
        )
    discarded = await catalog.recordings.set_recording_state(
        rec_id,
        RecordingState.DISCARDED,
        Attribution(actor="jsmith", channel=EventChannel.API, reason="caller asked", at=at(20)),
    )
    assert (discarded.discarded_by, discarded.discarded_reason, discarded.discarded_at) == (
        "jsmith",
        "caller asked",
        at(20),
    )
    assert await catalog.recordings.segments(rec_id) == []  # only the fact it existed remains
    with pytest.raises(InvalidTransitionError, match="allowed from discarded: none"):
        await catalog.recordings.set_recording_state(rec_id, RecordingState.RECORDING)
    with pytest.raises(InvalidTransitionError):
        await catalog.recordings.add_segment(
            NewSegment(rec_id, 0, file_name="000000.seg", first_frame=0)
        )


async def test_failure_keeps_its_reason(catalog: SqlCatalog) -> None:
    call = await new_call(catalog)
    rec_id = await new_recording(catalog, call)
    with pytest.raises(InvalidFieldError, match="needs a reason"):
        await catalog.recordings.set_recording_state(rec_id, RecordingState.FAILED)
    failed = await catalog.recordings.set_recording_state(
        rec_id, RecordingState.FAILED, Attribution(reason="disk full")
    )
    assert failed.failure_reason == "disk full"
    assert failed.ended_at == at(3600)  # the injected clock


async def test_a_degraded_recording_keeps_its_reason_and_per_channel_quality(
    catalog: SqlCatalog,
) -> None:
    call = await new_call(catalog)
    rec_id = await new_recording(catalog, call)
    with pytest.raises(InvalidFieldError, match="needs a reason"):
        await catalog.recordings.set_recording_state(rec_id, RecordingState.DEGRADED)
    quality = [
        ChannelQuality("caller", 1500, 40, 2, 10, 360),
        ChannelQuality("call_taker", 1500, 0, 0, 3, 0),
    ]
    await catalog.recordings.set_recording_quality(rec_id, quality)
    with pytest.raises(InvalidFieldError, match="channel must be one of"):
        await catalog.recordings.set_recording_quality(
            rec_id, [ChannelQuality("left", 1, 0, 0, 0, 0)]
        )
    degraded = await catalog.recordings.set_recording_state(
        rec_id, RecordingState.DEGRADED, Attribution(reason="caller: 2.8% of frames lost or late")
    )
    assert degraded.degraded_reason == "caller: 2.8% of frames lost or late"
    assert degraded.ended_at is not None
    assert (await catalog.events.recording_events(rec_id))[-1].action is RecordingAction.DEGRADED
    assert set(await catalog.recordings.recording_quality(rec_id)) == set(quality)
    [summary] = await catalog.recordings.list_recordings()
    listed = summary.as_dict()
    assert listed["state"] == "degraded"
    assert listed["reason"] == "caller: 2.8% of frames lost or late"
    assert listed["quality"] == {
        "caller": {
            "frames": 1500,
            "lost_frames": 40,
            "late_frames": 2,
            "missing_frames": 10,
            "longest_gap_ms": 360,
        },
        "call_taker": {
            "frames": 1500,
            "lost_frames": 0,
            "late_frames": 0,
            "missing_frames": 3,
            "longest_gap_ms": 0,
        },
    }


async def test_state_changing_actions_cannot_be_logged_alone(catalog: SqlCatalog) -> None:
    call = await new_call(catalog)
    rec_id = await new_recording(catalog, call)
    with pytest.raises(InvalidFieldError, match="use set_recording_state"):
        await catalog.events.add_recording_event(rec_id, RecordingAction.STOP)
    await catalog.recordings.set_recording_state(rec_id, RecordingState.COMPLETE)
    with pytest.raises(InvalidTransitionError, match="only while recording"):
        await catalog.events.add_recording_event(rec_id, RecordingAction.PAUSE)
    with pytest.raises(NotFoundError):
        await catalog.events.add_recording_event(MISSING, RecordingAction.PAUSE)


# -------------------------------------------------------------------- list_recordings


async def test_list_recordings_fields(catalog: SqlCatalog) -> None:
    call = await new_call(catalog, caller="+441111")
    await catalog.calls.update_call(call.id, config_version="c0ffee")
    rec_id = await new_recording(catalog, call)
    await catalog.recordings.add_segment(NewSegment(rec_id, 0, file_name="0.seg", first_frame=0))
    await catalog.recordings.update_segment(rec_id, 0, SegmentFacts(frames=80000))
    await catalog.recordings.add_segment(
        NewSegment(rec_id, 1, file_name="1.seg", first_frame=80000)
    )
    await catalog.recordings.update_segment(rec_id, 1, SegmentFacts(frames=12345))
    [summary] = await catalog.recordings.list_recordings()
    assert summary.as_dict() == {
        "id": rec_id,
        "call_id": call.id,
        "caller": "+441111",
        "callee": "reception",
        "started_at": "2024-05-01T09:30:00.250Z",
        "duration_ms": (80000 + 12345) * 1000 // 8000,
        "state": "recording",
        "segments": 2,
        "reason": None,
        "quality": {},
        "config_version": "c0ffee",
        "node": None,
    }
    await catalog.recordings.update_recording(rec_id, duration_ms=11_000)  # a known duration wins
    [summary] = await catalog.recordings.list_recordings()
    assert summary.duration_ms == 11_000


async def test_list_recordings_without_segments_has_zero_duration(catalog: SqlCatalog) -> None:
    call = await new_call(catalog)
    await new_recording(catalog, call)
    [summary] = await catalog.recordings.list_recordings()
    assert (summary.duration_ms, summary.segments) == (0, 0)


async def test_list_recordings_newest_first_paginated_and_filtered(
    catalog: SqlCatalog,
) -> None:
    ids: list[str] = []
    for minute in range(7):
        call = await new_call(catalog, started=at(60 * minute), caller=f"+44{minute}")
        ids.append(await new_recording(catalog, call))
    await catalog.recordings.set_recording_state(ids[2], RecordingState.COMPLETE)
    await catalog.recordings.set_recording_state(ids[5], RecordingState.COMPLETE)
    newest_first = list(reversed(ids))

    everything = await catalog.recordings.list_recordings()
    assert [s.id for s in everything] == newest_first
    pages = [
        await catalog.recordings.list_recordings(limit=3, offset=offset) for offset in (0, 3, 6, 9)
    ]
    assert [len(page) for page in pages] == [3, 3, 1, 0]
    assert [s.id for page in pages for s in page] == newest_first
    complete = await catalog.recordings.list_recordings(RecordingState.COMPLETE)
    assert [s.id for s in complete] == [ids[5], ids[2]]
    assert all(s.state is RecordingState.COMPLETE for s in complete)
    assert await catalog.recordings.list_recordings(RecordingState.DISCARDED) == []
    with pytest.raises(InvalidFieldError):
        await catalog.recordings.list_recordings(limit=-1)


# ---------------------------------------------------------------------------- recovery


async def test_recover_interrupted_marks_only_running_recordings(backend: Backend) -> None:
    clock = FakeClock(at(7200))
    async with backend.catalog(clock=clock) as catalog:
        running = []
        for minute in (0, 1):
            call = await new_call(catalog, started=at(60 * minute), caller=f"+44{minute}")
            running.append(await new_recording(catalog, call))
        stopped = await new_recording(catalog, await new_call(catalog, caller="+4402"))
        await catalog.recordings.set_recording_state(stopped, RecordingState.STOPPED)
        complete = await new_recording(catalog, await new_call(catalog, caller="+4403"))
        await catalog.recordings.set_recording_state(complete, RecordingState.COMPLETE)

    async with backend.catalog(clock=clock) as catalog:  # "after the crash"
        assert await catalog.recordings.recover_interrupted() == running
        for rec_id in running:
            assert await state_of(catalog, rec_id) is RecordingState.INTERRUPTED
            last = (await catalog.events.recording_events(rec_id))[-1]
            assert (last.action, last.actor, last.channel, last.reason, last.at) == (
                RecordingAction.INTERRUPTED,
                "system",
                EventChannel.SYSTEM,
                "process ended while recording",
                at(7200),
            )
        assert await state_of(catalog, stopped) is RecordingState.STOPPED
        assert await state_of(catalog, complete) is RecordingState.COMPLETE
        assert await catalog.recordings.recover_interrupted() == []


# ---------------------------------------------------------------------- crash safety

CRASH_SCRIPT = """
import asyncio, json, sys
from datetime import UTC, datetime
from proxy.storage.catalog import (
    CallDirection, NewCall, NewRecording, NewSegment, SegmentFacts, SqliteCatalog,
)
from proxy.storage.catalog.postgres import PostgresCatalog

async def main() -> None:
    where = sys.argv[1]
    engine = PostgresCatalog if where.startswith("postgresql://") else SqliteCatalog
    catalog = await engine(where).open()
    now = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    call = await catalog.calls.create_call(NewCall(
        sip_call_id="crash@trunk", caller="+44999", callee="reception",
        direction=CallDirection.INBOUND, started_at=now,
    ))
    rec = await catalog.recordings.create_recording(NewRecording(
        call.id, directory="crash", encoding="pcmu", sample_rate=8000, channels=2,
        started_at=now,
    ))
    await catalog.recordings.add_segment(NewSegment(rec.id, 0, "000000.seg", first_frame=0))
    await catalog.recordings.update_segment(
        rec.id, 0, SegmentFacts(chunks=4, frames=32000, size_bytes=64400)
    )
    print(json.dumps({"call": call.id, "recording": rec.id}), flush=True)
    await asyncio.sleep(3600)  # never closes: the parent kills it

asyncio.run(main())
"""


async def test_an_awaited_write_survives_sigkill(backend: Backend) -> None:
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CRASH_SCRIPT,
        str(backend.path()) if backend.is_sqlite else backend.url(),
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        ids = json.loads(line)
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()
    assert process.returncode == -signal.SIGKILL

    async with backend.catalog() as catalog:
        call = await catalog.calls.get_call(ids["call"])
        assert call is not None and call.caller == "+44999"
        [segment] = await catalog.recordings.segments(ids["recording"])
        assert (segment.chunks, segment.frames, segment.size_bytes) == (4, 32000, 64400)
        assert await catalog.recordings.recover_interrupted() == [ids["recording"]]
    if backend.is_sqlite:
        with backend.raw() as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# ------------------------------------------------------------------------ concurrency


async def test_two_tasks_writing_at_once_do_not_interleave(catalog: SqlCatalog) -> None:
    call = await new_call(catalog)

    async def writer(name: str) -> str:
        rec_id = await new_recording(catalog, call, directory=name)
        for index in range(20):
            await catalog.recordings.add_segment(
                NewSegment(rec_id, index, file_name=f"{index}.seg", first_frame=index)
            )
            await catalog.recordings.update_segment(
                rec_id, index, SegmentFacts(frames=8000, sha256=HASH_A, closed=True)
            )
        await catalog.recordings.set_recording_state(rec_id, RecordingState.COMPLETE)
        return rec_id

    ids = await asyncio.gather(writer("a"), writer("b"))
    for rec_id in ids:
        segments = await catalog.recordings.segments(rec_id)
        assert [s.segment_index for s in segments] == list(range(20))
        assert all(s.closed and s.frames == 8000 for s in segments)
        actions = [e.action for e in await catalog.events.recording_events(rec_id)]
        assert actions == [RecordingAction.START, RecordingAction.COMPLETE]


async def test_racing_state_changes_apply_exactly_one(catalog: SqlCatalog) -> None:
    call = await new_call(catalog)
    rec_id = await new_recording(catalog, call)
    results = await asyncio.gather(
        *(
            catalog.recordings.set_recording_state(rec_id, RecordingState.COMPLETE)
            for _ in range(5)
        ),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(
        isinstance(r, InvalidTransitionError) for r in results if isinstance(r, BaseException)
    )
    actions = [e.action for e in await catalog.events.recording_events(rec_id)]
    assert actions.count(RecordingAction.COMPLETE) == 1


async def test_two_connections_on_one_file_both_land(backend: Backend) -> None:
    async with backend.catalog() as first, backend.catalog() as second:

        async def writer(catalog: SqlCatalog, prefix: str) -> list[str]:
            return [
                (await new_call(catalog, started=at(i), caller=f"{prefix}{i}")).id
                for i in range(40)
            ]

        a, b = await asyncio.gather(writer(first, "+441"), writer(second, "+442"))
        for call_id in a + b:
            assert await first.calls.get_call(call_id) is not None
            assert await second.calls.get_call(call_id) is not None
    with backend.raw() as conn:
        assert conn.execute("SELECT COUNT(*) FROM calls").fetchone() == (80,)


async def test_a_cancelled_write_leaves_the_catalog_usable(backend: Backend) -> None:
    async with backend.catalog() as catalog:
        task = asyncio.create_task(new_call(catalog, caller="+44cancel"))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        after = await new_call(catalog, caller="+44after")
    # Whatever happened to the cancelled write, the later one was committed alone and
    # no transaction was left open (close() would otherwise have lost ``after``).
    async with backend.catalog() as catalog:
        assert await catalog.calls.get_call(after.id) == after
    with backend.raw() as conn:
        callers = {row[0] for row in conn.execute("SELECT caller FROM calls")}
    assert "+44after" in callers and callers <= {"+44after", "+44cancel"}


# ----------------------------------------------------------------------- access log


async def test_access_log_records_actor_reason_and_recording(backend: Backend) -> None:
    async with backend.catalog() as catalog:
        call = await catalog.calls.create_call(
            NewCall(
                sip_call_id="c1",
                caller="01234",
                callee="surgery",
                direction=CallDirection.INBOUND,
                started_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            )
        )
        rec = await catalog.recordings.create_recording(
            NewRecording(
                call.id,
                directory="r1",
                encoding="ulaw",
                sample_rate=8000,
                channels=2,
                started_at=datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC),
            )
        )
        entry = await catalog.access.log_access(
            actor="alice", action="export", reason="complaint 42", recording_id=rec.id
        )
        assert (entry.actor, entry.action, entry.reason) == ("alice", "export", "complaint 42")
        with pytest.raises(InvalidFieldError):
            await catalog.access.log_access(actor="alice", action="export", reason="")
        with pytest.raises(NotFoundError):
            await catalog.access.log_access(
                actor="bob", action="export", reason="x", recording_id="no-such"
            )
        log = await catalog.access.access_log(rec.id)
        assert [(e.actor, e.reason) for e in log] == [("alice", "complaint 42")]
        assert await catalog.schema_version() == SCHEMA_VERSION


# ----------------------------------------------------------------------- do-not-record


async def test_do_not_record_list_refuses_a_second_add_unless_replace(backend: Backend) -> None:
    async with backend.catalog() as catalog:
        assert await catalog.do_not_record.get("+441234567890") is None
        await catalog.do_not_record.add(
            "+441234567890", reference="letter 2026-03-01", added_by="records"
        )
        with pytest.raises(DuplicateError, match=r"\+441234567890 is already on"):
            await catalog.do_not_record.add("+441234567890", reference="dup", added_by="dpo")
        entry = await catalog.do_not_record.get("+441234567890")
        assert entry is not None and entry.reference == "letter 2026-03-01"  # kept
        await catalog.do_not_record.add(
            "+441234567890", reference="email 7", added_by="dpo", replace=True
        )
        await catalog.do_not_record.add("+447700900123", reference="letter 9", added_by="dpo")
        entry = await catalog.do_not_record.get("+441234567890")
        assert entry is not None and (entry.reference, entry.added_by) == ("email 7", "dpo")
        assert [e.number for e in await catalog.do_not_record.entries()] == [
            "+441234567890",
            "+447700900123",
        ]
        with pytest.raises(InvalidFieldError):
            await catalog.do_not_record.add("+44", reference="", added_by="dpo")
    async with backend.catalog() as catalog:  # it persists
        assert await catalog.do_not_record.remove("+441234567890", by="dpo") is True
        assert await catalog.do_not_record.remove("+441234567890", by="dpo") is False
        audited = [(e.actor, e.action, e.object) for e in await catalog.audit.entries()]
        assert audited[-1] == ("dpo", "dnr.remove", "number:+441234567890")
        assert ("dpo", "dnr.add", "number:+447700900123") in audited
        actions = [e.action for e in await catalog.audit.entries()]
        # the refused duplicate and the removal of a number not listed left no entry
        assert (actions.count("dnr.add"), actions.count("dnr.remove")) == (3, 1)
        assert (await catalog.audit.verify()).intact
        assert await catalog.do_not_record.get("+441234567890") is None


async def test_recover_calls_closes_calls_a_crash_left_open(backend: Backend) -> None:
    async with backend.catalog() as catalog:
        start = datetime(2026, 5, 1, 9, 0, 0, tzinfo=UTC)
        open_call = await catalog.calls.create_call(NewCall(
            sip_call_id="a", caller="1", callee="2", direction=CallDirection.INBOUND,
            started_at=start,
        ))  # fmt: skip
        await catalog.calls.update_call(open_call.id, bridged_at=start + timedelta(seconds=12))
        rec = await catalog.recordings.create_recording(NewRecording(
            open_call.id, directory="r", encoding="ulaw", sample_rate=8000, channels=2,
            started_at=start + timedelta(seconds=12),
        ))  # fmt: skip
        await catalog.recordings.recover_interrupted()
        await catalog.recordings.update_recording(rec.id, ended_at=start + timedelta(seconds=40))
        done = await catalog.calls.create_call(NewCall(
            sip_call_id="b", caller="1", callee="2", direction=CallDirection.INBOUND,
            started_at=start,
        ))  # fmt: skip
        await catalog.calls.update_call(
            done.id, ended_at=start + timedelta(seconds=5), outcome=CallOutcome.COMPLETED
        )
        assert await catalog.calls.recover_calls() == [open_call.id]
        recovered = await catalog.calls.get_call(open_call.id)
        assert recovered is not None
        assert recovered.outcome is CallOutcome.INTERRUPTED
        assert recovered.ended_at == start + timedelta(seconds=40)
        untouched = await catalog.calls.get_call(done.id)
        assert untouched is not None and untouched.outcome is CallOutcome.COMPLETED
        assert await catalog.calls.recover_calls() == []


async def test_a_stopped_recording_keeps_the_stop_as_its_end(catalog: SqlCatalog) -> None:
    call = await new_call(catalog)
    rec_id = await new_recording(catalog, call)
    await catalog.recordings.set_recording_state(
        rec_id, RecordingState.STOPPED, Attribution(actor="alice", reason="distressed", at=at(30))
    )
    done = await catalog.recordings.set_recording_state(
        rec_id, RecordingState.COMPLETE, Attribution(at=at(90))
    )
    assert done.ended_at == at(30)
    # while a resumed one ends when it is completed
    other = await new_recording(catalog, call, directory="second")
    await catalog.recordings.set_recording_state(
        other, RecordingState.STOPPED, Attribution(at=at(30))
    )
    await catalog.recordings.set_recording_state(
        other, RecordingState.RECORDING, Attribution(at=at(40))
    )
    resumed = await catalog.recordings.set_recording_state(
        other, RecordingState.COMPLETE, Attribution(at=at(90))
    )
    assert resumed.ended_at == at(90)
