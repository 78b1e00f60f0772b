"""The segment format alone: sealing, verification, and every kind of damage, named."""

from __future__ import annotations

import ast
import hashlib
import struct
import uuid
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.media.g711 import wire_samples
from proxy.storage import segment as segment_module
from proxy.storage.segment import (
    HEADER_SIZE,
    Encoding,
    FormatUsageError,
    RecordingCorrupt,
    SegmentEncoder,
    read_segment,
    scan_segment,
    ulaw_decode,
    ulaw_encode,
)

from .conftest import Audio, random_ulaw_audio

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
RID = uuid.UUID("12345678-1234-5678-1234-567812345678")
OTHER_RID = uuid.UUID("87654321-4321-8765-4321-876543218765")
START_MS = 1_700_000_000_000


def build_segment(
    audio: Audio,
    *,
    index: int = 0,
    chunk_frames: int = 40,
    segment_chunks: int = 4,
    final: bool = True,
    key: bytes = KEY,
    rid: uuid.UUID = RID,
    encoding: str = "g711",
) -> bytes:
    """Seal ``audio`` as segment ``index``; the last piece is final when ``final``."""
    encoder = SegmentEncoder(
        key,
        rid,
        index,
        start_time_ms=START_MS + index * 1000,
        encoding=encoding,
        chunk_frames=chunk_frames,
        segment_chunks=segment_chunks,
    )
    out = [encoder.header]
    first = index * segment_chunks * chunk_frames
    block = audio if encoding == "pcm16" else as_wire(audio)
    pieces = [block[i : i + chunk_frames] for i in range(0, len(block), chunk_frames)]
    for c, piece in enumerate(pieces):
        last = c == len(pieces) - 1
        out.append(encoder.seal_chunk(c, first + c * chunk_frames, piece, final and last))
    return b"".join(out)


def as_wire(audio: Audio) -> npt.NDArray[np.uint16]:
    """µ-law-exact audio as the PCMU wire samples it came from."""
    return wire_samples(ulaw_encode(audio), "PCMU")


