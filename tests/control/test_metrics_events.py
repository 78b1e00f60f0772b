"""Metrics as an event subscriber: call and recording events published into a bus, the
exposition rendered — no sockets, no call, no clock.  What the call puts into each event
is the call's to test; the calls-by-phase snapshot the app factory builds is tested here
on the B2BUA's own call map."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from proxy.calls.b2bua import CallPhase
from proxy.control.metrics import Metrics, loss_ratio
from proxy.events import (
    AuditChecked,
    CallBridged,
    CallEnded,
    CallStarted,
    CallTakerInvited,
    CallTransferred,
    ChannelSummary,
    NoticeAbandoned,
    NoticeFinished,
    NoticeStarted,
    RecordingSwitched,
    SegmentSealed,
    TransferRequested,
)
from proxy.media.jitter import JitterStats
from proxy.storage.catalog import CallOutcome

from .metrics_helpers import NOTICE_MS, attach_all, build_parts, samples, subscribed, value


def talked(packets: int = 500, speech: int = 200, **jitter: int) -> ChannelSummary:
    """A direction that sent ``packets`` while bridged, VAD classifying each frame."""
    return ChannelSummary(
        packets, packets, speech, received=jitter.pop("received", packets), **jitter
    )


SILENT_PATH = ChannelSummary(500, 500, 0, received=500)  # packets carrying only silence
NOTHING = ChannelSummary(0)  # no packets at all


def test_a_completed_call_gives_its_outcome_setup_times_and_notice() -> None:
    bus, metrics = subscribed()
    bus.publish(CallStarted("c1", started_at=None, direction="inbound"))  # type: ignore[arg-type]
    bus.publish(NoticeStarted("c1", NOTICE_MS))
    bus.publish(NoticeFinished("c1", NOTICE_MS))
    bus.publish(CallTakerInvited("c1", 2.5))
    bus.publish(CallBridged("c1", 6.5, operator="alice"))
    bus.publish(CallEnded("c1", "completed", "caller", 42.0, talked(), talked()))

    setup = "recproxy_call_setup_seconds"
    assert value(metrics, f"{setup}_count", stage="calltaker_invited") == 1
    assert value(metrics, f"{setup}_sum", stage="calltaker_invited") == pytest.approx(2.5)
    assert value(metrics, f"{setup}_sum", stage="bridged") == pytest.approx(6.5)
    assert value(metrics, f"{setup}_bucket", stage="bridged", le="5.0") == 0
    assert value(metrics, f"{setup}_bucket", stage="bridged", le="10.0") == 1
    assert value(metrics, "recproxy_call_bridged_seconds_sum") == pytest.approx(42.0)
    assert value(metrics, "recproxy_notices_total", result="started") == 1
    assert value(metrics, "recproxy_notices_total", result="completed") == 1
    assert value(metrics, "recproxy_notices_total", result="abandoned") == 0
    assert value(metrics, "recproxy_notice_played_seconds_total") == pytest.approx(2.0)
    assert value(metrics, "recproxy_calls_total", outcome="completed") == 1
    assert value(metrics, "recproxy_calls_total", outcome="failed") == 0
    assert value(metrics, "recproxy_one_way_audio_calls_total", silent="caller") == 0


def test_a_caller_leaving_during_the_notice_is_an_abandoned_notice() -> None:
    bus, metrics = subscribed()
    bus.publish(NoticeStarted("c1", NOTICE_MS))
    bus.publish(NoticeAbandoned("c1", 640, caller_left=True))
    bus.publish(CallEnded("c1", "caller_abandoned_during_notice", "caller"))
    assert value(metrics, "recproxy_notices_total", result="abandoned") == 1
    assert value(metrics, "recproxy_notices_total", result="completed") == 0
    assert value(metrics, "recproxy_notice_played_seconds_total") == pytest.approx(0.64)
    assert value(metrics, "recproxy_calls_total", outcome="caller_abandoned_during_notice") == 1
    assert value(metrics, "recproxy_call_setup_seconds_count", stage="calltaker_invited") == 0
    assert value(metrics, "recproxy_call_bridged_seconds_count") == 0


def test_a_notice_ended_by_us_is_interrupted_and_never_counts_past_the_prompt() -> None:
    bus, metrics = subscribed()
    bus.publish(NoticeStarted("c1", NOTICE_MS))
    bus.publish(NoticeAbandoned("c1", NOTICE_MS + 100, caller_left=False))  # shutdown
    bus.publish(CallEnded("c1", "failed", "proxy"))
    assert value(metrics, "recproxy_notices_total", result="interrupted") == 1
    assert value(metrics, "recproxy_notices_total", result="abandoned") == 0
    assert value(metrics, "recproxy_notice_played_seconds_total") == pytest.approx(NOTICE_MS / 1000)


def test_notices_of_calls_at_once_are_kept_apart_by_call_id() -> None:
    bus, metrics = subscribed()
    bus.publish(NoticeStarted("long", 8000))
    bus.publish(NoticeStarted("short", 1000))
    bus.publish(NoticeFinished("long", 8000))  # not clamped to the other call's prompt
    bus.publish(NoticeFinished("short", 1020))
    assert value(metrics, "recproxy_notice_played_seconds_total") == pytest.approx(9.0)
    assert value(metrics, "recproxy_notices_total", result="started") == 2


async def test_call_taker_refusals_and_untrusted_rejections_are_outcomes(tmp_path: Path) -> None:
    parts = build_parts(tmp_path)
    try:
        bus, metrics = subscribed()
        attach_all(metrics, parts)
        for outcome in (CallOutcome.CALLTAKER_BUSY, CallOutcome.NO_ANSWER, CallOutcome.NO_ANSWER):
            bus.publish(CallTakerInvited("c", 2.0))
            bus.publish(CallEnded("c", outcome.value, "call_taker"))
        parts.b2bua.count("rejected_untrusted")  # refused before it became a call
        parts.b2bua.count("rejected_untrusted")
        parts.b2bua.count("sip_dropped")  # not an outcome
    finally:
        parts.writer.stop(timeout=10)
    assert value(metrics, "recproxy_calls_total", outcome="calltaker_busy") == 1
    assert value(metrics, "recproxy_calls_total", outcome="no_answer") == 2
    assert value(metrics, "recproxy_calls_total", outcome="rejected_untrusted") == 2
    assert value(metrics, "recproxy_call_setup_seconds_count", stage="calltaker_invited") == 3
    outcomes = {s.labels["outcome"] for s in samples(metrics) if s.name == "recproxy_calls_total"}
    assert outcomes == {o.value for o in CallOutcome}


def stand_in(phase: CallPhase, late: int = 0, duplicates: int = 0) -> Any:
    """What ``calls_snapshot`` reads of a call: its phase and its recording's jitter."""
    stats = JitterStats(received=100, late=late, duplicates=duplicates)
    direction = SimpleNamespace(jitter=SimpleNamespace(stats=stats))
    pair = SimpleNamespace(
        caller=direction, taker=SimpleNamespace(jitter=SimpleNamespace(stats=JitterStats()))
    )
    return SimpleNamespace(phase=phase, recording=SimpleNamespace(pair=pair))


