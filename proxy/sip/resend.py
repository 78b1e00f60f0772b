"""One message resent on a doubling interval until stopped, given up after 64·T1.

Two of our responses live outside their transaction's own timers: a 2xx to an INVITE,
resent until its ACK (RFC 3261 §13.3.1.4, interval capped at T2), and a reliable 1xx,
resent until its PRACK (RFC 3262 §3, no cap).  They share this clock; what is resent,
and what happens when it is given up, is theirs.  Pure: the core passes ``now`` and
fires the deadlines it was asked to arm.
"""

from __future__ import annotations

from collections.abc import Callable

Arm = Callable[["Resender", str, float], None]


class Resender:
    """Deadlines ``retransmit`` (T1, then doubling, at most ``cap``) and ``give_up``
    (64·T1 after ``start``)."""

    def __init__(self, arm: Arm, t1: float, cap: float | None) -> None:
        self._arm_at = arm
        self.t1 = t1
        self.cap = cap
        self.interval = t1
        self.deadlines: dict[str, float] = {}

    def start(self, now: float) -> None:
        self._arm("retransmit", now + self.t1)
        self._arm("give_up", now + 64 * self.t1)

    def resend(self, now: float) -> None:
        raise NotImplementedError

    def expired(self, now: float) -> None:
        """64·T1 passed without ``stop``: after the deadlines are cleared."""
        raise NotImplementedError

    def _arm(self, name: str, deadline: float) -> None:
        self.deadlines[name] = deadline
        self._arm_at(self, name, deadline)

    def fire(self, name: str, deadline: float, now: float) -> None:
        if self.deadlines.get(name) != deadline:
            return  # stale: stopped, or re-armed since
        del self.deadlines[name]
        if name == "retransmit":
            self.resend(now)
            doubled = 2 * self.interval
            self.interval = doubled if self.cap is None else min(doubled, self.cap)
            self._arm("retransmit", now + self.interval)
        else:
            self.stop()
            self.expired(now)

    def stop(self) -> None:
        self.deadlines.clear()

    def is_live(self, name: str, deadline: float) -> bool:
        return self.deadlines.get(name) == deadline
