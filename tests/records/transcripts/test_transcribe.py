"""Merging, without a model: a scripted engine answers for the joined speech of each
channel, and its words come back at their times in the recording, one cue per speech
region, under the channel's speaker, both channels merged by time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from proxy.records.transcripts.engine import Segment, Word
from proxy.records.transcripts.speech import SEPARATOR_S, speech_regions
from proxy.records.transcripts.transcribe import transcribe_recording

from .dialogue import RATE, mono_dialogue


class ScriptedEngine:
    """Says the same words at the same times of whatever joined stream it is given: one
    segment, its last word at ``later`` s (past the first separator, when the test puts
    it there), with word times unless ``words`` is False."""

    def __init__(self, *, later: float = 1.0, words: bool = True) -> None:
        self.heard: list[int] = []
        self.later, self.words = later, words

    def transcribe(self, pcm: npt.NDArray[np.int16], sample_rate: int) -> Sequence[Segment]:
        self.heard.append(len(pcm))
        said = (
            Word(0.1, 0.4, " hello"),
            Word(0.5, 0.8, " there"),
            Word(self.later, self.later + 0.3, " again"),
        )
        return [Segment(0.1, self.later + 0.3, "hello there again", said if self.words else ())]


def channel_with_speech_at(*seconds: float) -> npt.NDArray[np.int16]:
    """10 s of silence with 2.5 s of the dialogue's speech starting at each of ``seconds``."""
    speech = mono_dialogue()[: round(2.5 * RATE)]
    channel = np.zeros(10 * RATE, dtype=np.int16)
    for at in seconds:
        channel[round(at * RATE) : round(at * RATE) + len(speech)] = speech
    return channel


def test_words_return_to_their_region_s_time_one_cue_a_region() -> None:
    caller = channel_with_speech_at(1.0, 6.0)
    regions = speech_regions(caller, RATE)
    assert len(regions) == 2
    second_offset = (regions[0].end - regions[0].start) / RATE + SEPARATOR_S
    engine = ScriptedEngine(later=second_offset + 0.2)
    audio = np.stack([caller, np.zeros_like(caller)], axis=1)
    transcript = transcribe_recording(audio, RATE, engine)
    assert engine.heard == [sum(r.end - r.start for r in regions) + round(SEPARATOR_S * RATE)]
    first, second = transcript.cues
    assert (first.speaker, first.text, second.speaker, second.text) == (
        "Caller", "hello there", "Caller", "again"
    )  # fmt: skip
    assert first.start == pytest.approx(regions[0].start / RATE + 0.1)
    assert first.end == pytest.approx(regions[0].start / RATE + 0.8)
    assert second.start == pytest.approx(regions[1].start / RATE + 0.2)
    assert second.end == pytest.approx(regions[1].start / RATE + 0.5)


def test_both_channels_merge_by_time_and_a_silent_one_is_never_sent() -> None:
    caller, taker = channel_with_speech_at(5.0), channel_with_speech_at(1.0)
    engine = ScriptedEngine()
    transcript = transcribe_recording(np.stack([caller, taker], axis=1), RATE, engine)
    assert [cue.speaker for cue in transcript.cues] == ["Call taker", "Caller"]
    assert len(engine.heard) == 2
    silent = np.stack([caller, np.zeros_like(caller)], axis=1)
    transcribe_recording(silent, RATE, engine)
    assert len(engine.heard) == 3  # the silent call taker cost nothing


def test_an_engine_without_word_times_gives_a_cue_a_segment() -> None:
    caller = channel_with_speech_at(2.0)
    start = speech_regions(caller, RATE)[0].start / RATE
    transcript = transcribe_recording(
        caller.reshape(-1, 1), RATE, ScriptedEngine(words=False), caller_only=True
    )
    (cue,) = transcript.cues
    assert (cue.speaker, cue.text) == ("Caller", "hello there again")
    assert cue.start == pytest.approx(start + 0.1)


def test_audio_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="pass caller_only=True"):
        transcribe_recording(np.zeros((10, 1), dtype=np.int16), RATE, ScriptedEngine())
    with pytest.raises(ValueError, match="int16 frames of 1 or 2 channels"):
        transcribe_recording(np.zeros((10, 3), dtype=np.int16), RATE, ScriptedEngine())
