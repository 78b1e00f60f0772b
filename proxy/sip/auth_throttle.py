"""Throttling of failed digest answers (issue 18), per key (a source address, an
account), time passed in.

A key with ``limit`` failures within ``window`` seconds is *blocked* until the oldest
of them leaves the window: the registrar then refuses at once, without looking the
credentials up or checking them, so a password guesser costs one table lookup and
learns nothing.  Refusals while blocked are not failures (they were never checked), so
a blocked key unblocks ``window`` seconds after its ``limit``-th failure whatever it
keeps sending.

The table is bounded: past ``max_keys`` the key whose last failure is oldest is
forgotten first (a forgotten key starts again with a clean count, never blocked
forever by a spoofed flood).
"""

from __future__ import annotations

from collections import OrderedDict, deque


class FailureThrottle:
    """Failures per key within a sliding window."""

    def __init__(self, limit: int, window: float, *, max_keys: int = 10_000) -> None:
        if limit < 1 or window <= 0 or max_keys < 1:
            raise ValueError("limit, window and max_keys must be positive")
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        # key -> the times of its last ``limit`` failures; least recently failed first
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def blocked_for(self, key: str, now: float) -> float:
        """Seconds until ``key`` may be checked again; 0.0 when it may be now."""
        times = self._failures.get(key)
        if times is None or len(times) < self.limit:
            return 0.0
        return max(times[0] + self.window - now, 0.0)

    def record(self, key: str, now: float) -> bool:
        """Count a failure of ``key``; True when it has just become blocked (the moment
        to log it, once per blocked period)."""
        times = self._failures.get(key)
        if times is None:
            times = self._failures[key] = deque(maxlen=self.limit)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(key)
        while times and times[0] <= now - self.window:
            times.popleft()
        times.append(now)
        return len(times) == self.limit
