"""Start-up recovery of the recording service against a real catalog and real files."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proxy import events
from proxy.calls.ending import call_end
from proxy.calls.recording import ActiveRecording, RecordingService
from proxy.config import RecordingSettings, RetentionSettings
from proxy.media.recorder import Recorder
from proxy.recording_state import RecordingState
from proxy.storage import crypto
from proxy.storage.bucket import Bucket, BucketSettings
from proxy.storage.catalog import (
    Attribution,
    CallBatch,
    CallDirection,
    CallOutcome,
    EventChannel,
    FirstPart,
    NewCall,
    NewRecording,
    NewSegment,
    RecordingAction,
    SegmentFacts,
    SqliteCatalog,
)
from proxy.storage.s3_store import S3SegmentStore
from proxy.storage.store import LocalDiskStore, SegmentStore
from proxy.storage.writer import RecordingWriter
from tests.s3_server import ACCESS_KEY, SECRET_KEY, S3Server, bucket_keys, make_bucket
from tests.storage.conftest import wait_for
from tests.storage.faulty_store import FaultyStore, Reports, tmpfs


async def catalogued_recording(
    catalog: SqliteCatalog, recording_id: str, state: RecordingState | None = None
) -> str:
    """A call with a recording in the catalog, ``recording`` as a crash leaves it (or
    moved to ``state``)."""
    call = await catalog.calls.create_call(NewCall(
        sip_call_id=f"c{recording_id}", caller="+441234567890", callee="surgery",
        direction=CallDirection.INBOUND, started_at=datetime.now(UTC),
    ))  # fmt: skip
    recording = await catalog.recordings.create_recording(NewRecording(
        call.id, directory=recording_id, encoding="ulaw", sample_rate=8000, channels=2,
        started_at=datetime.now(UTC), recording_id=recording_id,
    ))  # fmt: skip
    if state is not None:
        await catalog.recordings.set_recording_state(recording.id, state)
    return recording.id


def left_by_a_crash(recordings: Path, *folders: str) -> None:
    """Recording folders (a key and a segment each) as a crash left them."""
    for name in folders:
        folder = recordings / name
        folder.mkdir(parents=True)
        (folder / "key").write_bytes(b"wrapped key")
        (folder / "seg-000000.rec").write_bytes(b"audio")


async def recovered(
    catalog: SqliteCatalog,
    recordings: Path,
    store: SegmentStore | None = None,
    node: str | None = None,
) -> RecordingService:
    """A recording service's start-up recovery over ``recordings`` (nothing recorded)."""
    writer = RecordingWriter(store)
    _, public = crypto.generate_keypair()
    service = RecordingService(
        RecordingSettings(dir=recordings), catalog, Recorder(lambda k, b, f: None), writer, public,
        node=node,
    )  # fmt: skip
    try:
        await service.recover()
    finally:
        writer.stop(timeout=10)
    return service


async def test_a_discarded_recording_left_on_disk_by_a_crash_is_shredded_at_start(
    tmp_path: Path,
) -> None:
    recordings = tmp_path / "recordings"
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        kept = await catalogued_recording(
            catalog, "11111111-1111-4111-8111-111111111111", RecordingState.COMPLETE
        )
        gone = await catalogued_recording(catalog, "22222222-2222-4222-8222-222222222222")
        await catalog.recordings.set_recording_state(
            gone, RecordingState.DISCARDED, Attribution(actor="alice", reason="caller distressed")
        )
        left_by_a_crash(recordings, kept, gone)
        await recovered(catalog, recordings)
        assert not (recordings / gone).exists()
        assert (recordings / kept / "key").exists()


