"""Speech regions found by webrtcvad in real speech, and the map from the joined stream
(speech only) back to recording time."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from proxy.records.transcripts.speech import (
    PAD_S,
    SEPARATOR_S,
    Region,
    join_regions,
    speech_regions,
)

AUDIO = Path(__file__).resolve().parents[4] / "shared" / "testdata" / "audio"
RATE = 8000


def dialogue() -> np.ndarray:
    with wave.open(str(AUDIO / "dialogue_8k_s16.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def test_silence_holds_no_speech() -> None:
    assert speech_regions(np.zeros(RATE * 5, dtype=np.int16), RATE) == []


def test_speech_is_found_where_it_was_put_and_nowhere_else() -> None:
    speech = dialogue()[: 3 * RATE]  # the first turn's opening words
    channel = np.zeros(RATE * 10, dtype=np.int16)
    channel[5 * RATE : 8 * RATE] = speech
    regions = speech_regions(channel, RATE)
    assert len(regions) == 1
    assert 5 * RATE - PAD_S * RATE <= regions[0].start <= 5.3 * RATE
    assert 7.5 * RATE <= regions[0].end <= 8 * RATE + PAD_S * RATE


def test_times_in_the_joined_stream_map_back_into_their_region() -> None:
    pcm = np.arange(10 * RATE, dtype=np.int64).astype(np.int16)
    regions = [Region(1 * RATE, 2 * RATE), Region(6 * RATE, 8 * RATE)]
    joined, speech = join_regions(pcm, regions, RATE)
    assert len(joined) == (1 + SEPARATOR_S + 2) * RATE
    assert np.array_equal(joined[:RATE], pcm[RATE : 2 * RATE])
    second = round((1 + SEPARATOR_S) * RATE)
    assert np.array_equal(joined[second:], pcm[6 * RATE : 8 * RATE])
    assert speech.region_at(0.5) == 0
    assert speech.to_recording(0.5, 0) == pytest.approx(1.5)
    assert speech.region_at(1.2) == 0  # in the separator: the region before it
    assert speech.to_recording(1.2, 0) == pytest.approx(2.0)  # kept inside it
    assert speech.region_at(1 + SEPARATOR_S + 0.25) == 1
    assert speech.to_recording(1 + SEPARATOR_S + 0.25, 1) == pytest.approx(6.25)
