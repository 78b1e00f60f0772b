"""What the call takers' API shows of an active call.

One function of plain values, so the API's view is tested without a call and the call
does not grow a representation of itself for every reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..recording_state import RecordingState


@dataclass(frozen=True, slots=True)
class CallView:
    id: str
    phase: str
    outbound: bool
    caller: str
    callee: str
    service: str | None
    operator: str | None
    started_at: datetime
    recording: RecordingState | None  # None until bridged with a recording
    recorded: bool  # whether this call is to be recorded at all

    def describe(self) -> dict[str, Any]:
        """The API's JSON object; ``recording`` is the state's value, or says why
        there is none."""
        if self.recording is not None:
            recording = self.recording.value
        else:
            recording = "not started" if self.recorded else "not recorded"
        return {
            "id": self.id,
            "phase": self.phase,
            "direction": "outbound" if self.outbound else "inbound",
            "caller": self.caller,
            "callee": self.callee,
            "service": self.service,
            "operator": self.operator,
            "started_at": self.started_at.isoformat().replace("+00:00", "Z"),
            "recording": recording,
        }
