"""A call's writes as one unit of work (``catalog.call_writes``, issue 19): a batch leaves
the rows the separate repository writes left, a refused batch leaves none of its rows,
and a process killed between a call's two transactions leaves a call and recording that
start-up recovery ends as ``interrupted``."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proxy.recording_state import RecordingState
from proxy.storage.catalog import (
    Attribution,
    CallBatch,
    CallDirection,
    CallOutcome,
    CallUpdate,
    ChannelQuality,
    ConsentReceipt,
    DuplicateError,
    FirstPart,
    InvalidFieldError,
    InvalidTransitionError,
    NewCall,
    NewRecording,
    NewSegment,
    NoticeMode,
    RecordingEnd,
    SegmentFacts,
    SqliteCatalog,
)
from tests.catalog_backends import Backend

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
CALL_ID = "0b7f3c52-54a4-4a55-9a3e-4f0c1d7e2a10"
RID = "5d0a8a57-0d1b-4c7e-9f0e-2b7d1c6a4e31"
KEY_SHA = "ab" * 32
SEGMENT_SHA = "cd" * 32


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def expires(end: datetime) -> datetime:
    return end + timedelta(days=30)


NEW_CALL = NewCall(
    sip_call_id="sip-1", caller="+441234567890", callee="surgery",
    direction=CallDirection.INBOUND, started_at=at(0), service="surgery",
    config_version="v1", call_id=CALL_ID,
)  # fmt: skip
RECEIPT = ConsentReceipt(
    CALL_ID, NoticeMode.ANSWER, "ef" * 32, "notice", at(0.2), 3000, 3000,
    completed=True, caller_left_during_notice=False, do_not_record=False,
)  # fmt: skip
RECORDING = NewRecording(
    CALL_ID, directory=RID, encoding="ulaw", sample_rate=8000, channels=2,
    started_at=at(5), recording_id=RID,
)  # fmt: skip
QUALITY = (
    ChannelQuality("caller", 100, 1, 0, 0, 20),
    ChannelQuality("call_taker", 100, 0, 0, 0, 0),
)
SEGMENT = NewSegment(RID, 0, "000000.seg", 0, SegmentFacts(2, 8000, 4096, SEGMENT_SHA, True))


def set_up() -> CallBatch:
    return CallBatch(
        CALL_ID,
        new_call=NEW_CALL,
        receipt=RECEIPT,
        recording=RECORDING,
        first_part=FirstPart("alice", "front desk"),
        changes=CallUpdate(answered_at=at(0.1), bridged_at=at(5), operator="alice"),
    )


def ending() -> CallBatch:
    end = RecordingEnd(
        RID, RecordingState.COMPLETE, Attribution(at=at(30)), QUALITY,
        duration_ms=25000, wrapped_key_sha256=KEY_SHA, segments=(SEGMENT,), expires=expires,
    )  # fmt: skip
    changes = CallUpdate(ended_at=at(30), outcome=CallOutcome.COMPLETED)
    return CallBatch(CALL_ID, recording_end=end, changes=changes)


async def one_by_one(catalog: SqliteCatalog) -> None:
    """The same call written as it was before issue 19: a write per fact."""
    await catalog.calls.create_call(NEW_CALL)
    await catalog.calls.update_call(CALL_ID, answered_at=at(0.1))
    await catalog.calls.add_consent_receipt(RECEIPT)
    await catalog.recordings.create_recording(RECORDING)
    await catalog.calls.update_call(CALL_ID, bridged_at=at(5), operator="alice")
    await catalog.parts.begin(RID, operator="alice", team="front desk", at=at(5))
    await catalog.recordings.add_segment(SEGMENT)
    await catalog.recordings.update_recording(RID, duration_ms=25000, wrapped_key_sha256=KEY_SHA)
    await catalog.recordings.set_recording_quality(RID, QUALITY)
    await catalog.recordings.set_recording_state(
        RID, RecordingState.COMPLETE, Attribution(at=at(30)), expires=expires
    )
    await catalog.calls.update_call(CALL_ID, ended_at=at(30), outcome=CallOutcome.COMPLETED)


TABLES = (
    "calls",
    "consent_receipts",
    "recordings",
    "recording_events",
    "recording_parts",
    "segments",
    "recording_quality",
)


def dump(backend: Backend, name: str) -> dict[str, list[dict[str, object]]]:
    """Every row of ``TABLES`` in insertion order, without the row ids."""
    with backend.raw(name) as conn:
        found = {}
        for table in TABLES:
            order = "id" if table == "recording_events" else "rowid"
            cursor = conn.execute(f"SELECT * FROM {table} ORDER BY {order}")
            names = [column[0] for column in cursor.description]
            found[table] = [
                {k: v for k, v in zip(names, row, strict=True) if k not in ("id", "rowid")}
                if table == "recording_events" or "rowid" in names
                else dict(zip(names, row, strict=True))
                for row in cursor
            ]
        return found


async def test_two_batches_leave_the_rows_the_separate_writes_left(backend: Backend) -> None:
    async with backend.catalog("apart.sqlite3", clock=lambda: at(40)) as catalog:
        await one_by_one(catalog)
    async with backend.catalog("batched.sqlite3", clock=lambda: at(40)) as catalog:
        await catalog.call_writes.write(set_up())
        await catalog.call_writes.write(ending())
    batched = dump(backend, "batched.sqlite3")
    assert batched == dump(backend, "apart.sqlite3")
    assert [e["action"] for e in batched["recording_events"]] == ["start", "complete"]
    assert batched["recordings"][0]["state"] == "complete"
    assert batched["calls"][0]["outcome"] == "completed"


async def test_a_call_never_bridged_is_written_whole_in_one_batch(backend: Backend) -> None:
    async with backend.catalog() as catalog:
        await catalog.call_writes.write(
            CallBatch(
                CALL_ID,
                new_call=NEW_CALL,
                receipt=RECEIPT,
                changes=CallUpdate(
                    answered_at=at(0.1),
                    ended_at=at(2),
                    outcome=CallOutcome.CALLER_ABANDONED_WHILE_RINGING,
                ),
            )
        )
        call = await catalog.calls.get_call(CALL_ID)
        assert call is not None and call.outcome is CallOutcome.CALLER_ABANDONED_WHILE_RINGING
        assert (call.answered_at, call.ended_at) == (at(0.1), at(2))
        assert await catalog.calls.consent_receipt(CALL_ID) == RECEIPT


async def test_a_refused_batch_leaves_none_of_its_rows(backend: Backend) -> None:
    async with backend.catalog() as catalog:
        await catalog.calls.create_call(NEW_CALL)  # the call is already there: a duplicate
        with pytest.raises(DuplicateError):
            await catalog.call_writes.write(set_up())
        assert await catalog.recordings.get_recording(RID) is None
        assert await catalog.calls.consent_receipt(CALL_ID) is None
        call = await catalog.calls.get_call(CALL_ID)
        assert call is not None and call.bridged_at is None


async def test_an_end_the_catalog_refuses_is_split_from_the_call_end(backend: Backend) -> None:
    async with backend.catalog() as catalog:
        await catalog.call_writes.write(set_up())
        await catalog.recordings.set_recording_state(
            RID, RecordingState.DISCARDED, Attribution("alice", reason="asked to")
        )
        with pytest.raises(InvalidTransitionError):  # a discarded recording takes no end
            await catalog.call_writes.write(ending())
        call = await catalog.calls.get_call(CALL_ID)
        assert call is not None and call.ended_at is None  # nothing of the batch landed
        parts = ending().split()
        assert parts is not None
        recording_end, call_end = parts
        assert recording_end == CallBatch(CALL_ID, recording_end=ending().recording_end)
        await catalog.call_writes.write(call_end)
        call = await catalog.calls.get_call(CALL_ID)
        assert call is not None and call.outcome is CallOutcome.COMPLETED
    assert CallBatch(CALL_ID, recording_end=ending().recording_end).split() is None
    assert set_up().split() is None


CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from tests.storage.test_catalog_call_writes import set_up
    from proxy.storage.catalog import SqliteCatalog
    from proxy.storage.catalog.postgres import PostgresCatalog

    async def main():
        where = sys.argv[1]
        engine = PostgresCatalog if where.startswith("postgresql://") else SqliteCatalog
        catalog = await engine(where).open()
        await catalog.call_writes.write(set_up())
        os.kill(os.getpid(), signal.SIGKILL)  # before the call's second transaction

    asyncio.run(main())
    """
)


