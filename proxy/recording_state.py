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

TRANSITIONS: Final[dict[RecordingState, frozenset[RecordingState]]] = {
    RecordingState.RECORDING: ENDINGS | {RecordingState.PAUSED, RecordingState.STOPPED},
    RecordingState.PAUSED: ENDINGS | {RecordingState.RECORDING, RecordingState.STOPPED},
    RecordingState.STOPPED: ENDINGS | {RecordingState.RECORDING},
    # a write failure ends the recording, but its call goes on and the files written
    # so far hold audio: the call taker may still discard them (*9, the API)
    RecordingState.FAILED: frozenset({RecordingState.DISCARDED}),
    # the rest stay final (deletion after retention is the records layer's, and leaves
    # the catalog entry's state alone)
    **{state: frozenset() for state in ENDINGS - {RecordingState.FAILED}},
}