async def test_calls_active_counts_the_b2buas_calls_by_phase(tmp_path: Path) -> None:
    parts = build_parts(tmp_path)
    try:
        _, metrics = subscribed()
        attach_all(metrics, parts)
        for i, phase in enumerate(
            (CallPhase.NOTICE, CallPhase.NOTICE, CallPhase.BRIDGED, CallPhase.SETUP)
        ):
            parts.b2bua.calls[str(i)] = stand_in(phase)
        assert value(metrics, "recproxy_calls_active", phase="notice") == 2
        assert value(metrics, "recproxy_calls_active", phase="bridged") == 1
        assert value(metrics, "recproxy_calls_active", phase="setup") == 1
        assert value(metrics, "recproxy_calls_active", phase="ringing") == 0
    finally:
        parts.writer.stop(timeout=10)


async def test_late_drops_count_live_and_stay_counted_once_the_call_ends(tmp_path: Path) -> None:
    parts = build_parts(tmp_path)
    try:
        bus, metrics = subscribed()
        attach_all(metrics, parts)
        call = stand_in(CallPhase.BRIDGED, late=3, duplicates=1)
        parts.b2bua.calls["c1"] = call
        assert value(metrics, "recproxy_rtp_dropped_total", reason="late") == 3
        assert value(metrics, "recproxy_rtp_dropped_total", reason="duplicate") == 1
        # the call ends: its drops arrive in the event while it is still in the map
        call.phase = CallPhase.ENDED
        caller = ChannelSummary(50, received=100, late=3, duplicates=1)
        bus.publish(CallEnded("c1", "completed", "caller", 1.0, caller, ChannelSummary(0)))
        assert value(metrics, "recproxy_rtp_dropped_total", reason="late") == 3  # once
        del parts.b2bua.calls["c1"]
        assert value(metrics, "recproxy_rtp_dropped_total", reason="late") == 3
        assert value(metrics, "recproxy_rtp_dropped_total", reason="duplicate") == 1
    finally:
        parts.writer.stop(timeout=10)