async def test_a_discarded_recording_only_the_bucket_still_holds_is_shredded_at_start(
    tmp_path: Path, s3_server: S3Server
) -> None:
    """Issue 20: uploaded, its spool folder gone, then a crash before the shredding."""
    bucket_name = f"rec-{uuid.uuid4().hex[:10]}"
    make_bucket(s3_server.endpoint, bucket_name)
    recordings = tmp_path / "recordings"
    bucket = Bucket(
        BucketSettings(s3_server.endpoint, bucket_name, "us-east-1", ACCESS_KEY, SECRET_KEY)
    )
    store = S3SegmentStore(bucket, recordings)
    try:
        async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
            gone = await catalogued_recording(catalog, "33333333-3333-4333-8333-333333333333")
            await catalog.recordings.set_recording_state(
                gone, RecordingState.DISCARDED, Attribution(actor="alice", reason="asked")
            )
            left_by_a_crash(recordings, gone)
            assert await asyncio.to_thread(store.start) == 2
            await asyncio.to_thread(
                wait_for, lambda: not (recordings / gone).exists(), 10
            )  # uploaded: only the bucket holds it
            assert len(bucket_keys(s3_server.endpoint, bucket_name)) == 2
            await recovered(catalog, recordings, store)
            assert bucket_keys(s3_server.endpoint, bucket_name) == []
    finally:
        store.close()


async def test_a_node_recovers_its_own_recordings_and_leaves_another_nodes_running(
    tmp_path: Path,
) -> None:
    recordings = tmp_path / "recordings"
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        ids = {}
        for node in ("node-a", "node-b"):
            rid = str(uuid.uuid4())
            call = await catalog.calls.create_call(NewCall(
                sip_call_id=f"c{rid}", caller="+441234567890", callee="surgery",
                direction=CallDirection.INBOUND, started_at=datetime.now(UTC), node=node,
            ))  # fmt: skip
            await catalog.recordings.create_recording(NewRecording(
                call.id, directory=rid, encoding="g711", sample_rate=8000, channels=2,
                started_at=datetime.now(UTC), recording_id=rid, node=node,
            ))  # fmt: skip
            ids[node] = rid
        left_by_a_crash(recordings, *ids.values())
        await recovered(catalog, recordings, node="node-a")
        mine = await catalog.recordings.get_recording(ids["node-a"])
        live = await catalog.recordings.get_recording(ids["node-b"])
        assert mine is not None and mine.state is RecordingState.INTERRUPTED
        assert live is not None and live.state is RecordingState.RECORDING
        assert live.ended_at is None and live.expires_at is None


async def test_recovery_reports_recording_folders_no_row_names_and_keeps_them(
    tmp_path: Path,
) -> None:
    recordings = tmp_path / "recordings"
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        named = await catalogued_recording(
            catalog, "33333333-3333-4333-8333-333333333333", RecordingState.COMPLETE
        )
        orphan = "44444444-4444-4444-8444-444444444444"  # written ahead, then a crash
        left_by_a_crash(recordings, named, orphan, "not-a-recording")
        service = await recovered(catalog, recordings)
        assert service.uncatalogued == [orphan]
        assert service.failures == {"uncatalogued": 1}
        assert (recordings / orphan / "key").read_bytes() == b"wrapped key"  # kept


# --- honest end states: failed at once, degraded, and the catalog journal -------------------

FRAME = 160


