"""The anomaly flag gauge (P11, P21): open flags by kind, for the DPO's alert.

Flags are raised by the records service (the gate, :mod:`proxy.records.flagging`) and
by custodian exports, and they live in the shared catalog; so any process that opens the
catalog can count them.  As with holds (:mod:`.hold_metrics`) a scrape never waits on
the catalog: :class:`FlagCounter` keeps the last counts, refreshed by one task every
``REFRESH_SECONDS``, and the families read that copy.  The call proxy attaches it to its
``Metrics`` (``attach(flags=counter.snapshot)``): it is the one scrape target, and the
records service serves no ``/metrics``.  Every kind of
:class:`proxy.records.anomaly.Anomaly` has a series from the first refresh, zeros
included, so an alert rule sees 0, not a gap.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric

from ..records.anomaly import Anomaly
from ..storage.catalog import FlagRepository
from .hold_metrics import REFRESH_SECONDS, refresh_every

KINDS = tuple(anomaly.value for anomaly in Anomaly)


@dataclass(frozen=True, slots=True)
class FlagsSnapshot:
    """Open flags by kind (every known kind, zero included)."""

    open_by_kind: Mapping[str, int]


class FlagCounter:
    """The last open-flag counts of ``flags``; see the module docstring."""

    def __init__(self, flags: FlagRepository, *, interval: float = REFRESH_SECONDS) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._flags = flags
        self.interval = interval
        self._last: FlagsSnapshot | None = None

    def snapshot(self) -> FlagsSnapshot | None:
        """The last counts (None before the first refresh)."""
        return self._last

    async def refresh(self) -> FlagsSnapshot:
        """Count now (one catalog read) and keep the result."""
        counts = await self._flags.open_counts()
        self._last = FlagsSnapshot(dict.fromkeys(KINDS, 0) | counts)
        return self._last

    async def run(self) -> None:
        """Refresh every ``interval`` seconds until cancelled."""
        await refresh_every(self.refresh, self.interval, "flag metrics")


def flag_families(snapshot: FlagsSnapshot | None) -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "recproxy_access_flags_open",
        "Anomaly flags raised on unusual access and not yet cleared by the DPO, by kind "
        "(refreshed from the catalog every 30 s).",
        labels=["kind"],
    )
    if snapshot is not None:
        for kind, count in sorted(snapshot.open_by_kind.items()):
            family.add_metric([kind], count)
    yield family