@pytest.mark.parametrize(
    ("caller", "taker", "seconds", "silent"),
    [
        (talked(), NOTHING, 12.0, "call_taker"),  # one side talks, the other sends nothing
        (SILENT_PATH, talked(), 15.0, "caller"),  # packets without speech against speech
        (talked(), talked(), 30.0, None),  # a conversation
        (talked(), NOTHING, 9.0, None),  # under the threshold: too short to judge
        (talked(), None, 12.0, None),  # what the call taker sent is unknown: no verdict
    ],
)
def test_one_way_audio_from_the_ended_calls_summaries(
    caller: ChannelSummary | None, taker: ChannelSummary | None, seconds: float, silent: str | None
) -> None:
    bus, metrics = subscribed(one_way_audio_seconds=10)
    bus.publish(CallEnded("c1", "completed", "caller", seconds, caller, taker))
    for side in ("caller", "call_taker"):
        expected = 1 if side == silent else 0
        assert value(metrics, "recproxy_one_way_audio_calls_total", silent=side) == expected
    assert value(metrics, "recproxy_call_bridged_seconds_count") == 1


def test_a_call_never_bridged_has_no_talk_time_and_no_one_way_verdict() -> None:
    bus, metrics = subscribed(one_way_audio_seconds=10)
    bus.publish(CallEnded("c1", "no_answer", "proxy", None, talked(), NOTHING))
    assert value(metrics, "recproxy_call_bridged_seconds_count") == 0
    assert value(metrics, "recproxy_one_way_audio_calls_total", silent="call_taker") == 0


def test_loss_and_late_ratios_are_observed_per_leg_at_call_end() -> None:
    bus, metrics = subscribed()
    caller = talked(110, received=100, lost=10)  # every tenth packet lost
    taker = talked(110, received=111, late=1)  # one arrived after its playout time
    bus.publish(CallEnded("c1", "completed", "caller", 3.0, caller, taker))

    loss = "recproxy_call_leg_loss_ratio"
    assert value(metrics, f"{loss}_count", leg="caller") == 1
    assert value(metrics, f"{loss}_sum", leg="caller") == pytest.approx(loss_ratio(caller))
    assert value(metrics, f"{loss}_bucket", leg="caller", le="0.05") == 0
    assert value(metrics, f"{loss}_bucket", leg="caller", le="0.1") == 1
    assert value(metrics, f"{loss}_sum", leg="call_taker") == 0
    late = "recproxy_call_leg_late_ratio"
    assert value(metrics, f"{late}_count", leg="call_taker") == 1
    assert value(metrics, f"{late}_sum", leg="call_taker") == pytest.approx(1 / 111)


