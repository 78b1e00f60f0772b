"""Export of decoded recording audio: WAV (16-bit PCM) and MP3 (pydub + ffmpeg).

The audio is ``(frames, 2)`` int16, caller left and call taker right.  ``channels``
chooses what goes out: ``"stereo"`` (both, as recorded), ``"mono"`` (both mixed, with
clipping protection), ``"caller"`` or ``"call_taker"`` (one party only, P18: a subject
access export may include one party only).
"""

from __future__ import annotations

import os
import warnings
import wave
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

ChannelChoice = Literal["stereo", "mono", "caller", "call_taker"]
CHANNEL_CHOICES: tuple[ChannelChoice, ...] = ("stereo", "mono", "caller", "call_taker")
DEFAULT_SAMPLE_RATE = 8000


def select_channels(audio: npt.NDArray[np.int16], channels: ChannelChoice) -> npt.NDArray[np.int16]:
    """``(n, 2)`` for stereo, ``(n, 1)`` otherwise."""
    block = np.asarray(audio)
    if block.ndim != 2 or block.shape[1] != 2 or block.dtype != np.int16:
        raise ValueError(f"audio must be int16 of shape (n, 2), not {block.dtype}{block.shape}")
    if channels == "stereo":
        return block
    if channels in ("caller", "call_taker"):
        column = 0 if channels == "caller" else 1
        party: npt.NDArray[np.int16] = block[:, column : column + 1]
        return party
    if channels == "mono":
        mixed = block.astype(np.int32).sum(axis=1, keepdims=True)
        clipped: npt.NDArray[np.int16] = np.clip(mixed, -32768, 32767).astype(np.int16)
        return clipped
    raise ValueError(f"channels must be one of {', '.join(CHANNEL_CHOICES)}, not {channels!r}")


def export_wav(
    audio: npt.NDArray[np.int16],
    path: str | os.PathLike[str],
    channels: ChannelChoice = "stereo",
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> Path:
    """Write a 16-bit PCM WAV file; returns its path."""
    out = select_channels(audio, channels)
    path = Path(path)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(out.shape[1])
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(np.ascontiguousarray(out, dtype="<i2").tobytes())
    return path


def _audio_segment(data: bytes, sample_rate: int, channels: int) -> Any:
    """A pydub ``AudioSegment`` (pydub has no type hints; it stays behind this function)."""
    with warnings.catch_warnings():  # pydub imports audioop, deprecated in Python 3.11
        warnings.simplefilter("ignore", DeprecationWarning)
        from pydub import AudioSegment  # type: ignore[import-untyped]

    return AudioSegment(data=data, sample_width=2, frame_rate=sample_rate, channels=channels)


def export_mp3(
    audio: npt.NDArray[np.int16],
    path: str | os.PathLike[str],
    channels: ChannelChoice = "stereo",
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    bitrate: str = "32k",
) -> Path:
    """Write an MP3 file through ffmpeg (``AudioSegment.export(format="mp3")``)."""
    out = select_channels(audio, channels)
    path = Path(path)
    segment = _audio_segment(
        np.ascontiguousarray(out, dtype="<i2").tobytes(), sample_rate, out.shape[1]
    )
    handle = segment.export(str(path), format="mp3", bitrate=bitrate)
    handle.close()
    return path
