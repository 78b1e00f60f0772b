"""Metrics of SIP over TLS (issue 18): connections open, and handshakes that failed or
were refused — by the connection limits or by the source's token bucket, before any
cryptography.  Read from the transport at each scrape (``SipTransport.tls_snapshot``).

TLS connection errors that are not about handshakes (connect failed, TLS not
configured, idle and header timeouts) are in ``recproxy_sip_transport_errors``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..sip.transport import TlsSnapshot

#: the outcome label → the transport's counter
HANDSHAKE_OUTCOMES = ("failed", "refused_limit", "refused_rate")


class TlsMetrics:
    """Registered on ``registry``; ``snapshot`` is read when scraped."""

    def __init__(self, registry: CollectorRegistry, snapshot: Callable[[], TlsSnapshot]) -> None:
        self._snapshot = snapshot
        registry.register(self)

    def collect(self) -> Iterable[Metric]:
        return self._families(self._snapshot())

    def describe(self) -> Iterable[Metric]:
        return self._families(None)

    @staticmethod
    def _families(snapshot: TlsSnapshot | None) -> list[Metric]:
        connections = GaugeMetricFamily(
            "recproxy_sip_tls_connections",
            "SIP TLS connections open (handshake done), inbound and outbound.",
        )
        handshakes = CounterMetricFamily(
            "recproxy_sip_tls_handshakes",
            "Inbound SIP TLS handshakes not completed: failed (bad or no certificate, "
            "timed out, not TLS), refused_limit (the connection limits in total or per "
            "source), refused_rate (the source's token bucket); refused ones are closed "
            "before any cryptography.",
            labels=["outcome"],
        )
        if snapshot is not None:
            connections.add_metric([], snapshot.open)
            for outcome, value in zip(
                HANDSHAKE_OUTCOMES,
                (snapshot.failed, snapshot.refused_limit, snapshot.refused_rate),
                strict=True,
            ):
                handshakes.add_metric([outcome], value)
        return [connections, handshakes]
