"""Routing metrics (issue 18) from domain events only: a call taker's health, probe
round trips and failovers by reason, in the exposition of the shared registry."""

from __future__ import annotations

from pathlib import Path

from proxy.calls.hunt import Failover
from proxy.control.routing_metrics import FAILOVER_REASONS, RoutingMetrics
from proxy.events import CallTakerFailedOver, CallTakerProbed

from .metrics_helpers import subscribed, value

ANN = "sip:ann@192.0.2.1:5070"


def test_health_follows_the_probes_and_round_trips_are_observed() -> None:
    bus, metrics = subscribed()
    RoutingMetrics(metrics.registry).subscribe(bus)
    assert value(metrics, "recproxy_call_taker_up", target=ANN) is None  # not probed yet
    bus.publish(CallTakerProbed(ANN, "192.0.2.1:5070;transport=udp", True, 0.004))
    assert value(metrics, "recproxy_call_taker_up", target=ANN) == 1
    bus.publish(CallTakerProbed(ANN, "192.0.2.1:5070;transport=udp", False, None))
    assert value(metrics, "recproxy_call_taker_up", target=ANN) == 0
    assert value(metrics, "recproxy_call_taker_probe_seconds_count") == 1
    assert value(metrics, "recproxy_call_taker_probe_seconds_bucket", le="0.005") == 1


def test_failovers_are_counted_by_reason_from_zero() -> None:
    bus, metrics = subscribed()
    RoutingMetrics(metrics.registry).subscribe(bus)
    for reason in FAILOVER_REASONS:
        assert value(metrics, "recproxy_call_taker_failovers_total", reason=reason) == 0
    bus.publish(
        CallTakerFailedOver("call-1", ANN, "192.0.2.1:5070;transport=udp", "no_answer", 480)
    )
    assert value(metrics, "recproxy_call_taker_failovers_total", reason="no_answer") == 1


def test_the_reason_labels_are_the_hunts_reasons() -> None:
    assert set(FAILOVER_REASONS) == {reason.value for reason in Failover}


def test_every_routing_metric_and_label_is_in_the_metrics_docs() -> None:
    text = (Path(__file__).parents[2] / "docs" / "metrics.md").read_text()
    for name in ("recproxy_call_taker_up", "recproxy_call_taker_probe_seconds",
                 "recproxy_call_taker_failovers_total", "target", "reason"):  # fmt: skip
        assert f"`{name}`" in text, name
    for reason in FAILOVER_REASONS:
        assert f"`{reason}`" in text, reason
