"""Holds in the catalog (issue 11): a party's hold and resume are recording events, and
a consent receipt counts how often a hold restarted the notice and for how long
(migration 5)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from proxy.recording_state import RecordingState
from proxy.storage.catalog import (
    Attribution,
    ConsentReceipt,
    EventChannel,
    NoticeMode,
    RecordingAction,
    SqlCatalog,
)
from tests.catalog_backends import Backend

from .test_catalog import HASH_A, FakeClock, at, new_call, new_recording


@pytest.fixture
async def opened(backend: Backend) -> AsyncIterator[SqlCatalog]:
    async with backend.catalog(clock=FakeClock(at(3600))) as catalog:
        yield catalog


async def test_hold_and_unhold_are_events_of_a_running_recording(opened: SqlCatalog) -> None:
    catalog = opened
    call = await new_call(catalog)
    rec_id = await new_recording(catalog, call)
    await catalog.events.add_recording_event(
        rec_id,
        RecordingAction.HOLD,
        Attribution(actor="call taker", reason="held (sendonly)", at=at(20)),
    )
    await catalog.events.add_recording_event(
        rec_id, RecordingAction.UNHOLD, Attribution(actor="call taker", at=at(25))
    )
    await catalog.recordings.set_recording_state(
        rec_id, RecordingState.COMPLETE, Attribution(at=at(30))
    )
    events = await catalog.events.recording_events(rec_id)
    assert [(e.action, e.actor, e.channel) for e in events][1:3] == [
        (RecordingAction.HOLD, "call taker", EventChannel.SYSTEM),
        (RecordingAction.UNHOLD, "call taker", EventChannel.SYSTEM),
    ]


async def test_a_receipt_keeps_notice_restarts_and_time_held(
    opened: SqlCatalog, backend: Backend
) -> None:
    catalog = opened
    call = await new_call(catalog)
    receipt = await catalog.calls.add_consent_receipt(
        ConsentReceipt(
            call.id,
            mode=NoticeMode.ANSWER,
            notice_sha256=HASH_A,
            notice_version="notice-2024-04",
            started_at=at(0.5),
            played_ms=9400,
            notice_ms=9400,
            completed=True,
            caller_left_during_notice=False,
            do_not_record=False,
            notice_restarts=2,
            held_ms=4100,
        )
    )
    assert (receipt.notice_restarts, receipt.held_ms) == (2, 4100)
    assert await catalog.calls.consent_receipt(call.id) == receipt
    with backend.raw() as db:
        row = db.execute("SELECT version, name FROM schema_migrations WHERE version = 5").fetchone()
    assert row is not None and "notice restarts" in row[1]
