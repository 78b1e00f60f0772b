"""The recording service with recordings run by media workers (issue 19, step 2), on a
real catalog and real worker processes: a recording's rows, segments and end are
catalogued from the worker's reports as from the service's own writer; a worker killed
mid-recording ends it ``interrupted`` with what its writer sealed catalogued, as start-up
recovery would, and the call is told."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from proxy.calls.recording import ActiveRecording, RecordingService
from proxy.config import RecordingSettings
from proxy.media.recorder import Recorder
from proxy.media.workers import WorkerPool
from proxy.media.workers.recording_messages import RecorderSetup
from proxy.media.workers.remote import RemotePair
from proxy.recording_state import RecordingState
from proxy.storage import crypto
from proxy.storage.catalog import Attribution, CallDirection, EventChannel, NewCall, SqliteCatalog
from proxy.storage.writer import RecordingWriter
from tests.media.workers.test_pool import running_pool

FRAME = 160


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[RecordingService, WorkerPool]]:
    recordings = tmp_path / "recordings"
    setup = RecorderSetup(str(recordings), "chunk", 10.0, "silence", 3)
    async with (
        SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog,
        running_pool(setup) as pool,
    ):
        writer = RecordingWriter(loop=asyncio.get_running_loop())
        _, public = crypto.generate_keypair()
        service = RecordingService(
            RecordingSettings(dir=recordings), catalog, Recorder(writer.sink), writer, public,
            workers=pool,
        )  # fmt: skip
        try:
            yield service, pool
        finally:
            writer.stop(timeout=10)


async def start(service: RecordingService, lost: list[str]) -> ActiveRecording:
    call = await service.catalog.calls.create_call(NewCall(
        sip_call_id=f"c{uuid.uuid4()}", caller="+441234567890", callee="surgery",
        direction=CallDirection.INBOUND, started_at=datetime.now(UTC),
    ))  # fmt: skip
    active = await service.start(call.id, "PCMU", "PCMU", lost=lost.append)
    assert isinstance(active.pair, RemotePair)  # in a worker, not here
    return active


async def talk(active: ActiveRecording, seconds: float) -> None:
    """Audio both ways at the stream's pace, handed down to the worker."""
    payload = bytes(range(0x10, 0x10 + FRAME))
    for n in range(round(seconds / 0.02)):
        active.pair.caller.push(n, n * FRAME, payload)
        active.pair.taker.push(n, n * FRAME, payload)
        await asyncio.sleep(0.02)


async def test_a_worker_recording_is_catalogued_as_the_writer_here_would(
    rig: tuple[RecordingService, WorkerPool],
) -> None:
    service, pool = rig
    lost: list[str] = []
    active = await start(service, lost)
    assert [worker.recordings for worker in pool.snapshot()] in ([1, 0], [0, 1])
    await talk(active, 1.5)
    await service.counters(active)
    assert active.pair.caller.jitter.stats.received == 75  # the worker's, for the summary
    await service.finish(active)
    row = await service.catalog.recordings.get_recording(active.id)
    assert row is not None and row.state is RecordingState.COMPLETE, row
    segments = await service.catalog.recordings.segments(active.id)
    assert segments and all(segment.closed for segment in segments)
    frames = sum(segment.frames for segment in segments)
    assert abs(frames - 1.5 * 8000) <= 0.1 * 8000 and row.duration_ms == frames // 8
    assert row.wrapped_key_sha256 is not None and lost == []
    assert [worker.recordings for worker in pool.snapshot()] == [0, 0]


async def test_a_killed_workers_recording_is_interrupted_with_what_it_sealed(
    rig: tuple[RecordingService, WorkerPool],
) -> None:
    service, pool = rig
    lost: list[str] = []
    active = await start(service, lost)
    await talk(active, 2.5)  # two 1 s chunks sealed
    (pid,) = [worker.pid for worker in pool.snapshot() if worker.recordings]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):  # 5 s at most
        if lost:
            break
        await asyncio.sleep(0.05)
    assert len(lost) == 1 and f"(pid {pid}) exited, exit -9" in lost[0]
    assert active.interrupted == lost[0]
    await service.finish(active)  # the call ends
    row = await service.catalog.recordings.get_recording(active.id)
    assert row is not None and row.state is RecordingState.INTERRUPTED, row
    segments = await service.catalog.recordings.segments(active.id)
    frames = sum(segment.frames for segment in segments)
    assert frames >= 2 * 8000 and all(segment.closed for segment in segments)
    assert row.duration_ms == frames // 8 and row.wrapped_key_sha256 is not None


async def test_a_discarded_worker_recording_is_destroyed_by_the_worker(
    rig: tuple[RecordingService, WorkerPool], tmp_path: Path
) -> None:
    service, pool = rig
    active = await start(service, [])
    await talk(active, 1.2)  # a sealed chunk on disk
    folder = tmp_path / "recordings" / active.id
    assert folder.is_dir()
    await service.discard(
        active, Attribution(actor="alice", channel=EventChannel.API, reason="asked")
    )
    row = await service.catalog.recordings.get_recording(active.id)
    assert row is not None and row.state is RecordingState.DISCARDED
    for _ in range(100):  # the worker's writer shreds it: 5 s at most
        if not folder.exists() and not any(w.recordings for w in pool.snapshot()):
            break
        await asyncio.sleep(0.05)
    assert not folder.exists()
    assert [worker.recordings for worker in pool.snapshot()] == [0, 0]
