"""A held recording: nothing on disk until its catalog row is committed, then the same
files as if it had never been held; dropped, discarded or held too long, what the
writer leaves is what the holding module says."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from proxy.recording_state import RecordingState
from proxy.storage.reader import Outcome, RecordingReader
from proxy.storage.store import LocalDiskStore
from proxy.storage.writer import RecordingWriter

from .conftest import random_ulaw_audio, wait_for
from .faulty_store import Reports

START_MS = 1_700_000_000_000


@pytest.fixture
def reports() -> Reports:
    return Reports()


def make_writer(reports: Reports, hold_seconds: float = 10.0) -> RecordingWriter:
    writer = RecordingWriter(LocalDiskStore(fsync="none"), hold_seconds=hold_seconds)
    writer.listen(reports)
    return writer


@pytest.fixture
def writer(reports: Reports) -> Iterator[RecordingWriter]:
    w = make_writer(reports)
    yield w
    w.stop(timeout=10)


def submit_all(writer: RecordingWriter, rid: uuid.UUID, audio: np.ndarray, final: bool) -> None:
    for start in range(0, len(audio), 800):
        last = final and start + 800 >= len(audio)
        assert writer.submit(rid, audio[start : start + 800], last)


@pytest.mark.parametrize("ended_first", [False, True], ids=["row first", "call ends first"])
def test_nothing_is_on_disk_until_the_row_is_committed_then_all_of_it_is(
    tmp_path: Path,
    writer: RecordingWriter,
    reports: Reports,
    public_key: X25519PublicKey,
    private_key: X25519PrivateKey,
    ended_first: bool,
) -> None:
    rid = uuid.uuid4()
    audio = random_ulaw_audio(8000 * 3, seed=5)
    held = audio if ended_first else audio[:16000]  # all of it, or two chunks' worth
    writer.open(rid, tmp_path, public_key, start_time_ms=START_MS, hold=True)
    submit_all(writer, rid, held, final=ended_first)
    wait_for(lambda: writer.queue_depth == 0)
    assert list(tmp_path.iterdir()) == []  # no folder, no key, no segment
    assert reports.ended == []  # not even a call that ended is written
    status = writer.status(rid)
    assert status is not None and status.state is RecordingState.RECORDING
    writer.commit(rid)
    if not ended_first:
        submit_all(writer, rid, audio[16000:], final=True)
    wait_for(lambda: reports.states() == [RecordingState.COMPLETE])
    recovered = RecordingReader(tmp_path / str(rid), private_key).recover()
    assert recovered.report.outcome is Outcome.COMPLETE
    np.testing.assert_array_equal(recovered.audio, audio)  # nothing held was lost
    assert writer.metrics.recordings_written_ahead == 0


def held_recording(writer: RecordingWriter, root: Path, public_key: X25519PublicKey) -> uuid.UUID:
    """A recording opened held, with two seconds of audio queued and no end."""
    rid = uuid.uuid4()
    writer.open(rid, root, public_key, start_time_ms=START_MS, hold=True)
    submit_all(writer, rid, random_ulaw_audio(8000 * 2), final=False)
    return rid


def test_a_row_refused_for_good_leaves_no_files_and_fails_the_recording(
    tmp_path: Path, writer: RecordingWriter, reports: Reports, public_key: X25519PublicKey
) -> None:
    rid = held_recording(writer, tmp_path, public_key)
    writer.drop(rid, "its catalog row was refused")
    wait_for(lambda: reports.states() == [RecordingState.FAILED])
    assert reports.ended[0].reason == "its catalog row was refused"
    assert reports.ended[0].key_sha256 is None and reports.segments == []
    assert list(tmp_path.iterdir()) == []
    assert writer.submit(rid, random_ulaw_audio(800), True) is False  # takes no more
    writer.commit(rid)  # a late word changes nothing
    writer.stop(timeout=10)
    assert list(tmp_path.iterdir()) == []


def test_a_held_recording_discarded_leaves_nothing(
    tmp_path: Path, writer: RecordingWriter, reports: Reports, public_key: X25519PublicKey
) -> None:
    rid = held_recording(writer, tmp_path, public_key)
    writer.discard(rid, tmp_path)
    wait_for(lambda: reports.states() == [RecordingState.DISCARDED])
    writer.commit(rid)
    writer.stop(timeout=10)
    assert list(tmp_path.iterdir()) == []


def test_held_past_the_bound_it_is_written_ahead_of_its_row_and_counted(
    tmp_path: Path,
    reports: Reports,
    public_key: X25519PublicKey,
    private_key: X25519PrivateKey,
) -> None:
    writer = make_writer(reports, hold_seconds=0.3)
    try:
        rid = uuid.uuid4()
        audio = random_ulaw_audio(8000 * 2, seed=7)
        writer.open(rid, tmp_path, public_key, start_time_ms=START_MS, hold=True)
        submit_all(writer, rid, audio[:8000], final=False)
        # no item arrives: the thread wakes for the deadline by itself
        wait_for(lambda: (tmp_path / str(rid)).is_dir(), timeout=5)
        assert writer.metrics.recordings_written_ahead == 1
        submit_all(writer, rid, audio[8000:], final=True)
        wait_for(lambda: reports.states() == [RecordingState.COMPLETE])
        writer.commit(rid)  # the row came after all: nothing more to do
        recovered = RecordingReader(tmp_path / str(rid), private_key).recover()
        np.testing.assert_array_equal(recovered.audio, audio)
    finally:
        writer.stop(timeout=10)


def test_a_writer_stopping_writes_what_it_held(
    tmp_path: Path, reports: Reports, public_key: X25519PublicKey, private_key: X25519PrivateKey
) -> None:
    writer = make_writer(reports)
    rid = uuid.uuid4()
    audio = random_ulaw_audio(8000, seed=8)
    writer.open(rid, tmp_path, public_key, start_time_ms=START_MS, hold=True)
    submit_all(writer, rid, audio, final=False)
    writer.stop(timeout=10)
    assert writer.metrics.recordings_written_ahead == 1
    assert [r.state for r in reports.ended] == [RecordingState.COMPLETE]
    recovered = RecordingReader(tmp_path / str(rid), private_key).recover()
    np.testing.assert_array_equal(recovered.audio, audio)


def test_an_unheld_recording_is_written_at_once(
    tmp_path: Path, writer: RecordingWriter, public_key: X25519PublicKey
) -> None:
    rid = uuid.uuid4()
    writer.open(rid, tmp_path, public_key, start_time_ms=START_MS)
    wait_for(lambda: (tmp_path / str(rid)).is_dir())