class Service:
    """A recording service on a real catalog, writer thread and recorder, with one call."""

    def __init__(
        self,
        root: Path,
        catalog: SqliteCatalog,
        recordings: Path,
        store: SegmentStore | None = None,
        *,
        hold_seconds: float = 10.0,
    ) -> None:
        _, public = crypto.generate_keypair()
        loop = asyncio.get_running_loop()
        self.settings = RecordingSettings(dir=recordings, fsync="chunk")
        self.store = store or LocalDiskStore(fsync="chunk")
        self.writer = RecordingWriter(
            self.store, chunk_seconds=1.0, loop=loop, hold_seconds=hold_seconds
        )
        self.recorder = Recorder(self.writer.sink, vad_mode=None)
        self.published: list[object] = []
        self.service = RecordingService(
            self.settings, catalog, self.recorder, self.writer, public,
            publish=self.published.append,
        )  # fmt: skip
        self.service.journal.retry_seconds = 0.05
        self.catalog = catalog
        self.ticks = 0

    async def call(self) -> str:
        call = await self.catalog.calls.create_call(NewCall(
            sip_call_id=f"c{uuid.uuid4()}", caller="+441234567890", callee="surgery",
            direction=CallDirection.INBOUND, started_at=datetime.now(UTC),
        ))  # fmt: skip
        return call.id

    def talk(
        self, active: ActiveRecording, seconds: float, *, lose: set[int] = frozenset()
    ) -> None:
        """``seconds`` of audio both ways through the recorder on a fake tick; the
        caller's packets numbered in ``lose`` never arrive."""
        payload = bytes(range(0x10, 0x10 + FRAME))
        for _ in range(round(seconds / 0.02)):
            n = self.ticks
            if n not in lose:
                active.pair.caller.push(n & 0xFFFF, n * FRAME, payload)
            active.pair.taker.push(n & 0xFFFF, n * FRAME, payload)
            self.recorder.tick(1000 + n * 0.02)
            self.ticks += 1

    def stop(self) -> None:
        self.writer.stop(timeout=10)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.02)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB filesystem (tmpfs): about three seconds of recording fit."""
    with tmpfs(tmp_path / "tiny") as mount:
        yield mount


async def test_a_full_disk_fails_the_recording_at_once_and_keeps_what_was_sealed(
    tmp_path: Path, tiny_disk: Path
) -> None:
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        rig = Service(tmp_path, catalog, tiny_disk)
        try:
            active = await rig.service.start(await rig.call(), "PCMU", "PCMU")
            assert active is not None
            for _ in range(20):  # up to 10 s of audio; the disk is full long before
                rig.talk(active, 0.5)
                await asyncio.sleep(0.02)
                if active.ended is not None:
                    break

            async def failed() -> bool:
                row = await catalog.recordings.get_recording(active.id)
                return row is not None and row.state is RecordingState.FAILED

            await eventually(failed)  # the call is still up: finish() was never called
            recording = await catalog.recordings.get_recording(active.id)
            assert recording is not None and recording.failure_reason is not None
            assert "ENOSPC" in recording.failure_reason
            segments = await catalog.recordings.segments(active.id)
            assert segments and segments[0].frames >= 8000  # at least a sealed second
            assert recording.duration_ms == sum(s.frames for s in segments) // 8
            assert rig.service.failures["write_failed"] == 1
            await rig.service.finish(active)  # the call ends later: nothing changes
            after = await catalog.recordings.get_recording(active.id)
            assert after is not None and after.state is RecordingState.FAILED
        finally:
            rig.stop()


async def test_lost_audio_past_the_limit_ends_degraded_with_its_counts(tmp_path: Path) -> None:
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        rig = Service(tmp_path, catalog, tmp_path / "recordings")
        try:
            healthy = await rig.service.start(await rig.call(), "PCMU", "PCMU")
            assert healthy is not None
            rig.talk(healthy, 2.0, lose={10, 30})  # 2 of 100 frames: at the limit
            await rig.service.finish(healthy)
            lossy = await rig.service.start(await rig.call(), "PCMU", "PCMU")
            assert lossy is not None
            rig.talk(lossy, 2.0, lose=set(range(rig.ticks + 20, rig.ticks + 25)))
            await rig.service.finish(lossy)
        finally:
            rig.stop()
        first = await catalog.recordings.get_recording(healthy.id)
        assert first is not None and first.state is RecordingState.COMPLETE
        # dated for deletion in the write that ended it: its end + 36 months (the default)
        assert first.ended_at is not None
        assert first.expires_at == RetentionSettings().expires(first.ended_at)
        assert first.expires_at.year == first.ended_at.year + 3
        second = await catalog.recordings.get_recording(lossy.id)
        assert second is not None and second.state is RecordingState.DEGRADED
        assert second.degraded_reason == "caller: 5 of 100 frames lost or late (5.0%, limit 2.0%)"
        quality = {q.channel: q for q in await catalog.recordings.recording_quality(lossy.id)}
        assert (quality["caller"].lost_frames, quality["caller"].longest_gap_ms) == (5, 100)
        assert quality["call_taker"].lost_frames == 0
        events = await catalog.events.recording_events(lossy.id)
        assert events[-1].action is RecordingAction.DEGRADED
        assert rig.service.degraded["loss"] == 1


async def test_a_locked_catalog_is_counted_and_the_journal_lands_the_writes_later(
    tmp_path: Path,
) -> None:
    path = tmp_path / "catalog.sqlite3"
    async with SqliteCatalog(path, busy_timeout_ms=50) as catalog:
        rig = Service(tmp_path, catalog, tmp_path / "recordings")
        try:
            call_id = await rig.call()
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")  # another process holds the catalog
            try:
                active = await rig.service.start(call_id, "PCMU", "PCMU")
                assert active is not None  # recorded anyway; the row waits in the journal
                rig.talk(active, 1.5)
                finishing = asyncio.create_task(rig.service.finish(active))
                await asyncio.sleep(0.3)
                assert rig.service.failures["catalog"] >= 1
                assert rig.service.journal.pending == 1  # the create (call and recording)
                # its audio is held by the writer until the row lands: no files yet
                assert not (tmp_path / "recordings" / active.id).exists()
                assert not finishing.done()  # the end waits for the writer's last word
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            await finishing  # the row landed, the audio was written, then the end
            assert await rig.service.journal.wait_empty(5.0)
        finally:
            rig.stop()
        recording = await catalog.recordings.get_recording(active.id)
        assert recording is not None and recording.state is RecordingState.COMPLETE
        assert recording.duration_ms == 1500
        assert len(await catalog.recordings.recording_quality(active.id)) == 2


async def test_a_recording_the_recorder_fails_is_failed_in_the_catalog_at_once(
    tmp_path: Path,
) -> None:
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        rig = Service(tmp_path, catalog, tmp_path / "recordings")
        try:
            active = await rig.service.start(await rig.call(), "PCMU", "PCMU")
            assert active is not None
            rig.talk(active, 1.2)
            active.pair.taker.push(5000, 5000 * FRAME, b"\x10" * 100)  # a packet of 100
            original = active.pair.taker.jitter.pop
            active.pair.taker.jitter.pop = lambda count=True: b"\x10" * 100  # type: ignore[method-assign]
            rig.talk(active, 0.04)  # the tick sees a frame of the wrong size

            async def failed() -> bool:
                row = await catalog.recordings.get_recording(active.id)
                return row is not None and row.state is RecordingState.FAILED

            await eventually(failed)
            active.pair.taker.jitter.pop = original  # type: ignore[method-assign]
        finally:
            rig.stop()
        recording = await catalog.recordings.get_recording(active.id)
        assert recording is not None and recording.failure_reason is not None
        assert recording.failure_reason.startswith("recorder error")
        assert recording.duration_ms is not None and recording.duration_ms >= 1000
        assert rig.service.failures["recorder"] == 1


async def test_each_ended_recording_is_published_once_with_its_end_state(tmp_path: Path) -> None:
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        rig = Service(tmp_path, catalog, tmp_path / "recordings")
        try:
            whole = await rig.service.start(await rig.call(), "PCMU", "PCMU")
            assert whole is not None
            rig.talk(whole, 1.0)
            await rig.service.finish(whole)
            lossy = await rig.service.start(await rig.call(), "PCMU", "PCMU")
            assert lossy is not None
            rig.talk(lossy, 2.0, lose=set(range(rig.ticks + 20, rig.ticks + 25)))
            await rig.service.finish(lossy)
            broken_frames = await rig.service.start(await rig.call(), "PCMU", "PCMU")
            assert broken_frames is not None
            rig.talk(broken_frames, 0.2)
            original = broken_frames.pair.taker.jitter.pop
            broken_frames.pair.taker.jitter.pop = lambda count=True: b"\x10" * 100  # type: ignore[method-assign]
            rig.talk(broken_frames, 0.04)
            assert broken_frames.ended is not None
            await broken_frames.ended
            broken_frames.pair.taker.jitter.pop = original  # type: ignore[method-assign]
            await rig.service.finish(broken_frames)  # the call ends later: no second event
        finally:
            rig.stop()
    heard = [
        e for e in rig.published if isinstance(e, (events.RecordingClosed, events.RecordingFailed))
    ]
    assert [(e.recording_id, getattr(e, "state", "failed")) for e in heard] == [
        (whole.id, "complete"),
        (lossy.id, "degraded"),
        (broken_frames.id, "failed"),
    ]
    assert heard[0].call_id == whole.call_id and heard[0].reason is None
    assert heard[0].started_at <= heard[0].ended_at
    assert heard[1].reason is not None and "frames lost or late" in heard[1].reason
    assert heard[2].reason is not None and heard[2].reason.startswith("recorder error")


# --- the writer's reports: catalogued as sealed, nothing read back at hang-up ----------------

_FILE_READS: list[list[str]] = []  # while non-empty, the last list collects read opens


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "open" or not _FILE_READS or not isinstance(args[0], (str, Path)):
        return
    flags = args[2] if isinstance(args[2], int) else 0
    mode = args[1] if isinstance(args[1], str) else ""
    if flags & (os.O_WRONLY | os.O_RDWR) or any(c in mode for c in "wax+"):
        return
    _FILE_READS[-1].append(str(args[0]))


sys.addaudithook(_audit)  # hooks stay for the process; it records only while armed


async def test_hang_up_catalogues_what_the_writer_reported_and_opens_no_segment_file(
    tmp_path: Path,
) -> None:
    store = FaultyStore(LocalDiskStore(fsync="none"))
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        rig = Service(tmp_path, catalog, tmp_path / "recordings", store)
        try:
            active = await rig.service.start(await rig.call(), "PCMU", "PCMU")
            assert active is not None
            rig.talk(active, 12.5)  # a sealed 10 s segment, and a second one at hang-up
            await eventually(lambda: asyncio.sleep(0, result=bool(active.segment_writes)))
            calls_before = len(store.calls)
            reads: list[str] = []
            _FILE_READS.append(reads)
            try:
                await rig.service.finish(active)
            finally:
                _FILE_READS.remove(reads)
            hang_up = [name for name, _ in store.calls[calls_before:]]
        finally:
            rig.stop()
        folder = tmp_path / "recordings" / active.id
        assert [p for p in reads if p.startswith(str(folder))] == []  # no file opened to read
        assert "read" not in hang_up and "segments" not in hang_up
        assert hang_up.count("append") >= 1 and "finish_segment" in hang_up  # it did write
        rows = await catalog.recordings.segments(active.id)
        files = sorted(folder.glob("seg-*.rec"))
        assert [r.file_name for r in rows] == [f.name for f in files]
        for row, file in zip(rows, files, strict=True):
            data = file.read_bytes()
            assert (row.size_bytes, row.sha256) == (len(data), hashlib.sha256(data).hexdigest())
            assert row.closed
        assert [(r.first_frame, r.frames) for r in rows] == [(0, 80000), (80000, 20000)]
        recording = await catalog.recordings.get_recording(active.id)
        assert recording is not None and recording.duration_ms == 12500
        key = hashlib.sha256((folder / "key").read_bytes()).hexdigest()
        assert recording.wrapped_key_sha256 == key
    sealed = [e for e in rig.published if isinstance(e, events.SegmentSealed)]
    assert [(e.index, e.frames) for e in sealed] == [(0, 80000), (1, 20000)]
    assert sealed[0].sha256 == rows[0].sha256 and sealed[0].path == str(files[0])
    assert isinstance(rig.published[0], events.RecordingStarted)
    closed = rig.published[-1]
    assert isinstance(closed, events.RecordingClosed)
    assert (closed.recording_id, closed.call_id, closed.state) == (
        active.id,
        active.call_id,
        "complete",
    )
    assert (closed.segments, closed.frames, closed.bytes) == (
        2,
        100000,
        sum(r.size_bytes or 0 for r in rows),
    )


async def test_failures_and_discards_are_published(tmp_path: Path) -> None:
    store = FaultyStore(LocalDiskStore(fsync="none"))
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        rig = Service(tmp_path, catalog, tmp_path / "recordings", store)
        try:
            failing = await rig.service.start(await rig.call(), "PCMU", "PCMU")
            assert failing is not None
            store.fail_from_append = store.appends + 2  # one more chunk fits
            rig.talk(failing, 3.0)
            await eventually(lambda: asyncio.sleep(0, result=failing.ended is not None))
            assert failing.ended is not None
            await failing.ended
            store.fail_from_append = None
            gone = await rig.service.start(await rig.call(), "PCMU", "PCMU")
            assert gone is not None
            rig.talk(gone, 0.5)
            await rig.service.discard(
                gone, Attribution(actor="alice", channel=EventChannel.API, reason="asked")
            )
        finally:
            rig.stop()
    failed = [e for e in rig.published if isinstance(e, events.RecordingFailed)]
    assert [(e.recording_id, "ENOSPC" in e.reason) for e in failed] == [(failing.id, True)]
    sealed = [e for e in rig.published if isinstance(e, events.SegmentSealed)]
    assert [(e.recording_id, e.frames) for e in sealed] == [(failing.id, 8000)]  # what was kept
    assert rig.published[-1] == events.RecordingDiscarded(
        gone.id, gone.call_id, "alice", "api", "asked"
    )
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        assert await catalog.recordings.segments(gone.id) == []  # the fact it existed, nothing more


async def test_recovery_scans_what_a_crash_left_and_publishes_the_interruption(
    tmp_path: Path,
) -> None:
    recordings = tmp_path / "recordings"
    _, public = crypto.generate_keypair()
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        rid = await catalogued_recording(catalog, str(uuid.uuid4()))
        # the files as a crash left them: the first segment catalogued as it was sealed,
        # the second (the last second and a half) not yet
        sealed = Reports()
        with RecordingWriter(LocalDiskStore(fsync="none")) as crashed:
            crashed.listen(sealed)
            crashed.open(
                rid, recordings, public, segment_seconds=1, start_time_ms=1_700_000_000_000
            )
            crashed.submit(rid, np.zeros((20000, 2), dtype=np.int16), False)
        first = sealed.segments[0]
        await catalog.recordings.add_segment(
            NewSegment(rid, 0, file_name=first.name, first_frame=0)
        )
        await catalog.recordings.update_segment(
            rid,
            0,
            SegmentFacts(
                chunks=1, frames=8000, size_bytes=first.bytes, sha256=first.sha256, closed=True
            ),
        )
        store = FaultyStore()
        writer = RecordingWriter(store)
        published: list[object] = []
        service = RecordingService(
            RecordingSettings(dir=recordings), catalog, Recorder(lambda k, b, f: None),
            writer, public, publish=published.append,
        )  # fmt: skip
        try:
            assert await service.recover() == [rid]
        finally:
            writer.stop(timeout=10)
        assert store.count("read") == 4  # the key and each segment: the disk is the truth
        folder = recordings / rid
        files = sorted(folder.glob("seg-*.rec"))
        rows = await catalog.recordings.segments(rid)
        assert [(r.first_frame, r.frames, r.sha256, r.closed) for r in rows] == [
            (first_frame, frames, hashlib.sha256(f.read_bytes()).hexdigest(), True)
            for first_frame, frames, f in zip(
                (0, 8000, 16000), (8000, 8000, 4000), files, strict=True
            )
        ]
        recording = await catalog.recordings.get_recording(rid)
        assert recording is not None and recording.state is RecordingState.INTERRUPTED
        assert recording.duration_ms == 2500
        assert recording.ended_at is not None  # from the audio kept, and dated from there
        assert recording.expires_at == RetentionSettings().expires(recording.ended_at)
        key = hashlib.sha256((folder / "key").read_bytes()).hexdigest()
        assert recording.wrapped_key_sha256 == key
    assert published == [events.RecordingInterrupted(rid)]


# --- a call's rows in two writes (issue 19) -------------------------------------------------


class CountedWrites:
    """``catalog.call_writes`` counting the batches it writes."""

    def __init__(self, catalog: SqliteCatalog) -> None:
        self.inner = catalog.call_writes
        self.batches: list[CallBatch] = []

    async def write(self, batch: CallBatch) -> None:
        self.batches.append(batch)
        await self.inner.write(batch)


def refuse(*args: object, **kwargs: object) -> Any:
    raise AssertionError("a call's rows go through catalog.call_writes")


async def test_a_recorded_call_is_catalogued_in_two_writes_its_last_segment_with_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        counted = CountedWrites(catalog)
        monkeypatch.setattr(catalog, "call_writes", counted)
        for name in ("add_segment", "update_recording", "set_recording_quality"):
            monkeypatch.setattr(catalog.recordings, name, refuse)
        monkeypatch.setattr(catalog.parts, "begin", refuse)
        rig = Service(tmp_path, catalog, tmp_path / "recordings")
        call_id = str(uuid.uuid4())
        new_call = NewCall(
            sip_call_id="c1", caller="+441234567890", callee="surgery",
            direction=CallDirection.INBOUND, started_at=datetime.now(UTC), call_id=call_id,
        )  # fmt: skip
        try:
            set_up = CallBatch(call_id, new_call=new_call, first_part=FirstPart("alice", None))
            active = await rig.service.start(call_id, "PCMU", "PCMU", call=set_up)
            assert active is not None
            rig.talk(active, 1.5)
            ended = datetime.now(UTC)
            await rig.service.finish(active, call_end(call_id, ended, CallOutcome.COMPLETED))
        finally:
            rig.stop()
        assert len(counted.batches) == 2
        recording = await catalog.recordings.get_recording(active.id)
        assert recording is not None and recording.state is RecordingState.COMPLETE
        assert recording.duration_ms == 1500 and recording.wrapped_key_sha256 is not None
        (segment,) = await catalog.recordings.segments(active.id)
        assert segment.closed and segment.frames == 12000
        assert [p.operator for p in await catalog.parts.parts(active.id)] == ["alice"]
        call = await catalog.calls.get_call(call_id)
        assert call is not None and call.outcome is CallOutcome.COMPLETED


async def test_a_call_end_the_catalog_refuses_with_its_recording_still_lands_alone(
    tmp_path: Path,
) -> None:
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        rig = Service(tmp_path, catalog, tmp_path / "recordings")
        try:
            active = await rig.service.start(await rig.call(), "PCMU", "PCMU")
            assert active is not None
            rig.talk(active, 1.0)
            # a call id the catalog does not know: the batch with the recording's end
            # is refused as a whole, then the recording's end is written on its own
            unknown = call_end(str(uuid.uuid4()), datetime.now(UTC), CallOutcome.COMPLETED)
            await rig.service.finish(active, unknown)
        finally:
            rig.stop()
        recording = await catalog.recordings.get_recording(active.id)
        assert recording is not None and recording.state is RecordingState.COMPLETE
        assert rig.service.failures["catalog"] == 1  # the call's end, counted


async def test_a_recording_the_catalog_refuses_is_closed_and_the_call_goes_on(
    tmp_path: Path,
) -> None:
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        rig = Service(tmp_path, catalog, tmp_path / "recordings")
        try:
            # no such call: the recording's row is refused (after it started at once)
            active = await rig.service.start(str(uuid.uuid4()), "PCMU", "PCMU")
            assert active is not None and active.catalogued is not None
            await active.catalogued
            assert rig.service.failures["catalog"] == 1
            assert active.id not in rig.recorder  # no longer fed
            await rig.service.finish(active)  # ends quietly: logged and counted, no raise
        finally:
            rig.stop()
        assert await catalog.recordings.get_recording(active.id) is None
        assert not (tmp_path / "recordings" / active.id).exists()  # no row, no files
        assert rig.service.failures["catalog"] == 1  # no end write for a row not there
        ends = [e for e in rig.published if isinstance(e, events.RecordingClosed)]
        (failed,) = [e for e in rig.published if isinstance(e, events.RecordingFailed)]
        assert ends == [] and "its catalog row was refused" in failed.reason
