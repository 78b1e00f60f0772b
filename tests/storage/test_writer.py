"""The writer thread: never blocks or raises into the call path, fails cleanly on disk faults."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from proxy.recording_state import RecordingState
from proxy.storage.reader import Outcome, RecordingReader
from proxy.storage.store import FsyncPolicy, LocalDiskStore
from proxy.storage.write_reports import RecordingWritten
from proxy.storage.writer import RecordingWriter

from .conftest import random_ulaw_audio, wait_for
from .faulty_store import FaultyStore, Reports, disk_error

START_MS = 1_700_000_000_000
WRITER_THREAD = "test-writer"


@pytest.fixture
def reports() -> Reports:
    return Reports()


@pytest.fixture
def store() -> FaultyStore:
    return FaultyStore()


@pytest.fixture
def writer(reports: Reports, store: FaultyStore) -> Iterator[RecordingWriter]:
    w = RecordingWriter(store, name=WRITER_THREAD, max_queued_blocks=4)
    w.listen(reports)
    yield w
    if store.hold is not None:
        store.hold.set()
    w.stop(timeout=10)


def test_disk_full_fails_the_recording_and_never_raises_into_submit(
    tmp_path: Path,
    writer: RecordingWriter,
    reports: Reports,
    store: FaultyStore,
    public_key: X25519PublicKey,
    private_key: X25519PrivateKey,
) -> None:
    store.fail_from_append = 3  # two chunks fit, then the disk is full
    rid = uuid.uuid4()
    audio = random_ulaw_audio(8000 * 3, seed=2)
    writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)
    for start in range(0, 16000, 4000):
        assert writer.submit(rid, audio[start : start + 4000], False)
    wait_for(lambda: writer.metrics.chunks_sealed == 2)
    for start in range(16000, len(audio), 4000):
        writer.submit(rid, audio[start : start + 4000], False)  # must not raise
    wait_for(lambda: RecordingState.FAILED in reports.states())
    status = writer.status(rid)
    assert status is not None and status.state is RecordingState.FAILED
    ended = reports.ended[-1]
    assert ended.recording_id == rid and ended.state is RecordingState.FAILED
    assert "ENOSPC" in ended.reason and "seg-000000.rec" in ended.reason
    assert writer.metrics.recordings_failed == 1
    assert writer.submit(rid, audio[:160], True) is False  # a failed recording takes no more
    writer.close(rid)
    # What reached the disk before the fault is intact, and reported as written.
    recovered = RecordingReader(tmp_path / str(rid), private_key).recover()
    assert recovered.report.outcome is Outcome.INTERRUPTED
    np.testing.assert_array_equal(recovered.audio, audio[:16000])
    (segment,) = reports.segments
    data = (tmp_path / str(rid) / "seg-000000.rec").read_bytes()
    assert (segment.index, segment.chunks, segment.frames) == (0, 2, 16000)
    assert (segment.bytes, segment.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert (ended.segments, ended.frames, ended.bytes) == (1, 16000, len(data))


def test_a_failing_fsync_fails_the_recording(
    tmp_path: Path,
    writer: RecordingWriter,
    reports: Reports,
    store: FaultyStore,
    public_key: X25519PublicKey,
) -> None:
    store.fail_from_append = 1
    store.append_error = disk_error(errno.EIO)
    rid = uuid.uuid4()
    writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)
    writer.submit(rid, random_ulaw_audio(8000), True)
    wait_for(lambda: RecordingState.FAILED in reports.states())
    assert "EIO" in reports.ended[-1].reason
    assert reports.segments == []  # nothing was wholly written


def test_a_store_that_cannot_open_the_recording_fails_it(
    tmp_path: Path,
    writer: RecordingWriter,
    reports: Reports,
    store: FaultyStore,
    public_key: X25519PublicKey,
) -> None:
    store.open_error = OSError(errno.ENOSPC, "No space left on device", "recordings/x/key")
    rid = uuid.uuid4()
    writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)
    writer.submit(rid, random_ulaw_audio(800), False)
    wait_for(lambda: RecordingState.FAILED in reports.states())
    ended = reports.ended[-1]
    assert "ENOSPC" in ended.reason and "recordings/x/key" in ended.reason
    assert (ended.segments, ended.key_sha256) == (0, None)
    assert store.count("append") == 0


def test_a_full_queue_drops_without_blocking_and_keeps_time_aligned(
    tmp_path: Path,
    writer: RecordingWriter,
    reports: Reports,
    store: FaultyStore,
    public_key: X25519PublicKey,
    private_key: X25519PrivateKey,
) -> None:
    store.hold = threading.Event()  # a disk that hangs until released
    rid = uuid.uuid4()
    audio = random_ulaw_audio(8000 * 2, seed=4)
    blocks = [audio[i : i + 800] for i in range(0, len(audio), 800)]  # 20 blocks of 100 ms
    writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)
    assert store.held.wait(5)  # the thread hangs while opening the recording
    results, slowest = [], 0.0
    for block in blocks[:-1]:
        started = time.perf_counter()
        results.append(writer.submit(rid, block, False))
        slowest = max(slowest, time.perf_counter() - started)
    assert results == [True] * 4 + [False] * 15  # the queue holds 4 blocks
    assert slowest < 0.05
    assert writer.metrics.blocks_dropped == 15
    status = writer.status(rid)
    assert status is not None and status.state is RecordingState.RECORDING
    assert status.degraded and status.frames_dropped == 15 * 800
    assert [key for key, _ in reports.dropped] == [rid]  # said once
    # Even the final block may be dropped: the end of the recording still gets through.
    assert writer.submit(rid, blocks[-1], True) is False
    store.hold.set()
    wait_for(lambda: RecordingState.COMPLETE in reports.states())
    assert reports.ended[-1].frames_dropped == 16 * 800
    recording = RecordingReader(tmp_path / str(rid), private_key).read()
    assert recording.report.frames == len(audio)  # the dropped blocks became silence
    np.testing.assert_array_equal(recording.audio[:3200], audio[:3200])
    assert not recording.audio[3200:].any()


async def test_reports_run_on_the_event_loop(tmp_path: Path, public_key: X25519PublicKey) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[RecordingState, int]] = loop.create_future()

    class OnLoop(Reports):
        def recording_written(self, recording: RecordingWritten) -> None:
            done.set_result((recording.state, threading.get_ident()))

    async with RecordingWriter(loop=loop) as writer:
        writer.listen(OnLoop())
        rid = str(uuid.uuid4())  # a recording id may be given as text
        writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)
        assert writer.submit(rid, random_ulaw_audio(8000), True)
        state, thread = await asyncio.wait_for(done, 5)
    assert state is RecordingState.COMPLETE
    assert thread == threading.get_ident()


def test_each_segment_is_reported_with_the_facts_of_the_file_written(
    tmp_path: Path, writer: RecordingWriter, reports: Reports, public_key: X25519PublicKey
) -> None:
    rid = uuid.uuid4()
    audio = random_ulaw_audio(8000 * 5 + 400, seed=9)  # 6 chunks: 2 segments of 3 s
    writer.open(rid, tmp_path, public_key, segment_seconds=3, start_time_ms=START_MS)
    for start in range(0, len(audio), 800):
        wait_for(lambda: writer.queue_depth < writer.max_queued_blocks)
        assert writer.submit(rid, audio[start : start + 800], start + 800 >= len(audio))
    wait_for(lambda: RecordingState.COMPLETE in reports.states())
    folder = tmp_path / str(rid)
    facts = []
    for segment in reports.segments:
        data = segment.path.read_bytes()
        assert segment.path == folder / segment.name
        facts.append(
            (segment.index, segment.first_frame, segment.chunks, segment.frames, segment.bytes)
        )
        assert (segment.bytes, segment.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert facts == [(0, 0, 3, 24000, facts[0][4]), (1, 24000, 3, 16400, facts[1][4])]
    (ended,) = reports.ended
    assert (ended.recording_id, ended.segments, ended.frames) == (rid, 2, len(audio))
    assert ended.bytes == sum(s.bytes for s in reports.segments) == writer.metrics.bytes_written
    key = (folder / "key").read_bytes()
    assert ended.key_sha256 == hashlib.sha256(key).hexdigest()


def test_bad_input_is_refused_without_raising(
    tmp_path: Path, writer: RecordingWriter, reports: Reports, public_key: X25519PublicKey
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
    assert reports.states() == [RecordingState.FAILED, RecordingState.FAILED]
    assert "already opened" in reports.ended[0].reason
    assert "opus" in reports.ended[1].reason
    writer.close(rid)
    wait_for(lambda: RecordingState.COMPLETE in reports.states())


def test_an_existing_recording_directory_is_never_appended_to(
    tmp_path: Path, reports: Reports, public_key: X25519PublicKey
) -> None:
    rid = uuid.uuid4()
    (tmp_path / str(rid)).mkdir()
    with RecordingWriter() as writer:
        writer.listen(reports)
        writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)
        writer.submit(rid, random_ulaw_audio(160), True)
    assert reports.states() == [RecordingState.FAILED]
    assert "EEXIST" in reports.ended[0].reason


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
    tmp_path: Path, public_key: X25519PublicKey, policy: FsyncPolicy, expected: int
) -> None:
    # Always: the recordings dir, the key file, the recording dir.  24.0125 s make 25 chunks
    # in 3 segments.  "chunk": each chunk and each new segment's directory entry;
    # "segment": each segment file when closed and its directory entry; "none": nothing more.
    store = LocalDiskStore(fsync=policy)
    writer = RecordingWriter(store)
    rid = uuid.uuid4()
    writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)
    writer.submit(rid, random_ulaw_audio(24 * 8000 + 100), True)
    writer.stop()
    assert writer.metrics.chunks_sealed == 25
    assert store.fsyncs == expected


def test_metrics_count_what_was_written(tmp_path: Path, public_key: X25519PublicKey) -> None:
    with RecordingWriter(LocalDiskStore(fsync="none")) as writer:
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
    writer: RecordingWriter,
    reports: Reports,
    store: FaultyStore,
    public_key: X25519PublicKey,
) -> None:
    rid = uuid.uuid4()
    writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)
    assert writer.submit(rid, random_ulaw_audio(3 * 8000), False)
    folder = tmp_path / str(rid)
    wait_for(lambda: store.count("append") >= 1)
    writer.discard(rid, tmp_path)
    wait_for(lambda: RecordingState.DISCARDED in reports.states())
    assert not folder.exists()
    shredding = [call for call in store.calls if call[0] in ("destroy_key", "delete")]
    # crypto-shredding: the key goes first; when the files go, no key is left, audio is
    assert shredding[0] == ("destroy_key", str(rid))
    assert shredding[1][0] == "delete" and shredding[1][1].startswith("no key, ")
    assert not shredding[1][1].startswith("no key, 0 ")
    assert writer.submit(rid, random_ulaw_audio(800), False) is False
    status = writer.status(rid)
    assert status is not None and status.state is RecordingState.DISCARDED
