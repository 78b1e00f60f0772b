"""Per-source flood control for new server transactions: token buckets, time passed in.

Each source address has two buckets.  New server transactions take a token from the
*request* bucket; when it is empty the request is refused (503 with Retry-After) as
long as the source's *refusal* bucket has a token, and dropped in silence once that is
empty too.  Every refusal the core sends without state (403 to an untrusted peer, 503
past a cap) takes a refusal token, so what a flood of requests draws back is bounded
by ``refusals_per_second`` whatever the flood's rate: a spoofed source cannot turn the
proxy into an amplifier.

The table of sources is bounded: past ``max_sources``, sources whose buckets have
refilled (idle ones) are forgotten first, then the oldest quarter.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass(frozen=True)
class FloodSettings:
    requests_per_second: float = 200.0  # new server transactions a source may open
    request_burst: float = 400.0
    refusals_per_second: float = 10.0  # stateless 503/403 answers to a source
    refusal_burst: float = 20.0
    retry_after_seconds: int = 5  # Retry-After of the 503s
    max_sources: int = 10_000


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; starts full."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float) -> bool:
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def is_full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.burst

    def _refill(self, now: float) -> None:
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now


class _Source:
    __slots__ = ("refusals", "requests")

    def __init__(self, settings: FloodSettings, now: float) -> None:
        self.requests = TokenBucket(settings.requests_per_second, settings.request_burst, now)
        self.refusals = TokenBucket(settings.refusals_per_second, settings.refusal_burst, now)


class SourceLimiter:
    """The buckets of every source host, bounded in number."""

    def __init__(self, settings: FloodSettings) -> None:
        self.settings = settings
        self._sources: dict[str, _Source] = {}

    def __len__(self) -> int:
        return len(self._sources)

    def take_request(self, host: str, now: float) -> bool:
        """May a request from ``host`` open a new server transaction?"""
        return self._source(host, now).requests.take(now)

    def take_refusal(self, host: str, now: float) -> bool:
        """``host`` is refused without state: may the refusal be sent (else: silence)?"""
        return self._source(host, now).refusals.take(now)

    def _source(self, host: str, now: float) -> _Source:
        source = self._sources.get(host)
        if source is None:
            if len(self._sources) >= self.settings.max_sources:
                self._forget_some(now)
            source = self._sources[host] = _Source(self.settings, now)
        return source

    def _forget_some(self, now: float) -> None:
        idle = [
            host
            for host, source in self._sources.items()
            if source.requests.is_full(now) and source.refusals.is_full(now)
        ]
        for host in idle:
            del self._sources[host]
        # all busy (a spoofed-source flood): forget the oldest quarter at once, so that
        # the scan above runs once per max_sources/4 new sources, not once per packet
        excess = len(self._sources) - self.settings.max_sources * 3 // 4
        for host in list(itertools.islice(self._sources, max(excess, 0))):
            del self._sources[host]