def test_a_direction_that_received_nothing_observes_no_ratio() -> None:
    bus, metrics = subscribed()
    bus.publish(CallEnded("c1", "completed", "caller", 3.0, talked(), NOTHING))
    assert value(metrics, "recproxy_call_leg_loss_ratio_count", leg="caller") == 1
    assert value(metrics, "recproxy_call_leg_loss_ratio_count", leg="call_taker") == 0


def test_recording_switches_by_a_person_are_counted_and_hold_pauses_are_not() -> None:
    bus, metrics = subscribed()
    for action, channel in (
        ("stop", "dtmf"),
        ("stop", "dtmf"),
        ("discard", "api"),
        ("pause", "hold"),
    ):
        bus.publish(RecordingSwitched("r1", "c1", action, "alice", channel, "asked"))
    name = "recproxy_recording_actions_total"
    assert value(metrics, name, action="stop", channel="dtmf") == 2
    assert value(metrics, name, action="discard", channel="api") == 1
    assert value(metrics, name, action="pause", channel="dtmf") == 0
    assert value(metrics, name, action="pause", channel="api") == 0
    assert bus.failures == 0


def test_audit_checks_set_the_chain_length_and_count_each_failed_check() -> None:
    bus, metrics = subscribed()
    assert value(metrics, "recproxy_audit_verify_failures_total") == 0
    bus.publish(AuditChecked(12, intact=True))
    assert value(metrics, "recproxy_audit_entries") == 12
    bus.publish(AuditChecked(14, intact=False, broken_at=7))
    bus.publish(AuditChecked(None, intact=False))  # the anchor file could not be used
    assert value(metrics, "recproxy_audit_entries") == 14  # not reset by "unknown"
    assert value(metrics, "recproxy_audit_verify_failures_total") == 2
    assert bus.failures == 0


def test_a_bad_event_fails_in_the_subscriber_never_in_the_publisher(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus, metrics = subscribed()
    with caplog.at_level(logging.ERROR, logger="proxy.events"):
        bus.publish(RecordingSwitched("r1", "c1", "delete-everything", "mallory", "api"))
    assert bus.failures == 1 and "subscriber" in caplog.text
    bus.publish(NoticeStarted("c1", NOTICE_MS))  # and it keeps counting
    assert value(metrics, "recproxy_notices_total", result="started") == 1


def test_an_event_metrics_do_not_count_changes_nothing() -> None:
    bus, metrics = subscribed()
    before = metrics.render()
    bus.publish(SegmentSealed("r1", 0, 500, 40_000, "00" * 32, "/x"))
    assert bus.failures == 0
    assert _without_created(metrics.render()) == _without_created(before)


def test_metrics_without_a_bus_count_no_call_events() -> None:
    metrics = Metrics()
    other = subscribed()[0]
    other.publish(NoticeStarted("c1", NOTICE_MS))
    assert value(metrics, "recproxy_notices_total", result="started") == 0


def _without_created(text: bytes) -> list[bytes]:
    return [
        line
        for line in text.splitlines()
        if b"_created" not in line and not line.startswith((b"process_", b"python_gc"))
    ]


def test_transfers_are_counted_when_requested_and_by_how_they_ended() -> None:
    bus, metrics = subscribed()
    assert value(metrics, "recproxy_transfers_total", outcome="succeeded") == 0  # from start
    bus.publish(TransferRequested("c1", "ann", "bob"))
    bus.publish(CallTransferred("c1", "failed", "bob", 486))
    bus.publish(TransferRequested("c1", "ann", "bob"))
    bus.publish(CallTransferred("c1", "succeeded", "bob", 200))
    assert value(metrics, "recproxy_transfers_total", outcome="requested") == 2
    assert value(metrics, "recproxy_transfers_total", outcome="failed") == 1
    assert value(metrics, "recproxy_transfers_total", outcome="succeeded") == 1
    assert value(metrics, "recproxy_transfers_total", outcome="abandoned") == 0
