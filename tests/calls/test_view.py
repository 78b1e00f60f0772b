"""What the call takers' API shows of an active call."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from proxy.calls.view import CallView
from proxy.recording_state import RecordingState


def view(**changes: object) -> CallView:
    values: dict[str, object] = {
        "id": "c1", "phase": "bridged", "outbound": False, "caller": "+441234567890",
        "callee": "surgery", "service": "gp", "operator": "ann",
        "started_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "recording": RecordingState.RECORDING, "recorded": True,
    }  # fmt: skip
    values.update(changes)
    return CallView(**values)  # type: ignore[arg-type]


def test_the_view_names_the_call_its_parties_and_a_utc_start() -> None:
    assert view().describe() == {
        "id": "c1",
        "phase": "bridged",
        "direction": "inbound",
        "caller": "+441234567890",
        "callee": "surgery",
        "service": "gp",
        "operator": "ann",
        "started_at": "2026-01-02T03:04:05Z",
        "recording": "recording",
    }
    assert view(outbound=True).describe()["direction"] == "outbound"


@pytest.mark.parametrize(
    ("state", "recorded", "shown"),
    [
        (RecordingState.STOPPED, True, "stopped"),
        (RecordingState.DISCARDED, True, "discarded"),
        (None, True, "not started"),
        (None, False, "not recorded"),
    ],
)
def test_the_recording_shows_its_state_or_why_there_is_none(
    state: RecordingState | None, recorded: bool, shown: str
) -> None:
    assert view(recording=state, recorded=recorded).describe()["recording"] == shown
