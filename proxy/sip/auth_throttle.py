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


class ProvenSources:
    """Which sources recently proved an account's password: ``(account, source)`` pairs,
    each until a time.  A guesser's failures can block an account, but not for the
    addresses its real phones authenticate from.  Bounded like :class:`FailureThrottle`
    (past ``max_pairs`` the pair proved longest ago is forgotten first; only a right
    password adds one, so a flood cannot fill it)."""

    def __init__(self, *, max_pairs: int = 10_000) -> None:
        if max_pairs < 1:
            raise ValueError("max_pairs must be positive")
        self.max_pairs = max_pairs
        self._until: OrderedDict[tuple[str, str], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    def prove(self, account: str, source: str, until: float) -> None:
        """``source`` answered right for ``account``: trusted for it until ``until``."""
        key = (account, source)
        self._until[key] = max(until, self._until.get(key, until))
        self._until.move_to_end(key)
        while len(self._until) > self.max_pairs:
            self._until.popitem(last=False)

    def proved(self, account: str, source: str, now: float) -> bool:
        """Whether ``source`` proved ``account``'s password and that still holds."""
        until = self._until.get((account, source))
        if until is None:
            return False
        if until <= now:
            del self._until[(account, source)]
            return False
        return True
