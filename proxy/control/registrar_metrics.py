"""The registrar's metrics (issue 18): REGISTERs answered by outcome — ``failed`` is
the failed digest attempts, ``throttled`` those refused unchecked after too many — and
the live bindings, read from the registrar core's snapshot at scrape time.  With the
registrar disabled the families are described but have no samples."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..sip.registrar import RegistrarSnapshot


def registrar_families(snapshot: RegistrarSnapshot | None) -> Iterator[Metric]:
    requests = CounterMetricFamily(
        "recproxy_registrar_requests",
        "REGISTER requests answered by the registrar, by outcome (failed: a wrong digest "
        "answer; throttled: refused unchecked after too many).",
        labels=["outcome"],
    )
    bindings = GaugeMetricFamily(
        "recproxy_registrar_bindings", "Contacts registered and not yet expired."
    )
    if snapshot is not None:
        for outcome, count in sorted(snapshot.outcomes.items()):
            requests.add_metric([outcome], count)
        bindings.add_metric([], snapshot.bindings)
    yield requests
    yield bindings
