"""Audio for the end-to-end tests: G.711 µ-law, WAV files, and how alike two signals are.

The µ-law decoder is written here from ITU-T G.711 rather than imported from the proxy,
so that the tests judge the proxy's audio with an independent implementation.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

RATE = 8000
Samples = npt.NDArray[np.float64]


def _ulaw_table() -> npt.NDArray[np.int16]:
    codes = np.arange(256, dtype=np.int32)
    inverted = ~codes & 0xFF
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(inverted & 0x80, -magnitude, magnitude).astype(np.int16)


ULAW_TO_PCM = _ulaw_table()


def ulaw_decode(data: bytes) -> Samples:
    """µ-law bytes (an RTP PCMU payload, a raw .ulaw file) as 16-bit-range samples."""
    return ULAW_TO_PCM[np.frombuffer(data, dtype=np.uint8)].astype(np.float64)


@dataclass(frozen=True)
class Wav:
    rate: int
    channels: int
    sample_width: int
    frames: npt.NDArray[np.float64]  # shape (n, channels)

    @property
    def seconds(self) -> float:
        return len(self.frames) / self.rate

    def channel(self, index: int) -> Samples:
        return self.frames[:, index]


def read_wav(path: Path) -> Wav:
    with wave.open(str(path), "rb") as wav:
        width = wav.getsampwidth()
        channels = wav.getnchannels()
        raw = wav.readframes(wav.getnframes())
        rate = wav.getframerate()
    if width != 2:
        raise AssertionError(f"{path}: {8 * width}-bit samples, expected 16-bit PCM")
    data = np.frombuffer(raw, dtype="<i2").astype(np.float64).reshape(-1, channels)
    return Wav(rate, channels, width, data)


def write_wav(path: Path, samples: Samples) -> None:
    """A mono 8 kHz 16-bit PCM WAV file."""
    pcm = np.clip(np.round(samples), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm.tobytes())


@dataclass(frozen=True)
class Match:
    """Where ``needle`` best lines up in ``haystack`` and how well."""

    offset: int  # samples from the haystack's start to the needle's start (may be < 0)
    ncc: float  # normalised cross-correlation there, -1..1

    @property
    def offset_s(self) -> float:
        return self.offset / RATE


def best_match(haystack: Samples, needle: Samples, *, slack: int = RATE // 2) -> Match:
    """The normalised cross-correlation of ``needle`` against every window of
    ``haystack`` (which is padded with ``slack`` samples of silence at both ends, so the
    needle may stick out a little), and the best of them.

    At each offset: Σ h·n / (‖h window‖ · ‖n‖).  A window that holds only part of the
    needle's audio scores at most the fraction of the needle's energy it holds, so a
    clipped or partly silent match cannot reach 1.
    """
    if len(needle) == 0 or not np.any(needle):
        raise AssertionError("the reference audio is empty or silent")
    hay = np.concatenate([np.zeros(slack), haystack, np.zeros(slack)])
    n = len(needle)
    if len(hay) < n:
        hay = np.concatenate([hay, np.zeros(n - len(hay))])
    size = 1 << int(np.ceil(np.log2(len(hay) + n)))
    spectrum = np.fft.rfft(hay, size) * np.conj(np.fft.rfft(needle, size))
    dots = np.fft.irfft(spectrum, size)[: len(hay) - n + 1]
    energy = np.concatenate([[0.0], np.cumsum(hay * hay)])
    window = energy[n:] - energy[:-n]
    needle_norm = float(np.sqrt(np.dot(needle, needle)))
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(window > 1e-6 * needle_norm**2, dots / np.sqrt(window) / needle_norm, 0.0)
    best = int(np.argmax(scores))
    return Match(best - slack, float(scores[best]))


CHUNK_S = 0.25
VOICED_RMS = 300.0  # below this a chunk is (near) silence: nothing to recognise


@dataclass(frozen=True)
class ChunkMatch:
    index: int  # the chunk covers CHUNK_S seconds of the reference from index * CHUNK_S
    start_s: float  # where the reference would start in the channel, judging by this chunk
    ncc: float


@dataclass(frozen=True)
class Placement:
    """Where a reference recording was found in a channel, chunk by chunk."""

    start_s: float  # where the reference starts in the channel
    voiced: int  # voiced chunks in the reference
    inside: list[ChunkMatch]  # the voiced chunks that lie inside the channel from there
    good: list[ChunkMatch]  # ... and were found there

    @property
    def inside_s(self) -> float:
        return len(self.inside) * CHUNK_S


def _voiced_chunks(reference: Samples) -> list[tuple[int, Samples]]:
    size = int(CHUNK_S * RATE)
    chunks = [(i, reference[i * size : (i + 1) * size]) for i in range(len(reference) // size)]
    return [(i, c) for i, c in chunks if np.sqrt(np.mean(c * c)) >= VOICED_RMS]


def place(
    channel: Samples, reference: Samples, *, threshold: float = 0.9, min_fraction: float = 0.9
) -> Placement:
    """Find ``reference`` in ``channel`` and check that (nearly) all of it is there.

    The reference is cut into chunks of ``CHUNK_S`` seconds.  Each voiced chunk is
    looked for in the whole channel; those found (ncc ≥ ``threshold``) say where the
    reference starts (their median).  Of the voiced chunks that lie inside the channel
    from there, all but 10 % (``1 - min_fraction``; at least one may always be missed)
    must be found within 0.1 s of that start.
    Chunk by chunk, because a jitter buffer may slip a frame (20 ms) now and then, and
    one slip spoils a single correlation over many seconds: a slip costs one chunk, a
    missing, mangled or misplaced stretch of audio costs many.
    """
    voiced = _voiced_chunks(reference)
    matches: list[ChunkMatch] = []
    for index, chunk in voiced:
        match = best_match(channel, chunk, slack=RATE // 10)
        matches.append(ChunkMatch(index, match.offset_s - index * CHUNK_S, match.ncc))
    found = [m.start_s for m in matches if m.ncc >= threshold]
    if not found:
        best = max((m.ncc for m in matches), default=0.0)
        raise AssertionError(f"reference audio not found in the channel (best ncc {best:.3f})")
    start = float(np.median(found))
    length = len(channel) / RATE
    inside = [
        m
        for m in matches
        if start + m.index * CHUNK_S >= -0.05 and start + (m.index + 1) * CHUNK_S <= length + 0.05
    ]
    good = [m for m in inside if m.ncc >= threshold and abs(m.start_s - start) <= 0.1]
    allowed = max(1, int((1 - min_fraction) * len(inside)))  # one slip, or 10 %
    if len(inside) - len(good) > allowed:
        bad = [m for m in inside if m not in good]
        raise AssertionError(
            f"reference starts at {start:.3f} s in the channel, but {len(bad)} of the "
            f"{len(inside)} voiced {CHUNK_S} s chunks there are missing or misplaced: {bad}"
        )
    return Placement(start, len(voiced), inside, good)


def absent(channel: Samples, reference: Samples, *, threshold: float = 0.5) -> bool:
    """No voiced one-second stretch of ``reference`` is recognisable in ``channel``."""
    for index in range(len(reference) // RATE):
        chunk = reference[index * RATE : (index + 1) * RATE]
        if np.sqrt(np.mean(chunk * chunk)) < VOICED_RMS:
            continue
        if best_match(channel, chunk, slack=RATE // 10).ncc >= threshold:
            return False
    return True
