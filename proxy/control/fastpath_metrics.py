"""Metrics of the kernel fast path (issue 19): calls whose RTP the kernel forwards now,
packets the recorder read from the ring, and packets the kernel could not put in the
ring (lost to the recording only; forwarding never waits for the reader).  Read from
the fast path at each scrape; all zero when it is not in use."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..media.fastpath import FastPathSnapshot

EMPTY = FastPathSnapshot(0, 0, 0, 0, 0)


class FastPathMetrics:
    """Registered on ``registry``; ``snapshot`` (None: the path is not in use) is read
    when scraped."""

    def __init__(
        self, registry: CollectorRegistry, snapshot: Callable[[], FastPathSnapshot] | None
    ) -> None:
        self._snapshot = snapshot
        registry.register(self)

    def collect(self) -> Iterable[Metric]:
        return self._families(self._snapshot() if self._snapshot is not None else EMPTY)

    def describe(self) -> Iterable[Metric]:
        return self._families(None)

    @staticmethod
    def _families(snapshot: FastPathSnapshot | None) -> list[Metric]:
        calls = GaugeMetricFamily(
            "recproxy_fast_path_calls", "Calls whose RTP the kernel forwards now (nftables)."
        )
        handovers = CounterMetricFamily(
            "recproxy_fast_path_handovers",
            "Calls handed to the kernel (to=kernel) and back to the userspace relay "
            "(to=relay: a tone, a re-INVITE, a hold, a transfer, a re-latch, the end).",
            labels=["to"],
        )
        recorded = CounterMetricFamily(
            "recproxy_fast_path_ring_packets",
            "RTP packets the kernel forwarded that the recorder read from the packet ring.",
        )
        drops = CounterMetricFamily(
            "recproxy_fast_path_ring_drops",
            "Packets the kernel could not put in the packet ring (the reader fell behind): "
            "forwarded, but missing from the recording.",
        )
        if snapshot is not None:
            calls.add_metric([], snapshot.calls)
            handovers.add_metric(["kernel"], snapshot.handed)
            handovers.add_metric(["relay"], snapshot.returned)
            recorded.add_metric([], snapshot.recorded)
            drops.add_metric([], snapshot.drops)
        return [calls, handovers, recorded, drops]
