"""Whole recordings: round trip through the writer, and damage across segments."""

from __future__ import annotations

import shutil
import struct
import uuid
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.media import g711
from proxy.media.g711 import WIRE_SILENCE, wire_decode
from proxy.storage.crypto import WrappedKeyError, WrongPrivateKey, generate_keypair
from proxy.storage.reader import Outcome, RecordingReader, recover
from proxy.storage.segment import (
    HEADER_SIZE,
    RecordingCorrupt,
    ulaw_encode,
)

from .conftest import MakeRecording, dialogue_call, random_ulaw_audio

CHUNK = 16_047  # 21 + 8 + 2 + 8000 * 2 + 16: a full 1 s G.711 chunk on disk


def seg(directory: Path, index: int) -> Path:
    return directory / f"seg-{index:06d}.rec"


def test_sixty_second_call_round_trips_exactly(
    make_recording: MakeRecording, private_key: X25519PrivateKey
) -> None:
    audio = dialogue_call(60.0)
    assert not np.array_equal(audio[:, 0], audio[:, 1])
    directory = make_recording(audio)
    recording = RecordingReader(directory, private_key).read()
    report = recording.report
    assert report.outcome is Outcome.COMPLETE and report.final_seen and report.verified
    assert report.frames == 480_000 and report.duration_s == 60.0
    assert report.segments == 7  # 6 full segments and one holding the empty final chunk
    assert report.chunks == 61
    assert report.start_time_ms == 1_700_000_000_000
    np.testing.assert_array_equal(recording.audio, audio)  # µ-law in, µ-law stored: exact
    # and the stored bytes are exactly the wire's µ-law bytes
    np.testing.assert_array_equal(ulaw_encode(recording.audio[:, 0]), ulaw_encode(audio[:, 0]))


def test_file_sizes_match_the_documented_example(make_recording: MakeRecording) -> None:
    directory = make_recording(random_ulaw_audio(25 * 8000))
    sizes = [seg(directory, i).stat().st_size for i in range(3)]
    assert sizes == [160_538, 160_538, 80_350]
    assert (directory / "key").stat().st_size == 150
    assert not seg(directory, 3).exists()


def test_pcm16_recording_round_trips_exactly(
    make_recording: MakeRecording, private_key: X25519PrivateKey
) -> None:
    rng = np.random.default_rng(5)
    audio = rng.integers(-32768, 32768, size=(3 * 8000 + 77, 2), dtype=np.int16)
    directory = make_recording(audio, encoding="pcm16", segment_seconds=2)
    recording = RecordingReader(directory, private_key).read()
    np.testing.assert_array_equal(recording.audio, audio)


@pytest.fixture
def short_recording(make_recording: MakeRecording) -> Path:
    """12.5 s: seg 0 holds 10 chunks, seg 1 holds 2 full chunks and a final half one."""
    return make_recording(random_ulaw_audio(100_000, seed=11))


def test_dropping_the_final_chunk_is_truncation_not_success(
    short_recording: Path, private_key: X25519PrivateKey
) -> None:
    last = seg(short_recording, 1)
    data = last.read_bytes()
    last.write_bytes(data[: HEADER_SIZE + 2 * CHUNK])
    with pytest.raises(RecordingCorrupt) as caught:
        RecordingReader(short_recording, private_key).read()
    assert caught.value.truncated
    assert (caught.value.segment, caught.value.chunk) == ("seg-000001.rec", 2)
    recovered = RecordingReader(short_recording, private_key).recover()
    assert recovered.report.outcome is Outcome.INTERRUPTED
    assert recovered.report.frames == 96_000
    assert recover(short_recording).frames == 96_000


def test_dropping_the_last_segment_file_is_truncation(
    short_recording: Path, private_key: X25519PrivateKey
) -> None:
    seg(short_recording, 1).unlink()
    with pytest.raises(RecordingCorrupt) as caught:
        RecordingReader(short_recording, private_key).read()
    assert caught.value.truncated
    assert caught.value.segment == "seg-000001.rec"


def test_a_missing_middle_segment_is_named(
    make_recording: MakeRecording, private_key: X25519PrivateKey
) -> None:
    directory = make_recording(random_ulaw_audio(25 * 8000))
    seg(directory, 1).unlink()
    with pytest.raises(RecordingCorrupt) as caught:
        RecordingReader(directory, private_key).read()
    assert caught.value.segment == "seg-000001.rec"
    assert "missing" in caught.value.reason


