"""Log lines for events that come in floods, rate-limited and summarised.

The first occurrence of an event (by key) is logged at once; the rest within the
window are counted, and when the window closes one line says how many there were::

    INVITE from untrusted 198.51.100.7:5060 refused
    … and 1,234 more like this in the last 10 s (INVITE from untrusted …)

so an INVITE flood writes two lines every ten seconds instead of one per INVITE.  The
summary is written by a timer on the running event loop (or, with none, by the next
occurrence after the window).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

MAX_KEYS = 1_000  # distinct keys tracked; past it, new keys log unlimited


class _Window:
    __slots__ = ("args", "message", "started", "suppressed")

    def __init__(self, started: float) -> None:
        self.started = started
        self.suppressed = 0
        self.message = ""
        self.args: tuple[Any, ...] = ()


class RateLimitedLog:
    """``logger``'s lines by key: one per ``window`` seconds, then a count of the rest."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.window = window
        self.clock = clock
        self._windows: dict[str, _Window] = {}
        self._levels: dict[str, int] = {}

    def info(self, key: str, message: str, *args: Any) -> None:
        self.log(logging.INFO, key, message, *args)

    def warning(self, key: str, message: str, *args: Any) -> None:
        self.log(logging.WARNING, key, message, *args)

    def error(self, key: str, message: str, *args: Any) -> None:
        self.log(logging.ERROR, key, message, *args)

    def log(self, level: int, key: str, message: str, *args: Any) -> None:
        now = self.clock()
        window = self._windows.get(key)
        if window is not None and now - window.started < self.window:
            if window.suppressed == 0:
                self._schedule_summary(key, window)
            window.suppressed += 1
            window.message, window.args = message, args
            return
        if window is not None:
            self.summarise(key)
        if len(self._windows) < MAX_KEYS:
            self._windows[key] = _Window(now)
            self._levels[key] = level
        self.logger.log(level, message, *args)

    def summarise(self, key: str) -> None:
        """Write the count of what was held back under ``key``, and close its window."""
        window = self._windows.pop(key, None)
        level = self._levels.pop(key, logging.INFO)
        if window is None or not window.suppressed:
            return
        self.logger.log(
            level,
            "… and %s more like this in the last %g s (last: " + window.message + ")",
            f"{window.suppressed:,}",
            self.window,
            *window.args,
        )

    def _schedule_summary(self, key: str, window: _Window) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: the next occurrence after the window writes it
        delay = max(window.started + self.window - self.clock(), 0.0)

        def fire() -> None:
            if self._windows.get(key) is window:
                self.summarise(key)

        loop.call_later(delay, fire)
