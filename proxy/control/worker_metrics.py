"""Metrics of the media worker processes (issue 19), one series per worker place:
whether its process is up, calls it relays and recordings it runs now, RTP packets it
took from parties, restarts of its process, and its slow replies.  Read from the pool at
each scrape: the pool hears of every packet (handed up, or counted when a call it
records comes back), so no scrape of the workers themselves is needed."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..media.workers import WorkerSnapshot


class WorkerMetrics:
    """Registered on ``registry``; ``snapshot`` is read when scraped."""

    def __init__(
        self, registry: CollectorRegistry, snapshot: Callable[[], list[WorkerSnapshot]]
    ) -> None:
        self._snapshot = snapshot
        registry.register(self)

    def collect(self) -> Iterable[Metric]:
        return self._families(self._snapshot())

    def describe(self) -> Iterable[Metric]:
        return self._families([])

    @staticmethod
    def _families(workers: list[WorkerSnapshot]) -> list[Metric]:
        up = GaugeMetricFamily(
            "recproxy_media_worker_up",
            "1 when the media worker process in this place runs and said hello (calls go "
            "only to such workers); 0 while it starts or is being restarted.",
            labels=["worker"],
        )
        calls = GaugeMetricFamily(
            "recproxy_media_worker_calls",
            "Bridged calls whose RTP a media worker process relays now.",
            labels=["worker"],
        )
        recordings = GaugeMetricFamily(
            "recproxy_media_worker_recordings",
            "Recordings a media worker process runs now (its own recorder and writer).",
            labels=["worker"],
        )
        packets = CounterMetricFamily(
            "recproxy_media_worker_packets",
            "RTP packets a media worker relayed: handed up to be recorded, or recorded by "
            "the worker itself (counted when the call comes back from it).",
            labels=["worker"],
        )
        restarts = CounterMetricFamily(
            "recproxy_media_worker_restarts",
            "Times a media worker process died and was started again (its calls ended, "
            "their recordings interrupted).",
            labels=["worker"],
        )
        slow = CounterMetricFamily(
            "recproxy_media_worker_slow_replies",
            "Give-backs a media worker answered later than 0.5 s (a busy worker is waited "
            "for, not ended: its calls are relayed by the call process meanwhile).",
            labels=["worker"],
        )
        for worker in workers:
            label = [str(worker.place)]
            up.add_metric(label, 1 if worker.ready else 0)
            calls.add_metric(label, worker.calls)
            recordings.add_metric(label, worker.recordings)
            packets.add_metric(label, worker.packets)
            restarts.add_metric(label, worker.restarts)
            slow.add_metric(label, worker.slow_replies)
        return [up, calls, recordings, packets, restarts, slow]
