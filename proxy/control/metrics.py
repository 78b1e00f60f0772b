"""Prometheus metrics of the running proxy.

``Metrics(registry)`` creates every metric on the registry it is given (a fresh
``CollectorRegistry`` when none is: never the global one), together with the standard
process, GC and platform collectors.  It is fed in two ways, and neither touches the RTP
hot path:

* **Read at scrape time.**  Counters that the parts already keep — ``SipCore.stats``, the
  relay's ``LegStats`` (``PortAllocator.open_legs`` and ``closed_totals``), the jitter
  buffers, ``Recorder.stats``, ``MediaClock.stats``, ``RecordingWriter.metrics``,
  ``RecordingService.failures``, ``WebhookSender.stats`` — and gauges (calls by phase,
  recordings active, writer queue depth, free disk, webhook queue) are read by a custom
  collector when Prometheus scrapes.  There is no second bookkeeping: the parts count as
  they always did.
* **Hooks, per call or per timer tick, never per packet.**  ``on_call_phase`` (set as
  ``B2bua.on_phase`` by ``attach``) counts call outcomes and notices and observes the
  call-setup, talk-time, loss and one-way-audio figures of each call;
  ``observe_loop_lag`` is the ``MediaClock``'s ``on_lag``; ``observe_write_seconds`` the
  ``RecordingWriter``'s ``on_write`` (called from the writer thread: histograms are
  thread-safe); ``recording_action(action, channel)`` counts a call taker's or a staff
  member's stop/discard/pause/resume.

Wiring (in the server assembly)::

    metrics = Metrics(one_way_audio_seconds=10)
    writer = RecordingWriter(..., on_write=metrics.observe_write_seconds)
    clock = MediaClock(recorder, on_lag=metrics.observe_loop_lag)
    ...
    metrics.attach(b2bua=b2bua, core=core, allocator=allocator, clock=clock,
                   recorder=recorder, writer=writer, recording_service=recordings,
                   recordings_dir=config.recording.dir, loop_name=event_loop_name())
    # GET /metrics → web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

``render()`` is meant to run on the event loop (the HTTP handler), where the parts it
reads are changed.  ``docs/metrics.md`` lists every metric and the alerts built on them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from .. import __version__
from ..calls.b2bua import CallPhase
from ..sip.core import KNOWN_METHODS
from ..storage.catalog import CallOutcome

if TYPE_CHECKING:
    from ..calls.b2bua import B2bua, Call
    from ..calls.recording import RecordingService
    from ..media.clock import MediaClock
    from ..media.jitter import JitterStats
    from ..media.recorder import Recorder
    from ..media.relay import PortAllocator, RtpLeg
    from ..media.vad import SpeechActivity
    from ..sip.core import SipCore
    from ..storage.writer import RecordingWriter
    from .webhook import WebhookSender

__all__ = [
    "CONTENT_TYPE",
    "LEGS",
    "LOOP_NAMES",
    "NOTICE_RESULTS",
    "RECORDING_ACTIONS",
    "RECORDING_CHANNELS",
    "RECORDING_FAILURE_REASONS",
    "SETUP_STAGES",
    "WEBHOOK_RESULTS",
    "Metrics",
    "MetricsError",
    "Side",
    "event_loop_name",
    "late_ratio",
    "loss_ratio",
    "one_way_silent_side",
]

log = logging.getLogger(__name__)

#: The Content-Type of ``Metrics.render()`` (Prometheus text format 0.0.4).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# Every label value is from one of these fixed sets: never a call id, a number or a URI.
LOOP_NAMES = ("uvloop", "asyncio")
SETUP_STAGES = ("calltaker_invited", "bridged")
LEGS = ("caller", "call_taker")
NOTICE_RESULTS = ("started", "completed", "abandoned", "interrupted")
RECORDING_ACTIONS = ("stop", "discard", "pause", "resume")
RECORDING_CHANNELS = ("dtmf", "api")
RECORDING_FAILURE_REASONS = ("write_failed", "degraded", "catalog", "recorder")
WEBHOOK_RESULTS = ("delivered", "failed", "dropped")
_SIP_METHODS_SHOWN = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS")
_STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "6xx")
_SIP_DROPPED = {
    "dropped": "unparsable",
    "dropped_stray_ack": "stray_ack",
    "dropped_stray_response": "stray_response",
    "dropped_flood": "flood",
    "dropped_amplification": "amplification",
}
_SIP_REFUSED = {
    "refused_admission": "policy",
    "refused_rate": "rate",
    "refused_capacity": "capacity",
}
_SIP_TRANSPORT_ERRORS = {
    "udp_errors": "udp_error",
    "tcp_connect_failed": "tcp_connect_failed",
    "tcp_connections_refused": "tcp_connection_refused",
    "tcp_idle_timeouts": "tcp_idle_timeout",
    "tcp_header_timeouts": "tcp_header_timeout",
    "tcp_write_overflows": "tcp_write_overflow",
}
_OUTCOMES = tuple(outcome.value for outcome in CallOutcome)

_SETUP_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120)
_TALK_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
_RATIO_BUCKETS = (0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1)
_LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1)
_WRITE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class MetricsError(ValueError):
    """A metrics call with a label value outside its fixed set (our bug)."""


def event_loop_name(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """``"uvloop"`` or ``"asyncio"``: which event loop runs (the running one by default)."""
    loop = loop if loop is not None else asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.partition(".")[0] == "uvloop" else "asyncio"


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- call quality, at the end of a call (pure functions) ---------------------------------


def loss_ratio(stats: JitterStats) -> float | None:
    """Frames lost / frames expected in one direction, from its jitter buffer; ``None``
    when nothing arrived.  A frame is lost when nothing of it came in time to be played
    (that includes senders that stop sending in silence)."""
    if stats.received <= 0:
        return None
    arrived = max(stats.received - stats.duplicates - stats.late, 0)
    expected = arrived + stats.lost
    if expected <= 0:
        return None
    return min(stats.lost / expected, 1.0)


def late_ratio(stats: JitterStats) -> float | None:
    """Packets that arrived after their playout time / packets received: the jitter the
    buffer could not absorb.  ``None`` when nothing arrived."""
    if stats.received <= 0:
        return None
    return min(stats.late / stats.received, 1.0)


@dataclass(frozen=True)
class Side:
    """What one party sent while bridged: RTP packets, and (when its audio was recorded
    with voice activity detection) how many frames were classified and how many held
    speech."""

    name: str
    packets: int
    classified_frames: int = 0
    speech_frames: int = 0

    @property
    def silent(self) -> bool:
        """Sent no packets, or packets in which VAD heard no speech at all."""
        return self.packets <= 0 or (self.classified_frames > 0 and self.speech_frames == 0)

    @property
    def talking(self) -> bool:
        """Sent packets, with speech in them (or unclassified: no VAD, no recording)."""
        return self.packets > 0 and (self.classified_frames == 0 or self.speech_frames > 0)


def one_way_silent_side(
    first: Side, second: Side, bridged_seconds: float, threshold_seconds: float
) -> str | None:
    """One-way audio: after at least ``threshold_seconds`` bridged, one side talked while
    the other sent no packets or no speech the whole time.  Returns the silent side's
    name, or ``None`` (a normal call, both silent, or too short to tell)."""
    if bridged_seconds < threshold_seconds:
        return None
    if first.silent and second.talking:
        return first.name
    if second.silent and first.talking:
        return second.name
    return None


# --- the metrics --------------------------------------------------------------------------


@dataclass
class _Bridged:
    """A bridged call's starting point, kept (by call id, never as a label) until it ends."""

    at: float  # monotonic seconds
    caller_packets: int
    taker_packets: int


