"""Call-taker routing metrics (issue 18): each call taker's health from its OPTIONS
keepalives, the probes' round trips, and the hunt's failovers by reason.

Fed by domain events only (``CallTakerProbed``, ``CallTakerFailedOver``); kept apart
from :mod:`proxy.control.metrics` (one job a module) on the same registry:
``RoutingMetrics(metrics.registry).subscribe(bus)``.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..events import CallTakerFailedOver, CallTakerProbed, EventBus

#: The ``reason`` label values of ``recproxy_call_taker_failovers`` (``hunt.Failover``).
FAILOVER_REASONS: Final = (
    "no_response",
    "unavailable",
    "no_answer",
    "refused",
    "unresolved",
    "unregistered",
)
_PROBE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class RoutingMetrics:
    """The routing families on ``registry``; see the module docstring."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "recproxy_call_taker_up",
            "1 while a configured call taker answers its OPTIONS keepalives at one address "
            "at least, 0 once every address failed options_failures probes in a row (it is "
            "skipped while another is up).  Absent until its first probe.",
            ["target"],
            registry=registry,
        )
        self.probe_seconds = Histogram(
            "recproxy_call_taker_probe_seconds",
            "Round trip of each OPTIONS keepalive a call taker answered.",
            buckets=_PROBE_BUCKETS,
            registry=registry,
        )
        self.failovers = Counter(
            "recproxy_call_taker_failovers",
            "Calls moved on from a call taker's address: no_response and unavailable (503) "
            "try its next address; no_answer, refused, unresolved and unregistered (an AOR "
            "with no phone registered) the next call taker.",
            ["reason"],
            registry=registry,
        )
        for reason in FAILOVER_REASONS:
            self.failovers.labels(reason=reason)

    def subscribe(self, bus: EventBus) -> None:
        bus.subscribe(CallTakerProbed, self._probed)
        bus.subscribe(CallTakerFailedOver, self._failed_over)

    def _probed(self, event: CallTakerProbed) -> None:
        self.up.labels(target=event.call_taker).set(1 if event.up else 0)
        if event.round_trip_seconds is not None:
            self.probe_seconds.observe(max(event.round_trip_seconds, 0.0))

    def _failed_over(self, event: CallTakerFailedOver) -> None:
        self.failovers.labels(reason=event.reason).inc()
