"""What the writer thread tells its listeners: each segment it finished, each recording
it is done with, and the first audio it had to drop.

These facts are known while writing (the hash is updated chunk by chunk), so the
recording service catalogues them as they happen and never reads a segment back.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..recording_state import RecordingState

# A recording id: a uuid.UUID, or its text form.  Typed Hashable so that the writer's
# ``submit`` is a recorder ``Sink`` (whose call keys are Hashable).
RecordingKey = Hashable


@dataclass(frozen=True, slots=True)
class SegmentWritten:
    """A segment the writer finished: its facts as written, so nobody reads it back.

    ``sha256`` is the hex digest of every byte appended (computed while writing).  A
    segment cut short by a failure is reported with what was wholly appended before it."""

    recording_id: RecordingKey  # as given to ``open``
    index: int
    name: str
    path: Path
    first_frame: int
    chunks: int
    frames: int
    bytes: int
    sha256: str


@dataclass(frozen=True, slots=True)
class RecordingWritten:
    """A recording the writer is done with: ``state`` COMPLETE (its final chunk is
    written), FAILED (``reason`` says why; what was sealed stays) or DISCARDED, with the
    totals over its segments and the hash of its wrapped key (None if none was written)."""

    recording_id: RecordingKey
    state: RecordingState
    reason: str
    segments: int = 0
    frames: int = 0
    bytes: int = 0
    key_sha256: str | None = None
    frames_dropped: int = 0  # dropped because the queue was full, written as silence


class WriterListener(Protocol):
    """Told what the writer did; with a ``loop``, each call runs there."""

    def segment_written(self, segment: SegmentWritten) -> None: ...

    def recording_written(self, recording: RecordingWritten) -> None: ...

    def audio_dropped(self, recording_id: RecordingKey, reason: str) -> None:
        """The queue was full: the recording's first dropped block (said once)."""
        ...
