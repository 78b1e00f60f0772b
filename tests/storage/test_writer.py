"""The writer thread: never blocks or raises into the call path, fails cleanly on disk faults."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from proxy.storage.reader import Outcome, RecordingReader
from proxy.storage.writer import RecordingState, RecordingWriter

from .conftest import random_ulaw_audio, wait_for

START_MS = 1_700_000_000_000
WRITER_THREAD = "test-writer"


class StateLog:
    def __init__(self) -> None:
        self.events: list[tuple[object, RecordingState, str]] = []
        self.changed = threading.Event()

    def __call__(self, key: object, state: RecordingState, reason: str) -> None:
        self.events.append((key, state, reason))
        self.changed.set()

    def states(self) -> list[RecordingState]:
        return [state for _, state, _ in self.events]


@pytest.fixture
def states() -> StateLog:
    return StateLog()


@pytest.fixture
def writer(states: StateLog) -> Iterator[RecordingWriter]:
    w = RecordingWriter(on_state=states, name=WRITER_THREAD, max_queued_blocks=4)
    yield w
    w.stop(timeout=10)


def in_writer_thread() -> bool:
    return threading.current_thread().name == WRITER_THREAD


class DiskFull:
    """Makes os.write fail with ENOSPC in the writer thread once ``armed``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed = False
        self.real_write = os.write
        monkeypatch.setattr(os, "write", self.write)

    def write(self, fd: int, data: object) -> int:
        if self.armed and in_writer_thread():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.real_write(fd, data)  # type: ignore[arg-type]


def test_disk_full_fails_the_recording_and_never_raises_into_submit(
    tmp_path: Path,
    writer: RecordingWriter,
    states: StateLog,
    public_key: X25519PublicKey,
    private_key: X25519PrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    disk = DiskFull(monkeypatch)
    rid = uuid.uuid4()
    audio = random_ulaw_audio(8000 * 3, seed=2)
    writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)
    for start in range(0, 16000, 4000):
        assert writer.submit(rid, audio[start : start + 4000], False)
    wait_for(lambda: writer.metrics.chunks_sealed == 2)
    disk.armed = True
    for start in range(16000, len(audio), 4000):
        writer.submit(rid, audio[start : start + 4000], False)  # must not raise
    wait_for(lambda: RecordingState.FAILED in states.states())
    status = writer.status(rid)
    assert status is not None and status.state is RecordingState.FAILED
    key, state, reason = states.events[-1]
    assert key == rid and state is RecordingState.FAILED
    assert "ENOSPC" in reason and "seg-000000.rec" in reason
    assert writer.metrics.recordings_failed == 1
    assert writer.submit(rid, audio[:160], True) is False  # a failed recording takes no more
    writer.close(rid)
    disk.armed = False
    # What reached the disk before the fault is intact: two complete seconds.
    recovered = RecordingReader(tmp_path / str(rid), private_key).recover()
    assert recovered.report.outcome is Outcome.INTERRUPTED
    np.testing.assert_array_equal(recovered.audio, audio[:16000])


def test_a_failing_fsync_fails_the_recording(
    tmp_path: Path,
    writer: RecordingWriter,
    states: StateLog,
    public_key: X25519PublicKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if in_writer_thread() and writer.metrics.recordings_opened:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    rid = uuid.uuid4()
    writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)
    writer.submit(rid, random_ulaw_audio(8000), True)
    wait_for(lambda: RecordingState.FAILED in states.states())
    assert "EIO" in states.events[-1][2]


def test_disk_full_while_writing_the_key_fails_the_recording(
    tmp_path: Path,
    writer: RecordingWriter,
    states: StateLog,
    public_key: X25519PublicKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    DiskFull(monkeypatch).armed = True
    rid = uuid.uuid4()
    writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)
    writer.submit(rid, random_ulaw_audio(800), False)
    wait_for(lambda: RecordingState.FAILED in states.states())
    assert "key" in states.events[-1][2]
    assert not list((tmp_path / str(rid)).glob("seg-*"))


