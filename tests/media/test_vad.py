"""Voice activity detection on real speech and silence."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from proxy.media.announcer import load_prompt
from proxy.media.vad import SpeechActivity, Vad
from tests.media.media_helpers import shared_data_file

# Turn start times in the dialogue (s), from the test data README.
TURNS = [0.00, 4.67, 8.74, 12.17, 15.28, 19.30]


def frames_of(pcm: npt.NDArray[np.int16]) -> list[bytes]:
    return [pcm[i : i + 160].tobytes() for i in range(0, len(pcm) - 159, 160)]


def test_digital_silence_is_not_speech() -> None:
    vad = Vad(2)
    assert not any(vad.is_speech(bytes(320), 8000) for _ in range(50))


def test_speech_in_the_dialogue_is_found_and_the_gaps_are_quiet() -> None:
    pcm = load_prompt(shared_data_file("audio", "dialogue_8k_s16.wav"))
    vad = Vad(2)
    decisions = [vad.is_speech(frame, 8000) for frame in frames_of(pcm)]
    ratio = sum(decisions) / len(decisions)
    assert 0.5 < ratio < 0.98
    # The middle of each turn's first second is speech.
    for start in TURNS:
        frame = round((start + 0.5) / 0.02)
        assert sum(decisions[frame - 5 : frame + 5]) >= 7


def test_white_noise_and_speech_differ_by_mode() -> None:
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(8000) * 300).astype(np.int16)
    relaxed = sum(Vad(0).is_speech(f, 8000) for f in frames_of(noise))
    aggressive = sum(Vad(3).is_speech(f, 8000) for f in frames_of(noise))
    assert aggressive <= relaxed


@pytest.mark.parametrize("length", [0, 100, 318, 322, 640 + 2])
def test_frame_must_be_10_20_or_30_ms(length: int) -> None:
    with pytest.raises(ValueError, match="not 10, 20 or 30 ms"):
        Vad().is_speech(bytes(length), 8000)


@pytest.mark.parametrize("length", [160, 320, 480])
def test_10_20_30_ms_frames_are_accepted(length: int) -> None:
    assert Vad().is_speech(bytes(length), 8000) is False


def test_bad_mode_and_rate_are_refused() -> None:
    with pytest.raises(ValueError, match="mode 4"):
        Vad(4)
    with pytest.raises(ValueError, match="sample rate 11025"):
        Vad().is_speech(bytes(320), 11025)


def test_speech_activity_counts_and_remembers_the_last_speech() -> None:
    activity = SpeechActivity()
    assert activity.speech_ratio == 0.0 and activity.silent_for(5.0) is None
    for i, speech in enumerate([False, True, True, False]):
        activity.update(speech, 10.0 + i * 0.02)
    assert (activity.frames, activity.speech_frames) == (4, 2)
    assert activity.speech_ratio == 0.5
    assert activity.last_speech_time == pytest.approx(10.04)
    assert activity.silent_for(11.04) == pytest.approx(1.0)
