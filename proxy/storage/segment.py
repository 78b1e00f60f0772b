"""The recording segment format: pure code, bytes in and bytes out (no threads, no clock).

A recording is a directory ``<recordings dir>/<recording id>/`` holding ``key`` (the wrapped
data key, see :mod:`proxy.storage.crypto`) and ``seg-000000.rec``, ``seg-000001.rec``, ...
Each segment is a 68-byte header (authenticated by its own GCM tag) followed by chunks of
about one second, each sealed with AES-256-GCM under the recording's data key::

    header   magic "RECPXSEG", version, encoding, channels, sample rate, recording id,
             segment index, frames per chunk, chunks per segment, start time (ms), tag
    chunk    length L, ~L, flags (bit 0: final), nonce (12), ciphertext || tag (L bytes)
             plaintext = first frame (u64) || [codec tags (2)] || interleaved 2-channel audio

Format version 2 stores the G.711 bytes as received (encoding ``G711``): each chunk
names each channel's law by its RTP payload type (0 PCMU, 8 PCMA), so an A-law call
comes back byte for byte.  Version 1 (encodings ``ULAW`` and ``PCM16``, no tags) is
still read: recordings made before version 2 stay readable.

The nonce of chunk *c* of segment *s* is ``01 000000 || s || c``; the associated data is
the whole header followed by ``c`` and the flags.  Everything a reader must check, and why
a nonce can never repeat under one key, is in ``docs/recording-format.md``.

:class:`SegmentEncoder` seals; :func:`read_segment` verifies and decrypts, raising
:class:`RecordingCorrupt` naming the segment file and chunk; :func:`scan_segment` walks the
framing without the key (crash recovery on the proxy host, which has no private key).
"""

from __future__ import annotations

import enum
import os
import re
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..media import g711
from ..media.g711 import CODEC_TAGS, TAG_CODECS, WIRE_SILENCE, wire_decode

MAGIC = b"RECPXSEG"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
CHANNELS = 2
DEFAULT_SAMPLE_RATE = 8000
DEFAULT_CHUNK_FRAMES = 8000  # one second at 8 kHz
DEFAULT_SEGMENT_CHUNKS = 10  # ten seconds a segment

KEY_FILE_NAME = "key"
_SEGMENT_NAME = re.compile(r"^seg-(\d{6,})\.rec$")

# magic, version, encoding, channels, reserved, sample rate, recording id, segment index,
# frames per chunk, chunks per segment, start time (ms since the Unix epoch)
_HEADER_FIELDS = struct.Struct(">8sBBBBI16sIIIQ")
TAG_SIZE = 16
HEADER_SIZE = _HEADER_FIELDS.size + TAG_SIZE  # 52 + 16 = 68
# body length L, L xor 0xFFFFFFFF, flags, nonce
_CHUNK_PREFIX = struct.Struct(">IIB12s")
CHUNK_PREFIX_SIZE = _CHUNK_PREFIX.size  # 21
_FIRST_FRAME = struct.Struct(">Q")
FIRST_FRAME_SIZE = _FIRST_FRAME.size  # 8
_NONCE = struct.Struct(">B3xII")

NONCE_KIND_CHUNK = 0x01
NONCE_KIND_HEADER = 0x02
FLAG_FINAL = 0x01
_U32_MAX = 0xFFFFFFFF
_MAX_CHUNK_FRAMES = 1 << 20


class Encoding(enum.IntEnum):
    """How a sample is stored.  All carry 2 interleaved channels (caller, call taker)."""

    ULAW = 1  # format 1 only: G.711 µ-law encoded from linear audio (A-law was not kept)
    PCM16 = 2  # signed 16-bit little-endian
    G711 = 3  # format 2: the G.711 code bytes as received, each chunk tagged with its laws

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self is Encoding.PCM16 else 1

    @property
    def tag_size(self) -> int:
        """Bytes of codec tags after a chunk's first frame: one payload type a channel."""
        return CHANNELS if self is Encoding.G711 else 0

    @classmethod
    def parse(cls, value: Encoding | str) -> Encoding:
        """The encoding a recording is written in, by its configuration name (``"g711"``,
        ``"pcm16"``) or as an :class:`Encoding`.  ``"ulaw"``, the deprecated name of
        ``"g711"`` from when the recorder stored µ-law, is still taken: both keep the
        G.711 bytes as received (µ-law calls give the same bytes as format 1 did, A-law
        calls are no longer converted).  :attr:`ULAW` is never written."""
        if isinstance(value, Encoding):
            return value
        names = {"g711": cls.G711, "ulaw": cls.G711, "pcm16": cls.PCM16}
        try:
            return names[value.lower()]
        except KeyError:
            raise ValueError(f"unknown audio encoding {value!r} (g711 or pcm16)") from None