def test_a_full_queue_drops_without_blocking_and_keeps_time_aligned(
    tmp_path: Path,
    writer: RecordingWriter,
    states: StateLog,
    public_key: X25519PublicKey,
    private_key: X25519PrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release, stuck = threading.Event(), threading.Event()
    real_fsync = os.fsync

    def hanging_fsync(fd: int) -> None:  # a disk that hangs until released
        if in_writer_thread():
            stuck.set()
            release.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", hanging_fsync)
    rid = uuid.uuid4()
    audio = random_ulaw_audio(8000 * 2, seed=4)
    blocks = [audio[i : i + 800] for i in range(0, len(audio), 800)]  # 20 blocks of 100 ms
    writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)
    assert stuck.wait(5)  # the thread hangs while opening the recording
    results, slowest = [], 0.0
    for block in blocks[:-1]:
        started = time.perf_counter()
        results.append(writer.submit(rid, block, False))
        slowest = max(slowest, time.perf_counter() - started)
    assert results == [True] * 4 + [False] * 15  # the queue holds 4 blocks
    assert slowest < 0.05
    assert writer.metrics.blocks_dropped == 15
    status = writer.status(rid)
    assert status is not None and status.state is RecordingState.DEGRADED
    assert status.frames_dropped == 15 * 800
    assert states.states() == [RecordingState.DEGRADED]  # said once
    # Even the final block may be dropped: the end of the recording still gets through.
    assert writer.submit(rid, blocks[-1], True) is False
    release.set()
    wait_for(lambda: RecordingState.COMPLETE in states.states())
    recording = RecordingReader(tmp_path / str(rid), private_key).read()
    assert recording.report.frames == len(audio)  # the dropped blocks became silence
    np.testing.assert_array_equal(recording.audio[:3200], audio[:3200])
    assert not recording.audio[3200:].any()


async def test_state_callbacks_run_on_the_event_loop(
    tmp_path: Path, public_key: X25519PublicKey
) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[RecordingState, int]] = loop.create_future()

    def on_state(key: object, state: RecordingState, reason: str) -> None:
        if state is RecordingState.COMPLETE:
            done.set_result((state, threading.get_ident()))

    async with RecordingWriter(on_state=on_state, loop=loop) as writer:
        rid = str(uuid.uuid4())  # a recording id may be given as text
        writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)
        assert writer.submit(rid, random_ulaw_audio(8000), True)
        state, thread = await asyncio.wait_for(done, 5)
    assert state is RecordingState.COMPLETE
    assert thread == threading.get_ident()


def test_bad_input_is_refused_without_raising(
    tmp_path: Path, writer: RecordingWriter, states: StateLog, public_key: X25519PublicKey
) -> None:
    rid = uuid.uuid4()
    assert writer.submit(rid, random_ulaw_audio(160), False) is False  # never opened
    assert writer.submit("not-a-uuid", random_ulaw_audio(160), False) is False
    writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)
    assert writer.submit(rid, np.zeros((160, 2), dtype=np.float32), False) is False
    assert writer.submit(rid, np.zeros((160,), dtype=np.int16), False) is False
    assert writer.submit(rid, [[0, 0]], False) is False  # type: ignore[arg-type]
    writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)  # twice
    writer.open(uuid.uuid4(), tmp_path, public_key, encoding="opus", start_time_ms=START_MS)
    assert writer.metrics.blocks_rejected == 5
    assert states.states() == [RecordingState.FAILED, RecordingState.FAILED]
    assert "already opened" in states.events[0][2]
    assert "opus" in states.events[1][2]
    writer.close(rid)
    wait_for(lambda: RecordingState.COMPLETE in states.states())


def test_an_existing_recording_directory_is_never_appended_to(
    tmp_path: Path, states: StateLog, public_key: X25519PublicKey
) -> None:
    rid = uuid.uuid4()
    (tmp_path / str(rid)).mkdir()
    with RecordingWriter(on_state=states) as writer:
        writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)
        writer.submit(rid, random_ulaw_audio(160), True)
    assert states.states() == [RecordingState.FAILED]
    assert "EEXIST" in states.events[0][2]