def chunk_bounds(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every complete chunk, walked with struct alone."""
    bounds, pos = [], HEADER_SIZE
    while pos + 21 <= len(data):
        (size,) = struct.unpack_from(">I", data, pos)
        if pos + 21 + size > len(data):
            break
        bounds.append((pos, pos + 21 + size))
        pos += 21 + size
    return bounds


def owner(data: bytes, position: int) -> int | None:
    """The chunk index a byte belongs to; None for the header."""
    for index, (start, end) in enumerate(chunk_bounds(data)):
        if start <= position < end:
            return index
    return None


SMALL_AUDIO = random_ulaw_audio(3 * 40 + 13, seed=1)  # 3 full chunks and a final one of 13
SMALL = build_segment(SMALL_AUDIO)


def test_round_trip_ulaw_is_exact_for_ulaw_audio() -> None:
    contents = read_segment(SMALL, KEY, RID)
    assert contents.final_seen
    assert [c.frames for c in contents.chunks] == [40, 40, 40, 13]
    assert [c.first_frame for c in contents.chunks] == [0, 40, 80, 120]
    assert contents.header is not None
    assert contents.header.start_time_ms == START_MS
    np.testing.assert_array_equal(contents.audio(), SMALL_AUDIO)


def test_round_trip_pcm16_is_exact_for_any_audio() -> None:
    rng = np.random.default_rng(7)
    audio = rng.integers(-32768, 32768, size=(100, 2), dtype=np.int16)
    data = build_segment(audio, encoding="pcm16", index=3)
    contents = read_segment(data, KEY, RID, expected_index=3)
    np.testing.assert_array_equal(contents.audio(), audio)
    assert contents.chunks[0].first_frame == 3 * 4 * 40


def test_full_segment_without_final_chunk_reads_cleanly() -> None:
    data = build_segment(random_ulaw_audio(160), final=False)
    contents = read_segment(data, KEY, RID)
    assert len(contents.chunks) == 4
    assert not contents.final_seen


@pytest.mark.parametrize("allow_truncated", [False, True])
def test_every_byte_flip_is_detected_and_names_its_chunk(allow_truncated: bool) -> None:
    for position in range(len(SMALL)):
        expected_chunk = owner(SMALL, position)
        for mask in (0x01, 0x80, 0xFF):
            damaged = bytearray(SMALL)
            damaged[position] ^= mask
            with pytest.raises(RecordingCorrupt) as caught:
                read_segment(
                    bytes(damaged),
                    KEY,
                    RID,
                    allow_truncated=allow_truncated,
                    name="seg-000000.rec",
                    expected_index=0,
                )
            err = caught.value
            assert err.segment == "seg-000000.rec", (position, mask)
            assert err.chunk == expected_chunk, (position, mask, str(err))
            assert not err.truncated, (position, mask, str(err))
            where = "header" if expected_chunk is None else f"chunk {expected_chunk}"
            assert str(err).startswith(f"seg-000000.rec {where}: ")


def test_flips_in_every_region_of_a_full_size_segment() -> None:
    audio = random_ulaw_audio(8000 * 3 + 1234, seed=3)
    data = build_segment(audio, chunk_frames=8000, segment_chunks=10)
    positions = set(range(HEADER_SIZE))  # the whole header
    for start, end in chunk_bounds(data):
        # length, ~length, flags, nonce, plaintext offset, audio start/middle/end, tag
        for offset in (0, 3, 4, 7, 8, 9, 15, 20, 21, 28, 29, (end - start) // 2):
            positions.add(start + offset)
        positions.update(range(end - 17, end))
    for position in sorted(positions):
        damaged = bytearray(data)
        damaged[position] ^= 0x10
        with pytest.raises(RecordingCorrupt) as caught:
            read_segment(bytes(damaged), KEY, RID, name="seg-000000.rec")
        assert caught.value.chunk == owner(data, position), position
        assert not caught.value.truncated


def test_swapped_chunks_are_named_as_reordered() -> None:
    (a0, a1), (b0, b1) = chunk_bounds(SMALL)[1:3]
    swapped = SMALL[:a0] + SMALL[b0:b1] + SMALL[a0:a1] + SMALL[b1:]
    with pytest.raises(RecordingCorrupt) as caught:
        read_segment(swapped, KEY, RID, name="seg-000000.rec")
    assert caught.value.chunk == 1
    assert "reordered" in caught.value.reason
    assert "chunk 2" in caught.value.reason


def test_chunk_moved_from_another_segment_is_named() -> None:
    audio = random_ulaw_audio(160, seed=4)
    seg0 = build_segment(audio, index=0, final=False)
    seg1 = build_segment(audio, index=1)
    s0, e0 = chunk_bounds(seg0)[2]
    s1, e1 = chunk_bounds(seg1)[2]
    spliced = seg1[:s1] + seg0[s0:e0] + seg1[e1:]
    with pytest.raises(RecordingCorrupt) as caught:
        read_segment(spliced, KEY, RID, name="seg-000001.rec")
    assert caught.value.chunk == 2
    assert "segment 0 chunk 2" in caught.value.reason


def test_chunk_spliced_from_another_recording_is_named() -> None:
    other = build_segment(SMALL_AUDIO, key=OTHER_KEY, rid=OTHER_RID)
    s, e = chunk_bounds(SMALL)[2]
    os_, oe = chunk_bounds(other)[2]
    spliced = SMALL[:s] + other[os_:oe] + SMALL[e:]
    with pytest.raises(RecordingCorrupt) as caught:
        read_segment(spliced, KEY, RID)
    assert caught.value.chunk == 2
    assert "another recording" in caught.value.reason


def test_segment_of_another_recording_is_named_by_its_header() -> None:
    other = build_segment(SMALL_AUDIO, key=OTHER_KEY, rid=OTHER_RID)
    with pytest.raises(RecordingCorrupt) as caught:
        read_segment(other, KEY, RID, name="seg-000000.rec")
    assert caught.value.chunk is None
    assert str(OTHER_RID) in caught.value.reason
    # Even with the recording id rewritten, the header tag gives it away.
    forged = other[:16] + RID.bytes + other[32:]
    with pytest.raises(RecordingCorrupt) as caught:
        read_segment(forged, KEY, RID, name="seg-000000.rec")
    assert caught.value.chunk is None
    assert "authentication" in caught.value.reason


def test_dropped_final_chunk_is_reported_as_truncated() -> None:
    start, _ = chunk_bounds(SMALL)[-1]
    dropped = SMALL[:start]
    with pytest.raises(RecordingCorrupt) as caught:
        read_segment(dropped, KEY, RID, name="seg-000000.rec")
    assert caught.value.truncated
    assert caught.value.chunk == 3
    contents = read_segment(dropped, KEY, RID, allow_truncated=True)
    assert not contents.final_seen
    assert contents.frames == 120


def test_cut_at_every_byte_keeps_exactly_the_complete_chunks() -> None:
    bounds = chunk_bounds(SMALL)
    for cut in range(len(SMALL) + 1):
        data = SMALL[:cut]
        complete = [i for i, (_, end) in enumerate(bounds) if end <= cut]
        contents = read_segment(data, KEY, RID, allow_truncated=True)
        assert [c.index for c in contents.chunks] == complete, cut
        kept_end = bounds[complete[-1]][1] if complete else min(cut, HEADER_SIZE)
        if contents.header is None:
            assert cut < HEADER_SIZE and contents.trailing_bytes == cut
        else:
            assert contents.trailing_bytes == cut - max(kept_end, HEADER_SIZE), cut
        np.testing.assert_array_equal(contents.audio(), SMALL_AUDIO[: contents.frames])
        scan = scan_segment(data, allow_truncated=True)
        assert [span.index for span in scan.chunks] == complete
        if cut < len(SMALL):
            with pytest.raises(RecordingCorrupt) as caught:
                read_segment(data, KEY, RID, name="seg-000000.rec")
            assert caught.value.truncated, cut


def test_zero_filled_tail_counts_as_a_cut_in_recovery_only() -> None:
    start, _ = chunk_bounds(SMALL)[-1]
    data = SMALL[:start] + bytes(200)
    contents = read_segment(data, KEY, RID, allow_truncated=True)
    assert contents.frames == 120 and contents.trailing_bytes == 200
    with pytest.raises(RecordingCorrupt) as caught:
        read_segment(data, KEY, RID)
    assert caught.value.chunk == 3 and not caught.value.truncated


def test_data_after_the_final_chunk_is_an_error() -> None:
    extra = build_segment(random_ulaw_audio(40, seed=9), index=0)[HEADER_SIZE:]
    with pytest.raises(RecordingCorrupt) as caught:
        read_segment(SMALL + extra, KEY, RID, allow_truncated=True)
    assert caught.value.chunk == 4
    assert "after the final chunk" in caught.value.reason


def test_wrong_data_key_fails_at_the_header() -> None:
    with pytest.raises(RecordingCorrupt) as caught:
        read_segment(SMALL, OTHER_KEY, RID)
    assert caught.value.chunk is None


def test_read_segment_names_the_file_it_read(tmp_path: Path) -> None:
    path = tmp_path / "seg-000007.rec"
    path.write_bytes(SMALL)
    with pytest.raises(RecordingCorrupt) as caught:
        read_segment(path, KEY, RID, expected_index=7)
    assert caught.value.segment == "seg-000007.rec"
    assert "swapped" in caught.value.reason


def test_encoding_names_g711_with_ulaw_as_its_old_name() -> None:
    assert Encoding.parse("g711") is Encoding.parse("ulaw") is Encoding.G711
    assert Encoding.parse("pcm16") is Encoding.PCM16
    assert Encoding.parse(Encoding.PCM16) is Encoding.PCM16
    with pytest.raises(ValueError, match=r"unknown audio encoding 'alaw' \(g711 or pcm16\)"):
        Encoding.parse("alaw")


def test_encoder_never_seals_a_chunk_position_twice() -> None:
    encoder = SegmentEncoder(KEY, RID, 0, start_time_ms=START_MS, chunk_frames=40)
    block = as_wire(random_ulaw_audio(40))
    encoder.seal_chunk(0, 0, block, False)
    with pytest.raises(FormatUsageError, match="nonce"):
        encoder.seal_chunk(0, 0, block, False)
    with pytest.raises(FormatUsageError):
        encoder.seal_chunk(1, 40, block[:10], False)  # only a final chunk may be short
    with pytest.raises(FormatUsageError):
        encoder.seal_chunk(1, 41, block, False)  # frames must follow on
    encoder.seal_chunk(1, 40, block[:10], True)
    with pytest.raises(FormatUsageError):
        encoder.seal_chunk(2, 50, block, False)  # nothing after the final chunk


def test_encoder_stops_at_a_full_segment() -> None:
    encoder = SegmentEncoder(KEY, RID, 0, start_time_ms=0, chunk_frames=40, segment_chunks=2)
    block = as_wire(random_ulaw_audio(40))
    encoder.seal_chunk(0, 0, block, False)
    encoder.seal_chunk(1, 40, block, False)
    assert encoder.finished
    with pytest.raises(FormatUsageError):
        encoder.seal_chunk(2, 80, block, False)


def test_ulaw_tables_follow_the_g711_formula() -> None:
    codes = np.arange(256, dtype=np.uint8)
    decoded = ulaw_decode(codes)
    for code in range(256):
        u = ~code & 0xFF
        magnitude = ((((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 7)) - 0x84
        assert decoded[code] == (-magnitude if u & 0x80 else magnitude)
    # Re-encoding decoded µ-law is exact (0x7F, "negative zero", comes back as 0xFF).
    np.testing.assert_array_equal(ulaw_decode(ulaw_encode(decoded)), decoded)
    linear = np.arange(-32768, 32768, dtype=np.int16)
    round_trip = ulaw_decode(ulaw_encode(linear)).astype(np.int32)
    assert np.all(np.diff(round_trip) >= 0)  # monotonic
    assert np.max(np.abs(round_trip - linear)) <= 1024


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_chunk_geometry_round_trips(data: st.DataObject) -> None:
    chunk_frames = data.draw(st.integers(1, 50))
    segment_chunks = data.draw(st.integers(1, 5))
    frames = data.draw(st.integers(0, chunk_frames * segment_chunks))
    audio = random_ulaw_audio(frames, seed=frames)
    wire = as_wire(audio)
    encoder = SegmentEncoder(
        KEY, RID, 2, start_time_ms=0, chunk_frames=chunk_frames, segment_chunks=segment_chunks
    )
    out, first = [encoder.header], 2 * segment_chunks * chunk_frames
    full, rest = divmod(frames, chunk_frames)
    for c in range(full):
        final = rest == 0 and c == full - 1 and c < segment_chunks - 1
        piece = wire[c * chunk_frames : (c + 1) * chunk_frames]
        out.append(encoder.seal_chunk(c, first + c * chunk_frames, piece, final))
    if not encoder.finished:
        out.append(
            encoder.seal_chunk(full, first + full * chunk_frames, wire[full * chunk_frames :], True)
        )
    contents = read_segment(b"".join(out), KEY, RID, expected_index=2)
    np.testing.assert_array_equal(contents.audio(), audio)


def test_the_format_core_does_no_io_and_reads_no_clock() -> None:
    tree = ast.parse(Path(segment_module.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"asyncio", "socket", "time", "threading", "datetime"}


def pinned_segment() -> bytes:
    """A segment sealed under a fixed key: both laws, a law switch inside a chunk,
    filled samples scattered and a chunk where one channel heard nothing."""
    rng = np.random.default_rng(19)
    frames, chunk = 4 * 400 + 77, 400
    codes = rng.integers(0, 256, size=(frames, 2), dtype=np.uint16)
    tags = np.zeros((frames, 2), dtype=np.uint16)
    tags[:, 1] = 8  # the call taker in A-law
    tags[500:700, 0] = 8  # the caller switches law inside chunk 1
    wire = codes | (tags << 8)
    wire[rng.random((frames, 2)) < 0.1] = 0xFF00
    wire[800:1300, 1] = 0xFF00
    encoder = SegmentEncoder(
        KEY, uuid.UUID(int=19), 3, start_time_ms=1_765_000_000_000,
        chunk_frames=chunk, segment_chunks=8, codecs=(8, 0),
    )  # fmt: skip
    out = [encoder.header]
    for c in range(5):
        block = wire[c * chunk : (c + 1) * chunk]
        out.append(encoder.seal_chunk(c, encoder.first_frame + c * chunk, block, c == 4))
    return b"".join(out)


def test_sealed_bytes_are_those_of_the_per_channel_encoder_of_issue_18() -> None:
    # The digest of what the encoder wrote before its chunk coding became whole-array
    # work (issue 19): the format's bytes must not change with how they are computed.
    digest = hashlib.sha256(pinned_segment()).hexdigest()
    assert digest == "42a9429687dce25714fafd2d0703d9094f7a600b6570396d17f051a0ee60d7fe"


@pytest.mark.parametrize("where", [0, 5])
def test_a_wire_sample_of_an_unknown_law_is_refused(where: int) -> None:
    wire = wire_samples(np.zeros((40, 2), dtype=np.uint8), "PCMU")
    wire[where, 1] = 0x0300  # payload type 3 (GSM) is no law of the format
    encoder = SegmentEncoder(KEY, RID, 0, start_time_ms=START_MS, chunk_frames=40)
    with pytest.raises(FormatUsageError, match="unknown codec tag"):
        encoder.seal_chunk(0, 0, wire, final=True)
