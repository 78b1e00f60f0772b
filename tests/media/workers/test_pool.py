"""The worker pool with real legs, real worker processes and loopback sockets: a bridged
call goes to a worker once both legs latched; its packets reach the other party from our
other leg, continue the caller's stream, and reach the recorder through the call
process; it comes back when asked, when a leg changes, or when a stranger sends; and a
worker killed with SIGKILL ends its calls only, and is started again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import struct
from collections.abc import AsyncIterator

import pytest

from proxy.media.fastpath import not_ready
from proxy.media.relay import LegMode, MediaSession, PortAllocator, RtpLeg, StreamRewriter
from proxy.media.workers import WorkerPool
from proxy.media.workers import pool as pool_module
from proxy.media.workers.recording_messages import RecorderSetup
from tests.media.loopback_phone import Parties, Phone, rtp

pytestmark = pytest.mark.usefixtures("quick_restart")


def header(packet: bytes) -> tuple[int, int, int]:
    _, _, seq, ts, ssrc = struct.unpack_from("!BBHII", packet)
    return seq, ts, ssrc


class Call(Parties):
    """Two legs of one bridged call, the parties' phones, what was recorded and lost."""

    def __init__(self, pool: WorkerPool, a: RtpLeg, b: RtpLeg) -> None:
        super().__init__(a, b)
        self.pool = pool
        self.lost: list[str] = []
        a.peer, b.peer = b, a
        a.mode = b.mode = LegMode.BRIDGED

    async def hand_over(self) -> None:
        """Both legs latched (one packet each), then the call offered: on a worker."""
        self.caller.send(rtp(1), self.a.port)
        self.taker.send(rtp(1), self.b.port)
        await self.settle()
        self.pool.offer(self.a, self.b, self.lost.append)
        await self.settle(0.3)  # the worker set its sockets up
        assert self.pool.on_worker(self.a) and self.a.lent and self.b.lent

    async def talk(self, first: int, last: int) -> None:
        for seq in range(first, last + 1):
            self.caller.send(rtp(seq), self.a.port)
            self.taker.send(rtp(seq), self.b.port)
            await asyncio.sleep(0.002)
        await self.settle()

    async def settle(self, seconds: float = 0.1) -> None:
        await asyncio.sleep(seconds)
        self.caller.drain()
        self.taker.drain()


@pytest.fixture
def quick_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "RESTART_SECONDS", 0.0)


@contextlib.asynccontextmanager
async def running_pool(recording: RecorderSetup | None = None) -> AsyncIterator[WorkerPool]:
    """Two worker processes, up (said hello), closed on leaving."""
    workers = WorkerPool(2, recording=recording)
    workers.start(asyncio.get_running_loop())
    await until_ready(workers)
    try:
        yield workers
    finally:
        workers.close()


@contextlib.asynccontextmanager
async def loopback_session(first_port: int) -> AsyncIterator[MediaSession]:
    """Legs on 100 loopback ports from ``first_port``."""
    media = MediaSession(PortAllocator(first_port, first_port + 99), "127.0.0.1")
    try:
        yield media
    finally:
        media.close()


@pytest.fixture
async def pool() -> AsyncIterator[WorkerPool]:
    async with running_pool() as workers:
        yield workers


@pytest.fixture
async def session() -> AsyncIterator[MediaSession]:
    async with loopback_session(21000) as media:
        yield media


async def until_ready(pool: WorkerPool) -> None:
    for _ in range(200):  # 10 s at most (a worker starts in well under a second)
        if all(worker.ready for worker in pool.snapshot()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"workers not ready: {pool.snapshot()}")


async def new_call(pool: WorkerPool, session: MediaSession) -> Call:
    a = await session.open_leg("caller")
    b = await session.open_leg("call_taker")
    return Call(pool, a, b)


async def test_a_call_on_a_worker_is_relayed_recorded_and_given_back(
    pool: WorkerPool, session: MediaSession
) -> None:
    call = await new_call(pool, session)
    a, b = call.a, call.b
    a.rewriter = StreamRewriter(0x1234, 500, 8000)  # the caller's stream after the notice
    await call.hand_over()
    call.caller.received.clear()
    call.taker.received.clear()
    await call.talk(2, 11)
    # the call taker gets the caller's packets unchanged, from our leg B
    assert call.taker.received == [(rtp(seq), ("127.0.0.1", b.port)) for seq in range(2, 12)]
    # the caller's stream goes on with its own SSRC and numbering
    assert [header(data)[2] for data, _ in call.caller.received] == [0x1234] * 10
    seqs = [header(data)[0] for data, _ in call.caller.received]
    assert seqs == list(range(seqs[0], seqs[0] + 10))
    # recorded through the call process, each once
    assert call.recorded == {"a": list(range(1, 12)), "b": list(range(1, 12))}
    assert sum(worker.packets for worker in pool.snapshot()) == 20
    assert sum(worker.calls for worker in pool.snapshot()) == 1
    # the call taker's telephone-events reach the call flow only
    call.taker.send(rtp(12, pt=101), b.port)
    await call.settle()
    assert call.events == [12] and header(call.caller.received[-1][0])[0] == seqs[-1]
    # asked back: the relay reads again at once; the worker's counts are added when it
    # answers, and the relay forwards again, in sequence
    pool.withdraw(a)
    assert not pool.on_worker(a) and sum(worker.calls for worker in pool.snapshot()) == 0
    back = asyncio.get_running_loop().create_future()
    pool.when_back(a, lambda: back.set_result(None))
    await asyncio.wait_for(back, 2)
    assert a.stats.packets_out == b.stats.packets_out == 11  # the relay 1, the worker 10
    await asyncio.sleep(0.05)
    assert not a.lent and not b.lent
    call.taker.send(rtp(13), b.port)
    await call.settle()
    # the relay goes on with the worker's offsets (13 follows 11: 12 was an event)
    last_ts = header(call.caller.received[-2][0])[1]
    assert header(call.caller.received[-1][0]) == (seqs[-1] + 2, last_ts + 320, 0x1234)
    assert (a.stats.packets_in, b.stats.packets_in) == (11, 13)
    assert call.lost == []