def test_stop_ends_open_recordings_with_their_final_chunk(
    tmp_path: Path, public_key: X25519PublicKey, private_key: X25519PrivateKey
) -> None:
    audio = random_ulaw_audio(12_345)
    writer = RecordingWriter()
    rid = uuid.uuid4()
    writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)
    assert writer.submit(rid, audio, False)
    writer.stop()
    recording = RecordingReader(tmp_path / str(rid), private_key).read()
    assert recording.report.final_seen
    np.testing.assert_array_equal(recording.audio, audio)
    assert writer.submit(rid, audio, False) is False


@pytest.mark.parametrize(
    ("policy", "expected"), [("chunk", 3 + 25 + 3), ("segment", 3 + 6), ("none", 3)]
)
def test_fsync_policy(
    tmp_path: Path, public_key: X25519PublicKey, policy: str, expected: int
) -> None:
    # Always: the recordings dir, the key file, the recording dir.  24.0125 s make 25 chunks
    # in 3 segments.  "chunk": each chunk and each new segment's directory entry;
    # "segment": each segment file when closed and its directory entry; "none": nothing more.
    writer = RecordingWriter(fsync=policy)  # type: ignore[arg-type]
    rid = uuid.uuid4()
    writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)
    writer.submit(rid, random_ulaw_audio(24 * 8000 + 100), True)
    writer.stop()
    assert writer.metrics.chunks_sealed == 25
    assert writer.metrics.fsyncs == expected


def test_metrics_count_what_was_written(tmp_path: Path, public_key: X25519PublicKey) -> None:
    with RecordingWriter(fsync="none") as writer:
        rid = uuid.uuid4()
        writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)
        for _ in range(50):
            writer.submit(rid, random_ulaw_audio(160), False)
        writer.close(rid)
    files = sorted((tmp_path / str(rid)).glob("seg-*.rec"))
    assert writer.metrics.bytes_written == sum(f.stat().st_size for f in files)
    assert writer.metrics.chunks_sealed == 2
    assert writer.metrics.blocks_submitted == 50
    assert writer.metrics.write_seconds_total >= writer.metrics.write_seconds_max > 0
    assert writer.queue_depth == 0


def test_sink_is_submit_for_the_recorder(
    tmp_path: Path, public_key: X25519PublicKey, private_key: X25519PrivateKey
) -> None:
    audio = random_ulaw_audio(8000 + 160)
    with RecordingWriter() as writer:
        rid = uuid.uuid4()
        writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)
        assert writer.sink(rid, audio[:8000], False) is None  # type: ignore[func-returns-value]
        writer.sink(rid, audio[8000:], True)
        writer.sink(12345, audio, False)  # a key that is no recording id: refused, not raised
    assert writer.metrics.blocks_rejected == 1
    recording = RecordingReader(tmp_path / str(rid), private_key).read()
    np.testing.assert_array_equal(recording.audio, audio)


def test_discard_destroys_key_first_then_files_and_refuses_more_audio(
    tmp_path: Path,
    public_key: X25519PublicKey,
    states: StateLog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writer = RecordingWriter(on_state=states)
    rid = uuid.uuid4()
    writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)
    assert writer.submit(rid, random_ulaw_audio(3 * 8000), False)
    folder = tmp_path / str(rid)
    wait_for(lambda: len(list(folder.glob("seg-*"))) >= 1)
    unlinked: list[str] = []
    real_unlink = os.unlink
    monkeypatch.setattr(
        os, "unlink", lambda path: (unlinked.append(Path(path).name), real_unlink(path))[1]
    )
    writer.discard(rid, tmp_path)
    wait_for(lambda: RecordingState.DISCARDED in states.states())
    assert not folder.exists()
    assert unlinked[0] == "key"  # crypto-shredding: the key goes before any audio
    assert any(name.startswith("seg-") for name in unlinked[1:])
    assert writer.submit(rid, random_ulaw_audio(800), False) is False
    status = writer.status(rid)
    assert status is not None and status.state is RecordingState.DISCARDED
    writer.stop()
