"""Checking a recording's files without handing out its audio (P10): what a supplier's
maintenance staff run to see that the archive is sound.

:func:`verify_recording` compares every segment file with its catalog row — present,
the size and SHA-256 the writer recorded when it closed the segment, no file the
catalog does not know — and then reads the recording as playback would: the data key
unwrapped with the records service's private key, the framing walked
(:meth:`~proxy.storage.reader.RecordingReader.layout`), and every chunk authenticated
and decrypted one segment at a time (:meth:`~proxy.storage.reader.RecordingReader.decode`),
its chunk and frame counts held against the catalog's.  The decrypted audio is dropped
as soon as its tag is checked: the report says what is wrong and where, never what was
said.  Only the key holder can tell an altered chunk from a sound one, which is why
this runs in the records service, not in the call proxy.

The files are read in a worker thread: never file I/O on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..recording_state import RecordingState
from ..storage.catalog import Catalog, Recording, Segment
from ..storage.crypto import StorageCryptoError
from ..storage.reader import RecordingReader
from ..storage.segment import RecordingCorrupt
from ..storage.store import LocalDiskStore, SegmentStore
from .playback import find_playable


@dataclass(frozen=True, slots=True)
class SegmentCheck:
    """One segment file: its catalog row's facts and what was found wrong (none: sound)."""

    index: int
    file_name: str
    chunks: int
    frames: int
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "file": self.file_name,
            "chunks": self.chunks,
            "frames": self.frames,
            "ok": self.ok,
            "problems": list(self.problems),
        }


@dataclass(frozen=True, slots=True)
class IntegrityReport:
    """A recording's check: each segment's, and what concerns the whole recording (its
    key, a file the catalog does not know, the chunks a walk or decryption refused)."""

    recording_id: str
    state: RecordingState
    segments: tuple[SegmentCheck, ...]
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems and all(segment.ok for segment in self.segments)

    def as_dict(self) -> dict[str, object]:
        return {
            "recording_id": self.recording_id,
            "state": self.state.value,
            "ok": self.ok,
            "segments": [segment.as_dict() for segment in self.segments],
            "problems": list(self.problems),
            "audio_returned": False,
        }


async def verify_recording(
    catalog: Catalog,
    recording_id: str,
    recordings_dir: Path,
    private_key: X25519PrivateKey,
    store: SegmentStore | None = None,
) -> IntegrityReport:
    """Check ``recording_id``'s files against the catalog and decrypt every chunk to
    authenticate it (see the module).  ``RecordNotFound`` for an unknown recording,
    ``RecordingActionError`` for one with no audio left or still being recorded."""
    recording = (await find_playable(catalog, recording_id)).recording
    segments = await catalog.recordings.segments(recording.id)
    files = store if store is not None else LocalDiskStore()
    return await asyncio.to_thread(_check, recording, segments, recordings_dir, private_key, files)


def _check(
    recording: Recording,
    segments: list[Segment],
    recordings_dir: Path,
    private_key: X25519PrivateKey,
    store: SegmentStore,
) -> IntegrityReport:
    directory = recordings_dir / recording.directory
    checks = {s.segment_index: _file_problems(store, directory, s) for s in segments}
    problems: list[str] = []
    try:
        problems += [
            f"{name}: a segment file the catalog does not list"
            for name in store.segments(directory)
            if name not in {s.file_name for s in segments}
        ]
        _decrypt_all(store, directory, recording, segments, private_key, checks)
    except StorageCryptoError as exc:
        problems.append(f"the data key does not open: {exc}")
    except RecordingCorrupt as exc:
        problems.append(f"failed verification: {exc}")
    except OSError as exc:
        problems.append(f"cannot be read: {exc.strerror or exc}")
    return IntegrityReport(
        recording.id,
        recording.state,
        tuple(
            SegmentCheck(
                s.segment_index, s.file_name, s.chunks, s.frames, tuple(checks[s.segment_index])
            )
            for s in segments
        ),
        tuple(problems),
    )


def _file_problems(store: SegmentStore, directory: Path, segment: Segment) -> list[str]:
    """What the file of ``segment`` lacks against its catalog row (its bytes)."""
    try:
        data = store.read(directory, segment.file_name)
    except FileNotFoundError:
        return ["the file is missing"]
    except OSError as exc:
        return [f"the file cannot be read: {exc.strerror or exc}"]
    found = []
    if segment.closed and len(data) != segment.size_bytes:
        found.append(f"{len(data)} bytes, the catalog says {segment.size_bytes}")
    if segment.sha256 is not None and hashlib.sha256(data).hexdigest() != segment.sha256:
        found.append("its SHA-256 differs from the catalog's")
    return found


def _decrypt_all(
    store: SegmentStore,
    directory: Path,
    recording: Recording,
    segments: list[Segment],
    private_key: X25519PrivateKey,
    checks: dict[int, list[str]],
) -> None:
    """Walk and decrypt every segment, noting where its chunks or frames differ from the
    catalog's row; the audio of each is dropped once authenticated."""
    reader = RecordingReader(directory, private_key, store=store)
    layout = reader.layout(allow_truncated=recording.state is RecordingState.INTERRUPTED)
    rows = {s.segment_index: s for s in segments}
    for span in layout.segments:
        reader.decode(layout, span)  # authenticates every chunk; the audio is not kept
        row = rows.get(span.index)
        if row is None:
            continue  # reported as a file the catalog does not list
        if (row.first_frame, row.frames) != (span.first_frame, span.frames):
            checks[span.index].append(
                f"holds frames {span.first_frame}+{span.frames}, "
                f"the catalog says {row.first_frame}+{row.frames}"
            )
