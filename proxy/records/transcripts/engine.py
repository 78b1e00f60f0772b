"""The speech-to-text engine: an interface, and faster-whisper behind it.

An engine takes one channel of 16-bit PCM and gives timed words grouped in segments;
it knows nothing of recordings, speakers or formats (:mod:`.transcribe` does).  The
default, :class:`FasterWhisperEngine`, runs CTranslate2 with int8 weights on the CPU
with the configured number of threads.  Loading takes a second or two and ~200 MB, so a
process loads it once (:func:`load_engine`) and keeps it; transcribing is blocking CPU
work, run in a worker thread (:func:`.transcribe.transcribe_playable` does).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ...config import TranscriptsSettings
from .model import ModelFiles, locate_model, read_verified

WHISPER_RATE = 16_000  # Whisper hears 16 kHz mono


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word, in seconds from the start of the audio given."""

    start: float
    end: float
    text: str


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of words the engine decoded together (about a sentence)."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...]


class TranscriptionEngine(Protocol):
    """What a transcript needs of an engine."""

    def transcribe(self, pcm: npt.NDArray[np.int16], sample_rate: int) -> Sequence[Segment]:
        """The speech in ``pcm`` (one channel, 16-bit) as timed segments of timed words."""
        ...


class FasterWhisperEngine:
    """Whisper through faster-whisper, loaded from a verified model in memory."""

    def __init__(self, model: ModelFiles, *, threads: int = 2, language: str = "en") -> None:
        from faster_whisper import WhisperModel  # type: ignore[import-untyped]

        self.model_sha256 = model.sha256
        self.origin = model.origin
        self._language = None if language == "auto" else language
        # one transcription at a time: each already uses every configured thread
        self._busy = threading.Lock()
        # faster-whisper pops the tokenizer from the mapping it is given: give it a copy
        self._model = WhisperModel(
            f"whisper:{model.sha256[:12]}",
            device="cpu",
            compute_type="int8",
            cpu_threads=threads,
            files=dict(model.files),
        )

    def transcribe(self, pcm: npt.NDArray[np.int16], sample_rate: int) -> list[Segment]:
        audio = to_whisper_rate(pcm, sample_rate)
        if len(audio) == 0:
            return []
        with self._busy:
            found, _info = self._model.transcribe(
                audio,
                language=self._language,
                beam_size=5,
                vad_filter=False,  # the caller gives speech only (speech.py)
                word_timestamps=True,
                condition_on_previous_text=False,  # no runaway repetition across turns
            )
            return [_segment(s) for s in found]  # decoding happens as this is iterated


def _segment(found: Any) -> Segment:
    words = tuple(Word(float(w.start), float(w.end), str(w.word)) for w in found.words or ())
    return Segment(float(found.start), float(found.end), str(found.text).strip(), words)


def load_engine(settings: TranscriptsSettings | None = None) -> FasterWhisperEngine:
    """Find, verify and load the model ``settings`` (``[transcripts]``) name — blocking:
    call it once, in a thread.  Raises :class:`~.model.ModelMissing` or
    :class:`~.model.ModelMismatch` before anything is loaded when the model is absent or
    not the one expected."""
    settings = settings or TranscriptsSettings()
    model = read_verified(locate_model(settings.model_path, settings.model_sha256))
    return FasterWhisperEngine(model, threads=settings.threads, language=settings.language)


def to_whisper_rate(pcm: npt.NDArray[np.int16], sample_rate: int) -> npt.NDArray[np.float32]:
    """``pcm`` as float samples at 16 kHz.  Telephone audio (8 kHz) is doubled by a
    windowed-sinc interpolator, so no image of the speech band above 4 kHz reaches the
    model; other rates are interpolated linearly."""
    samples = pcm.astype(np.float32) / 32768.0
    if sample_rate == WHISPER_RATE or len(samples) == 0:
        return samples
    if sample_rate * 2 == WHISPER_RATE:
        stuffed = np.zeros(len(samples) * 2, dtype=np.float32)
        stuffed[::2] = samples
        return np.convolve(stuffed, _HALF_BAND, mode="same").astype(np.float32)
    positions = np.arange(round(len(samples) * WHISPER_RATE / sample_rate)) * (
        sample_rate / WHISPER_RATE
    )
    interpolated = np.interp(positions, np.arange(len(samples)), samples)
    return np.asarray(interpolated, dtype=np.float32)


def _half_band(taps: int = 63) -> npt.NDArray[np.float32]:
    """A low-pass at a quarter of the doubled rate with a gain of 2 (for zero-stuffing)."""
    n = np.arange(taps) - (taps - 1) / 2
    return (np.sinc(n / 2) * np.hamming(taps)).astype(np.float32)


_HALF_BAND = _half_band()
