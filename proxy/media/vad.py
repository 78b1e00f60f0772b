"""Voice activity detection: a thin wrapper on webrtcvad, and per-channel speech stats.

``Vad(mode).is_speech(frame, sample_rate)`` classifies one 10, 20 or 30 ms frame of
16-bit mono PCM (mode 0 is the least aggressive at calling audio non-speech, 3 the
most).  ``SpeechActivity`` counts a channel's frames and speech frames and remembers
when speech was last heard, so a call with one-way audio can be spotted.
"""

from __future__ import annotations

from dataclasses import dataclass

import webrtcvad  # type: ignore[import-untyped]

__all__ = ["SpeechActivity", "Vad"]

_RATES = (8000, 16000, 32000, 48000)


class Vad:
    """One webrtcvad instance (it keeps state between frames: use one per channel)."""

    def __init__(self, mode: int = 2) -> None:
        if mode not in (0, 1, 2, 3):
            raise ValueError(f"VAD mode {mode} is not 0..3")
        self.mode = mode
        self._vad = webrtcvad.Vad(mode)

    def is_speech(self, frame: bytes, sample_rate: int = 8000) -> bool:
        """Whether a frame of 16-bit little-endian mono PCM holds speech.  The frame
        must be 10, 20 or 30 ms long at 8, 16, 32 or 48 kHz."""
        if sample_rate not in _RATES:
            raise ValueError(f"VAD sample rate {sample_rate} is not one of {_RATES}")
        samples = len(frame) // 2
        if len(frame) % 2 or samples * 1000 not in (
            10 * sample_rate,
            20 * sample_rate,
            30 * sample_rate,
        ):
            raise ValueError(
                f"VAD frame of {len(frame)} bytes is not 10, 20 or 30 ms of 16-bit PCM "
                f"at {sample_rate} Hz"
            )
        return bool(self._vad.is_speech(frame, sample_rate))


@dataclass(slots=True)
class SpeechActivity:
    """Speech statistics of one channel."""

    frames: int = 0
    speech_frames: int = 0
    last_speech_time: float | None = None

    def update(self, speech: bool, now: float) -> None:
        """Count one frame classified at ``now``."""
        self.frames += 1
        if speech:
            self.speech_frames += 1
            self.last_speech_time = now

    @property
    def speech_ratio(self) -> float:
        """The share of frames that held speech (0.0 before any frame)."""
        return self.speech_frames / self.frames if self.frames else 0.0

    def silent_for(self, now: float) -> float | None:
        """Seconds since speech was last heard, or ``None`` if never."""
        if self.last_speech_time is None:
            return None
        return now - self.last_speech_time
