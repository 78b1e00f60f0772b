"""The test dialogue (``../shared/testdata/audio/dialogue_8k_s16.wav``) as a call: its
script and turn start times, from the testdata README, split into the two channels of a
recording — A (the agent) is the call taker, B the caller; each turn runs to the next
turn's start.  Used by the transcript tests and ``benchmarks/transcripts.py``."""

from __future__ import annotations

import wave

import numpy as np
import numpy.typing as npt

from tests.storage.conftest import audio_dir

RATE = 8000
# (speaker, start in seconds, words), from the testdata README
TURNS = (
    ("Call taker", 0.00, "Thanks for calling Acme support, this is Sam. How can I help?"),
    ("Caller", 4.67, "Hi Sam, my internet keeps dropping since yesterday."),
    ("Call taker", 8.74, "Sorry about that. What is your account number?"),
    ("Caller", 12.17, "It is four five seven, two two nine."),
    ("Call taker", 15.28, "I see a fault on your line. A technician will come tomorrow."),
    ("Caller", 19.30, "Great, thank you for your help."),
)


def mono_dialogue() -> npt.NDArray[np.int16]:
    """The dialogue as one channel, both voices."""
    with wave.open(str(audio_dir() / "dialogue_8k_s16.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def two_channel_dialogue() -> npt.NDArray[np.int16]:
    """(frames, 2): the caller's turns on the left, the call taker's on the right, and
    digital silence on each while the other speaks."""
    mono = mono_dialogue()
    stereo = np.zeros((len(mono), 2), dtype=np.int16)
    for i, (speaker, start, _) in enumerate(TURNS):
        end = round(TURNS[i + 1][1] * RATE) if i + 1 < len(TURNS) else len(mono)
        stereo[round(start * RATE) : end, 0 if speaker == "Caller" else 1] = mono[
            round(start * RATE) : end
        ]
    return stereo


def words(text: str) -> list[str]:
    """Lower-case words without punctuation, as word error rates count them."""
    return "".join(c if c.isalnum() or c == "'" else " " for c in text.lower()).split()
