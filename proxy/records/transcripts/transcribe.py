"""One recording's transcript from its decoded PCM.

Each channel is transcribed on its own — the caller on the left, the call taker on the
right — so overlapping speech stays apart and each line has its speaker for certain;
only the speech webrtcvad finds is sent to the engine (:mod:`.speech`).  The cues of
both channels are then merged by time.  A cue is one engine segment within one speech
region, so a turn is never glued to the next one across a silence.

The audio comes decoded in memory (the playback renderer's WAV: :func:`transcribe_playable`);
no plaintext audio file is ever written.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ...recording_state import RecordingState
from ...storage.export import WAV_HEADER_SIZE
from ...storage.store import SegmentStore
from ..playback import Playable, render
from .engine import Segment, TranscriptionEngine
from .speech import SpeechMap, join_regions, speech_regions
from .transcript import CALL_TAKER, CALLER, Cue, Gap, Speaker, Transcript


def transcribe_recording(
    audio: npt.NDArray[np.int16],
    sample_rate: int,
    engine: TranscriptionEngine,
    *,
    caller_only: bool = False,
    gaps: Sequence[Gap] = (),
    vad_mode: int = 2,
) -> Transcript:
    """The transcript of ``audio``: (frames, 2) (caller, call taker), or one
    channel (the caller's) when ``caller_only`` — then only ``Caller`` speaks in it, and
    a second channel, if given, is not looked at.  ``gaps`` are marked where they fall.
    Blocking CPU work: run it in a worker thread (as :func:`transcribe_playable` does)."""
    if audio.ndim == 1:
        audio = audio.reshape(-1, 1)
    if audio.ndim != 2 or audio.shape[1] not in (1, 2) or audio.dtype != np.int16:
        raise ValueError(f"audio must be int16 frames of 1 or 2 channels, not {audio.shape}")
    if audio.shape[1] == 1 and not caller_only:
        raise ValueError("one channel of audio is the caller's alone: pass caller_only=True")
    speakers: tuple[Speaker, ...] = (CALLER,) if caller_only else (CALLER, CALL_TAKER)
    cues: list[Cue] = []
    for channel, speaker in enumerate(speakers):
        pcm = np.ascontiguousarray(audio[:, channel])
        cues += _channel_cues(pcm, sample_rate, engine, speaker, vad_mode)
    cues.sort(key=lambda cue: (cue.start, cue.end))
    return Transcript(tuple(cues), tuple(sorted(gaps, key=lambda g: g.start)), speakers)


def _channel_cues(
    pcm: npt.NDArray[np.int16],
    sample_rate: int,
    engine: TranscriptionEngine,
    speaker: Speaker,
    vad_mode: int,
) -> list[Cue]:
    regions = speech_regions(pcm, sample_rate, vad_mode=vad_mode)
    if not regions:
        return []
    joined, speech = join_regions(pcm, regions, sample_rate)
    cues: list[Cue] = []
    for segment in engine.transcribe(joined, sample_rate):
        cues += _segment_cues(segment, speech, speaker)
    return cues


def _segment_cues(segment: Segment, speech: SpeechMap, speaker: Speaker) -> list[Cue]:
    """``segment``'s words as one cue per speech region they fall in (a segment that
    spans a separator is split there), in recording time."""
    groups: dict[int, list[tuple[float, float, str]]] = {}
    for word in segment.words:
        region = speech.region_at((word.start + word.end) / 2)
        groups.setdefault(region, []).append(
            (speech.to_recording(word.start, region), speech.to_recording(word.end, region),
             word.text)
        )  # fmt: skip
    if not segment.words and segment.text:  # an engine without word times
        region = speech.region_at(segment.start)
        groups[region] = [
            (speech.to_recording(segment.start, region), speech.to_recording(segment.end, region),
             segment.text)
        ]  # fmt: skip
    cues = []
    for words in groups.values():
        text = " ".join("".join(word for _, _, word in words).split())
        if text:
            cues.append(Cue(words[0][0], max(end for _, end, _ in words), speaker, text))
    return cues


async def transcribe_playable(
    playable: Playable,
    engine: TranscriptionEngine,
    *,
    caller_only: bool = False,
    recordings_dir: Path,
    private_key: X25519PrivateKey,
    vad_mode: int = 2,
    store: SegmentStore | None = None,
) -> Transcript:
    """The transcript of a recording (or of the part ``playable`` names), decrypted in
    memory through the playback renderer — both channels, or the caller's alone.  An
    interrupted recording gets its gap marked where its audio stops.  Raises what
    :func:`~proxy.records.playback.render` raises for audio that cannot be read."""
    rendering = await render(
        playable,
        channels="caller" if caller_only else "stereo",
        recordings_dir=recordings_dir,
        private_key=private_key,
        store=store,
    )
    audio = await pcm_of(rendering.chunks(), channels=1 if caller_only else 2)
    interrupted = playable.recording.state is RecordingState.INTERRUPTED
    last_part = playable.part is None or playable.part.part == playable.parts[-1].part
    gaps = [Gap(rendering.duration_s)] if interrupted and last_part else []
    transcribe = partial(
        transcribe_recording, caller_only=caller_only, gaps=gaps, vad_mode=vad_mode
    )
    return await asyncio.to_thread(transcribe, audio, rendering.sample_rate, engine)


async def pcm_of(wav: AsyncIterable[bytes], channels: int) -> npt.NDArray[np.int16]:
    """The samples of a 16-bit WAV read piece by piece (the playback renderer's
    ``Rendering.chunks()``, rendered ``stereo`` or ``caller``), as (frames, ``channels``),
    in memory."""
    data = bytearray()
    async for piece in wav:
        data += piece
    samples = np.frombuffer(bytes(data[WAV_HEADER_SIZE:]), dtype="<i2").astype(np.int16)
    return samples[: len(samples) - len(samples) % channels].reshape(-1, channels)