@dataclass
class _Parts:
    b2bua: B2bua | None = None
    core: SipCore | None = None
    allocator: PortAllocator | None = None
    clock: MediaClock | None = None
    recorder: Recorder | None = None
    writer: RecordingWriter | None = None
    recording_service: RecordingService | None = None
    recordings_dir: str | os.PathLike[str] | None = None
    loop_name: str | None = None
    webhook: WebhookSender | None = None


class Metrics:
    """Every recproxy metric on one registry; see the module docstring."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        one_way_audio_seconds: float = 10.0,
        wall_clock: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if one_way_audio_seconds <= 0:
            raise ValueError("one_way_audio_seconds must be positive")
        self.registry = registry if registry is not None else CollectorRegistry()
        self.one_way_audio_seconds = one_way_audio_seconds
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._parts = _Parts()
        self._outcomes: dict[str, int] = dict.fromkeys(_OUTCOMES, 0)
        self._bridged: dict[str, _Bridged] = {}
        self._closed_late = 0  # jitter-buffer drops of calls already ended
        self._closed_duplicates = 0
        reg = self.registry

        ProcessCollector(registry=reg)
        GCCollector(registry=reg)
        PlatformCollector(registry=reg)

        self.call_setup_seconds = Histogram(
            "recproxy_call_setup_seconds",
            "Seconds from the caller's INVITE to a setup stage: the call taker invited "
            "(after the whole notice), or the call bridged.",
            ["stage"],
            buckets=_SETUP_BUCKETS,
            registry=reg,
        )
        self.call_bridged_seconds = Histogram(
            "recproxy_call_bridged_seconds",
            "Seconds a call was bridged (talk time), observed when it ends.",
            buckets=_TALK_BUCKETS,
            registry=reg,
        )
        self.notices = Counter(
            "recproxy_notices_total",
            "Recording notices: started; completed (played whole, call taker invited); "
            "abandoned (the caller left during it); interrupted (ended otherwise).",
            ["result"],
            registry=reg,
        )
        self.notice_played_seconds = Counter(
            "recproxy_notice_played_seconds_total",
            "Seconds of recording notice played to callers.",
            registry=reg,
        )
        self.one_way_audio_calls = Counter(
            "recproxy_one_way_audio_calls_total",
            "Bridged calls in which one side talked while the other (label silent) sent "
            "no packets or no speech for the whole bridged time (at least the threshold).",
            ["silent"],
            registry=reg,
        )
        self.leg_loss_ratio = Histogram(
            "recproxy_call_leg_loss_ratio",
            "Per call and direction (leg: who sent it): frames lost / frames expected in "
            "the jitter buffer, observed when the call ends.",
            ["leg"],
            buckets=_RATIO_BUCKETS,
            registry=reg,
        )
        self.leg_late_ratio = Histogram(
            "recproxy_call_leg_late_ratio",
            "Per call and direction (leg: who sent it): packets arriving after their "
            "playout time / packets received, i.e. jitter beyond the buffer's depth; "
            "observed when the call ends.",
            ["leg"],
            buckets=_RATIO_BUCKETS,
            registry=reg,
        )
        self.event_loop_lag_seconds = Histogram(
            "recproxy_event_loop_lag_seconds",
            "Seconds each 20 ms media-clock tick ran after its scheduled time.",
            buckets=_LAG_BUCKETS,
            registry=reg,
        )
        self.recording_write_seconds = Histogram(
            "recproxy_recording_write_seconds",
            "Seconds to write (and fsync, per policy) each sealed recording chunk.",
            buckets=_WRITE_BUCKETS,
            registry=reg,
        )
        self.recording_actions = Counter(
            "recproxy_recording_actions_total",
            "Recording stopped, discarded, paused or resumed on request, by channel.",
            ["action", "channel"],
            registry=reg,
        )
        # every fixed label value exists from the start, so rules see zeros, not gaps
        for stage in SETUP_STAGES:
            self.call_setup_seconds.labels(stage=stage)
        for result in NOTICE_RESULTS:
            self.notices.labels(result=result)
        for leg in LEGS:
            self.one_way_audio_calls.labels(silent=leg)
            self.leg_loss_ratio.labels(leg=leg)
            self.leg_late_ratio.labels(leg=leg)
        for action in RECORDING_ACTIONS:
            for channel in RECORDING_CHANNELS:
                self.recording_actions.labels(action=action, channel=channel)

        reg.register(_ScrapeCollector(self))

    # -- wiring --------------------------------------------------------------------------

    def attach(
        self,
        *,
        b2bua: B2bua | None = None,
        core: SipCore | None = None,
        allocator: PortAllocator | None = None,
        clock: MediaClock | None = None,
        recorder: Recorder | None = None,
        writer: RecordingWriter | None = None,
        recording_service: RecordingService | None = None,
        recordings_dir: str | os.PathLike[str] | None = None,
        loop_name: str | None = None,
        webhook: WebhookSender | None = None,
    ) -> None:
        """Read these parts at each scrape; each is optional, and a later call adds
        parts (``None`` leaves a part as it was).  ``b2bua`` gets ``on_call_phase`` as
        its ``on_phase`` hook (after any hook already there); ``clock`` gets
        ``observe_loop_lag`` as its ``on_lag`` when it has none.  The writer keeps its
        ``on_write`` private: pass ``observe_write_seconds`` when constructing it."""
        parts = self._parts
        if loop_name is not None:
            if loop_name not in LOOP_NAMES:
                raise MetricsError(f"loop_name must be one of {LOOP_NAMES}, not {loop_name!r}")
            parts.loop_name = loop_name
        if b2bua is not None and b2bua is not parts.b2bua:
            parts.b2bua = b2bua
            b2bua.on_phase = _chain(b2bua.on_phase, self.on_call_phase)
        if clock is not None:
            parts.clock = clock
            if clock.on_lag is None:
                clock.on_lag = self.observe_loop_lag
        if core is not None:
            parts.core = core
        if allocator is not None:
            parts.allocator = allocator
        if recorder is not None:
            parts.recorder = recorder
        if writer is not None:
            parts.writer = writer
        if recording_service is not None:
            parts.recording_service = recording_service
        if recordings_dir is not None:
            parts.recordings_dir = recordings_dir
        if webhook is not None:
            parts.webhook = webhook

    def render(self) -> bytes:
        """The text exposition of the registry (serve with ``CONTENT_TYPE``)."""
        return generate_latest(self.registry)

    # -- hooks ---------------------------------------------------------------------------

    def observe_loop_lag(self, seconds: float) -> None:
        """``MediaClock(on_lag=...)``: how late a tick ran (once per 20 ms)."""
        self.event_loop_lag_seconds.observe(max(seconds, 0.0))

    def observe_write_seconds(self, seconds: float) -> None:
        """``RecordingWriter(on_write=...)``: one chunk's write time (writer thread)."""
        self.recording_write_seconds.observe(max(seconds, 0.0))

    def recording_action(self, action: str, channel: str) -> None:
        """Count a recording ``action`` (stop, discard, pause, resume) asked for through
        ``channel`` (dtmf, api)."""
        if action not in RECORDING_ACTIONS:
            raise MetricsError(f"recording action must be one of {RECORDING_ACTIONS}")
        if channel not in RECORDING_CHANNELS:
            raise MetricsError(f"recording channel must be one of {RECORDING_CHANNELS}")
        self.recording_actions.labels(action=action, channel=channel).inc()

    def on_call_phase(self, call: Call, old: CallPhase, new: CallPhase) -> None:
        """``B2bua.on_phase``: called on every phase change of every call.  Never raises
        into the call flow."""
        try:
            self._phase_changed(call, old, new)
        except Exception:
            log.exception("metrics: the phase hook failed (%s -> %s)", old.value, new.value)

    def _phase_changed(self, call: Call, old: CallPhase, new: CallPhase) -> None:
        if new is CallPhase.NOTICE:
            self.notices.labels(result="started").inc()
        if old is CallPhase.NOTICE:
            self._notice_ended(call, new)
        if new is CallPhase.RINGING:
            self._observe_setup(call, "calltaker_invited")
        elif new is CallPhase.BRIDGED:
            self._observe_setup(call, "bridged")
            self._bridged[call.id] = _Bridged(
                self._monotonic(), _packets_in(call.a_leg), _packets_in(call.b_leg)
            )
        elif new is CallPhase.ENDED:
            self._call_ended(call)

    def _notice_ended(self, call: Call, new: CallPhase) -> None:
        if new is CallPhase.RINGING:
            result = "completed"
        elif call.outcome is CallOutcome.CALLER_ABANDONED_DURING_NOTICE:
            result = "abandoned"
        else:
            result = "interrupted"
        self.notices.labels(result=result).inc()
        if call.pacer is not None:
            played_ms = min(call.pacer.played_ms, call.b2bua.notice.duration_ms)
            self.notice_played_seconds.inc(max(played_ms, 0) / 1000)

    def _observe_setup(self, call: Call, stage: str) -> None:
        elapsed = (self._wall_clock() - call.started_at).total_seconds()
        self.call_setup_seconds.labels(stage=stage).observe(max(elapsed, 0.0))

    def _call_ended(self, call: Call) -> None:
        outcome = call.outcome.value
        self._outcomes[outcome] = self._outcomes.get(outcome, 0) + 1
        pair = call.recording.pair if call.recording is not None else None
        if pair is not None:
            # the relay stops feeding this recording now: fold its drops into the totals
            for direction in (pair.caller, pair.taker):
                self._closed_late += direction.jitter.stats.late
                self._closed_duplicates += direction.jitter.stats.duplicates
            for leg, direction in (("caller", pair.caller), ("call_taker", pair.taker)):
                loss = loss_ratio(direction.jitter.stats)
                if loss is not None:
                    self.leg_loss_ratio.labels(leg=leg).observe(loss)
                late = late_ratio(direction.jitter.stats)
                if late is not None:
                    self.leg_late_ratio.labels(leg=leg).observe(late)
        bridged = self._bridged.pop(call.id, None)
        if bridged is None:
            return
        seconds = max(self._monotonic() - bridged.at, 0.0)
        self.call_bridged_seconds.observe(seconds)
        caller_speech = pair.caller.speech if pair is not None else None
        taker_speech = pair.taker.speech if pair is not None else None
        caller = _side("caller", _packets_in(call.a_leg) - bridged.caller_packets, caller_speech)
        taker = _side("call_taker", _packets_in(call.b_leg) - bridged.taker_packets, taker_speech)
        silent = one_way_silent_side(caller, taker, seconds, self.one_way_audio_seconds)
        if silent is not None:
            self.one_way_audio_calls.labels(silent=silent).inc()

    # -- read at scrape time ---------------------------------------------------------------

    def _families(self, sampled: bool) -> Iterator[Metric]:
        parts = self._parts if sampled else _Parts()
        yield from self._call_families(parts, sampled)
        yield from _sip_families(parts.core)
        yield from self._rtp_families(parts)
        yield from _runtime_families(parts.clock, parts.loop_name)
        yield from _recorder_families(parts.recorder)
        yield from _writer_families(parts.writer)
        yield from _recording_families(parts.recording_service, parts.recorder, sampled)
        yield from _storage_families(parts.recordings_dir)
        yield from _webhook_families(parts.webhook)

    def _call_families(self, parts: _Parts, sampled: bool) -> Iterator[Metric]:
        active = GaugeMetricFamily(
            "recproxy_calls_active", "Calls in progress, by phase.", labels=["phase"]
        )
        total = CounterMetricFamily(
            "recproxy_calls",
            "Calls ended, by outcome (rejected ones included).",
            labels=["outcome"],
        )
        b2bua = parts.b2bua
        if b2bua is not None:
            phases = dict.fromkeys((phase.value for phase in CallPhase), 0)
            for call in list(b2bua.calls.values()):
                phases[call.phase.value] += 1
            for phase, count in phases.items():
                active.add_metric([phase], count)
        if sampled:
            outcomes = dict(self._outcomes)
            if b2bua is not None:  # calls refused before they became a Call
                for key, value in b2bua.stats.items():
                    if key in outcomes:
                        outcomes[key] += value
            for outcome, count in outcomes.items():
                total.add_metric([outcome], count)
        yield active
        yield total

    def _rtp_families(self, parts: _Parts) -> Iterator[Metric]:
        packets = CounterMetricFamily(
            "recproxy_rtp_packets",
            "RTP packets relayed: in (from the parties), out (to them).",
            labels=["direction"],
        )
        octets = CounterMetricFamily(
            "recproxy_rtp_bytes",
            "RTP bytes (whole packets) relayed: in, out.",
            labels=["direction"],
        )
        rtcp = CounterMetricFamily(
            "recproxy_rtcp_packets", "RTCP packets relayed: in, out.", labels=["direction"]
        )
        dropped = CounterMetricFamily(
            "recproxy_rtp_dropped",
            "Media packets dropped, by reason: unknown_source (not the latched party, RTCP "
            "too), malformed, late (after their playout time), duplicate.",
            labels=["reason"],
        )
        send_errors = CounterMetricFamily(
            "recproxy_rtp_send_errors",
            "RTP and RTCP packets that could not be sent (the party's address unreachable "
            "from our socket); the call and the relay go on.",
        )
        in_use = GaugeMetricFamily(
            "recproxy_rtp_port_pairs_in_use", "RTP/RTCP port pairs held by calls."
        )
        capacity = GaugeMetricFamily(
            "recproxy_rtp_port_pairs_capacity", "RTP/RTCP port pairs in the configured range."
        )
        allocator = parts.allocator
        if allocator is not None:
            totals = _leg_totals(allocator)
            packets.add_metric(["in"], totals[0])
            packets.add_metric(["out"], totals[1])
            octets.add_metric(["in"], totals[2])
            octets.add_metric(["out"], totals[3])
            rtcp.add_metric(["in"], totals[4])
            rtcp.add_metric(["out"], totals[5])
            dropped.add_metric(["unknown_source"], totals[6])
            dropped.add_metric(["malformed"], totals[7])
            send_errors.add_metric([], totals[8])
            in_use.add_metric([], allocator.in_use)
            capacity.add_metric([], allocator.capacity)
        if parts.b2bua is not None:
            late, duplicates = self._closed_late, self._closed_duplicates
            for call in list(parts.b2bua.calls.values()):
                # an ENDED call's recording was folded into the closed totals already
                if call.phase is not CallPhase.ENDED and call.recording is not None:
                    pair = call.recording.pair
                    for direction in (pair.caller, pair.taker):
                        late += direction.jitter.stats.late
                        duplicates += direction.jitter.stats.duplicates
            dropped.add_metric(["late"], late)
            dropped.add_metric(["duplicate"], duplicates)
        yield from (packets, octets, rtcp, dropped, send_errors, in_use, capacity)


