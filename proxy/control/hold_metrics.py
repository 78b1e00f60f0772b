"""Hold gauges (P16): active holds by kind and holds due for review.

They come from the catalog, and a scrape must never wait on it: ``HoldCounter`` keeps
the last :class:`HoldsSnapshot`, refreshed by one task every ``REFRESH_SECONDS`` (the
query runs in the catalog's database thread, not on the event loop), and the metrics
read that copy (``Metrics.attach(holds=counter.snapshot)``).  Before the first refresh
there is no snapshot and the families have no samples; a refresh the catalog refuses
keeps the previous copy and is logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric

from ..storage.catalog import CatalogError, HoldRepository
from ..storage.catalog.values import utc_now

log = logging.getLogger(__name__)

REFRESH_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class HoldsSnapshot:
    """Active holds by kind (every configured kind, zero included) and how many are due
    for review."""

    active_by_kind: Mapping[str, int]
    due_for_review: int


class HoldCounter:
    """The last hold counts of ``holds``; see the module docstring."""

    def __init__(
        self,
        holds: HoldRepository,
        kinds: Sequence[str],
        *,
        clock: Callable[[], datetime] = utc_now,
        interval: float = REFRESH_SECONDS,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._holds = holds
        self._kinds = tuple(kinds)
        self._clock = clock
        self.interval = interval
        self._last: HoldsSnapshot | None = None

    def snapshot(self) -> HoldsSnapshot | None:
        """The last counts (None before the first refresh)."""
        return self._last

    async def refresh(self) -> HoldsSnapshot:
        """Count now (one catalog read) and keep the result."""
        counts = await self._holds.counts(self._clock())
        # a kind no longer configured keeps its series while holds of it are active
        by_kind = dict.fromkeys(self._kinds, 0) | dict(counts.active_by_kind)
        self._last = HoldsSnapshot(by_kind, counts.due_for_review)
        return self._last

    async def run(self) -> None:
        """Refresh every ``interval`` seconds until cancelled."""
        await refresh_every(self.refresh, self.interval, "hold metrics")


async def refresh_every(
    refresh: Callable[[], Awaitable[object]], interval: float, what: str
) -> None:
    """``refresh`` now and every ``interval`` seconds until cancelled; a refresh the
    catalog refuses is logged and the previous counts kept."""
    while True:
        try:
            await refresh()
        except CatalogError as exc:
            log.warning("%s not refreshed: %s", what, exc)
        await asyncio.sleep(interval)


def hold_families(snapshot: HoldsSnapshot | None) -> Iterator[Metric]:
    active = GaugeMetricFamily(
        "recproxy_holds_active",
        "Holds not yet released, by kind (refreshed from the catalog every 30 s).",
        labels=["kind"],
    )
    due = GaugeMetricFamily(
        "recproxy_holds_due_for_review",
        "Active holds whose review date has come (refreshed from the catalog every 30 s).",
    )
    if snapshot is not None:
        for kind, count in sorted(snapshot.active_by_kind.items()):
            active.add_metric([kind], count)
        due.add_metric([], snapshot.due_for_review)
    yield from (active, due)
