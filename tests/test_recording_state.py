"""The one recording state machine: live states move among themselves and end; final
states never move."""

from __future__ import annotations

import pytest

from proxy.recording_state import ENDINGS, LIVE, REMOVAL, TRANSITIONS, RecordingState


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(RecordingState)
    assert set(RecordingState) == LIVE | ENDINGS | REMOVAL
    assert not LIVE & ENDINGS and not ENDINGS & REMOVAL and not LIVE & REMOVAL


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


@pytest.mark.parametrize("ended", ["complete", "degraded", "failed", "interrupted"])
def test_what_kept_audio_can_only_be_deleted_after_retention(ended: str) -> None:
    state = RecordingState(ended)
    assert state.final and not state.live
    moves = {s for s in RecordingState if state.can_become(s)}
    assert moves - {RecordingState.DISCARDED} == {RecordingState.DELETING}


def test_a_failed_recording_may_also_be_discarded() -> None:
    """The writer failed mid-call; the partial files still hold audio that the call
    taker must be able to destroy."""
    assert RecordingState.FAILED.can_become(RecordingState.DISCARDED)
    assert not RecordingState.COMPLETE.can_become(RecordingState.DISCARDED)


def test_deletion_goes_through_deleting_and_ends_there() -> None:
    assert [s for s in RecordingState if RecordingState.DELETING.can_become(s)] == [
        RecordingState.DELETED
    ]
    for gone in (RecordingState.DELETED, RecordingState.DISCARDED):
        assert not any(gone.can_become(s) for s in RecordingState)
    assert not RecordingState.RECORDING.can_become(RecordingState.DELETING)


def test_stopped_cannot_pause() -> None:
    assert not RecordingState.STOPPED.can_become(RecordingState.PAUSED)
    assert RecordingState("complete") is RecordingState.COMPLETE  # stored values read back