def test_swapped_segment_files_are_named(
    make_recording: MakeRecording, private_key: X25519PrivateKey
) -> None:
    directory = make_recording(random_ulaw_audio(25 * 8000))
    tmp = directory / "tmp"
    seg(directory, 0).rename(tmp)
    seg(directory, 1).rename(seg(directory, 0))
    tmp.rename(seg(directory, 1))
    with pytest.raises(RecordingCorrupt) as caught:
        RecordingReader(directory, private_key).read()
    assert (caught.value.segment, caught.value.chunk) == ("seg-000000.rec", None)
    assert "segment 1" in caught.value.reason


def test_a_segment_file_from_another_recording_is_named(
    make_recording: MakeRecording, private_key: X25519PrivateKey
) -> None:
    audio = random_ulaw_audio(25 * 8000)
    mine = make_recording(audio)
    theirs = make_recording(audio)
    shutil.copy(seg(theirs, 1), seg(mine, 1))
    with pytest.raises(RecordingCorrupt) as caught:
        RecordingReader(mine, private_key).read()
    assert (caught.value.segment, caught.value.chunk) == ("seg-000001.rec", None)
    assert theirs.name in caught.value.reason


def test_a_chunk_from_another_recording_is_named(
    make_recording: MakeRecording, private_key: X25519PrivateKey
) -> None:
    audio = random_ulaw_audio(25 * 8000)
    mine, theirs = make_recording(audio), make_recording(audio)
    target = seg(mine, 1)
    data = bytearray(target.read_bytes())
    start = HEADER_SIZE + 4 * CHUNK
    data[start : start + CHUNK] = seg(theirs, 1).read_bytes()[start : start + CHUNK]
    target.write_bytes(bytes(data))
    with pytest.raises(RecordingCorrupt) as caught:
        RecordingReader(mine, private_key).read()
    assert (caught.value.segment, caught.value.chunk) == ("seg-000001.rec", 4)


def test_the_key_file_of_another_recording_is_refused(
    make_recording: MakeRecording, private_key: X25519PrivateKey
) -> None:
    audio = random_ulaw_audio(8000)
    mine, theirs = make_recording(audio), make_recording(audio)
    shutil.copy(theirs / "key", mine / "key")
    with pytest.raises(WrappedKeyError, match="names recording"):
        RecordingReader(mine, private_key)


def test_the_wrong_private_key_fails_clearly(short_recording: Path) -> None:
    with pytest.raises(WrongPrivateKey):
        RecordingReader(short_recording, generate_keypair()[0])


