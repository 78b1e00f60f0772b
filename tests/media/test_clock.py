"""The media clock on a real event loop: drift-free ticks; a recorder that keeps the
wall clock's timeline, and loses no packet, when the loop is blocked for a while; and
faults in one player or recording that stop neither the clock nor the other calls."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Hashable

import numpy as np
import numpy.typing as npt
import uvloop

from proxy.media.announcer import PacketPacer, RingbackTone
from proxy.media.clock import MAX_BACKLOG, MediaClock
from proxy.media.recorder import Recorder
from proxy.media.relay import MediaSession, PortAllocator
from proxy.recording_state import RecordingState


class Blocks:
    """A recorder sink keeping every block, per recording."""

    def __init__(self) -> None:
        self.blocks: dict[Hashable, list[npt.NDArray[np.uint16]]] = defaultdict(list)

    def __call__(self, key: Hashable, block: npt.NDArray[np.uint16], final: bool) -> None:
        self.blocks[key].append(block.copy())

    def samples(self, key: Hashable) -> int:
        return sum(len(b) for b in self.blocks[key])

    def audio(self, key: Hashable) -> npt.NDArray[np.uint16]:
        return np.concatenate(self.blocks[key])


async def test_a_blocked_loop_loses_no_recorded_time() -> None:
    sink = Blocks()
    recorder = Recorder(sink, vad_mode=None)
    recorder.add("call", "PCMU", "PCMU")
    clock = MediaClock(recorder)
    clock.start()
    started = asyncio.get_running_loop().time()
    await asyncio.sleep(0.3)
    time.sleep(0.1)  # the loop is busy for 5 ticks' worth
    await asyncio.sleep(0.3)
    elapsed = asyncio.get_running_loop().time() - started
    clock.stop()
    recorder.close_all()
    slots = elapsed / 0.02
    assert clock.stats.caught_up >= 3
    assert clock.stats.overruns == 0
    assert abs(sink.samples("call") / 160 - slots) <= 2  # the wall-clock length


async def test_a_stall_beyond_the_backlog_is_counted_as_overrun() -> None:
    recorder = Recorder(Blocks(), vad_mode=None)
    clock = MediaClock(recorder)
    clock.start()
    await asyncio.sleep(0.05)
    time.sleep(0.02 * (MAX_BACKLOG + 5))
    await asyncio.sleep(0.05)
    clock.stop()
    assert clock.stats.caught_up >= MAX_BACKLOG - 1
    assert clock.stats.overruns >= 3


# --- defect 3: a busy loop must not turn queued packets into late ones -------------------


def _rtp(seq: int, ssrc: int) -> bytes:
    payload = bytes([0x10 + seq % 100]) * 160  # each packet's audio says its number
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + payload


def _send_paced(sock: socket.socket, port: int, ssrc: int, count: int) -> None:
    """A phone in its own thread: one packet every 20 ms, whatever the loop does."""
    start = time.monotonic()
    for seq in range(count):
        delay = start + seq * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sock.sendto(_rtp(seq, ssrc), ("127.0.0.1", port))


def _frames_heard(channel: npt.NDArray[np.uint16]) -> list[int]:
    """The packet numbers heard in one channel of wire samples (PCMU: the code bytes as
    sent), one per 20 ms frame, -1 for silence."""
    decode = {0x10 + n: n for n in range(100)}
    return [decode.get(int(channel[i]), -1) for i in range(0, len(channel) - 159, 160)]


async def test_a_stall_while_packets_queue_loses_none_of_them() -> None:
    """The INVITE-flood case: the loop is blocked for 150 ms while both parties' packets
    wait in the kernel.  asyncio reads one datagram per socket per iteration, so the
    recorder must catch up slot by slot, not fill the missed slots at once."""
    loop = asyncio.get_running_loop()
    sink = Blocks()
    recorder = Recorder(sink, vad_mode=None)
    allocator = PortAllocator(41300, 41399)
    media = MediaSession(allocator, "127.0.0.1")
    phones = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    clock = MediaClock(recorder)
    try:
        for phone in phones:
            phone.bind(("127.0.0.1", 0))
        pair = recorder.add("call", "PCMU", "PCMU")
        legs = [
            await media.open_leg("caller", sink=pair.caller.push),
            await media.open_leg("call_taker", sink=pair.taker.push),
        ]
        for leg, phone in zip(legs, phones, strict=True):
            leg.set_remote(*phone.getsockname())
            leg.audio_payload_type = 0
        clock.start()
        count = 60
        senders = [
            threading.Thread(target=_send_paced, args=(phone, leg.port, 1000 + i, count))
            for i, (leg, phone) in enumerate(zip(legs, phones, strict=True))
        ]
        for sender in senders:
            sender.start()
        await asyncio.sleep(0.4)
        loop.call_soon(time.sleep, 0.15)  # the loop is busy: packets queue meanwhile
        await asyncio.sleep(0.2)
        loop.call_soon(time.sleep, 0.15)
        while any(sender.is_alive() for sender in senders):
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.15)  # the playout delay, and a little more
        recorder.close("call")
    finally:
        clock.stop()
        media.close()
        for phone in phones:
            phone.close()
    assert pair.caller.jitter.stats.late == 0
    assert pair.taker.jitter.stats.late == 0
    audio = sink.audio("call")
    for channel in (audio[:, 0], audio[:, 1]):
        heard = [n for n in _frames_heard(channel) if n >= 0]
        assert heard == list(range(count)), "a packet was lost from the recording"
    assert clock.stats.caught_up >= 5


# --- fault isolation ------------------------------------------------------------------------


async def _a_bad_player_beside_healthy_calls() -> None:
    loop = asyncio.get_running_loop()
    sink = Blocks()
    recorder = Recorder(sink, vad_mode=None)
    for key in ("first", "second"):
        recorder.add(key, "PCMU", "PCMU")
    allocator = PortAllocator(41400, 41499)
    media = MediaSession(allocator, "127.0.0.1")
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.setblocking(False)
    clock = MediaClock(recorder)
    clock.start()
    try:
        bad = await media.open_leg("caller")
        good = await media.open_leg("caller")
        bad.set_remote(*listener.getsockname())
        good.set_remote(*listener.getsockname())

        def pacer() -> PacketPacer:
            return PacketPacer(RingbackTone("uk"), "PCMU", 0, clock.now(), 1, 0, 0)

        class BrokenPacer(PacketPacer):
            """A player with a bug (the relay's sends no longer raise, whatever the
            address: a pacer is what is left to fail)."""

            def due(self, now: float) -> list[bytes]:
                raise ValueError("broken pacer")

        failing = clock.play(bad, BrokenPacer(RingbackTone("uk"), "PCMU", 0, clock.now(), 1, 0, 0))
        healthy = clock.play(good, pacer())
        started = loop.time()
        await asyncio.sleep(0.5)
        elapsed = loop.time() - started
        assert failing.done() and isinstance(failing.exception(), ValueError)
        assert not healthy.done()
        received = 0
        while True:
            try:
                listener.recv(2048)
            except BlockingIOError:
                break
            received += 1
        assert received >= 0.5 / 0.02 - 3  # the healthy player kept sending
        assert clock.stats.player_errors == 1
        assert clock.stalled(0.1) is None
        recorder.close_all()
        for key in ("first", "second"):  # both recordings kept the wall clock's length
            assert abs(sink.samples(key) / 160 - elapsed / 0.02) <= 3
    finally:
        clock.stop()
        media.close()
        listener.close()


def test_a_failing_player_is_removed_and_the_clock_keeps_every_call_going() -> None:
    uvloop.run(_a_bad_player_beside_healthy_calls())  # the loop recproxy runs on


class _BrokenJitter:
    """A jitter buffer with a bug: every pop raises."""

    def pop(self, count: bool = True) -> bytes | None:
        raise RuntimeError("broken jitter buffer")

    def settle(self) -> None:
        pass


async def test_a_failing_recording_fails_alone_while_the_others_record_full_length() -> None:
    sink = Blocks()
    recorder = Recorder(sink, vad_mode=None)
    failed: list[tuple[Hashable, BaseException]] = []
    recorder.on_failure = lambda key, exc: failed.append((key, exc))
    healthy = recorder.add("healthy", "PCMU", "PCMU")
    broken = recorder.add("broken", "PCMU", "PCMU")
    clock = MediaClock(recorder)
    clock.start()
    started = asyncio.get_running_loop().time()
    await asyncio.sleep(0.1)
    broken.taker.jitter = _BrokenJitter()  # type: ignore[assignment]
    await asyncio.sleep(0.3)
    elapsed = asyncio.get_running_loop().time() - started
    assert clock.stalled(0.1) is None
    clock.stop()
    recorder.close_all()
    assert broken.state is RecordingState.FAILED
    assert [key for key, _ in failed] == ["broken"]
    assert healthy.state is RecordingState.STOPPED
    assert abs(sink.samples("healthy") / 160 - elapsed / 0.02) <= 2


async def test_the_watchdog_reports_a_clock_that_stopped_ticking() -> None:
    clock = MediaClock(Recorder(Blocks(), vad_mode=None))
    clock.start()
    await asyncio.sleep(0.05)
    assert clock.stalled(0.1) is None
    clock.stop()  # as if its timer were lost
    await asyncio.sleep(0.15)
    reason = clock.stalled(0.1)
    assert reason is not None and reason.startswith("no media clock tick")


async def test_the_snapshot_copies_the_counters_and_the_tick_age() -> None:
    clock = MediaClock(Recorder(Blocks()))
    before = clock.snapshot()
    assert (before.ticks, before.tick_age) == (0, None)  # not started: no age
    lags: list[float] = []
    clock = MediaClock(Recorder(Blocks()), on_lag=lags.append)
    clock.start()
    try:
        deadline = time.monotonic() + 2
        while clock.stats.ticks < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        snap = clock.snapshot()
    finally:
        clock.stop()
    assert snap.ticks == len(lags) >= 3  # the constructor callback saw every tick
    assert snap.tick_age is not None and 0 <= snap.tick_age < 1
    clock.stats.ticks += 100
    assert snap.ticks < clock.stats.ticks  # a copy, not a view