class FormatUsageError(ValueError):
    """Our own code misused the encoder (a bug on the writing side, never bad input)."""


class RecordingCorrupt(Exception):
    """A recording failed verification.

    ``segment`` is the segment file name (``None`` for the recording as a whole or its key
    file), ``chunk`` the chunk index inside it (``None`` for the segment header or the
    segment as a whole).  ``truncated`` is True when the fault is missing data at the end
    (a crash cut, or a dropped final chunk) rather than altered or misplaced data.
    """

    def __init__(
        self, segment: str | None, chunk: int | None, reason: str, *, truncated: bool = False
    ) -> None:
        where = segment if segment is not None else "recording"
        if segment is not None:
            where += " header" if chunk is None else f" chunk {chunk}"
        super().__init__(f"{where}: {reason}")
        self.segment = segment
        self.chunk = chunk
        self.reason = reason
        self.truncated = truncated


# --- G.711 µ-law: the media layer's tables (one encoder in the project) ---------------

_ULAW_ENCODE, _ULAW_DECODE = g711.ULAW_ENCODE, g711.ULAW_DECODE


def ulaw_encode(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """G.711 µ-law codes of 16-bit samples (any shape)."""
    return _ULAW_ENCODE[np.asarray(samples, dtype=np.int16).view(np.uint16)]


def ulaw_decode(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.int16]:
    """16-bit samples of G.711 µ-law codes (any shape)."""
    return _ULAW_DECODE[np.asarray(codes, dtype=np.uint8)]


# --- wire audio (``proxy.media.g711``): the chunk's law for each channel -------------------

_SILENT_TAG = WIRE_SILENCE >> 8


def _first_heard(tags: npt.NDArray[np.uint16], previous: int) -> int:
    """A channel's law in a chunk: its first received sample's, else ``previous``."""
    heard = tags != _SILENT_TAG
    if not len(heard):
        return previous
    first = int(heard.argmax())  # 0 when nothing was heard
    return int(tags[first]) if heard[first] else previous


def _chunk_codes(
    wire: npt.NDArray[np.uint16], previous: tuple[int, int]
) -> tuple[tuple[int, int], npt.NDArray[np.uint8]]:
    """A chunk's channels' laws (see :func:`_first_heard`) and its ``(n, 2)`` codes,
    where samples of another law (a codec switch) or filled ones are converted to the
    channel's law, so that only those are not the wire's bytes.

    Whole-array work over both channels, with one comparison of each frame's two tags
    as one 32-bit number for the usual chunk (each channel in one law throughout): this
    runs for every chunk of every recording."""
    tags = np.ascontiguousarray(wire >> 8)
    left, right = _first_heard(tags[:, 0], previous[0]), _first_heard(tags[:, 1], previous[1])
    laws = (left, right)
    if left not in TAG_CODECS or right not in TAG_CODECS:
        raise FormatUsageError("a wire sample carries an unknown codec tag")
    codes = wire.astype(np.uint8)  # the low byte: the code as received
    expected = np.array(laws, dtype=np.uint16).view(np.uint32)
    if (tags.view(np.uint32) == expected).all():
        return laws, codes
    for channel, law in enumerate(laws):
        column = tags[:, channel]
        filled = column == _SILENT_TAG
        other = column != law
        other &= ~filled
        if other.any():
            if not set(np.unique(column[other]).tolist()) <= TAG_CODECS.keys():
                raise FormatUsageError("a wire sample carries an unknown codec tag")
            table = g711.encode_table(TAG_CODECS[law])
            codes[other, channel] = table[wire_decode(wire[other, channel]).view(np.uint16)]
        silence = g711.silence_byte(TAG_CODECS[law])
        if filled.all():
            codes[:, channel] = silence
        else:
            codes[filled, channel] = silence
    return laws, codes


def stored_wire(
    data: bytes, encoding: Encoding, codecs: tuple[int, int] | None = None
) -> npt.NDArray[np.uint16]:
    """The ``(n, 2)`` wire samples of a G.711 chunk's stored bytes (format 1 ``ULAW``
    chunks are µ-law)."""
    if encoding is Encoding.PCM16:
        raise FormatUsageError("16-bit PCM holds no G.711 bytes")
    tags = np.array(codecs or (0, 0), dtype=np.uint16) << np.uint16(8)
    codes = np.frombuffer(data, dtype=np.uint8).reshape(-1, CHANNELS).astype(np.uint16)
    wire: npt.NDArray[np.uint16] = np.bitwise_or(codes, tags, dtype=np.uint16)
    return wire


# --- names in a recording directory --------------------------------------------------------


def segment_file_name(index: int) -> str:
    return f"seg-{index:06d}.rec"


def parse_segment_file_name(name: str) -> int | None:
    """The index of a segment file name, or None when the name is not one."""
    match = _SEGMENT_NAME.match(name)
    return int(match.group(1)) if match else None


def recording_path(recordings_dir: str | os.PathLike[str], recording_id: uuid.UUID) -> Path:
    """``<recordings dir>/<recording id>/``."""
    return Path(recordings_dir) / str(recording_id)


# --- nonces and associated data --------------------------------------------------------------


def chunk_nonce(segment_index: int, chunk_index: int) -> bytes:
    return _NONCE.pack(NONCE_KIND_CHUNK, segment_index, chunk_index)


def header_nonce(segment_index: int) -> bytes:
    return _NONCE.pack(NONCE_KIND_HEADER, segment_index, 0)


def chunk_aad(header: bytes, chunk_index: int, flags: int) -> bytes:
    return header + struct.pack(">IB", chunk_index, flags)


# --- header ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    """A parsed segment header.  ``raw`` is its 68 bytes (tag included)."""

    encoding: Encoding
    sample_rate: int
    recording_id: uuid.UUID
    segment_index: int
    chunk_frames: int
    segment_chunks: int
    start_time_ms: int
    raw: bytes
    channels: int = CHANNELS
    version: int = FORMAT_VERSION

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.encoding.bytes_per_sample

    @property
    def chunk_overhead(self) -> int:
        """Bytes of a chunk's body that are not audio: first frame, codec tags, GCM tag."""
        return FIRST_FRAME_SIZE + self.encoding.tag_size + TAG_SIZE

    @property
    def full_body_size(self) -> int:
        """L of a chunk holding ``chunk_frames`` frames (every chunk but a final one)."""
        return self.chunk_overhead + self.chunk_frames * self.frame_bytes

    @property
    def first_frame(self) -> int:
        """The recording-wide index of this segment's first frame."""
        return self.segment_index * self.segment_chunks * self.chunk_frames

    def chunk_first_frame(self, chunk_index: int) -> int:
        return self.first_frame + chunk_index * self.chunk_frames

    @classmethod
    def parse(cls, data: bytes, name: str = "<segment>") -> SegmentHeader:
        """Check the header's structure (not its tag: see :func:`verify_header`)."""
        if len(data) < HEADER_SIZE:
            raise RecordingCorrupt(
                name, None, f"{len(data)} bytes, shorter than a header", truncated=True
            )
        (
            magic,
            version,
            encoding,
            channels,
            reserved,
            sample_rate,
            rec_raw,
            segment_index,
            chunk_frames,
            segment_chunks,
            start_time_ms,
        ) = _HEADER_FIELDS.unpack_from(data)
        problem = None
        if magic != MAGIC:
            problem = f"bad magic {magic!r}: not a recording segment"
        elif version not in READABLE_VERSIONS:
            problem = f"unsupported format version {version}"
        elif encoding not in _VERSION_ENCODINGS[version]:
            problem = f"unknown encoding {encoding} in format version {version}"
        elif channels != CHANNELS:
            problem = f"{channels} channels (the format has {CHANNELS})"
        elif reserved != 0:
            problem = f"reserved byte is {reserved}, not 0"
        elif sample_rate == 0:
            problem = "sample rate 0"
        elif not 1 <= chunk_frames <= _MAX_CHUNK_FRAMES:
            problem = f"impossible frames per chunk {chunk_frames}"
        elif segment_chunks == 0:
            problem = "zero chunks per segment"
        if problem is not None:
            raise RecordingCorrupt(name, None, problem)
        return cls(
            encoding=Encoding(encoding),
            sample_rate=sample_rate,
            recording_id=uuid.UUID(bytes=rec_raw),
            segment_index=segment_index,
            chunk_frames=chunk_frames,
            segment_chunks=segment_chunks,
            start_time_ms=start_time_ms,
            raw=bytes(data[:HEADER_SIZE]),
            version=version,
        )


_VERSION_ENCODINGS = {1: (Encoding.ULAW, Encoding.PCM16), 2: (Encoding.PCM16, Encoding.G711)}


def _header_tag(aead: AESGCM, fields: bytes, segment_index: int) -> bytes:
    return aead.encrypt(header_nonce(segment_index), b"", fields)


def verify_header(header: SegmentHeader, data_key: bytes, name: str = "<segment>") -> None:
    """Check the header's tag under the recording's data key."""
    fields = header.raw[: _HEADER_FIELDS.size]
    try:
        AESGCM(data_key).decrypt(header_nonce(header.segment_index), header.raw[-TAG_SIZE:], fields)
    except InvalidTag:
        raise RecordingCorrupt(
            name,
            None,
            "header failed authentication: altered, or sealed under another recording's key",
        ) from None


# --- sealing ---------------------------------------------------------------------------------


class SegmentEncoder:
    """Seals the chunks of one segment, in order.

    It refuses to seal a chunk index twice or out of order, so that no nonce is ever used
    twice under the recording's data key.  ``header`` is the segment's first 68 bytes.
    ``codecs`` are the channels' laws (payload types) so far: a G711 chunk channel with
    no received sample keeps its law; read them back to carry them to the next segment.
    """

    def __init__(
        self,
        data_key: bytes,
        recording_id: uuid.UUID,
        segment_index: int,
        *,
        start_time_ms: int,
        encoding: Encoding | str = Encoding.G711,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        segment_chunks: int = DEFAULT_SEGMENT_CHUNKS,
        codecs: tuple[int, int] = (CODEC_TAGS["PCMU"], CODEC_TAGS["PCMU"]),
    ) -> None:
        if len(data_key) != 32:
            raise FormatUsageError("the data key must be 32 bytes (AES-256)")
        if not 0 <= segment_index <= _U32_MAX:
            raise FormatUsageError(f"segment index {segment_index} out of range")
        if not 1 <= chunk_frames <= _MAX_CHUNK_FRAMES:
            raise FormatUsageError(f"frames per chunk {chunk_frames} out of range")
        if not 1 <= segment_chunks <= _U32_MAX:
            raise FormatUsageError(f"chunks per segment {segment_chunks} out of range")
        if not 0 < sample_rate <= _U32_MAX:
            raise FormatUsageError(f"sample rate {sample_rate} out of range")
        if not 0 <= start_time_ms < 1 << 64:
            raise FormatUsageError(f"start time {start_time_ms} out of range")
        self.encoding = Encoding.parse(encoding)
        if self.encoding is Encoding.ULAW:
            raise FormatUsageError("µ-law without codec tags is written only by format 1")
        self.codecs = codecs
        self.segment_index = segment_index
        self.chunk_frames = chunk_frames
        self.segment_chunks = segment_chunks
        self._aead = AESGCM(data_key)
        fields = _HEADER_FIELDS.pack(
            MAGIC,
            FORMAT_VERSION,
            self.encoding,
            CHANNELS,
            0,
            sample_rate,
            recording_id.bytes,
            segment_index,
            chunk_frames,
            segment_chunks,
            start_time_ms,
        )
        self.header = fields + _header_tag(self._aead, fields, segment_index)
        self.first_frame = segment_index * segment_chunks * chunk_frames
        self.next_chunk_index = 0
        self.finished = False  # the final chunk is sealed, or the segment is full

    def seal_chunk(
        self,
        chunk_index: int,
        first_frame: int,
        block: npt.NDArray[np.integer[Any]],
        final: bool,
    ) -> bytes:
        """The bytes to append for one chunk of ``block`` (shape ``(n, 2)``): wire samples
        (uint16) for ``G711``, int16 for ``PCM16``.

        Every chunk but the final one holds exactly ``chunk_frames`` frames; the final
        chunk holds ``0 ..= chunk_frames``.  ``first_frame`` is the recording-wide index of
        the block's first frame, which the fixed chunk size determines.
        """
        if self.finished:
            raise FormatUsageError("the segment is finished: no chunk may follow")
        if chunk_index != self.next_chunk_index:
            raise FormatUsageError(
                f"chunk {chunk_index} sealed out of order (next is {self.next_chunk_index}): "
                "a nonce must never be used twice"
            )
        expected_first = self.first_frame + chunk_index * self.chunk_frames
        if first_frame != expected_first:
            raise FormatUsageError(f"chunk {chunk_index} must start at frame {expected_first}")
        dtype = np.uint16 if self.encoding is Encoding.G711 else np.int16
        if block.ndim != 2 or block.shape[1] != CHANNELS or block.dtype != dtype:
            raise FormatUsageError(
                f"a {self.encoding.name} block is {np.dtype(dtype)} of shape (n, 2), "
                f"not {block.dtype}{block.shape}"
            )
        frames = block.shape[0]
        if frames > self.chunk_frames or (not final and frames != self.chunk_frames):
            raise FormatUsageError(
                f"{frames} frames: a chunk holds {self.chunk_frames}, a final one at most that"
            )
        flags = FLAG_FINAL if final else 0
        nonce = chunk_nonce(self.segment_index, chunk_index)
        plaintext = _FIRST_FRAME.pack(first_frame) + self._audio(block)
        body = self._aead.encrypt(nonce, plaintext, chunk_aad(self.header, chunk_index, flags))
        self.next_chunk_index += 1
        self.finished = final or self.next_chunk_index == self.segment_chunks
        return _CHUNK_PREFIX.pack(len(body), len(body) ^ _U32_MAX, flags, nonce) + body

    def _audio(self, block: npt.NDArray[np.integer[Any]]) -> bytes:
        """A chunk's stored audio: for G711 the codec tags, then the code bytes."""
        if self.encoding is not Encoding.G711:
            return np.ascontiguousarray(block, dtype="<i2").tobytes()
        self.codecs, codes = _chunk_codes(block.view(np.uint16), self.codecs)
        return bytes(self.codecs) + codes.tobytes()


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChunkSpan:
    """Where one complete chunk lies in a segment file (structure only, not verified)."""

    index: int
    offset: int  # of the length prefix
    body_size: int  # L
    final: bool
    frames: int

    @property
    def end(self) -> int:
        return self.offset + CHUNK_PREFIX_SIZE + self.body_size


@dataclass(frozen=True, slots=True)
class SegmentChunk:
    """A verified, decrypted chunk.  ``payload`` is its stored audio bytes; ``codecs``
    the payload types of its channels' laws (G711 chunks only)."""

    index: int
    first_frame: int
    frames: int
    final: bool
    payload: bytes
    codecs: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class SegmentScan:
    """The structure of a segment file, walked without the key.

    ``header`` is None only when a truncated file ends inside its header.
    ``trailing_bytes`` counts bytes after the last complete chunk (an incomplete chunk
    cut by a crash, or a zero-filled tail).
    """

    name: str
    header: SegmentHeader | None
    chunks: tuple[ChunkSpan, ...]
    final_seen: bool
    trailing_bytes: int

    @property
    def frames(self) -> int:
        return sum(chunk.frames for chunk in self.chunks)


@dataclass(frozen=True, slots=True)
class SegmentContents:
    """A verified, decrypted segment.  ``header`` is None as in :class:`SegmentScan`."""

    name: str
    header: SegmentHeader | None
    chunks: tuple[SegmentChunk, ...]
    final_seen: bool
    trailing_bytes: int

    @property
    def frames(self) -> int:
        return sum(chunk.frames for chunk in self.chunks)

    def audio(self) -> npt.NDArray[np.int16]:
        """The ``(frames, 2)`` int16 audio of all chunks."""
        if self.header is None or self.header.encoding is Encoding.PCM16:
            pcm = np.frombuffer(b"".join(c.payload for c in self.chunks), dtype="<i2")
            return pcm.astype(np.int16).reshape(-1, CHANNELS)
        return wire_decode(self.wire())

    def wire(self) -> npt.NDArray[np.uint16]:
        """The ``(frames, 2)`` wire samples of all chunks (G.711 encodings only)."""
        if self.header is None:
            return np.zeros((0, CHANNELS), dtype=np.uint16)
        encoding = self.header.encoding
        parts = [stored_wire(c.payload, encoding, c.codecs) for c in self.chunks]
        return np.concatenate(parts) if parts else np.zeros((0, CHANNELS), dtype=np.uint16)


class _Walker:
    """Walks the chunk framing of a segment in order, raising at the first fault."""

    def __init__(self, data: bytes, header: SegmentHeader, name: str, allow_truncated: bool):
        self.data = data
        self.header = header
        self.name = name
        self.allow_truncated = allow_truncated
        self.trailing_bytes = 0
        self.final_seen = False

    def _cut(self, index: int, pos: int, needed: int) -> None:
        remaining = len(self.data) - pos
        if self.allow_truncated:
            self.trailing_bytes = remaining
            return
        raise RecordingCorrupt(
            self.name,
            index,
            f"file ends inside the chunk ({remaining} of {needed} bytes): cut by a crash, "
            "or truncated",
            truncated=True,
        )

    def __iter__(self) -> Iterator[ChunkSpan]:
        data, header, name = self.data, self.header, self.name
        pos, index = HEADER_SIZE, 0
        while pos < len(data):
            remaining = len(data) - pos
            if self.allow_truncated and not any(memoryview(data)[pos:]):
                self.trailing_bytes = remaining  # unwritten, zero-filled tail
                return
            if self.final_seen:
                raise RecordingCorrupt(name, index, "data after the final chunk")
            if remaining < CHUNK_PREFIX_SIZE:
                self._cut(index, pos, CHUNK_PREFIX_SIZE)
                return
            size, check, flags, _ = _CHUNK_PREFIX.unpack_from(data, pos)
            if size ^ check != _U32_MAX:
                raise RecordingCorrupt(name, index, "length prefix damaged (L and ~L disagree)")
            if flags & ~FLAG_FINAL:
                raise RecordingCorrupt(name, index, f"unknown flag bits {flags:#04x}")
            final = bool(flags & FLAG_FINAL)
            audio_bytes = size - header.chunk_overhead
            if audio_bytes < 0 or size > header.full_body_size or audio_bytes % header.frame_bytes:
                raise RecordingCorrupt(name, index, f"impossible chunk length {size}")
            if not final and size != header.full_body_size:
                raise RecordingCorrupt(
                    name, index, f"a chunk that is not final holds {header.chunk_frames} frames"
                )
            if index >= header.segment_chunks:
                raise RecordingCorrupt(
                    name, index, f"more than {header.segment_chunks} chunks in one segment"
                )
            if remaining < CHUNK_PREFIX_SIZE + size:
                self._cut(index, pos, CHUNK_PREFIX_SIZE + size)
                return
            yield ChunkSpan(index, pos, size, final, audio_bytes // header.frame_bytes)
            self.final_seen = final
            pos += CHUNK_PREFIX_SIZE + size
            index += 1
        if not self.allow_truncated and not self.final_seen and index < header.segment_chunks:
            raise RecordingCorrupt(
                name,
                index,
                f"segment ends after {index} chunks without the final chunk: truncated",
                truncated=True,
            )


def _load(source: bytes | str | os.PathLike[str], name: str | None) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), name or "<segment>"
    path = Path(source)
    return path.read_bytes(), name or path.name


def _start(
    data: bytes, name: str, allow_truncated: bool, expected_index: int | None
) -> SegmentHeader | None:
    if len(data) < HEADER_SIZE:
        if allow_truncated:
            return None
        raise RecordingCorrupt(
            name, None, f"file ends inside the header ({len(data)} bytes)", truncated=True
        )
    header = SegmentHeader.parse(data, name)
    if expected_index is not None and header.segment_index != expected_index:
        raise RecordingCorrupt(
            name,
            None,
            f"header says segment {header.segment_index}: segment files renamed or swapped",
        )
    return header


def scan_segment(
    source: bytes | str | os.PathLike[str],
    *,
    allow_truncated: bool = False,
    name: str | None = None,
    expected_index: int | None = None,
) -> SegmentScan:
    """Walk a segment's framing without decrypting (the key is not needed).

    Finds the complete chunks and what follows them; it cannot tell altered bytes inside a
    chunk (only :func:`read_segment` can).
    """
    data, name = _load(source, name)
    header = _start(data, name, allow_truncated, expected_index)
    if header is None:
        return SegmentScan(name, None, (), False, len(data))
    walker = _Walker(data, header, name, allow_truncated)
    spans = tuple(walker)
    return SegmentScan(name, header, spans, walker.final_seen, walker.trailing_bytes)


def _diagnose_nonce(
    aead: AESGCM, header: SegmentHeader, span: ChunkSpan, nonce: bytes, body: bytes, flags: int
) -> str:
    kind, seg, chunk = _NONCE.unpack(nonce)
    if kind != NONCE_KIND_CHUNK or nonce[1:4] != b"\0\0\0":
        return "nonce damaged (not a chunk nonce)"
    if seg != header.segment_index:
        return (
            f"chunk carries the nonce of segment {seg} chunk {chunk}: moved here from another "
            "segment, or its nonce bytes damaged"
        )
    try:
        aead.decrypt(nonce, body, chunk_aad(header.raw, chunk, flags))
    except InvalidTag:
        return f"nonce says chunk {chunk} but the chunk does not verify as it: nonce damaged"
    return f"this is chunk {chunk} of this segment, found at position {span.index}: reordered"


def verified_header(
    data: bytes,
    data_key: bytes,
    recording_id: uuid.UUID,
    name: str,
    allow_truncated: bool = False,
    expected_index: int | None = None,
) -> SegmentHeader | None:
    """The segment's header, checked before any chunk is looked at: its place, its
    recording and its tag (None when a truncated file ends inside it)."""
    header = _start(data, name, allow_truncated, expected_index)
    if header is None:
        return None
    if header.recording_id != recording_id:
        raise RecordingCorrupt(
            name,
            None,
            f"header names recording {header.recording_id}, not {recording_id}: "
            "a segment of another recording (or a damaged header)",
        )
    verify_header(header, data_key, name)
    return header


def read_segment(
    source: bytes | str | os.PathLike[str],
    data_key: bytes,
    recording_id: uuid.UUID,
    *,
    allow_truncated: bool = False,
    name: str | None = None,
    expected_index: int | None = None,
) -> SegmentContents:
    """Verify and decrypt one segment (a file path or its bytes).

    Raises :class:`RecordingCorrupt` naming the segment and the chunk at the first fault:
    altered bytes, a chunk moved, swapped or spliced in, a header of another recording,
    or missing data at the end.  With ``allow_truncated`` an incomplete tail (a crash cut)
    is reported in ``trailing_bytes`` instead, and every complete chunk before it returned;
    a complete chunk that fails verification still raises.
    """
    data, name = _load(source, name)
    header = verified_header(data, data_key, recording_id, name, allow_truncated, expected_index)
    if header is None:
        return SegmentContents(name, None, (), False, len(data))
    aead = AESGCM(data_key)
    walker = _Walker(data, header, name, allow_truncated)
    chunks = []
    for span in walker:
        _, _, flags, nonce = _CHUNK_PREFIX.unpack_from(data, span.offset)
        body = data[span.offset + CHUNK_PREFIX_SIZE : span.end]
        if nonce != chunk_nonce(header.segment_index, span.index):
            reason = _diagnose_nonce(aead, header, span, nonce, body, flags)
            raise RecordingCorrupt(name, span.index, reason)
        try:
            plaintext = aead.decrypt(nonce, body, chunk_aad(header.raw, span.index, flags))
        except InvalidTag:
            raise RecordingCorrupt(
                name,
                span.index,
                "authentication failed: the chunk's bytes were altered, or it was sealed "
                "under another recording's key (spliced in)",
            ) from None
        (first_frame,) = _FIRST_FRAME.unpack_from(plaintext)
        expected = header.chunk_first_frame(span.index)
        if first_frame != expected:
            raise RecordingCorrupt(
                name, span.index, f"starts at frame {first_frame}, expected {expected}"
            )
        tags = header.encoding.tag_size
        codecs = None
        if tags:
            left, right = plaintext[FIRST_FRAME_SIZE : FIRST_FRAME_SIZE + tags]
            if left not in TAG_CODECS or right not in TAG_CODECS:
                raise RecordingCorrupt(name, span.index, f"unknown codec tags {left}, {right}")
            codecs = (left, right)
        payload = plaintext[FIRST_FRAME_SIZE + tags :]
        chunks.append(
            SegmentChunk(span.index, first_frame, span.frames, span.final, payload, codecs)
        )
    return SegmentContents(name, header, tuple(chunks), walker.final_seen, walker.trailing_bytes)
