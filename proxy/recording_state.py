"""The one ``RecordingState``: where a recording is in its life, and the moves it may make.

The media recorder, the segment writer, the recording service and the catalog all speak
of the same thing, so they share this enum (values are what the catalog stores and the
API shows).  Like :mod:`proxy.events` it imports nothing from recproxy, so every layer
may use it.

    recording ──pause──▶ paused ──resume──▶ recording
        │  ▲                │
      stop  resume        stop
        ▼  │                ▼
       stopped ◀────────────┘

and from any live state (recording, paused, stopped) the recording ends as one of the
final states: complete, degraded (ended with more audio lost than the limits allow),
failed (a write failed; its call may still discard what was written), discarded
(destroyed on request) or interrupted (the process died; found at the next start).

An ended recording that kept audio (complete, degraded, failed, interrupted) is removed
when its retention period is over and no hold keeps it: deleting (marked first, so a
row never looks readable over missing files; the key is destroyed, then the files)
and then deleted (the row stays, with when and why).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class RecordingState(StrEnum):
    RECORDING = "recording"
    PAUSED = "paused"  # held or paused: the gap is recorded as silence or skipped
    STOPPED = "stopped"  # switched off on request; resume starts a new span
    COMPLETE = "complete"
    DEGRADED = "degraded"
    FAILED = "failed"
    DISCARDED = "discarded"
    INTERRUPTED = "interrupted"
    DELETING = "deleting"  # retention deletion under way: the key may already be gone
    DELETED = "deleted"  # removed after its retention period: no key, no files

    @property
    def live(self) -> bool:
        """Still open: audio may yet be written."""
        return self in LIVE

    @property
    def final(self) -> bool:
        return not self.live

    def can_become(self, new: RecordingState) -> bool:
        """Whether ``self -> new`` is a move a recording may make."""
        return new in TRANSITIONS[self]


LIVE: Final = frozenset({RecordingState.RECORDING, RecordingState.PAUSED, RecordingState.STOPPED})
ENDINGS: Final = frozenset(
    {
        RecordingState.COMPLETE,
        RecordingState.DEGRADED,
        RecordingState.FAILED,
        RecordingState.DISCARDED,
        RecordingState.INTERRUPTED,
    }
)

REMOVAL: Final = frozenset({RecordingState.DELETING, RecordingState.DELETED})

_DELETE: Final = frozenset({RecordingState.DELETING})

TRANSITIONS: Final[dict[RecordingState, frozenset[RecordingState]]] = {
    RecordingState.RECORDING: ENDINGS | {RecordingState.PAUSED, RecordingState.STOPPED},
    RecordingState.PAUSED: ENDINGS | {RecordingState.RECORDING, RecordingState.STOPPED},
    RecordingState.STOPPED: ENDINGS | {RecordingState.RECORDING},
    # a write failure ends the recording, but its call goes on and the files written
    # so far hold audio: the call taker may still discard them (*9, the API)
    RecordingState.FAILED: _DELETE | {RecordingState.DISCARDED},
    # what kept audio is deleted when its retention period is over
    RecordingState.COMPLETE: _DELETE,
    RecordingState.DEGRADED: _DELETE,
    RecordingState.INTERRUPTED: _DELETE,
    RecordingState.DISCARDED: frozenset(),  # nothing is left to delete
    RecordingState.DELETING: frozenset({RecordingState.DELETED}),
    RecordingState.DELETED: frozenset(),
}
