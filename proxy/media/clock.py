"""The media clock: one 20 ms tick for the whole process (asyncio adapter).

Each tick runs the recorder for every active call, then sends whatever the active
announcers (notice, ringback) have due.  Ticks are scheduled from the start time
(``start + n * interval``), never from "now + 20 ms", so they do not drift; a tick that
runs late is measured (lag) and runs the recorder for every slot it missed (up to
``MAX_CATCH_UP``) so recordings keep the wall clock's length; announcers catch up by
themselves (``PacketPacer.due``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass

from .announcer import PacketPacer
from .recorder import Recorder
from .relay import RtpLeg

MAX_CATCH_UP = 10  # recorder slots a late tick may run at once (200 ms)


@dataclass
class ClockStats:
    ticks: int = 0
    overruns: int = 0  # whole intervals skipped because a tick ran that late
    caught_up: int = 0  # recorder ticks run late, in a burst, to keep the timeline
    max_lag: float = 0.0
    last_lag: float = 0.0


class _Player:
    __slots__ = ("done", "leg", "pacer")

    def __init__(self, leg: RtpLeg, pacer: PacketPacer, done: asyncio.Future[None]) -> None:
        self.leg = leg
        self.pacer = pacer
        self.done = done


class MediaClock:
    def __init__(
        self,
        recorder: Recorder,
        *,
        interval: float = 0.02,
        on_lag: Callable[[float], None] | None = None,
    ) -> None:
        self.recorder = recorder
        self.interval = interval
        self.on_lag = on_lag
        self.stats = ClockStats()
        self._players: dict[RtpLeg, _Player] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._start = 0.0
        self._n = 0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._start = loop.time()
        self._n = 0
        self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for player in self._players.values():
            if not player.done.done():
                player.done.cancel()
        self._players.clear()

    def now(self) -> float:
        """The time of the latest tick (the start of the next slot a pacer should use)."""
        if self._loop is None:
            raise RuntimeError("media clock not started")
        return self._loop.time()

    def play(self, leg: RtpLeg, pacer: PacketPacer) -> asyncio.Future[None]:
        """Send ``pacer``'s packets on ``leg`` from the next tick on; the future resolves
        when its source is exhausted (never, for an endless ringback tone)."""
        if self._loop is None:
            raise RuntimeError("media clock not started")
        self.silence(leg)
        done: asyncio.Future[None] = self._loop.create_future()
        self._players[leg] = _Player(leg, pacer, done)
        return done

    def silence(self, leg: RtpLeg) -> None:
        """Stop whatever plays on ``leg`` (the pacer keeps its numbering state)."""
        player = self._players.pop(leg, None)
        if player is not None and not player.done.done():
            player.done.cancel()

    def playing(self, leg: RtpLeg) -> PacketPacer | None:
        player = self._players.get(leg)
        return player.pacer if player is not None else None

    def _schedule(self) -> None:
        assert self._loop is not None
        self._handle = self._loop.call_at(self._start + self._n * self.interval, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        scheduled = self._start + self._n * self.interval
        lag = now - scheduled
        stats = self.stats
        stats.ticks += 1
        stats.last_lag = lag
        if lag > stats.max_lag:
            stats.max_lag = lag
        if self.on_lag is not None:
            self.on_lag(lag)
        self.recorder.tick(now, scheduled)
        if self._players:
            for leg, player in list(self._players.items()):
                for packet in player.pacer.due(now):
                    leg.send_own(packet)
                if player.pacer.finished:
                    del self._players[leg]
                    if not player.done.done():
                        player.done.set_result(None)
        self._n += 1
        # A late tick (the loop was busy) catches the recorder up slot by slot, so a
        # recording's timeline stays the wall clock's: the packets are waiting in the
        # jitter buffers.  Only a stall longer than MAX_CATCH_UP slots loses time.
        caught_up = 0
        while self._start + self._n * self.interval <= now and caught_up < MAX_CATCH_UP:
            self.recorder.tick(now, self._start + self._n * self.interval)
            self._n += 1
            caught_up += 1
        stats.caught_up += caught_up
        behind = now - (self._start + self._n * self.interval)
        if behind > self.interval:
            skipped = math.floor(behind / self.interval)
            stats.overruns += skipped
            self._n += skipped
        self._schedule()
