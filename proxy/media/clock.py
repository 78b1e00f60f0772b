"""The media clock: one 20 ms tick for the whole process (asyncio adapter).

Each tick sends whatever the active announcers (notice, ringback) have due, then runs
the recorder for every active call.  Ticks are scheduled from the start time
(``start + n * interval``), never from "now + 20 ms", so they do not drift.

A late tick (the loop was busy) is measured (lag) and the recorder catches up the
slots it missed so recordings keep the wall clock's length — but one slot per loop
iteration (``call_soon``), not all at once: asyncio reads one datagram per socket per
iteration, so after a stall the packets for the missed slots are still in the kernel,
and playing those slots in one burst would fill them as missing and then drop the
packets as late.  One slot per iteration lets each slot's packets in first.  A backlog
longer than ``MAX_BACKLOG`` slots (a stall past what a jitter buffer can re-order) is
skipped and counted as overruns.  Announcers catch up by themselves
(``PacketPacer.due``).

Fault isolation: an error in one player (a pacer, or the send on its leg) removes that
player and hands the error to its ``done`` future (the call flow ends that call); an
error in one recording fails that recording only (the recorder isolates them).  Nothing
stops the clock: the next tick is always scheduled.  ``last_tick`` and
``ClockStats.last_lag`` feed the watchdog (``stalled``).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from .announcer import PacketPacer
from .recorder import Recorder
from .relay import RtpLeg

log = logging.getLogger(__name__)

MAX_BACKLOG = 50  # recorder slots a stall may leave to catch up (1 s); more is skipped
_ERROR_LOG_SECONDS = 1.0  # at most one log line a second for errors in the recorder


@dataclass
class ClockStats:
    ticks: int = 0  # timed ticks (catch-up slots are counted in caught_up)
    overruns: int = 0  # recorder slots skipped because a stall exceeded MAX_BACKLOG
    caught_up: int = 0  # recorder slots run late, one per loop iteration, after a stall
    max_lag: float = 0.0
    last_lag: float = 0.0
    player_errors: int = 0  # players removed because their pacer or send raised
    recorder_errors: int = 0  # ticks in which the recorder itself raised


@dataclass(frozen=True, slots=True)
class ClockSnapshot:
    """``MediaClock.snapshot()``: the clock's counters, and seconds since its latest tick
    (``None`` before it started)."""

    ticks: int
    overruns: int
    player_errors: int
    recorder_errors: int
    tick_age: float | None


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
        self.last_tick: float | None = None  # loop time of the latest tick
        self._players: dict[RtpLeg, _Player] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._catching_up = False  # the next run is a catch-up slot, not a timed tick
        self._start = 0.0
        self._n = 0  # the next recorder slot
        self._last_error_log = -math.inf

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._start = loop.time()
        self._n = 0
        self._catching_up = False
        self.last_tick = self._start
        self._handle = loop.call_at(self._start, self._tick)

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

    def last_tick_age(self) -> float | None:
        """Seconds since the latest tick; None before ``start``."""
        if self._loop is None or self.last_tick is None:
            return None
        return self._loop.time() - self.last_tick

    def snapshot(self) -> ClockSnapshot:
        """The counters and the tick age now, copied: for metrics at scrape time."""
        stats = self.stats
        return ClockSnapshot(
            stats.ticks,
            stats.overruns,
            stats.player_errors,
            stats.recorder_errors,
            self.last_tick_age(),
        )

    def stalled(self, threshold: float) -> str | None:
        """Why the clock is unhealthy — no tick for ``threshold`` seconds, or the
        last tick ran that late — or None when it is healthy."""
        age = self.last_tick_age()
        if age is None:
            return "the media clock is not running"
        if age > threshold:
            return f"no media clock tick for {age:.3f} s (limit {threshold} s)"
        if self.stats.last_lag > threshold:
            return f"media clock ticks lag {self.stats.last_lag:.3f} s (limit {threshold} s)"
        return None

    def play(self, leg: RtpLeg, pacer: PacketPacer) -> asyncio.Future[None]:
        """Send ``pacer``'s packets on ``leg`` from the next tick on; the future resolves
        when its source is exhausted (never, for an endless ringback tone), or gets the
        exception if the pacer or the send raised."""
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

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        slot = self._start + self._n * self.interval
        try:
            if not self._catching_up:
                self._measure(now, now - slot)
            if self._players:
                self._play(now)
            self._record(now, slot)
        finally:
            self._schedule(now)

    def _measure(self, now: float, lag: float) -> None:
        stats = self.stats
        stats.ticks += 1
        stats.last_lag = lag
        self.last_tick = now
        if lag > stats.max_lag:
            stats.max_lag = lag
        if self.on_lag is not None:
            self.on_lag(lag)

    def _play(self, now: float) -> None:
        for leg, player in list(self._players.items()):
            try:
                for packet in player.pacer.due(now):
                    leg.send_own(packet)
                finished = player.pacer.finished
            except Exception as exc:  # this player only: its call decides what follows
                self.stats.player_errors += 1
                del self._players[leg]
                log.error("media clock: playing on leg %s failed: %r", leg.name, exc)
                if not player.done.done():
                    player.done.set_exception(exc)
                    player.done.exception()  # logged here: no "never retrieved" warning
                continue
            if finished:
                del self._players[leg]
                if not player.done.done():
                    player.done.set_result(None)

    def _record(self, now: float, slot: float) -> None:
        try:
            self.recorder.tick(now, slot)
        except Exception:  # the recorder isolates recordings; this is the last resort
            self.stats.recorder_errors += 1
            if now - self._last_error_log >= _ERROR_LOG_SECONDS:
                self._last_error_log = now
                log.exception(
                    "media clock: the recorder tick failed (%d so far)",
                    self.stats.recorder_errors,
                )
        self._n += 1

    def _schedule(self, now: float) -> None:
        """The next slot at its time; while behind, at the next loop iteration."""
        assert self._loop is not None
        backlog = math.floor((now - self._start) / self.interval) + 1 - self._n
        if backlog > MAX_BACKLOG:
            self.stats.overruns += backlog - MAX_BACKLOG
            self._n += backlog - MAX_BACKLOG
            backlog = MAX_BACKLOG
        self._catching_up = backlog > 0
        if self._catching_up:
            self.stats.caught_up += 1
            self._handle = self._loop.call_soon(self._tick)
        else:
            self._handle = self._loop.call_at(self._start + self._n * self.interval, self._tick)
