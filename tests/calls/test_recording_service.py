"""Start-up recovery of the recording service against a real catalog and real files."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from proxy.calls.recording import ActiveRecording, RecordingService
from proxy.config import RecordingSettings
from proxy.media.recorder import Recorder
from proxy.storage import crypto
from proxy.storage.catalog import CallDirection, RecordingAction, RecordingState, SqliteCatalog
from proxy.storage.store import LocalDiskStore, SegmentStore
from proxy.storage.writer import RecordingWriter


async def test_a_discarded_recording_left_on_disk_by_a_crash_is_shredded_at_start(
    tmp_path: Path,
) -> None:
    recordings = tmp_path / "recordings"
    _, public = crypto.generate_keypair()
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        call = await catalog.create_call(
            sip_call_id="c", caller="+441234567890", callee="surgery",
            direction=CallDirection.INBOUND, started_at=datetime.now(UTC),
        )  # fmt: skip
        kept = await catalog.create_recording(
            call.id, directory="kept", encoding="ulaw", sample_rate=8000, channels=2,
            started_at=datetime.now(UTC), recording_id="11111111-1111-4111-8111-111111111111",
        )  # fmt: skip
        gone = await catalog.create_recording(
            call.id, directory="gone", encoding="ulaw", sample_rate=8000, channels=2,
            started_at=datetime.now(UTC), recording_id="22222222-2222-4222-8222-222222222222",
        )  # fmt: skip
        await catalog.set_recording_state(kept.id, RecordingState.COMPLETE)
        await catalog.set_recording_state(
            gone.id, RecordingState.DISCARDED, actor="alice", reason="caller distressed"
        )
        for rid in (kept.id, gone.id):  # as the crash left them
            folder = recordings / rid
            folder.mkdir(parents=True)
            (folder / "key").write_bytes(b"wrapped key")
            (folder / "seg-000000.rec").write_bytes(b"audio")
        writer = RecordingWriter()
        service = RecordingService(
            RecordingSettings(dir=recordings),
            catalog,
            Recorder(lambda k, b, f: None),
            writer,
            public,
        )
        try:
            await service.recover()
        finally:
            writer.stop(timeout=10)
        assert not (recordings / gone.id).exists()
        assert (recordings / kept.id / "key").exists()


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
    ) -> None:
        _, public = crypto.generate_keypair()
        loop = asyncio.get_running_loop()
        self.settings = RecordingSettings(dir=recordings, fsync="chunk")
        self.store = store or LocalDiskStore(fsync="chunk")
        self.writer = RecordingWriter(self.store, chunk_seconds=1.0, loop=loop)
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
        call = await self.catalog.create_call(
            sip_call_id=f"c{uuid.uuid4()}", caller="+441234567890", callee="surgery",
            direction=CallDirection.INBOUND, started_at=datetime.now(UTC),
        )  # fmt: skip
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
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"cannot mount a tmpfs (the tests run as root): {done.stderr}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


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
                row = await catalog.get_recording(active.id)
                return row is not None and row.state is RecordingState.FAILED

            await eventually(failed)  # the call is still up: finish() was never called
            recording = await catalog.get_recording(active.id)
            assert recording is not None and recording.failure_reason is not None
            assert "ENOSPC" in recording.failure_reason
            segments = await catalog.segments(active.id)
            assert segments and segments[0].frames >= 8000  # at least a sealed second
            assert recording.duration_ms == sum(s.frames for s in segments) // 8
            assert rig.service.failures["write_failed"] == 1
            await rig.service.finish(active)  # the call ends later: nothing changes
            after = await catalog.get_recording(active.id)
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
        first = await catalog.get_recording(healthy.id)
        assert first is not None and first.state is RecordingState.COMPLETE
        second = await catalog.get_recording(lossy.id)
        assert second is not None and second.state is RecordingState.DEGRADED
        assert second.degraded_reason == "caller: 5 of 100 frames lost or late (5.0%, limit 2.0%)"
        quality = {q.channel: q for q in await catalog.recording_quality(lossy.id)}
        assert (quality["caller"].lost_frames, quality["caller"].longest_gap_ms) == (5, 100)
        assert quality["call_taker"].lost_frames == 0
        events = await catalog.recording_events(lossy.id)
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
                await rig.service.finish(active)
                assert rig.service.failures["catalog"] >= 1
                # create, the segment (as sealed), the totals, quality, the end
                assert rig.service.journal.pending == 5
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            assert await rig.service.journal.wait_empty(5.0)
        finally:
            rig.stop()
        recording = await catalog.get_recording(active.id)
        assert recording is not None and recording.state is RecordingState.COMPLETE
        assert recording.duration_ms == 1500
        assert len(await catalog.recording_quality(active.id)) == 2


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
                row = await catalog.get_recording(active.id)
                return row is not None and row.state is RecordingState.FAILED

            await eventually(failed)
            active.pair.taker.jitter.pop = original  # type: ignore[method-assign]
        finally:
            rig.stop()
        recording = await catalog.get_recording(active.id)
        assert recording is not None and recording.failure_reason is not None
        assert recording.failure_reason.startswith("recorder error")
        assert recording.duration_ms is not None and recording.duration_ms >= 1000
        assert rig.service.failures["recorder"] == 1


async def test_each_ended_recording_is_published_once_with_its_end_state(tmp_path: Path) -> None:
    from proxy.calls.recording import RecordingEnded

    heard: list[RecordingEnded] = []

    def broken(event: RecordingEnded) -> None:
        raise RuntimeError("a subscriber's bug")

    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        rig = Service(tmp_path, catalog, tmp_path / "recordings")
        rig.service.subscribe(broken)  # logged, and the others still hear
        rig.service.subscribe(heard.append)
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
    assert [(e.recording_id, e.state) for e in heard] == [
        (whole.id, RecordingState.COMPLETE),
        (lossy.id, RecordingState.DEGRADED),
        (broken_frames.id, RecordingState.FAILED),
    ]
    assert heard[0].call_id == whole.call_id and heard[0].reason is None
    assert heard[0].started_at <= heard[0].ended_at
    assert heard[1].reason is not None and "frames lost or late" in heard[1].reason
    assert heard[2].reason is not None and heard[2].reason.startswith("recorder error")
