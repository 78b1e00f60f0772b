"""The recorder spreads its heavy work over ticks: full blocks of calls that started
together are handed over in even shares within ``EMIT_SPREAD`` ticks, and voice
activity samples each call on its own phase.  What is recorded is unchanged."""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import numpy.typing as npt

from proxy.media.g711 import wire_samples
from proxy.media.recorder import EMIT_SPREAD, Recorder, RecordingChannelPair
from proxy.recording_state import RecordingState
from tests.media.test_recorder import DEPTH, FRAME, Collector, dialogue, tick_time

PER_BLOCK = 5  # block_seconds=0.1: 5 frames a block


class TickLog(Collector):
    """A collector that also notes on which tick each block arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.tick = 0
        self.arrivals: list[tuple[int, Hashable, bool]] = []

    def __call__(self, call_key: Hashable, block: npt.NDArray[np.uint16], final: bool) -> None:
        super().__call__(call_key, block, final)
        self.arrivals.append((self.tick, call_key, final))


def code_frame(call: int) -> bytes:
    return bytes([call % 100 + 1]) * FRAME


def run_calls(sink: TickLog, calls: int, ticks: int, block_seconds: float = 0.1) -> Recorder:
    """``calls`` recordings added together, each sending its own code both ways."""
    recorder = Recorder(sink, block_seconds=block_seconds, vad_mode=None)
    pairs = [recorder.add(i, "PCMU", "PCMU") for i in range(calls)]
    for t in range(ticks):
        for i, pair in enumerate(pairs):
            pair.caller.push(t, t * FRAME, code_frame(i))
            pair.taker.push(t, t * FRAME, code_frame(i))
        sink.tick = t
        recorder.tick(tick_time(t), tick_time(t))
    return recorder


def expected_wire(call: int, ticks: int) -> npt.NDArray[np.uint16]:
    silence = wire_samples(np.full(1, 0xFF, np.uint8), "PCMU")[0]
    channel = np.full(ticks * FRAME, silence, np.uint16)
    channel[DEPTH * FRAME :] = wire_samples(np.full(1, call % 100 + 1, np.uint8), "PCMU")[0]
    return np.stack([channel, channel], axis=1)


def test_blocks_filled_on_one_tick_are_handed_over_in_even_shares_by_their_deadline() -> None:
    calls, per_block = 60, 10
    sink = TickLog()
    run_calls(sink, calls, per_block + EMIT_SPREAD + 1, block_seconds=0.2)
    per_tick: dict[int, int] = {}
    for tick, _, _ in sink.arrivals:
        per_tick[tick] = per_tick.get(tick, 0) + 1
    filled = per_block - 1  # every call's first block fills on this tick
    assert sorted(per_tick) == list(range(filled, filled + EMIT_SPREAD + 1))
    share = -(-calls // (EMIT_SPREAD + 1))
    assert max(per_tick.values()) == share  # not all 60 on one tick
    assert sum(per_tick.values()) == calls


def test_blocks_of_overlapping_bursts_all_meet_their_deadline() -> None:
    """Blocks every 5 ticks, spread over 6: a new burst joins the queue before the last
    one is through, and every block still goes within EMIT_SPREAD ticks, in even
    shares."""
    calls = 60
    sink = TickLog()
    run_calls(sink, calls, 6 * PER_BLOCK)
    per_tick: dict[int, int] = {}
    for tick, _, _ in sink.arrivals:
        per_tick[tick] = per_tick.get(tick, 0) + 1
    assert max(per_tick.values()) <= 12  # a sixth of 60, and the overlap
    handed = [tick for tick, _, _ in sink.arrivals]  # oldest first
    assert len(handed) >= 5 * calls
    for block in range(5):  # the blocks filled on tick 5 * block + 4 ...
        ticks = handed[block * calls : (block + 1) * calls]
        assert ticks[-1] <= 5 * block + 4 + EMIT_SPREAD  # ... are all over by their due


def test_a_block_filled_alone_goes_on_the_tick_that_filled_it() -> None:
    sink = TickLog()
    run_calls(sink, 1, 3 * PER_BLOCK)
    assert [tick for tick, _, _ in sink.arrivals] == [4, 9, 14]


def test_spread_blocks_hold_exactly_each_calls_audio_in_order() -> None:
    calls, ticks = 40, 4 * PER_BLOCK + 2
    sink = TickLog()
    recorder = run_calls(sink, calls, ticks)
    for i in range(calls):
        recorder.close(i)
    for i in range(calls):
        assert np.array_equal(sink.wire(i), expected_wire(i, ticks)), i
        assert sink.finals(i) == [False] * 4 + [True]


def test_closing_hands_over_the_queued_blocks_before_the_final_one() -> None:
    calls = 30
    sink = TickLog()
    recorder = run_calls(sink, calls, PER_BLOCK)  # all blocks full, most still queued
    queued = [i for i in range(calls) if i not in sink.blocks]
    assert queued
    last = queued[-1]
    recorder.close(last)
    assert sink.finals(last) == [False, True]
    assert np.array_equal(sink.wire(last), expected_wire(last, PER_BLOCK))


def queued_last(calls: int) -> tuple[TickLog, Recorder, RecordingChannelPair]:
    """``calls`` recordings whose first blocks just filled: the last one's still queued."""
    sink = TickLog()
    recorder = run_calls(sink, calls, PER_BLOCK)
    pair = recorder.get(calls - 1)
    assert pair is not None and calls - 1 not in sink.blocks
    return sink, recorder, pair


def test_stop_at_a_tick_hands_over_the_queued_blocks_first() -> None:
    sink, recorder, pair = queued_last(30)
    last = pair.call_key
    pair.stop()
    recorder.tick(tick_time(PER_BLOCK), tick_time(PER_BLOCK))
    assert sink.finals(last) == [False, True]
    assert len(sink.wire(last)) == PER_BLOCK * FRAME


def test_a_failed_recordings_queued_blocks_are_dropped_and_their_slots_freed() -> None:
    calls = 30
    sink, recorder, pair = queued_last(calls)
    last = pair.call_key

    def broken(*_: object) -> None:
        raise RuntimeError("jitter buffer broke")

    pair.caller.jitter.pop = broken  # type: ignore[method-assign]
    for t in range(PER_BLOCK, PER_BLOCK + EMIT_SPREAD + 1):
        recorder.tick(tick_time(t), tick_time(t))
    assert pair.state is RecordingState.FAILED
    assert last not in sink.blocks
    for i in range(calls - 1):
        recorder.close(i)
    assert recorder._blocks.in_use == 0


def test_voice_activity_samples_each_call_on_its_own_phase() -> None:
    """With ``vad_every`` 4, a quarter of the calls are classified on each tick, and
    every call still gets a quarter of its frames classified."""
    speech = dialogue()[:100]
    recorder = Recorder(Collector(), vad_every=4)
    pairs = [recorder.add(i, "PCMU", "PCMU") for i in range(8)]
    classified_per_tick = []
    for t in range(len(speech)):
        before = sum(pair.caller.speech.frames for pair in pairs)
        for pair in pairs:
            pair.caller.push(t, t * FRAME, speech[t])
            pair.taker.push(t, t * FRAME, speech[t])
        recorder.tick(tick_time(t))
        classified_per_tick.append(sum(pair.caller.speech.frames for pair in pairs) - before)
    assert set(classified_per_tick[DEPTH + 4 :]) == {2}
    assert {pair.caller.speech.frames for pair in pairs} <= {24, 25}
