"""Audited catalog changes write exactly one audit entry, in the change's own transaction,
and a refused change writes none: the recording switch (stop, resume, discard) and the
access log.  A real SQLite catalog."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from proxy.recording_state import RecordingState
from proxy.storage.catalog import (
    Attribution,
    CallDirection,
    EventChannel,
    InvalidFieldError,
    InvalidTransitionError,
    NewCall,
    NewRecording,
    NotFoundError,
    SqlCatalog,
)
from tests.catalog_backends import Backend

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
async def catalog(backend: Backend) -> AsyncIterator[SqlCatalog]:
    async with backend.catalog() as opened:
        yield opened


async def new_recording(catalog: SqlCatalog, name: str = "r") -> str:
    call = await catalog.calls.create_call(
        NewCall(f"{name}@test", "+441234567890", "+441234000000", CallDirection.INBOUND, T0)
    )
    recording = await catalog.recordings.create_recording(
        NewRecording(call.id, name, "g711", 8000, 2, T0)
    )
    return recording.id


def by(actor: str, reason: str, minutes: int) -> Attribution:
    return Attribution(actor, EventChannel.DTMF, reason, T0 + timedelta(minutes=minutes))


async def test_stop_resume_and_discard_each_write_one_entry(catalog: SqlCatalog) -> None:
    rid = await new_recording(catalog)
    states = catalog.recordings
    await states.set_recording_state(rid, RecordingState.STOPPED, by("alice", "card", 1))
    await states.set_recording_state(rid, RecordingState.RECORDING, by("alice", "done", 2))
    await states.set_recording_state(rid, RecordingState.DISCARDED, by("bob", "asked", 3))
    entries = await catalog.audit.entries()
    assert [(e.action, e.actor, e.object, e.reason, e.detail, e.at) for e in entries] == [
        ("recording.stop", "alice", f"recording:{rid}", "card",
         {"from": "recording", "channel": "dtmf"}, T0 + timedelta(minutes=1)),
        ("recording.resume", "alice", f"recording:{rid}", "done",
         {"from": "stopped", "channel": "dtmf"}, T0 + timedelta(minutes=2)),
        ("recording.discard", "bob", f"recording:{rid}", "asked",
         {"from": "recording", "channel": "dtmf"}, T0 + timedelta(minutes=3)),
    ]  # fmt: skip
    assert (await catalog.audit.verify()).count == 3


async def test_a_stop_by_no_one_is_the_systems(catalog: SqlCatalog) -> None:
    rid = await new_recording(catalog)
    await catalog.recordings.set_recording_state(rid, RecordingState.STOPPED)
    (entry,) = await catalog.audit.entries()
    assert (entry.actor, entry.action, entry.detail["channel"]) == (
        "system",
        "recording.stop",
        "system",
    )


async def test_endings_of_a_recording_are_not_audited_as_switches(catalog: SqlCatalog) -> None:
    rid = await new_recording(catalog)
    await catalog.recordings.set_recording_state(rid, RecordingState.COMPLETE)
    assert await catalog.audit.entries() == []


async def test_a_refused_switch_writes_no_entry(catalog: SqlCatalog) -> None:
    rid = await new_recording(catalog)
    with pytest.raises(InvalidTransitionError):  # resuming a running recording
        await catalog.recordings.set_recording_state(rid, RecordingState.RECORDING, by("a", "x", 1))
    with pytest.raises(InvalidFieldError):  # a discard needs who and why
        await catalog.recordings.set_recording_state(rid, RecordingState.DISCARDED)
    with pytest.raises(NotFoundError):
        await catalog.recordings.set_recording_state("nope", RecordingState.STOPPED)
    assert await catalog.audit.entries() == []
    recording = await catalog.recordings.get_recording(rid)
    assert recording is not None and recording.state is RecordingState.RECORDING


async def test_an_access_and_its_audit_entry_commit_together(catalog: SqlCatalog) -> None:
    rid = await new_recording(catalog)
    access = await catalog.access.log_access(
        actor="dr_smith", action="playback", reason="complaint 7", recording_id=rid,
        facts={"from_s": 3}, at=T0,
    )  # fmt: skip
    (entry,) = await catalog.audit.entries()
    assert (entry.actor, entry.action, entry.object, entry.reason, entry.detail, entry.at) == (
        "dr_smith", "playback", f"recording:{rid}", "complaint 7", {"from_s": 3}, access.at,
    )  # fmt: skip


async def test_a_refused_access_writes_neither(catalog: SqlCatalog) -> None:
    with pytest.raises(NotFoundError):
        await catalog.access.log_access(
            actor="dr_smith", action="export-wav", reason="x", recording_id="missing"
        )
    rid = await new_recording(catalog)
    with pytest.raises(InvalidFieldError):  # detail that is not JSON: the access rolls back
        await catalog.access.log_access(
            actor="dr_smith", action="export-wav", reason="x", recording_id=rid,
            facts={"bad": object()},
        )  # fmt: skip
    assert await catalog.access.access_log() == []
    assert await catalog.audit.entries() == []
