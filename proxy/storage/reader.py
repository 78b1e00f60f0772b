"""Reading a recording directory back: verify, decrypt, and recover after a crash.

:class:`RecordingReader` unwraps the data key with the organisation's private key, then
verifies and decrypts every segment in order, checking that segments and chunks follow
on without a gap, that nothing follows the final chunk, and that the final chunk is
there.  ``read()`` accepts only a complete recording; ``recover()`` keeps every complete
chunk of one that a crash cut short.  Any damaged or misplaced chunk raises
:class:`~proxy.storage.segment.RecordingCorrupt` naming the segment file and chunk.

:func:`recover` needs no key: at start-up the proxy (which holds only the public key)
walks an unfinished recording's framing to learn how much audio survived and marks the
catalog row ``interrupted``.

Files are read through a :class:`~proxy.storage.store.SegmentStore` (the local disk when
none is given), so a recording in an S3 bucket reads exactly as one on the disk.
"""

from __future__ import annotations

import enum
import os
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..media.g711 import wire_decode
from .crypto import unwrap_key, wrapped_key_recording_id
from .segment import (
    CHANNELS,
    KEY_FILE_NAME,
    Encoding,
    RecordingCorrupt,
    SegmentHeader,
    parse_segment_file_name,
    read_segment,
    scan_segment,
    segment_file_name,
    verified_header,
)
from .store import LocalDiskStore, SegmentStore


class Outcome(enum.Enum):
    COMPLETE = "complete"  # the final chunk is there
    INTERRUPTED = "interrupted"  # no final chunk: the writer stopped (crash, power loss)


@dataclass(frozen=True, slots=True)
class RecordingReport:
    """What a recording directory holds.

    ``verified`` is True when every chunk counted was authenticated and decrypted; False
    for the key-less structural scan of :func:`recover`.  ``trailing_bytes`` are the bytes
    of an incomplete chunk (or unwritten tail) after the last complete chunk.
    """

    recording_id: uuid.UUID
    encoding: Encoding | None
    sample_rate: int
    start_time_ms: int | None
    segments: int
    chunks: int
    frames: int
    final_seen: bool
    trailing_bytes: int
    verified: bool

    @property
    def outcome(self) -> Outcome:
        return Outcome.COMPLETE if self.final_seen else Outcome.INTERRUPTED

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


@dataclass(frozen=True, slots=True)
class Recording:
    """Decrypted audio, ``(frames, 2)`` int16 (caller left, call taker right), and report.

    ``wire`` is the same audio as stored G.711 bytes tagged with their law (wire samples,
    see :mod:`proxy.storage.segment`), or None for a PCM16 recording.
    """

    audio: npt.NDArray[np.int16]
    report: RecordingReport
    wire: npt.NDArray[np.uint16] | None = None


def _segment_files(store: SegmentStore, directory: Path) -> list[Path]:
    """The segment files in index order; a gap in the numbering is an error."""
    names = store.segments(directory)
    for expected, name in enumerate(names):
        if parse_segment_file_name(name) != expected:
            raise RecordingCorrupt(
                segment_file_name(expected), None, "segment file missing (the numbering has a gap)"
            )
    return [directory / name for name in names]


def _directory_recording_id(directory: Path) -> uuid.UUID | None:
    try:
        return uuid.UUID(directory.name)
    except ValueError:
        return None