def test_no_key_file_means_nothing_can_be_read(
    short_recording: Path, private_key: X25519PrivateKey
) -> None:
    (short_recording / "key").unlink()
    with pytest.raises(RecordingCorrupt, match="no key file"):
        RecordingReader(short_recording, private_key)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_any_flipped_byte_in_any_segment_is_named(
    short_recording: Path, private_key: X25519PrivateKey, data: st.DataObject
) -> None:
    index = data.draw(st.sampled_from([0, 1]))
    path = seg(short_recording, index)
    original = path.read_bytes()
    position = data.draw(st.integers(0, len(original) - 1))
    mask = data.draw(st.integers(1, 255))
    damaged = bytearray(original)
    damaged[position] ^= mask
    path.write_bytes(bytes(damaged))
    try:
        for reader in (
            RecordingReader(short_recording, private_key).read,
            RecordingReader(short_recording, private_key).recover,
        ):
            with pytest.raises(RecordingCorrupt) as caught:
                reader()
            expected_chunk = None if position < HEADER_SIZE else (position - HEADER_SIZE) // CHUNK
            assert caught.value.segment == path.name
            assert caught.value.chunk == expected_chunk, str(caught.value)
            assert not caught.value.truncated
    finally:
        path.write_bytes(original)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_a_cut_at_any_byte_recovers_exactly_the_complete_chunks(
    short_recording: Path, private_key: X25519PrivateKey, data: st.DataObject
) -> None:
    path = seg(short_recording, 1)
    original = path.read_bytes()
    cut = data.draw(st.integers(0, len(original) - 1))
    path.write_bytes(original[:cut])
    try:
        complete = max(0, (cut - HEADER_SIZE) // CHUNK) if cut >= HEADER_SIZE else 0
        complete = min(complete, 2)  # the third chunk (final, half full) is shorter
        recovered = RecordingReader(short_recording, private_key).recover()
        assert recovered.report.outcome is Outcome.INTERRUPTED
        assert recovered.report.frames == 80_000 + complete * 8000
        expected = random_ulaw_audio(100_000, seed=11)[: recovered.report.frames]
        np.testing.assert_array_equal(recovered.audio, expected)
        assert recover(short_recording).frames == recovered.report.frames
        with pytest.raises(RecordingCorrupt) as caught:
            RecordingReader(short_recording, private_key).read()
        assert caught.value.truncated and caught.value.segment == path.name
    finally:
        path.write_bytes(original)


def test_a_cut_in_an_earlier_segment_is_not_recoverable(
    short_recording: Path, private_key: X25519PrivateKey
) -> None:
    path = seg(short_recording, 0)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(RecordingCorrupt) as caught:
        RecordingReader(short_recording, private_key).recover()
    assert caught.value.segment == "seg-000000.rec" and caught.value.chunk == 9


def test_keyless_recover_of_a_directory_without_key_reports_nothing(tmp_path: Path) -> None:
    directory = tmp_path / str(uuid.uuid4())
    directory.mkdir()
    report = recover(directory)
    assert report.frames == 0 and report.outcome is Outcome.INTERRUPTED


def test_keyless_recover_matches_the_verified_one(
    short_recording: Path, private_key: X25519PrivateKey
) -> None:
    keyless = recover(short_recording)
    verified = recover(short_recording, private_key)
    assert not keyless.verified and verified.verified
    assert (keyless.frames, keyless.chunks, keyless.final_seen) == (100_000, 13, True)
    assert (verified.frames, verified.chunks, verified.final_seen) == (100_000, 13, True)


def test_the_length_prefix_is_checked_before_it_is_trusted(
    short_recording: Path, private_key: X25519PrivateKey
) -> None:
    path = seg(short_recording, 1)
    data = bytearray(path.read_bytes())
    offset = HEADER_SIZE + CHUNK  # chunk 1
    struct.pack_into(">II", data, offset, 10**6, 10**6 ^ 0xFFFFFFFF)  # consistent, huge
    path.write_bytes(bytes(data))
    with pytest.raises(RecordingCorrupt) as caught:
        RecordingReader(short_recording, private_key).recover()
    assert caught.value.chunk == 1 and not caught.value.truncated


def every_code(law: int, repeats: int = 40) -> npt.NDArray[np.uint16]:
    """Each of the 256 codes of one law (payload type ``law``), as wire samples."""
    return np.tile(np.arange(256, dtype=np.uint16), repeats) | np.uint16(law << 8)


@pytest.mark.parametrize("law", [0, 8], ids=["PCMU", "PCMA"])
def test_every_code_of_each_law_comes_back_byte_for_byte(
    make_recording: MakeRecording, private_key: X25519PrivateKey, law: int
) -> None:
    codes = every_code(law)
    wire = np.stack([codes, codes[::-1]], axis=1)
    directory = make_recording(wire, chunk_seconds=0.5, segment_seconds=1)
    recording = RecordingReader(directory, private_key).read()
    assert recording.wire is not None
    np.testing.assert_array_equal(recording.wire, wire)
    np.testing.assert_array_equal(recording.audio, wire_decode(wire))


def test_a_switch_and_filled_time_are_written_in_the_chunks_law(
    make_recording: MakeRecording, private_key: X25519PrivateKey
) -> None:
    """1 s chunks: the caller is A-law, switches to µ-law for a while inside the first
    chunk, then is silent (filled) to the end of it and through the whole second chunk
    (which keeps the law of the first); the call taker is µ-law."""
    alaw, ulaw = every_code(8, 16), every_code(0, 16)  # 4096 frames each
    caller = np.concatenate([alaw[:3000], ulaw[:1000], np.full(12_000, WIRE_SILENCE)])
    taker = np.resize(ulaw, 16_000)
    directory = make_recording(np.stack([caller, taker], axis=1).astype(np.uint16))
    recording = RecordingReader(directory, private_key).read()
    assert recording.wire is not None
    stored = recording.wire[:, 0]
    np.testing.assert_array_equal(stored[:3000], alaw[:3000])  # as received
    assert np.all(stored >> 8 == 8)  # both seconds are A-law
    switched = np.frombuffer(g711.encode(wire_decode(ulaw[:1000]), "PCMA"), dtype=np.uint8)
    np.testing.assert_array_equal(stored[3000:4000] & 0xFF, switched)
    np.testing.assert_array_equal(stored[4000:] & 0xFF, g711.silence_byte("PCMA"))
    np.testing.assert_array_equal(recording.wire[:, 1], taker)
