"""The open subject access case gauge (P17-P19): cases not yet answered, by how near
their statutory deadline is, for the alerts ``RecproxySarCaseDueSoon`` and
``RecproxySarCaseOverdue``.

Cases live in the shared catalog, so the call proxy (the one scrape target) counts them
as it counts holds and flags (:mod:`.hold_metrics`, :mod:`.flag_metrics`): a scrape
never waits on the catalog; :class:`SarCounter` keeps the last counts, refreshed by one
task every ``REFRESH_SECONDS``.  ``due`` is ``overdue`` (the deadline has passed),
``soon`` (due within ``[sar] due_soon_days``) or ``later``; every value has a series
from the first refresh, zeros included, so an alert sees 0, not a gap.  A case counts
until its first bundle is exported (``answered``) or it is closed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric

from ..storage.catalog import SarCaseRepository
from ..storage.catalog.values import utc_now
from .hold_metrics import REFRESH_SECONDS, refresh_every

DAY_MS = 86_400_000
DUE = ("later", "soon", "overdue")


@dataclass(frozen=True, slots=True)
class SarSnapshot:
    """Open cases by how near their deadline is (each of :data:`DUE`)."""

    later: int
    soon: int
    overdue: int

    def by_due(self) -> dict[str, int]:
        return {"later": self.later, "soon": self.soon, "overdue": self.overdue}


class SarCounter:
    """The last open-case counts of ``cases``; see the module docstring."""

    def __init__(
        self,
        cases: SarCaseRepository,
        due_soon_days: int,
        *,
        clock: Callable[[], datetime] = utc_now,
        interval: float = REFRESH_SECONDS,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._cases = cases
        self._soon_ms = due_soon_days * DAY_MS
        self._clock = clock
        self.interval = interval
        self._last: SarSnapshot | None = None

    def snapshot(self) -> SarSnapshot | None:
        """The last counts (None before the first refresh)."""
        return self._last

    async def refresh(self) -> SarSnapshot:
        """Count now (one catalog read) and keep the result."""
        counts = await self._cases.counts(self._clock(), self._soon_ms)
        later = counts.open - counts.due_soon - counts.overdue
        self._last = SarSnapshot(later, counts.due_soon, counts.overdue)
        return self._last

    async def run(self) -> None:
        """Refresh every ``interval`` seconds until cancelled."""
        await refresh_every(self.refresh, self.interval, "subject access metrics")


def sar_families(snapshot: SarSnapshot | None) -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "recproxy_sar_cases_open",
        "Subject access cases not yet answered nor closed, by how near the deadline is: "
        "due later, soon ([sar] due_soon_days) or overdue (refreshed every 30 s).",
        labels=["due"],
    )
    if snapshot is not None:
        for due, count in snapshot.by_due().items():
            family.add_metric([due], count)
    yield family
