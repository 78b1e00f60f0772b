"""Metrics of the S3 segment store's uploader (issue 20): files waiting in the spool,
how long the oldest has waited, what went up, and what failed.  Read from the store at
each scrape; registered only when ``[recording] store = "s3"``.

``recproxy_s3_uploads_pending`` times the bucket's pace is what losing the whole machine
would lose on top of each call's open segment (docs/deployment.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..storage.s3_store import UploadSnapshot


class UploadMetrics:
    """Registered on ``registry``; ``snapshot`` is read when scraped."""

    def __init__(self, registry: CollectorRegistry, snapshot: Callable[[], UploadSnapshot]) -> None:
        self._snapshot = snapshot
        registry.register(self)

    def collect(self) -> Iterable[Metric]:
        return self._families(self._snapshot())

    def describe(self) -> Iterable[Metric]:
        return self._families(None)

    @staticmethod
    def _families(snapshot: UploadSnapshot | None) -> list[Metric]:
        pending = GaugeMetricFamily(
            "recproxy_s3_uploads_pending",
            "Spooled files (wrapped keys, finished segments) not yet uploaded and verified.",
        )
        oldest = GaugeMetricFamily(
            "recproxy_s3_oldest_pending_seconds",
            "How long the oldest file waiting for upload has waited (0 when none waits).",
        )
        uploaded = CounterMetricFamily(
            "recproxy_s3_uploads", "Files uploaded, read back and verified, then unspooled."
        )
        sent = CounterMetricFamily(
            "recproxy_s3_uploaded_bytes", "Bytes uploaded and verified (each file once)."
        )
        failures = CounterMetricFamily(
            "recproxy_s3_upload_failures",
            "Upload attempts that failed (the bucket unreachable or refusing, or the object "
            "read back different); each file stays spooled and is retried.",
        )
        refusals = CounterMetricFamily(
            "recproxy_s3_lock_refusals",
            "Segment objects a deletion left because the bucket's object lock still "
            "protects them (unreadable: their key is gone).",
        )
        if snapshot is not None:
            pending.add_metric([], snapshot.pending)
            oldest.add_metric([], snapshot.oldest_pending_seconds)
            uploaded.add_metric([], snapshot.uploaded)
            sent.add_metric([], snapshot.bytes_uploaded)
            failures.add_metric([], snapshot.failures)
            refusals.add_metric([], snapshot.lock_refusals)
        return [pending, oldest, uploaded, sent, failures, refusals]