class _ScrapeCollector:
    """The collector registered on the registry: reads the parts when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return list(self._metrics._families(sampled=True))

    def describe(self) -> Iterable[Metric]:
        return list(self._metrics._families(sampled=False))


def _chain(
    first: Callable[[Call, CallPhase, CallPhase], None] | None,
    second: Callable[[Call, CallPhase, CallPhase], None],
) -> Callable[[Call, CallPhase, CallPhase], None]:
    if first is None or first == second:
        return second

    def both(call: Call, old: CallPhase, new: CallPhase) -> None:
        first(call, old, new)
        second(call, old, new)

    return both


def _packets_in(leg: RtpLeg | None) -> int:
    return leg.stats.packets_in if leg is not None else 0


def _side(name: str, packets: int, speech: SpeechActivity | None) -> Side:
    if speech is None:
        return Side(name, packets)
    return Side(name, packets, speech.frames, speech.speech_frames)


def _leg_totals(allocator: PortAllocator) -> tuple[int, int, int, int, int, int, int, int, int]:
    closed = allocator.closed_totals
    sums = [
        closed.packets_in,
        closed.packets_out,
        closed.bytes_in,
        closed.bytes_out,
        closed.rtcp_in,
        closed.rtcp_out,
        closed.dropped_unknown_source,
        closed.dropped_malformed,
        closed.send_errors,
    ]
    for leg in list(allocator.open_legs):
        stats = leg.stats
        sums[0] += stats.packets_in
        sums[1] += stats.packets_out
        sums[2] += stats.bytes_in
        sums[3] += stats.bytes_out
        sums[4] += stats.rtcp_in
        sums[5] += stats.rtcp_out
        sums[6] += stats.dropped_unknown_source
        sums[7] += stats.dropped_malformed
        sums[8] += stats.send_errors
    return (sums[0], sums[1], sums[2], sums[3], sums[4], sums[5], sums[6], sums[7], sums[8])


def _sip_families(core: SipCore | None) -> Iterator[Metric]:
    requests = CounterMetricFamily(
        "recproxy_sip_requests",
        "SIP requests received and sent (retransmissions included), by method; methods "
        "the core does not know count as other.",
        labels=["direction", "method"],
    )
    responses = CounterMetricFamily(
        "recproxy_sip_responses",
        "SIP responses received and sent (retransmissions included), by status class.",
        labels=["direction", "status_class"],
    )
    parse_errors = CounterMetricFamily(
        "recproxy_sip_parse_errors",
        "Unparsable SIP messages, by the status they were answered with (or would have "
        "been: garbled responses are only dropped).",
        labels=["status"],
    )
    retransmissions = CounterMetricFamily(
        "recproxy_sip_retransmissions",
        "SIP retransmissions: sent (our timers fired) and received (the peer's, absorbed).",
        labels=["direction"],
    )
    txn_timeouts = CounterMetricFamily(
        "recproxy_sip_transaction_timeouts",
        "SIP transactions that timed out (timer B, F or H).",
    )
    ack_timeouts = CounterMetricFamily(
        "recproxy_sip_ack_timeouts", "2xx answers to an INVITE whose ACK never came."
    )
    dropped = CounterMetricFamily(
        "recproxy_sip_dropped",
        "SIP messages dropped without an answer: unparsable, stray_ack, stray_response, "
        "flood, amplification.",
        labels=["reason"],
    )
    refused = CounterMetricFamily(
        "recproxy_sip_refused",
        "SIP requests refused before any state was kept: policy, rate, capacity.",
        labels=["reason"],
    )
    transport_errors = CounterMetricFamily(
        "recproxy_sip_transport_errors",
        "SIP transport errors: udp_error, tcp_connect_failed, tcp_connection_refused, "
        "tcp_idle_timeout, tcp_header_timeout, tcp_write_overflow.",
        labels=["kind"],
    )
    keepalives = CounterMetricFamily(
        "recproxy_sip_keepalives", "Keep-alive datagrams (blank lines) received."
    )
    transactions = GaugeMetricFamily("recproxy_sip_transactions", "SIP transactions alive.")
    dialogs = GaugeMetricFamily("recproxy_sip_dialogs", "SIP dialogs alive.")
    if core is not None:
        stats = dict(core.stats)
        req: dict[tuple[str, str], int] = {
            (direction, method): 0
            for direction in ("received", "sent")
            for method in _SIP_METHODS_SHOWN
        }
        resp: dict[tuple[str, str], int] = {
            (direction, status_class): 0
            for direction in ("received", "sent")
            for status_class in _STATUS_CLASSES
        }
        errors: dict[str, int] = {"400": 0}
        for key, value in stats.items():
            direction, _, what = key.partition("_")
            if direction in ("received", "sent") and what:
                if what in _STATUS_CLASSES:
                    resp[direction, what] = resp.get((direction, what), 0) + value
                else:
                    method = what if what in KNOWN_METHODS else "other"
                    req[direction, method] = req.get((direction, method), 0) + value
            elif key.startswith("parse_error_") and key[12:].isdigit():
                errors[key[12:]] = errors.get(key[12:], 0) + value
        for labels, value in req.items():
            requests.add_metric(list(labels), value)
        for labels, value in resp.items():
            responses.add_metric(list(labels), value)
        for status, value in sorted(errors.items()):
            parse_errors.add_metric([status], value)
        retransmissions.add_metric(["sent"], stats.get("retransmissions", 0))
        retransmissions.add_metric(["received"], stats.get("retransmissions_absorbed", 0))
        txn_timeouts.add_metric([], stats.get("transaction_timeouts", 0))
        ack_timeouts.add_metric([], stats.get("ack_timeouts", 0))
        for key, reason in _SIP_DROPPED.items():
            dropped.add_metric([reason], stats.get(key, 0))
        for key, reason in _SIP_REFUSED.items():
            refused.add_metric([reason], stats.get(key, 0))
        for key, kind in _SIP_TRANSPORT_ERRORS.items():
            transport_errors.add_metric([kind], stats.get(key, 0))
        keepalives.add_metric([], stats.get("keepalives", 0))
        transactions.add_metric([], core.transaction_count)
        dialogs.add_metric([], len(core.dialogs))
    yield from (
        requests,
        responses,
        parse_errors,
        retransmissions,
        txn_timeouts,
        ack_timeouts,
        dropped,
        refused,
        transport_errors,
        keepalives,
        transactions,
        dialogs,
    )


def _runtime_families(clock: MediaClock | None, loop_name: str | None) -> Iterator[Metric]:
    build = GaugeMetricFamily(
        "recproxy_build_info",
        "Always 1: the recproxy version, the Python version and the event loop "
        "(unknown until the server attaches it), to join onto other series.",
        labels=["version", "python", "loop"],
    )
    build.add_metric([__version__, platform.python_version(), loop_name or "unknown"], 1)
    yield build
    info = InfoMetricFamily(
        "recproxy_event_loop", "The event loop the proxy runs on (uvloop or asyncio)."
    )
    if loop_name is not None:
        info.add_metric([], {"loop": loop_name})
    ticks = CounterMetricFamily("recproxy_media_clock_ticks", "20 ms media-clock ticks run.")
    overruns = CounterMetricFamily(
        "recproxy_media_clock_overruns",
        "Recorder slots skipped because the loop stalled longer than the catch-up "
        "backlog (1 s): recorded time lost.",
    )
    age = GaugeMetricFamily(
        "recproxy_media_clock_last_tick_age_seconds",
        "Seconds since the media clock last ticked (the watchdog: about 0.02 when "
        "healthy; it grows when ticks stop).",
    )
    errors = CounterMetricFamily(
        "recproxy_media_clock_errors",
        "Errors the media clock isolated: player (a notice, ringback or tone on one leg "
        "failed; that call ends) or recorder (a whole recorder tick failed).",
        labels=["part"],
    )
    if clock is not None:
        ticks.add_metric([], clock.stats.ticks)
        overruns.add_metric([], clock.stats.overruns)
        tick_age = clock.last_tick_age()
        age.add_metric([], math.inf if tick_age is None else tick_age)  # inf: never ticked
        errors.add_metric(["player"], clock.stats.player_errors)
        errors.add_metric(["recorder"], clock.stats.recorder_errors)
    yield from (info, ticks, overruns, age, errors)


def _recorder_families(recorder: Recorder | None) -> Iterator[Metric]:
    frames = CounterMetricFamily(
        "recproxy_recorder_frames", "20 ms stereo frames written into recordings."
    )
    missing = CounterMetricFamily(
        "recproxy_recorder_missing_frames",
        "20 ms frames of one direction filled with silence because nothing arrived in time.",
    )
    sink_errors = CounterMetricFamily(
        "recproxy_recorder_sink_errors",
        "Recordings dropped by the recorder because handing a block to the writer failed.",
    )
    if recorder is not None:
        stats = recorder.stats
        frames.add_metric([], stats.frames)
        missing.add_metric([], stats.missing_frames)
        sink_errors.add_metric([], stats.sink_errors)
    yield from (frames, missing, sink_errors)


def _writer_families(writer: RecordingWriter | None) -> Iterator[Metric]:
    written = CounterMetricFamily(
        "recproxy_recording_bytes_written",
        "Bytes of recording segments written (headers and sealed chunks).",
    )
    chunks = CounterMetricFamily(
        "recproxy_recording_chunks_sealed", "Recording chunks sealed and written."
    )
    blocks = CounterMetricFamily(
        "recproxy_recording_blocks",
        "Audio blocks offered to the writer: queued, dropped (queue full: written as "
        "silence), rejected (unknown, closed or failed recording).",
        labels=["result"],
    )
    lost_audio = CounterMetricFamily(
        "recproxy_recording_dropped_audio_seconds",
        "Seconds of audio dropped because the writer queue was full.",
    )
    fsyncs = CounterMetricFamily("recproxy_recording_fsyncs", "fsync calls by the writer.")
    recordings = CounterMetricFamily(
        "recproxy_recording_writer_recordings",
        "Recordings handled by the writer thread: opened, completed, failed.",
        labels=["result"],
    )
    depth = GaugeMetricFamily(
        "recproxy_recording_writer_queue_depth",
        "Items waiting in the writer thread's queue (blocks, opens, closes).",
    )
    limit = GaugeMetricFamily(
        "recproxy_recording_writer_queue_limit",
        "Blocks the writer queue holds before it drops audio.",
    )
    if writer is not None:
        m = writer.metrics
        written.add_metric([], m.bytes_written)
        chunks.add_metric([], m.chunks_sealed)
        blocks.add_metric(["queued"], max(m.blocks_submitted - m.blocks_dropped, 0))
        blocks.add_metric(["dropped"], m.blocks_dropped)
        blocks.add_metric(["rejected"], m.blocks_rejected)
        lost_audio.add_metric([], m.frames_dropped / writer.sample_rate)
        fsyncs.add_metric([], writer.store.fsyncs)
        recordings.add_metric(["opened"], m.recordings_opened)
        recordings.add_metric(["completed"], m.recordings_completed)
        recordings.add_metric(["failed"], m.recordings_failed)
        depth.add_metric([], writer.queue_depth)
        limit.add_metric([], writer.max_queued_blocks)
    yield from (written, chunks, blocks, lost_audio, fsyncs, recordings, depth, limit)


def _recording_families(
    service: RecordingService | None, recorder: Recorder | None, sampled: bool
) -> Iterator[Metric]:
    active = GaugeMetricFamily(
        "recproxy_recordings_active", "Recordings in progress (bridged calls being recorded)."
    )
    failed = CounterMetricFamily(
        "recproxy_recordings_failed",
        "Recording faults, by reason: write_failed (the writer failed it), degraded "
        "(the writer dropped audio, gaps silence-filled), catalog (a catalog write "
        "failed and was journalled for retry), recorder (the recorder failed it).",
        labels=["reason"],
    )
    degraded = CounterMetricFamily(
        "recproxy_recordings_degraded",
        "Recordings that ended degraded, never complete, by reason: loss (a channel's "
        "lost or late frames over recording.degraded_ratio), gap (lost or late audio "
        "longer than recording.degraded_gap_seconds), writer (the writer dropped audio).",
        labels=["reason"],
    )
    journal = GaugeMetricFamily(
        "recproxy_catalog_journal_pending",
        "Catalog writes waiting in the journal for the catalog to answer again.",
    )
    journal_dropped = CounterMetricFamily(
        "recproxy_catalog_journal_dropped",
        "Catalog writes lost because the journal was full (start-up recovery repairs "
        "their recordings).",
    )
    if service is not None:
        active.add_metric([], len(service.active))
        reasons = dict.fromkeys(RECORDING_FAILURE_REASONS, 0)
        for reason, count in service.failures.items():
            reasons[reason] = reasons.get(reason, 0) + count
        for reason, count in reasons.items():
            failed.add_metric([reason], count)
        for reason, count in service.degraded.items():
            degraded.add_metric([reason], count)
        journal.add_metric([], service.journal.pending)
        journal_dropped.add_metric([], service.journal.dropped)
    elif recorder is not None and sampled:
        active.add_metric([], len(recorder))
    yield from (active, failed, degraded, journal, journal_dropped)


def _storage_families(directory: str | os.PathLike[str] | None) -> Iterator[Metric]:
    free = GaugeMetricFamily(
        "recproxy_storage_free_bytes",
        "Bytes free (to unprivileged users) on the recordings' filesystem.",
    )
    capacity = GaugeMetricFamily(
        "recproxy_storage_capacity_bytes", "Size in bytes of the recordings' filesystem."
    )
    if directory is not None:
        try:
            usage = shutil.disk_usage(directory)
        except OSError as exc:
            log.debug("metrics: no disk usage for %s: %s", directory, exc)
        else:
            free.add_metric([], usage.free)
            capacity.add_metric([], usage.total)
    yield from (free, capacity)


def _webhook_families(webhook: WebhookSender | None) -> Iterator[Metric]:
    events = CounterMetricFamily(
        "recproxy_webhook_events",
        "Recording events for the webhook, by result: delivered (answered 2xx), failed "
        "(refused by the receiver webhook.max_attempts times), dropped (pushed out of a "
        "full queue, webhook.queue_max).",
        labels=["result"],
    )
    errors = CounterMetricFamily(
        "recproxy_webhook_attempt_errors",
        "Webhook POSTs that did not deliver (unreachable, timed out, or not 2xx); retried.",
    )
    queued = GaugeMetricFamily(
        "recproxy_webhook_queue_length", "Recording events waiting to be delivered."
    )
    if webhook is not None:
        stats = webhook.stats
        for result, count in zip(
            WEBHOOK_RESULTS, (stats.delivered, stats.failed, stats.dropped), strict=True
        ):
            events.add_metric([result], count)
        errors.add_metric([], stats.attempt_errors)
        queued.add_metric([], webhook.queue_length)
    yield from (events, errors, queued)
