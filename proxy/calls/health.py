"""Whether each call taker's addresses answer their OPTIONS keepalives.

Pure: fed the end of each probe, it says which addresses are down and which call
takers are up, so the hunt (:mod:`.hunt`) skips a dead phone without ringing it for
``no_answer_seconds`` first.  An address is *down* after ``failures`` probes in a row
got no answer, or one meaning unavailable (408, 503); any other final response, even
405, shows something there speaks SIP and brings it up again at once.  An address
never probed is up: with keepalives off, nothing is ever skipped.
"""

from __future__ import annotations

from ..sip.resolve import Target

UNAVAILABLE = frozenset({408, 503})


def alive(status: int | None) -> bool:
    """Whether a probe's final response (None: none came) shows the address is alive."""
    return status is not None and status not in UNAVAILABLE


class TargetHealth:
    """Failures in a row per address, and each call taker's addresses."""

    def __init__(self, failures: int) -> None:
        if failures < 1:
            raise ValueError("failures must be at least 1")
        self.failures = failures
        self._failed: dict[Target, int] = {}
        self._addresses: dict[str, set[Target]] = {}

    def probed(self, call_taker: str, target: Target, status: int | None) -> None:
        """A probe of ``call_taker``'s ``target`` ended with ``status``."""
        self._addresses.setdefault(call_taker, set()).add(target)
        if alive(status):
            self._failed[target] = 0
        else:
            self._failed[target] = self._failed.get(target, 0) + 1

    def forget(self, call_taker: str, current: set[Target]) -> None:
        """``call_taker`` now resolves to ``current``: the addresses it lost are dropped."""
        for gone in self._addresses.get(call_taker, set()) - current:
            self._failed.pop(gone, None)
        self._addresses[call_taker] = set(current)

    def is_down(self, target: Target) -> bool:
        return self._failed.get(target, 0) >= self.failures

    def is_up(self, call_taker: str) -> bool:
        """Up unless every address it was probed at is down."""
        addresses = self._addresses.get(call_taker)
        return not addresses or not all(self.is_down(t) for t in addresses)

    def usable(self, items: list[str]) -> list[str]:
        """The call takers to ring, in order: those up, or all when none is."""
        up = [item for item in items if self.is_up(item)]
        return up or list(items)

    def reachable(self, targets: list[Target]) -> list[Target]:
        """A call taker's addresses to try, in order: those not down, or all when none is."""
        live = [t for t in targets if not self.is_down(t)]
        return live or list(targets)
