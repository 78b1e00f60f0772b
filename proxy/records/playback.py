"""Playing a recording back: decrypted audio for a person, in memory, never on disk.

A rendering is one recording (or one part's time range of it) as ``wav`` (16-bit PCM,
8 kHz), ``mp3`` or ``g711`` (the stored wire bytes in a WAV), with the channels
``stereo``, ``mono`` (mixed), ``caller`` or ``call_taker`` (one party only: the other
channel is left out, not turned down).  The HTTP API streams it with Range requests;
``recproxy export`` writes it to a file.  Both decode through here, so an exported WAV
and a played one are the same bytes.

Two steps, so that a caller can decide before any key is touched:

1. :func:`find_playable` reads the catalog: the recording must exist and hold audio
   (not deleted, discarded or still open), and the part asked for must be one of its
   parts.  Its :class:`Playable` names the part, which the access policy asks about.
2. :func:`render` unwraps the recording's data key and walks the segment files' framing
   (no audio is decrypted yet) to know how many frames the range holds.

A WAV rendering knows its ``length`` from the frame count alone (44 header bytes and the
samples), so a player gets the length at once and each range is decrypted only when it
is read, one 10-second segment at a time, in a worker thread: an hour-long call never
blocks the event loop and never sits in memory whole (a range costs about one decoded
segment, ~0.5 MB).  Every chunk is authenticated as it is decrypted, so no altered audio
is ever served; a damaged chunk ends the stream with :class:`RecordingUnreadable`.  An
MP3 is encoded whole first (ffmpeg reads the PCM from a pipe and writes into an anonymous
memory file): 32 kbit/s is 14.4 MB for an hour.  A G.711 WAV is built whole too (its
header names the law, known only once every chunk is read): 58 MB a call-hour.

The part's range is measured from the recording's ``started_at`` (the writer's first
frame was stamped with the same instant), and a part ends where the next one begins,
so the parts of a recording tile its audio exactly; the last part runs to the end.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..recording_state import RecordingState
from ..storage.catalog import Catalog, NotFoundError, Recording, RecordingPart
from ..storage.crypto import StorageCryptoError
from ..storage.export import (
    WAV_HEADER_SIZE,
    ChannelChoice,
    EncodingError,
    channel_count,
    encode_mp3,
    g711_wav,
    pcm16,
    wav_header,
)
from ..storage.reader import Layout, RecordingReader, SegmentAudio
from ..storage.segment import Encoding, RecordingCorrupt
from ..storage.store import SegmentStore
from .errors import RangeNotSatisfiable, RecordingActionError, RecordingUnreadable, RecordNotFound

AudioFormat = Literal["wav", "mp3", "g711"]
AUDIO_FORMATS: tuple[AudioFormat, ...] = ("wav", "mp3", "g711")
CONTENT_TYPES: dict[AudioFormat, str] = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "g711": "audio/wav",
}


@dataclass(frozen=True, slots=True)
class Playable:
    """A recording that holds audio, and the part of it asked for (None: all of it)."""

    recording: Recording
    parts: tuple[RecordingPart, ...]
    part: RecordingPart | None = None


async def find_playable(catalog: Catalog, recording_id: str, part: int | None = None) -> Playable:
    """The recording ``recording_id`` (and its part ``part``, numbered from 1), if it holds
    audio to play.  :class:`RecordNotFound` for an unknown recording or part,
    :class:`RecordingActionError` for one with no audio left or still being recorded.
    Reads the catalog only: no key, no file."""
    recording = await catalog.recordings.get_recording(recording_id)
    if recording is None:
        raise RecordNotFound(f"no recording {recording_id}")
    _check_holds_audio(recording)
    try:
        parts = tuple(await catalog.parts.parts(recording.id))
    except NotFoundError:  # deleted between the two reads
        raise RecordNotFound(f"no recording {recording_id}") from None
    if part is None:
        return Playable(recording, parts)
    for candidate in parts:
        if candidate.part == part:
            return Playable(recording, parts, candidate)
    numbers = ", ".join(str(p.part) for p in parts)
    raise RecordNotFound(f"recording {recording.id} has no part {part} (its parts: {numbers})")


def _check_holds_audio(recording: Recording) -> None:
    state = recording.state
    if state is RecordingState.DISCARDED:
        raise RecordingActionError(f"recording {recording.id} was discarded; no audio exists")
    if state is RecordingState.DELETED:
        deleted = recording.deleted_at
        raise RecordingActionError(
            f"recording {recording.id} was deleted"
            f"{'' if deleted is None else f' {deleted:%Y-%m-%d}'} "
            f"({recording.deleted_reason}); no audio exists"
        )
    if state is RecordingState.DELETING:
        raise RecordingActionError(
            f"recording {recording.id} is being deleted (its retention period is over)"
        )
    if state.live:  # recording, paused or stopped: its call goes on
        raise RecordingActionError(f"recording {recording.id} is still open ({state.value})")


class Rendering(abc.ABC):
    """Rendered audio the HTTP layer can stream with Range: ``content_type``, ``length``
    in bytes, and :meth:`chunks` for any byte range of it."""

    def __init__(self, content_type: str, length: int, frames: int, sample_rate: int) -> None:
        self.content_type = content_type
        self.length = length
        self.frames = frames
        self.sample_rate = sample_rate

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    def byte_range(self, start: int = 0, end: int | None = None) -> tuple[int, int]:
        """``[start, end]`` (inclusive, as HTTP counts; ``end`` None or past the end: to
        the last byte).  :class:`RangeNotSatisfiable` (416) when ``start`` is not in the
        content or ``end`` is before it."""
        last = self.length - 1 if end is None else min(end, self.length - 1)
        if not 0 <= start < self.length or last < start:
            raise RangeNotSatisfiable(
                f"bytes {start}-{'' if end is None else end} are not in the "
                f"{self.length} bytes of the audio",
                self.length,
            )
        return start, last

    def chunks(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes ``[start, end]`` in pieces, decoded as they are read.  The range is
        checked now (before a response is begun), the audio when iterated."""
        first, last = self.byte_range(start, end)
        return self._read(first, last + 1)

    async def sha256(self) -> str:
        """The SHA-256 of the whole rendering, decoded piece by piece."""
        digest = hashlib.sha256()
        async for piece in self.chunks():
            digest.update(piece)
        return digest.hexdigest()

    @abc.abstractmethod
    def _read(self, start: int, stop: int) -> AsyncIterator[bytes]:
        """The bytes ``[start, stop)``, already checked to be in the content."""


