"""The one recording state machine: live states move among themselves and end; final
states never move."""

from __future__ import annotations

import pytest

from proxy.recording_state import ENDINGS, LIVE, TRANSITIONS, RecordingState


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(RecordingState)
    assert set(RecordingState) == LIVE | ENDINGS and not LIVE & ENDINGS


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("recording", "paused"),
        ("paused", "recording"),
        ("recording", "stopped"),
        ("stopped", "recording"),
        ("paused", "stopped"),
        ("stopped", "complete"),
        ("recording", "discarded"),
        ("paused", "interrupted"),
    ],
)
def test_allowed_moves(old: str, new: str) -> None:
    assert RecordingState(old).can_become(RecordingState(new))


@pytest.mark.parametrize("final", sorted(ENDINGS - {RecordingState.FAILED}))
def test_final_states_never_move(final: RecordingState) -> None:
    assert final.final and not final.live
    assert not any(final.can_become(state) for state in RecordingState)


def test_a_failed_recording_can_only_be_discarded() -> None:
    """The writer failed mid-call; the partial files still hold audio that the call
    taker must be able to destroy."""
    failed = RecordingState.FAILED
    assert [s for s in RecordingState if failed.can_become(s)] == [RecordingState.DISCARDED]


def test_stopped_cannot_pause() -> None:
    assert not RecordingState.STOPPED.can_become(RecordingState.PAUSED)
    assert RecordingState("complete") is RecordingState.COMPLETE  # stored values read back
