"""Retention metrics (P15): deletions, sweep duration, and recordings by retention state.

Fed by domain events only: ``RecordingDeleted`` counts a deletion and ``RetentionSwept``
observes the sweep's duration and carries the catalog's snapshot of where every
recording stands, taken by the sweep itself.  So a scrape never queries the catalog:
``recproxy_recordings_retention`` is as of the last sweep (``serve`` sweeps at start and
every ``retention.sweep_interval_seconds``).

Kept apart from :mod:`proxy.control.metrics` (one job a module); it registers on the
same registry: ``RetentionMetrics(metrics.registry).subscribe(bus)``.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..events import EventBus, RecordingDeleted, RetentionSwept

#: The label values of ``recproxy_recordings_retention`` (``RetentionCounts``' fields).
RETENTION_STATES: Final = ("retained", "held", "expired", "deleting", "deleted")
_SWEEP_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)


class RetentionMetrics:
    """The retention families on ``registry``; see the module docstring."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.recordings = Gauge(
            "recproxy_recordings_retention",
            "Recordings by retention state, as of the last sweep: retained (kept audio, "
            "not yet expired), held (expired, kept by a hold), expired (the next sweep "
            "deletes them), deleting (a deletion under way), deleted.",
            ["state"],
            registry=registry,
        )
        self.deleted = Counter(
            "recproxy_recordings_deleted",
            "Recordings crypto-shredded because their retention period was over.",
            registry=registry,
        )
        self.sweep_seconds = Histogram(
            "recproxy_retention_sweep_seconds",
            "Seconds each retention sweep took, from its first catalog read to its audit entry.",
            buckets=_SWEEP_BUCKETS,
            registry=registry,
        )
        for state in RETENTION_STATES:
            self.recordings.labels(state=state)

    def subscribe(self, bus: EventBus) -> None:
        bus.subscribe(RecordingDeleted, self._deleted)
        bus.subscribe(RetentionSwept, self._swept)

    def _deleted(self, event: RecordingDeleted) -> None:
        self.deleted.inc()

    def _swept(self, event: RetentionSwept) -> None:
        self.sweep_seconds.observe(max(event.seconds, 0.0))
        for state in RETENTION_STATES:
            self.recordings.labels(state=state).set(event.standing.get(state, 0))