class _InMemory(Rendering):
    """A rendering encoded whole (MP3, G.711 WAV)."""

    def __init__(self, content_type: str, data: bytes, frames: int, sample_rate: int) -> None:
        super().__init__(content_type, len(data), frames, sample_rate)
        self._data = data

    async def _read(self, start: int, stop: int) -> AsyncIterator[bytes]:
        yield self._data[start:stop]


class _Frames:
    """Frames ``[first, end)`` of a recording, decrypted one segment at a time."""

    def __init__(self, reader: RecordingReader, layout: Layout, first: int, end: int) -> None:
        self.reader, self.layout, self.first, self.end = reader, layout, first, end

    def __len__(self) -> int:
        return self.end - self.first

    def blocks(self, first: int = 0, end: int | None = None) -> Iterator[SegmentAudio]:
        """The audio of frames ``[first, end)`` of the range, in segment-sized blocks."""
        low = self.first + first
        high = self.end if end is None else self.first + end
        for span in self.layout.segments:
            lo = max(low, span.first_frame)
            hi = min(high, span.first_frame + span.frames)
            if lo >= hi:
                continue
            segment = self.reader.decode(self.layout, span)
            window = slice(lo - span.first_frame, hi - span.first_frame)
            wire = None if segment.wire is None else segment.wire[window]
            yield SegmentAudio(segment.audio[window], wire)

    def wire(self) -> npt.NDArray[np.uint16]:
        """The stored wire samples of the whole range (G.711 recordings only)."""
        blocks = [b.wire for b in self.blocks() if b.wire is not None]
        return np.concatenate(blocks) if blocks else np.zeros((0, 2), dtype=np.uint16)