async def test_legs_on_a_wildcard_address_go_to_a_worker_too(pool: WorkerPool) -> None:
    """serve's default binds RTP on 0.0.0.0: the kernel path cannot take such a call (its
    rewrite needs a concrete local address), but a worker sends from the call's own
    sockets, so it can."""
    media = MediaSession(PortAllocator(21200, 21299), "0.0.0.0")
    try:
        call = await new_call(pool, media)
        await call.hand_over()
        call.taker.received.clear()
        await call.talk(2, 6)
        assert [data for data, _ in call.taker.received] == [rtp(seq) for seq in range(2, 7)]
        assert call.recorded == {"a": list(range(1, 7)), "b": list(range(1, 7))}
        assert not_ready(call.a, call.b) == "wildcard address"  # the kernel could not
    finally:
        media.close()


async def test_a_changed_leg_or_a_stranger_brings_the_call_back_and_it_goes_again(
    pool: WorkerPool, session: MediaSession
) -> None:
    call = await new_call(pool, session)
    a = call.a
    await call.hand_over()
    a.mode = LegMode.HOLD  # a re-INVITE: nothing more to the call taker
    await call.settle(0.25)
    assert not pool.on_worker(a)
    call.taker.received.clear()
    call.caller.send(rtp(2), a.port)
    await call.settle()
    assert call.taker.received == [] and call.recorded["a"][-1] == 2
    a.mode = LegMode.BRIDGED
    pool.offer(a, call.b, call.lost.append)
    await call.settle(0.2)
    assert pool.on_worker(a)
    stranger = Phone()
    stranger.send(rtp(99), a.port)
    await call.settle(0.05)
    assert not pool.on_worker(a)
    assert a.stats.dropped_unknown_source == 1  # the relay's latching said no
    await call.settle(0.4)
    assert pool.on_worker(a), "offered again after the stranger"
    assert call.lost == []


async def test_a_killed_worker_ends_its_calls_only_and_is_started_again(
    pool: WorkerPool, session: MediaSession
) -> None:
    first, second = await new_call(pool, session), await new_call(pool, session)
    await first.hand_over()
    await second.hand_over()
    places = {worker.place: worker for worker in pool.snapshot()}
    assert all(worker.calls == 1 for worker in places.values()), places
    victim = next(w for w in pool._places if w is not None and first.a.port in _ports(w))
    old_pid = victim.process.pid
    os.kill(old_pid, signal.SIGKILL)
    await first.settle(0.3)
    assert first.lost and f"media worker {victim.place} (pid {old_pid})" in first.lost[0]
    assert second.lost == []
    assert not pool.on_worker(first.a) and pool.on_worker(second.a)
    await second.talk(2, 6)
    assert second.recorded["a"] == list(range(1, 7))
    await until_ready(pool)  # started again
    again = pool.snapshot()[victim.place]
    assert again.pid not in (None, old_pid) and again.restarts == 1
    third = await new_call(pool, session)
    await third.hand_over()
    assert sorted(worker.calls for worker in pool.snapshot()) == [1, 1]
    await third.talk(2, 4)
    assert third.recorded["b"] == [1, 2, 3, 4]


def _ports(worker: pool_module._Worker) -> set[int]:
    return {leg.port for call in worker.calls.values() for leg in call.legs()}


async def test_a_worker_slow_to_give_back_keeps_its_calls_and_the_loop_runs(
    pool: WorkerPool, session: MediaSession
) -> None:
    call = await new_call(pool, session)
    a, b = call.a, call.b
    await call.hand_over()
    worker = next(w for w in pool._places if w is not None and a.port in _ports(w))
    os.kill(worker.process.pid, signal.SIGSTOP)  # CPU contention, at its worst
    try:
        pool.withdraw(a)  # returns at once: nothing waits for the stopped worker
        back = asyncio.get_running_loop().create_future()
        pool.when_back(a, lambda: back.set_result(None))
        await asyncio.sleep(0.05)
        assert not a.lent and not b.lent  # this process reads the sockets again
        await call.talk(2, 4)  # relayed and recorded here meanwhile
        assert call.recorded == {"a": [1, 2, 3, 4], "b": [1, 2, 3, 4]}
        assert call.taker.received[-1][0] == rtp(4)
        await asyncio.sleep(pool_module.GIVE_BACK_SECONDS)
        assert not back.done()
        snapshot = pool.snapshot()[worker.place]
        assert snapshot.slow_replies == 1 and snapshot.pid == worker.process.pid
    finally:
        os.kill(worker.process.pid, signal.SIGCONT)
    await asyncio.wait_for(back, 2)  # its answer settles the call
    assert call.lost == [] and pool.snapshot()[worker.place].restarts == 0
    again = await new_call(pool, session)  # the slow worker still takes calls
    await again.hand_over()
    await again.talk(2, 3)
    assert again.recorded["a"] == [1, 2, 3]