class _Sequence:
    """Checks that segments follow on, with the same parameters, up to one final chunk."""

    def __init__(self, segment_count: int) -> None:
        self.segment_count = segment_count
        self.first: SegmentHeader | None = None
        self.frames = 0
        self.chunks = 0
        self.final_seen = False
        self.trailing_bytes = 0
        self.last_start_ms = 0

    def check_header(self, header: SegmentHeader, name: str) -> None:
        if self.final_seen:
            raise RecordingCorrupt(name, None, "a segment after the final chunk")
        if self.first is None:
            self.first = header
        else:
            first = self.first
            if (
                header.encoding,
                header.sample_rate,
                header.chunk_frames,
                header.segment_chunks,
            ) != (first.encoding, first.sample_rate, first.chunk_frames, first.segment_chunks):
                raise RecordingCorrupt(name, None, "audio parameters differ from segment 0")
            if header.start_time_ms < self.last_start_ms:
                raise RecordingCorrupt(name, None, "starts before the segment before it")
        self.last_start_ms = header.start_time_ms

    def check_chunk(self, name: str, index: int, first_frame: int, frames: int) -> None:
        if first_frame != self.frames:
            raise RecordingCorrupt(
                name, index, f"starts at frame {first_frame}, expected {self.frames}: audio missing"
            )
        self.frames += frames
        self.chunks += 1

    def end_segment(
        self, name: str, header: SegmentHeader | None, chunks: int, final: bool
    ) -> None:
        self.final_seen = final
        if final or header is None:
            return
        if chunks != header.segment_chunks:
            raise RecordingCorrupt(
                name,
                chunks,
                f"segment ends after {chunks} of {header.segment_chunks} chunks without the "
                "final chunk: truncated",
                truncated=True,
            )

    def finish(self, allow_truncated: bool) -> None:
        if self.final_seen or allow_truncated:
            return
        raise RecordingCorrupt(
            segment_file_name(self.segment_count),
            0 if self.segment_count else None,
            "missing: the recording ends without its final chunk (truncated or interrupted)",
            truncated=True,
        )

    def report(self, recording_id: uuid.UUID, verified: bool) -> RecordingReport:
        first = self.first
        return RecordingReport(
            recording_id=recording_id,
            encoding=first.encoding if first else None,
            sample_rate=first.sample_rate if first else 0,
            start_time_ms=first.start_time_ms if first else None,
            segments=self.segment_count,
            chunks=self.chunks,
            frames=self.frames,
            final_seen=self.final_seen,
            trailing_bytes=self.trailing_bytes,
            verified=verified,
        )


@dataclass(frozen=True, slots=True)
class SegmentSpan:
    """Where one segment's audio lies in the recording: frames ``[first_frame,
    first_frame + frames)``, as its framing says (structure only, not yet verified)."""

    path: Path
    index: int
    first_frame: int
    frames: int
    last: bool


@dataclass(frozen=True, slots=True)
class Layout:
    """The segments of a recording and what they hold, walked without decrypting."""

    segments: tuple[SegmentSpan, ...]
    report: RecordingReport
    truncated: bool  # walked as a recording a crash may have cut short


@dataclass(frozen=True, slots=True)
class SegmentAudio:
    """One verified, decrypted segment: ``(frames, 2)`` int16 audio, and the stored
    wire samples (None for a PCM16 recording)."""

    audio: npt.NDArray[np.int16]
    wire: npt.NDArray[np.uint16] | None


def _walk(
    store: SegmentStore,
    directory: Path,
    rid: uuid.UUID,
    allow_truncated: bool,
    data_key: bytes | None = None,
) -> Layout:
    """The structural walk: segments follow on with the same parameters, chunks without
    a gap, nothing after the final chunk, and (unless ``allow_truncated``) the final
    chunk is there.  With ``data_key`` each header's tag is checked first, so an altered
    header is named as such rather than as a mismatch with the segments after it.  It
    cannot tell altered bytes inside a chunk: decrypting does."""
    files = _segment_files(store, directory)
    sequence = _Sequence(len(files))
    spans: list[SegmentSpan] = []
    for index, path in enumerate(files):
        last = index == len(files) - 1
        cut = allow_truncated and last
        data = store.read(directory, path.name)
        if data_key is not None:
            verified_header(data, data_key, rid, path.name, cut, index)
        try:
            scan = scan_segment(data, allow_truncated=cut, name=path.name, expected_index=index)
        except RecordingCorrupt:
            if data_key is not None:
                # A flipped flag bit can make a chunk look final, and the walk then names
                # the chunk after it; verifying names the altered chunk itself instead
                # (the same fault when every chunk verifies).  Only on this error path.
                read_segment(data, data_key, rid, allow_truncated=cut, name=path.name)
            raise
        if scan.header is not None:
            if scan.header.recording_id != rid:
                raise RecordingCorrupt(
                    path.name, None, f"header names recording {scan.header.recording_id}"
                )
            sequence.check_header(scan.header, path.name)
        first = sequence.frames
        for span in scan.chunks:
            first_frame = scan.header.chunk_first_frame(span.index) if scan.header else 0
            sequence.check_chunk(path.name, span.index, first_frame, span.frames)
        sequence.end_segment(
            path.name, None if last else scan.header, len(scan.chunks), scan.final_seen
        )
        sequence.trailing_bytes += scan.trailing_bytes
        spans.append(SegmentSpan(path, index, first, sequence.frames - first, last))
    sequence.finish(allow_truncated)
    return Layout(tuple(spans), sequence.report(rid, verified=False), allow_truncated)