class _StreamedWav(Rendering):
    """A 16-bit PCM WAV whose samples are decrypted when a range of them is read."""

    def __init__(self, frames: _Frames, channels: ChannelChoice, sample_rate: int) -> None:
        count = channel_count(channels)
        self._header = wav_header(len(frames), count, sample_rate)
        self._frame_bytes = count * 2
        self._frames = frames
        self._channels = channels
        super().__init__(
            CONTENT_TYPES["wav"],
            WAV_HEADER_SIZE + len(frames) * self._frame_bytes,
            len(frames),
            sample_rate,
        )

    async def _read(self, start: int, stop: int) -> AsyncIterator[bytes]:
        if start < WAV_HEADER_SIZE:
            yield self._header[start:stop]
        data_start, data_stop = max(start - WAV_HEADER_SIZE, 0), stop - WAV_HEADER_SIZE
        if data_stop <= data_start:
            return
        first = data_start // self._frame_bytes
        end = -(-data_stop // self._frame_bytes)
        blocks = self._frames.blocks(first, end)
        offset = first * self._frame_bytes  # data offset of the next block's first byte
        while True:
            pcm = await asyncio.to_thread(self._next_pcm, blocks)
            if pcm is None:
                return
            piece = pcm[max(data_start - offset, 0) : data_stop - offset]
            offset += len(pcm)
            yield piece

    def _next_pcm(self, blocks: Iterator[SegmentAudio]) -> bytes | None:
        """The next block's PCM (in the worker thread: this is where it is decrypted)."""
        try:
            block = next(blocks, None)
        except RecordingCorrupt as exc:
            raise RecordingUnreadable(f"the audio failed verification: {exc}") from None
        except OSError as exc:
            raise RecordingUnreadable(f"the audio cannot be read: {exc}") from None
        return None if block is None else pcm16(block.audio, self._channels)


async def render(
    playable: Playable,
    *,
    format: AudioFormat = "wav",
    channels: ChannelChoice = "stereo",
    recordings_dir: Path,
    private_key: X25519PrivateKey,
    store: SegmentStore | None = None,
) -> Rendering:
    """Ready ``playable`` to be read as ``format`` with ``channels``.  For WAV nothing is
    decrypted yet; MP3 and G.711 are encoded now.  :class:`RecordingUnreadable` when the
    key does not open the recording or its files fail verification;
    :class:`~proxy.storage.export.EncodingError` when the format cannot be made (no
    ffmpeg; a G.711 file of both laws, or of a mono mix).  ``store``: where the files are
    (the local disk when None)."""
    if format not in AUDIO_FORMATS:
        raise ValueError(f"format must be one of {', '.join(AUDIO_FORMATS)}, not {format!r}")
    recording = playable.recording
    try:
        frames = await asyncio.to_thread(_open, playable, recordings_dir, private_key, store)
        rate = frames.layout.report.sample_rate
        if format == "wav":
            return _StreamedWav(frames, channels, rate)
        if format == "mp3":
            blocks = (pcm16(block.audio, channels) for block in frames.blocks())
            mp3 = await asyncio.to_thread(
                encode_mp3, blocks, channel_count(channels), sample_rate=rate
            )
            return _InMemory(CONTENT_TYPES["mp3"], mp3, len(frames), rate)
        if frames.layout.report.encoding is Encoding.PCM16:
            raise EncodingError("a PCM16 recording holds no G.711 bytes: use --format wav")
        wire = await asyncio.to_thread(frames.wire)
        data = await asyncio.to_thread(g711_wav, wire, channels, sample_rate=rate)
        return _InMemory(CONTENT_TYPES["g711"], data, len(frames), rate)
    except RecordingCorrupt as exc:
        raise RecordingUnreadable(f"recording {recording.id} failed verification: {exc}") from None
    except OSError as exc:
        raise RecordingUnreadable(f"recording {recording.id} cannot be read: {exc}") from None


def _open(
    playable: Playable,
    recordings_dir: Path,
    private_key: X25519PrivateKey,
    store: SegmentStore | None,
) -> _Frames:
    """Unwrap the key and walk the files (in the worker thread)."""
    recording = playable.recording
    try:
        reader = RecordingReader(recordings_dir / recording.directory, private_key, store=store)
    except StorageCryptoError as exc:
        raise RecordingUnreadable(f"recording {recording.id}: {exc}") from None
    interrupted = recording.state is RecordingState.INTERRUPTED
    layout = reader.layout(allow_truncated=interrupted)
    total = layout.report.frames
    first, end = _part_frames(playable, layout.report.sample_rate, total)
    return _Frames(reader, layout, first, end)


def _part_frames(playable: Playable, sample_rate: int, total: int) -> tuple[int, int]:
    """The frames ``[first, end)`` of the part asked for (all ``total`` frames when none
    was): from its start to the next part's start, or to the end for the last part."""
    part = playable.part
    if part is None:
        return 0, total
    origin = playable.recording.started_at
    later = [p for p in playable.parts if p.part > part.part]
    first = (
        0 if part.part == playable.parts[0].part else part_frame(origin, part, sample_rate, total)
    )
    end = part_frame(origin, later[0], sample_rate, total) if later else total
    return first, max(first, end)


def part_frame(origin: datetime, part: RecordingPart, sample_rate: int, total: int) -> int:
    """The frame (of ``total``) where ``part`` begins in a recording that started at
    ``origin``: where playback cuts a part, and where the console's waveform marks it."""
    offset_ms = round((part.started_at - origin).total_seconds() * 1000)
    return min(max(offset_ms * sample_rate // 1000, 0), total)
