"""The media clock on a real event loop: drift-free ticks, and a recorder that keeps
the wall clock's timeline when the loop is blocked for a while."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable

import numpy as np
import numpy.typing as npt

from proxy.media.clock import MAX_CATCH_UP, MediaClock
from proxy.media.recorder import Recorder


class Frames:
    def __init__(self) -> None:
        self.samples = 0

    def __call__(self, key: Hashable, block: npt.NDArray[np.int16], final: bool) -> None:
        self.samples += len(block)


async def test_a_blocked_loop_loses_no_recorded_time() -> None:
    sink = Frames()
    recorder = Recorder(sink, vad_mode=None)
    recorder.add("call", "PCMU", "PCMU")
    clock = MediaClock(recorder)
    clock.start()
    started = asyncio.get_running_loop().time()
    await asyncio.sleep(0.3)
    time.sleep(0.1)  # the loop is busy for 5 ticks' worth (within the catch-up limit)
    await asyncio.sleep(0.3)
    elapsed = asyncio.get_running_loop().time() - started
    clock.stop()
    recorder.close_all()
    slots = elapsed / 0.02
    assert clock.stats.caught_up >= 3
    assert clock.stats.overruns == 0
    assert abs(sink.samples / 160 - slots) <= 2  # the recording kept the wall-clock length


async def test_a_stall_beyond_the_limit_is_counted_as_overrun() -> None:
    recorder = Recorder(Frames(), vad_mode=None)
    clock = MediaClock(recorder)
    clock.start()
    await asyncio.sleep(0.05)
    time.sleep(0.02 * (MAX_CATCH_UP + 5))
    await asyncio.sleep(0.05)
    clock.stop()
    assert clock.stats.caught_up >= MAX_CATCH_UP
    assert clock.stats.overruns >= 3