class RecordingReader:
    """Reads one recording directory with the organisation's private key.

    Raises :class:`~proxy.storage.crypto.WrongPrivateKey` or
    :class:`~proxy.storage.crypto.WrappedKeyError` when the key does not open it, and
    :class:`RecordingCorrupt` when the key file is missing.  ``store``: where the files
    are (the local disk when None).

    ``read()`` and ``recover()`` give the whole recording.  ``layout()`` and ``decode()``
    are the same path one segment at a time, for playback that must not hold an hour of
    audio in memory: the structure is walked once, then each segment is verified and
    decrypted when its audio is wanted.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        private_key: X25519PrivateKey,
        *,
        recording_id: uuid.UUID | None = None,
        store: SegmentStore | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.store: SegmentStore = store if store is not None else LocalDiskStore()
        try:
            blob = self.store.read(self.directory, KEY_FILE_NAME)
        except FileNotFoundError:
            raise RecordingCorrupt(
                None, None, f"no key file in {self.directory}: nothing can be decrypted"
            ) from None
        rid = recording_id or _directory_recording_id(self.directory)
        self.recording_id = rid if rid is not None else wrapped_key_recording_id(blob)
        self._data_key = unwrap_key(blob, private_key, self.recording_id)

    def read(self) -> Recording:
        """The whole recording; it must end with its final chunk."""
        return self._read(allow_truncated=False)

    def recover(self) -> Recording:
        """Every complete chunk of a recording a crash may have cut short."""
        return self._read(allow_truncated=True)

    def layout(self, *, allow_truncated: bool = False) -> Layout:
        """The segments and their frames, checked for structure but not decrypted."""
        return _walk(self.store, self.directory, self.recording_id, allow_truncated, self._data_key)

    def decode(self, layout: Layout, span: SegmentSpan) -> SegmentAudio:
        """Verify and decrypt one segment of ``layout``.  A segment that no longer holds
        the frames the walk found (changed since) is :class:`RecordingCorrupt`."""
        contents = read_segment(
            self.store.read(self.directory, span.path.name),
            self._data_key,
            self.recording_id,
            allow_truncated=layout.truncated and span.last,
            name=span.path.name,
            expected_index=span.index,
        )
        if contents.frames != span.frames:
            raise RecordingCorrupt(
                span.path.name, None, "changed while it was read: the chunks differ from the walk"
            )
        if contents.header is not None and contents.header.encoding is Encoding.PCM16:
            return SegmentAudio(contents.audio(), None)
        wire = contents.wire()
        return SegmentAudio(wire_decode(wire), wire)

    def _read(self, allow_truncated: bool) -> Recording:
        layout = self.layout(allow_truncated=allow_truncated)
        decoded = [self.decode(layout, span) for span in layout.segments]
        report = replace(layout.report, verified=True)
        if report.encoding is Encoding.PCM16:
            return Recording(_joined([d.audio for d in decoded], np.int16), report)
        wire = _joined([d.wire for d in decoded if d.wire is not None], np.uint16)
        return Recording(wire_decode(wire), report, wire)


def _joined(blocks: list[Any], dtype: type[np.generic]) -> Any:
    """The blocks one after another (an empty ``(0, 2)`` array when there are none)."""
    return np.concatenate(blocks) if blocks else np.zeros((0, CHANNELS), dtype=dtype)


def recover(
    directory: str | os.PathLike[str],
    private_key: X25519PrivateKey | None = None,
    *,
    store: SegmentStore | None = None,
) -> RecordingReport:
    """How much of a (possibly crashed) recording survived, in complete chunks.

    Without a key (the proxy at start-up) the framing is walked but the chunks cannot be
    authenticated (``verified`` is False).  With the private key every chunk is verified.
    A recording without a key file recorded nothing (the key is written before audio).
    """
    directory = Path(directory)
    store = store if store is not None else LocalDiskStore()
    if private_key is not None:
        return RecordingReader(directory, private_key, store=store).recover().report
    rid = _directory_recording_id(directory)
    if not store.has_key(directory):
        if rid is None:
            raise RecordingCorrupt(None, None, f"{directory} holds no key and is not named by id")
        return _Sequence(0).report(rid, verified=False)
    if rid is None:
        rid = wrapped_key_recording_id(store.read(directory, KEY_FILE_NAME))
    return _walk(store, directory, rid, allow_truncated=True).report
