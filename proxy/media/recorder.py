"""The recorder core: every 20 ms, one aligned stereo frame for every active recording.

The RTP hot path only calls ``direction.push(sequence_number, timestamp, payload)``,
which hands the payload to that direction's jitter buffer.  The event loop calls
``Recorder.tick(now, scheduled)`` once per 20 ms for all recordings together:

1. pop one frame per direction from every recording's jitter buffer;
2. join all frames into one uint8 array and tag each code byte with its law in a single
   lookup in a combined table (µ-law codes, A-law codes, and a block of each law's
   silence for missing frames), so the cost per tick is one numpy gather however many
   calls there are.  Nothing is decoded: the recording keeps the G.711 bytes as received
   (wire samples, see :mod:`proxy.storage.segment`); only voice activity decodes, on the
   ticks it samples.  Silence is filled in the direction's law, so a party who has not
   sent yet is stored in the law it agreed, not in a default one;
3. write each call's (caller, call taker) pair of frames into its preallocated stereo
   block of wire samples (caller left, call taker right) — both channels come from the
   same tick, so they stay aligned whatever the network did;
4. hand each full block (``block_seconds`` of audio) to the sink:
   ``sink(call_key, block, final)``.  The block then belongs to the sink (it is never
   written again), so the sink may queue it to a writer thread.

Spreading the tick's peaks: the relay forwards packets on the same event loop, so a
packet that arrives during a tick waits for it, and the tick's duration is the relay's
added delay at that moment.  Two parts of the tick are heavy on some ticks only, and both
are spread so that no tick carries them for every call at once:

* handing a full block over copies it out of the store and queues it to the writer:
  calls that started together fill their blocks on the same tick, which then took
  milliseconds at a hundred calls.  A full block keeps its slot (the recording takes a
  fresh one) and waits in a queue; each tick hands over an even share of the queue so
  that every block goes within ``EMIT_SPREAD`` ticks of filling (one alone goes at
  once).  A recording's queued blocks always go before its final one, in order.
* voice activity samples each call every ``vad_every``-th tick, each call on its own
  phase (the order it was added), not every call on the same tick.

States of a recording (the shared :class:`~proxy.recording_state.RecordingState`, of which
the recorder uses the live states and FAILED): RECORDING; PAUSED (``pause_mode``
"silence" writes silence for the paused time, "skip" writes nothing); STOPPED (the
partial block — possibly empty — goes out with ``final=True`` and the recording is
removed).  ``stop()``
takes effect at the next tick; ``Recorder.close(key)`` flushes at once.

Fault isolation: a sink that raises, a jitter buffer that raises or hands back a frame
of the wrong size, a failing voice-activity classifier — each fails only its own
recording (FAILED, removed, counted, reported to ``on_failure(call_key, error)``): the
tick goes on for the others and the call is never affected.

Honest accounting: each direction counts the frames the tick filled because audio was
lost, late or missing (``RecordingDirection.quality()``), but only for time that
counts: not while the recording is paused or stopped, and not while that direction is
on hold (``set_held``).

Voice activity (webrtcvad) runs on received 20 ms frames of each channel while
recording — every ``vad_every``-th tick (default 4: a sample every 80 ms, enough for
per-channel speech statistics and one-way-audio alarms, at a quarter of the cost); pass
``vad_mode=None`` to turn it off.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..recording_state import RecordingState
from . import g711
from .blocks import BlockStore
from .g711 import wire_decode, wire_samples
from .jitter import JitterBuffer
from .vad import SpeechActivity, Vad

log = logging.getLogger(__name__)

__all__ = [
    "DirectionQuality",
    "FailureHook",
    "PauseMode",
    "Recorder",
    "RecorderError",
    "RecorderStats",
    "RecordingChannelPair",
    "RecordingDirection",
    "Sink",
]

#: ``sink(call_key, block, final)``: block is wire samples (uint16) of shape (n, 2),
#: caller left.
Sink = Callable[[Hashable, npt.NDArray[np.uint16], bool], None]
#: ``on_failure(call_key, error)``: a recording failed in the recorder and was removed.
FailureHook = Callable[[Hashable, BaseException], None]

# Offsets into the combined tagging table: [µ-law | A-law | µ-law silence | A-law
# silence]; a law's silence block is _SILENT_OFFSET past its codes.
_CODEC_OFFSET = {"PCMU": 0, "PCMA": 256}
_SILENT_OFFSET = 512
_TAG = np.concatenate(
    [wire_samples(np.arange(256, dtype=np.uint8), codec) for codec in _CODEC_OFFSET]
    + [
        wire_samples(np.full(256, g711.silence_byte(codec), dtype=np.uint8), codec)
        for codec in _CODEC_OFFSET
    ]
)
_TAG.flags.writeable = False

#: Ticks within which a full block is handed to the sink (see "Spreading" above): at most
#: 100 ms later than the tick that filled it, what a crash could lose beyond the block.
EMIT_SPREAD = 5


class RecorderError(Exception):
    """The recorder was used wrongly (our fault, not the peer's)."""


class PauseMode(enum.Enum):
    SILENCE = "silence"  # the paused time is recorded as silence
    SKIP = "skip"  # the paused time is left out


@dataclass(slots=True)
class RecorderStats:
    """Counters over all recordings, and the tick timing."""

    ticks: int = 0
    frames: int = 0  # stereo frames written
    missing_frames: int = 0  # direction-frames silence-filled while recording
    blocks: int = 0  # blocks handed to the sink (final ones included)
    sink_errors: int = 0
    last_lag: float = 0.0  # seconds the last tick ran after its scheduled time
    max_lag: float = 0.0
    total_lag: float = 0.0
    lag_samples: int = 0

    @property
    def mean_lag(self) -> float:
        return self.total_lag / self.lag_samples if self.lag_samples else 0.0


@dataclass(frozen=True, slots=True)
class DirectionQuality:
    """What one direction's recording holds: ``frames`` that counted (recording, not
    on hold), and of those the ones filled for lost, late or missing audio, and the
    longest run of lost or late frames."""

    frames: int
    lost: int
    late: int
    missing: int
    longest_gap: int


class RecordingDirection:
    """One direction of a recorded call (caller → us, or call taker → us)."""

    __slots__ = ("_vad", "codec", "frames", "held", "jitter", "offset", "push", "speech")

    def __init__(self, codec: str, jitter: JitterBuffer, vad: Vad | None) -> None:
        self.codec = g711.codec_name(codec)
        self.offset = _CODEC_OFFSET[self.codec]
        self.jitter = jitter
        # ``push(sequence_number, timestamp, payload)``: the relay's sink on the RTP hot
        # path, so the jitter buffer's own method, not one that calls it (one Python
        # call less per recorded packet)
        self.push: Callable[[int, int, bytes], None] = jitter.push
        self.speech = SpeechActivity()
        self.held = False
        self.frames = 0  # ticks that counted for this direction
        self._vad = vad

    def set_held(self, held: bool) -> None:
        """This direction is on hold (True) or back (False): from the next tick, the
        silence filled while held is not counted as lost or missing audio, nor, after
        the hold, what is filled until the sender's first packet (phones stop sending
        on hold and resume a little after the re-INVITE, often with a jump)."""
        if self.held and not held:
            self.jitter.restart_counting()
        self.held = held

    def quality(self) -> DirectionQuality:
        """The counts so far (``Recorder`` settles them when the recording ends)."""
        fills = self.jitter.fills
        return DirectionQuality(
            self.frames, fills.lost, fills.late, fills.missing, fills.longest_gap
        )

    def set_codec(self, codec: str) -> None:
        """The sender switched between PCMU and PCMA (both static payload types): tag
        what follows with the other law.  Frames already buffered are tagged with the
        new law too — at most the playout delay, at a switch that is itself rare."""
        self.codec = g711.codec_name(codec)
        self.offset = _CODEC_OFFSET[self.codec]

    def _classify(self, frame: npt.NDArray[np.uint16], now: float) -> None:
        if self._vad is not None:
            self.speech.update(self._vad.is_speech(wire_decode(frame).tobytes(), 8000), now)


class RecordingChannelPair:
    """A call's recording: ``caller`` (left channel) and ``taker`` (right channel)
    directions, its state, and what it has produced."""

    def __init__(
        self,
        call_key: Hashable,
        caller: RecordingDirection,
        taker: RecordingDirection,
        slot: int,
    ) -> None:
        self.call_key = call_key
        self.caller = caller
        self.taker = taker
        self.state = RecordingState.RECORDING
        self.pause_mode: PauseMode | None = None  # this pause's mode; None: the recorder's
        self.samples_written = 0  # per channel
        self.blocks_emitted = 0
        self.error: BaseException | None = None
        self.slot = slot  # its block in the recorder's BlockStore
        self.block_frames = 0  # frames written into the block being filled
        self.vad_phase = 0  # voice activity samples it on ticks of this phase

    @property
    def active(self) -> bool:
        return self.state in (RecordingState.RECORDING, RecordingState.PAUSED)

    def pause(self, mode: PauseMode | str | None = None) -> None:
        """Pause from the next tick on: write silence or skip the time (``mode``; the
        recorder's ``pause_mode`` when None).  A call taker's "stop" is a skip: the
        recording's audio ends at the stop and a resume starts a new span."""
        self._require_active("pause")
        self.pause_mode = None if mode is None else PauseMode(mode)
        self.state = RecordingState.PAUSED

    def resume(self) -> None:
        """Record again from the next tick on."""
        self._require_active("resume")
        self.state = RecordingState.RECORDING

    def stop(self) -> None:
        """End the recording at the next tick: the last block goes out as final."""
        if self.active:
            self.state = RecordingState.STOPPED

    def _require_active(self, action: str) -> None:
        if not self.active:
            raise RecorderError(
                f"cannot {action} recording {self.call_key!r}: it is {self.state.value}"
            )


@dataclass(slots=True)
class _FullBlock:
    """A full block waiting in its slot to be handed to the sink by tick ``due``."""

    pair: RecordingChannelPair
    slot: int
    frames: int
    due: int


class Recorder:
    """All active recordings, ticked together (see the module docstring)."""

    def __init__(
        self,
        sink: Sink,
        *,
        block_seconds: float = 1.0,
        pause_mode: str | PauseMode = PauseMode.SILENCE,
        jitter_depth: int = 3,
        vad_mode: int | None = 2,
        vad_every: int = 4,
        frame_samples: int = 160,
    ) -> None:
        self.frame_samples = frame_samples
        frames_per_block = round(block_seconds * 8000 / frame_samples)
        if frames_per_block < 1:
            raise ValueError(f"block_seconds {block_seconds} is shorter than one frame")
        self.block_samples = frames_per_block * frame_samples
        self._frames_per_block = frames_per_block
        self._blocks = BlockStore(frames_per_block, frame_samples)
        self.pause_mode = PauseMode(pause_mode)
        self.jitter_depth = jitter_depth
        self.vad_mode = vad_mode
        if vad_every < 1:
            raise ValueError("vad_every must be at least 1")
        self.vad_every = vad_every
        self.stats = RecorderStats()
        self._sink = sink
        self.on_failure: FailureHook | None = None
        self._pairs: dict[Hashable, RecordingChannelPair] = {}
        self._zero_frame = bytes(frame_samples)
        self._full: deque[_FullBlock] = deque()  # oldest first, so ``due`` ascends
        self._added = 0

    def __len__(self) -> int:
        return len(self._pairs)

    def __contains__(self, call_key: object) -> bool:
        return call_key in self._pairs

    def get(self, call_key: Hashable) -> RecordingChannelPair | None:
        return self._pairs.get(call_key)

    def add(self, call_key: Hashable, caller_codec: str, taker_codec: str) -> RecordingChannelPair:
        """Start recording a call; its first frame is written at the next tick."""
        if call_key in self._pairs:
            raise RecorderError(f"recording {call_key!r} already exists")
        caller, taker = self._direction(caller_codec), self._direction(taker_codec)
        pair = RecordingChannelPair(call_key, caller, taker, self._blocks.acquire())
        pair.vad_phase = self._added % self.vad_every
        self._added += 1
        self._pairs[call_key] = pair
        return pair

    def _direction(self, codec: str) -> RecordingDirection:
        name = g711.codec_name(codec)
        jitter = JitterBuffer(
            depth=self.jitter_depth,
            frame_samples=self.frame_samples,
            fill=g711.silence_byte(name),
        )
        vad = Vad(self.vad_mode) if self.vad_mode is not None else None
        return RecordingDirection(name, jitter, vad)

    def close(self, call_key: Hashable) -> None:
        """Flush a recording's partial block as final and remove it, now (also when
        ``stop()`` is waiting for the next tick).  Does nothing if the recording is
        already gone (flushed at a tick, closed, or failed)."""
        pair = self._pairs.pop(call_key, None)
        if pair is not None and pair.state is not RecordingState.FAILED:
            pair.state = RecordingState.STOPPED
            self._settle(pair)
            self._flush_full(pair)
            self._emit_final(pair)

    def close_all(self) -> None:
        """Close every recording (shutdown)."""
        for call_key in list(self._pairs):
            self.close(call_key)

    def tick(self, now: float, scheduled: float | None = None) -> None:
        """One 20 ms step for all recordings; ``scheduled`` is when the tick should
        have run (for the lag statistics)."""
        stats = self.stats
        stats.ticks += 1
        if scheduled is not None:
            lag = now - scheduled
            stats.last_lag = lag
            stats.total_lag += lag
            stats.lag_samples += 1
            if lag > stats.max_lag:
                stats.max_lag = lag
        if not self._pairs:
            self._hand_over()
            return

        recording = RecordingState.RECORDING
        paused = RecordingState.PAUSED
        silence_when_paused = self.pause_mode is PauseMode.SILENCE
        zero_frame = self._zero_frame
        frame = self.frame_samples
        chunks: list[bytes] = []
        offsets: list[int] = []
        received: list[tuple[bool, bool]] = []
        decoded_pairs: list[RecordingChannelPair] = []
        silent_pairs: list[RecordingChannelPair] = []
        finished: list[RecordingChannelPair] = []
        failed: list[tuple[RecordingChannelPair, Exception]] = []
        missing = 0
        for pair in self._pairs.values():
            state = pair.state
            if state is not recording and state is not paused:
                finished.append(pair)
                continue
            caller, taker = pair.caller, pair.taker
            counts = state is recording
            try:
                left = caller.jitter.pop(counts and not caller.held)
                right = taker.jitter.pop(counts and not taker.held)
                if (left is not None and len(left) != frame) or (
                    right is not None and len(right) != frame
                ):
                    raise RecorderError(f"a jitter buffer gave a frame not of {frame} bytes")
            except Exception as exc:
                failed.append((pair, exc))
                continue
            if counts:
                for direction, got in ((caller, left), (taker, right)):
                    if not direction.held:
                        direction.frames += 1
                    if got is None:  # silence, in the direction's law
                        chunks.append(zero_frame)
                        offsets.append(direction.offset + _SILENT_OFFSET)
                        missing += 1
                    else:
                        chunks.append(got)
                        offsets.append(direction.offset)
                received.append((left is not None, right is not None))
                decoded_pairs.append(pair)
            elif pair.pause_mode is PauseMode.SILENCE or (
                pair.pause_mode is None and silence_when_paused
            ):
                silent_pairs.append(pair)
        stats.missing_frames += missing

        for pair, error in failed:
            self._fail(pair, error)
        for pair in finished:
            del self._pairs[pair.call_key]
            if pair.state is RecordingState.STOPPED:
                self._settle(pair)
                self._flush_full(pair)
                self._emit_final(pair)
            else:
                self._blocks.release(pair.slot)

        if decoded_pairs:
            count = len(decoded_pairs)
            codes = np.frombuffer(b"".join(chunks), dtype=np.uint8).reshape(count, 2, frame)
            table_offsets = np.array(offsets, dtype=np.uint16).reshape(count, 2, 1)
            wire = _TAG[codes + table_offsets]  # (count, 2, frame) uint16, one gather
            phase = stats.ticks % self.vad_every
            sampled = [i for i, pair in enumerate(decoded_pairs) if pair.vad_phase == phase]
            if sampled:
                self._classify(decoded_pairs, sampled, received, wire, now)
                if any(not decoded_pairs[i].active for i in sampled):  # a classifier failed
                    keep = [i for i, pair in enumerate(decoded_pairs) if pair.active]
                    decoded_pairs = [decoded_pairs[i] for i in keep]
                    wire = wire[keep]
            self._write(decoded_pairs, wire)
        if silent_pairs:
            laws = [
                [pair.caller.offset + _SILENT_OFFSET, pair.taker.offset + _SILENT_OFFSET]
                for pair in silent_pairs
            ]
            silence = np.broadcast_to(_TAG[laws][:, :, None], (len(laws), 2, frame))
            self._write(silent_pairs, silence)
        self._hand_over()

    def _classify(
        self,
        pairs: list[RecordingChannelPair],
        sampled: list[int],
        received: list[tuple[bool, bool]],
        wire: npt.NDArray[np.uint16],
        now: float,
    ) -> None:
        """Voice activity on the received frames of ``pairs[i]`` for each ``i`` in
        ``sampled`` (a classifier that raises fails its own recording only)."""
        for i in sampled:
            pair = pairs[i]
            has_left, has_right = received[i]
            try:
                if has_left:
                    pair.caller._classify(wire[i, 0], now)
                if has_right:
                    pair.taker._classify(wire[i, 1], now)
            except Exception as exc:
                self._fail(pair, exc)

    def _write(self, pairs: list[RecordingChannelPair], wire: npt.NDArray[np.uint16]) -> None:
        """Frame ``wire[i]`` (2 by frame_samples) is the next of ``pairs[i]``'s recording,
        for all at once; then the full blocks go to the sink."""
        slots = np.fromiter((pair.slot for pair in pairs), np.intp, len(pairs))
        frames = np.fromiter((pair.block_frames for pair in pairs), np.intp, len(pairs))
        self._blocks.write(slots, frames, wire)
        frame = self.frame_samples
        per_block = self._frames_per_block
        self.stats.frames += len(pairs)
        due = self.stats.ticks + EMIT_SPREAD
        for pair in pairs:
            pair.samples_written += frame
            pair.block_frames += 1
            if pair.block_frames == per_block:  # handed over by _hand_over
                self._full.append(_FullBlock(pair, pair.slot, per_block, due))
                pair.slot = self._blocks.acquire()
                pair.block_frames = 0

    def _hand_over(self) -> None:
        """Hand the oldest queued full blocks to the sink: the fewest per tick that
        still gets every block over by its ``due`` tick (see "Spreading" in the module
        docstring)."""
        full = self._full
        if not full:
            return
        now, share = self.stats.ticks, 0
        for count, queued in enumerate(full, 1):  # the least per tick meeting every due
            share = max(share, -(-count // max(1, queued.due - now + 1)))
        for _ in range(share):
            self._hand(full.popleft())

    def _flush_full(self, pair: RecordingChannelPair) -> None:
        """Hand ``pair``'s queued full blocks over now, in order (before its final one)."""
        if not any(queued.pair is pair for queued in self._full):
            return
        mine = [queued for queued in self._full if queued.pair is pair]
        self._full = deque(queued for queued in self._full if queued.pair is not pair)
        for queued in mine:
            self._hand(queued)

    def _hand(self, queued: _FullBlock) -> None:
        """A queued full block to the sink (a copy out of its slot, which is freed);
        a failed recording's is only freed."""
        block = None
        if queued.pair.state is not RecordingState.FAILED:
            block = self._blocks.take(queued.slot, queued.frames)
        self._blocks.release(queued.slot)
        if block is not None:
            self._emit(queued.pair, block, False)

    def _emit_final(self, pair: RecordingChannelPair) -> None:
        """Hand the pair's partial block (a copy) to the sink as its final one, and give
        the slot back."""
        block = self._blocks.take(pair.slot, pair.block_frames)
        pair.block_frames = 0
        self._blocks.release(pair.slot)
        self._emit(pair, block, True)

    def _emit(self, pair: RecordingChannelPair, block: npt.NDArray[np.uint16], final: bool) -> None:
        try:
            self._sink(pair.call_key, block, final)
        except Exception as exc:  # a storage failure must not stop the other recordings
            self.stats.sink_errors += 1
            self._fail(pair, exc)
            return
        self.stats.blocks += 1
        pair.blocks_emitted += 1

    def _fail(self, pair: RecordingChannelPair, exc: Exception) -> None:
        """This recording only: FAILED, removed, reported; the others go on."""
        pair.error = exc
        pair.state = RecordingState.FAILED
        if self._pairs.pop(pair.call_key, None) is not None:
            self._blocks.release(pair.slot)
        with contextlib.suppress(Exception):  # its counts, as far as they go
            self._settle(pair)
        if self.on_failure is not None:
            try:
                self.on_failure(pair.call_key, exc)
            except Exception:
                log.exception("recorder: the failure hook raised for %r", pair.call_key)

    @staticmethod
    def _settle(pair: RecordingChannelPair) -> None:
        pair.caller.jitter.settle()
        pair.taker.jitter.settle()
