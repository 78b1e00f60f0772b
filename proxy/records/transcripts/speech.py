"""Which parts of a channel hold speech, and how to send only those to the engine.

webrtcvad (the recorder's own VAD, :mod:`proxy.media.vad`) classifies 20 ms frames; runs
of speech closer than :data:`JOIN_S` become one region, padded by :data:`PAD_S` so no
word is clipped.  The regions are joined into one short stream, with a little silence
between them, and transcribed in one pass: a caller who spoke 40 s in an hour-long call
costs 40 s of transcription, and a silent channel costs nothing (Whisper, given silence,
tends to invent words).  :class:`SpeechMap` takes the engine's times in the joined
stream back to the recording's.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ...media.vad import Vad

FRAME_S = 0.02
JOIN_S = 0.5  # speech this close together is one region
PAD_S = 0.2  # audio kept either side of a region
SEPARATOR_S = 0.5  # silence put between regions in the joined stream


@dataclass(frozen=True, slots=True)
class Region:
    """Samples ``[start, end)`` of a channel that hold speech."""

    start: int
    end: int


def speech_regions(
    pcm: npt.NDArray[np.int16], sample_rate: int, *, vad_mode: int = 2
) -> list[Region]:
    """The speech regions of one channel, in order, not overlapping."""
    vad = Vad(vad_mode)
    frame = round(FRAME_S * sample_rate)
    runs: list[list[int]] = []
    for start in range(0, len(pcm) - frame + 1, frame):
        if not vad.is_speech(pcm[start : start + frame].tobytes(), sample_rate):
            continue
        if runs and start - runs[-1][1] <= JOIN_S * sample_rate:
            runs[-1][1] = start + frame
        else:
            runs.append([start, start + frame])
    pad = round(PAD_S * sample_rate)
    regions: list[Region] = []
    for start, end in runs:
        low, high = max(start - pad, 0), min(end + pad, len(pcm))
        if regions and low <= regions[-1].end:
            regions[-1] = Region(regions[-1].start, high)
        else:
            regions.append(Region(low, high))
    return regions


@dataclass(frozen=True, slots=True)
class SpeechMap:
    """Where each region sits in the joined stream: ``offsets[i]`` is region ``i``'s
    first sample there."""

    regions: tuple[Region, ...]
    offsets: tuple[int, ...]
    sample_rate: int

    def region_at(self, joined_s: float) -> int:
        """The index of the region a time in the joined stream belongs to (a time in a
        separator belongs to the region before it)."""
        return max(bisect_right(self.offsets, joined_s * self.sample_rate) - 1, 0)

    def to_recording(self, joined_s: float, region: int) -> float:
        """A time in the joined stream as seconds into the channel, kept inside
        ``region``."""
        span = self.regions[region]
        at = span.start + joined_s * self.sample_rate - self.offsets[region]
        return min(max(at, span.start), span.end) / self.sample_rate


def join_regions(
    pcm: npt.NDArray[np.int16], regions: list[Region], sample_rate: int
) -> tuple[npt.NDArray[np.int16], SpeechMap]:
    """The regions' audio, one after another with :data:`SEPARATOR_S` of silence
    between, and the map back."""
    gap = np.zeros(round(SEPARATOR_S * sample_rate), dtype=np.int16)
    pieces: list[npt.NDArray[np.int16]] = []
    offsets: list[int] = []
    at = 0
    for region in regions:
        if pieces:
            pieces.append(gap)
            at += len(gap)
        offsets.append(at)
        pieces.append(pcm[region.start : region.end])
        at += region.end - region.start
    joined = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)
    return joined, SpeechMap(tuple(regions), tuple(offsets), sample_rate)
