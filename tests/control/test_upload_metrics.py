"""The S3 uploader's metrics (issue 20): read from the store's snapshot at each scrape."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from proxy.control.upload_metrics import UploadMetrics
from proxy.storage.s3_store import UploadSnapshot


def test_each_scrape_reads_the_uploader_now() -> None:
    registry = CollectorRegistry()
    now = [UploadSnapshot(3, 12.5, 40, 640_000, 2, 0)]
    UploadMetrics(registry, lambda: now[0])
    assert registry.get_sample_value("recproxy_s3_uploads_pending") == 3
    assert registry.get_sample_value("recproxy_s3_oldest_pending_seconds") == 12.5
    assert registry.get_sample_value("recproxy_s3_uploads_total") == 40
    assert registry.get_sample_value("recproxy_s3_uploaded_bytes_total") == 640_000
    assert registry.get_sample_value("recproxy_s3_upload_failures_total") == 2
    assert registry.get_sample_value("recproxy_s3_lock_refusals_total") == 0
    now[0] = UploadSnapshot(0, 0.0, 43, 700_000, 2, 1)
    assert registry.get_sample_value("recproxy_s3_uploads_pending") == 0
    assert registry.get_sample_value("recproxy_s3_lock_refusals_total") == 1
    assert b"# HELP recproxy_s3_uploads_pending" in generate_latest(registry)