async def test_a_kill_between_the_two_transactions_is_recovered_as_interrupted(
    backend: Backend,
) -> None:
    where = str(backend.path()) if backend.is_sqlite else backend.url()
    root = Path(__file__).resolve().parents[2]
    child = subprocess.run([sys.executable, "-c", CHILD, where], cwd=root, timeout=60, check=False)
    assert child.returncode == -signal.SIGKILL
    async with backend.catalog() as catalog:
        assert await catalog.recordings.recover_interrupted() == [RID]
        assert await catalog.calls.recover_calls() == [CALL_ID]
        recording = await catalog.recordings.get_recording(RID)
        assert recording is not None and recording.state is RecordingState.INTERRUPTED
        call = await catalog.calls.get_call(CALL_ID)
        assert call is not None and call.outcome is CallOutcome.INTERRUPTED
        assert call.bridged_at == at(5)
        assert [p.operator for p in await catalog.parts.parts(RID)] == ["alice"]


def test_a_dropped_set_up_joined_to_the_calls_end_is_one_batch_of_both() -> None:
    set_up = CallBatch(
        CALL_ID, new_call=NEW_CALL, receipt=RECEIPT,
        changes=CallUpdate(bridged_at=at(5), operator="alice"),
    )  # fmt: skip
    end = CallBatch(CALL_ID, changes=CallUpdate(ended_at=at(9), outcome=CallOutcome.COMPLETED))
    assert set_up.then(end) == CallBatch(
        CALL_ID, new_call=NEW_CALL, receipt=RECEIPT,
        changes=CallUpdate(bridged_at=at(5), operator="alice", ended_at=at(9),
                           outcome=CallOutcome.COMPLETED),
    )  # fmt: skip
    with pytest.raises(InvalidFieldError, match="two calls"):
        set_up.then(CallBatch("another call"))
