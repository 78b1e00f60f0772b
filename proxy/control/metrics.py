"""Prometheus metrics of the running proxy.

``Metrics(registry)`` creates every metric on the registry it is given (a fresh
``CollectorRegistry`` when none is: never the global one), together with the standard
process, GC and platform collectors.  It is fed in three ways, none of them on the RTP
hot path, and it never touches a call, a leg, a jitter buffer or the clock itself:

* **Domain events** (:mod:`proxy.events`), once ``subscribe(bus)`` has registered the
  handlers: notices, setup times, outcomes, talk time, per-direction loss and late
  ratios and one-way audio come from ``NoticeStarted``/``Finished``/``Abandoned``,
  ``CallTakerInvited``, ``CallBridged`` and ``CallEnded`` (with its ``ChannelSummary``
  of each direction); staff and call-taker switches from ``RecordingSwitched``.
* **Snapshots read at scrape time.**  ``attach`` names callables that return small
  frozen values — ``SipCore.snapshot``, ``PortAllocator.snapshot``,
  ``MediaClock.snapshot``, a ``CallsSnapshot`` and a ``RecordingsSnapshot`` built by the
  server — plus the writer's public ``WriterMetrics``, the recorder's counters and the
  webhook's stats, and the last hold, open flag and open subject access case counts
  (``HoldCounter.snapshot``, ``FlagCounter.snapshot``, ``SarCounter.snapshot``: the
  catalog is read by a task every 30 s, never by a scrape).  There is no second
  bookkeeping: the parts count as they always did.
* **Constructor callbacks, per timer tick or per chunk, never per packet.**
  ``observe_loop_lag`` is the ``MediaClock``'s ``on_lag``; ``observe_write_seconds`` the
  ``RecordingWriter``'s ``on_write`` (called from the writer thread: histograms are
  thread-safe).  They stay direct calls because they run every 20 ms: the event bus is
  for things that happen to calls and recordings.

Wiring (in the app factory, ``proxy.app``)::

    metrics = Metrics(one_way_audio_seconds=10)
    metrics.subscribe(bus)
    writer = RecordingWriter(..., on_write=metrics.observe_write_seconds)
    clock = MediaClock(recorder, on_lag=metrics.observe_loop_lag)
    ...
    metrics.attach(calls=..., core=core.snapshot, ports=allocator.snapshot,
                   clock=clock.snapshot, recorder=lambda: recorder.stats, writer=writer,
                   recordings=..., recordings_dir=config.recording.dir,
                   loop_name=event_loop_name(), webhook=webhook)
    # GET /metrics → web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

``render()`` is meant to run on the event loop (the HTTP handler), where the parts the
snapshots copy are changed.  ``docs/metrics.md`` lists every metric and the alerts built
on them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import platform
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
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
from ..events import (
    AuditChecked,
    CallBridged,
    CallEnded,
    CallTakerInvited,
    CallTransferred,
    ChannelSummary,
    EventBus,
    NoticeAbandoned,
    NoticeFinished,
    NoticeStarted,
    RecordingSwitched,
    TransferRequested,
)
from ..sip.core import KNOWN_METHODS
from ..storage.catalog import CallOutcome
from .flag_metrics import FlagsSnapshot, flag_families
from .hold_metrics import HoldsSnapshot, hold_families
from .registrar_metrics import registrar_families
from .sar_metrics import SarSnapshot, sar_families

if TYPE_CHECKING:
    from ..media.clock import ClockSnapshot
    from ..media.recorder import RecorderStats
    from ..media.relay import PortsSnapshot
    from ..sip.core import CoreSnapshot
    from ..sip.registrar import RegistrarSnapshot
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
    "CallsSnapshot",
    "Metrics",
    "MetricsError",
    "RecordingsSnapshot",
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
TRANSFER_OUTCOMES = ("requested", "succeeded", "failed", "abandoned")
RECORDING_ACTIONS = ("stop", "discard", "pause", "resume")
RECORDING_CHANNELS = ("dtmf", "api", "console")
RECORDING_FAILURE_REASONS = ("write_failed", "degraded", "catalog", "recorder", "uncatalogued")
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
# issue 18 (RFC 3262): what went wrong with reliable provisional responses
_SIP_RELIABLE = {
    "prack_timeouts": "prack_timeout",  # our reliable 1xx never PRACKed: INVITE got 500
    "prack_unmatched": "prack_unmatched",  # a PRACK matching nothing: 481
    "reliable_1xx_ignored": "repeated_or_out_of_order",  # a call taker's, not PRACKed
    "dropped_bad_rseq": "bad_rseq",  # a call taker's reliable 1xx without a usable RSeq
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
    # SIP over TLS (issue 18); its handshakes are in tls_metrics.py
    "tls_connect_failed": "tls_connect_failed",
    "tls_unavailable": "tls_unavailable",
    "tls_idle_timeouts": "tls_idle_timeout",
    "tls_header_timeouts": "tls_header_timeout",
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


# --- what the server hands in at scrape time ------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallsSnapshot:
    """The calls in progress, as the server sees them at a scrape.

    ``by_phase``: calls by phase name, every phase present (zeros included).
    ``refused``: INVITEs refused before they became a call, by outcome
    (``rejected_untrusted``...); other keys are ignored.  ``late``/``duplicates``: the
    jitter-buffer drops so far of calls not yet ended (an ended call's drops arrive in its
    ``CallEnded``)."""

    by_phase: Mapping[str, int]
    refused: Mapping[str, int] = field(default_factory=dict)
    late: int = 0
    duplicates: int = 0


@dataclass(frozen=True, slots=True)
class RecordingsSnapshot:
    """The recording service at a scrape: recordings in progress, faults by reason,
    recordings ended degraded by reason, and the catalog journal."""

    active: int
    failures: Mapping[str, int]
    degraded: Mapping[str, int]
    journal_pending: int
    journal_dropped: int


@dataclass(frozen=True)
class _Sources:
    calls: Callable[[], CallsSnapshot] | None = None
    core: Callable[[], CoreSnapshot] | None = None
    ports: Callable[[], PortsSnapshot] | None = None
    clock: Callable[[], ClockSnapshot] | None = None
    recorder: Callable[[], RecorderStats] | None = None
    writer: RecordingWriter | None = None
    recordings: Callable[[], RecordingsSnapshot] | None = None
    recordings_dir: str | os.PathLike[str] | None = None
    loop_name: str | None = None
    webhook: WebhookSender | None = None
    holds: Callable[[], HoldsSnapshot | None] | None = None
    flags: Callable[[], FlagsSnapshot | None] | None = None
    sar: Callable[[], SarSnapshot | None] | None = None
    registrar: Callable[[], RegistrarSnapshot | None] | None = None


# --- call quality, at the end of a call (pure functions) ---------------------------------


class JitterCounts(Protocol):
    """A direction's jitter-buffer counters (``ChannelSummary``, ``JitterStats``)."""

    @property
    def received(self) -> int: ...
    @property
    def duplicates(self) -> int: ...
    @property
    def late(self) -> int: ...
    @property
    def lost(self) -> int: ...


def loss_ratio(stats: JitterCounts) -> float | None:
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


def late_ratio(stats: JitterCounts) -> float | None:
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


def _side(name: str, summary: ChannelSummary) -> Side:
    return Side(name, summary.packets, summary.classified_frames, summary.speech_frames)


# --- the metrics --------------------------------------------------------------------------


class Metrics:
    """Every recproxy metric on one registry; see the module docstring."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        one_way_audio_seconds: float = 10.0,
    ) -> None:
        if one_way_audio_seconds <= 0:
            raise ValueError("one_way_audio_seconds must be positive")
        self.registry = registry if registry is not None else CollectorRegistry()
        self.one_way_audio_seconds = one_way_audio_seconds
        self._sources = _Sources()
        self._outcomes: dict[str, int] = dict.fromkeys(_OUTCOMES, 0)
        self._notice_ms: dict[str, int] = {}  # call id -> its prompt's length, while it plays
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
            "recproxy_notices",
            "Recording notices: started; completed (played whole, call taker invited); "
            "abandoned (the caller left during it); interrupted (ended otherwise).",
            ["result"],
            registry=reg,
        )
        self.transfers = Counter(
            "recproxy_transfers",
            "Blind transfers by call takers: requested (REFER accepted), succeeded (the "
            "target took the call), failed (the caller stayed), abandoned (the call ended).",
            ["outcome"],
            registry=reg,
        )
        self.notice_played_seconds = Counter(
            "recproxy_notice_played_seconds",
            "Seconds of recording notice played to callers.",
            registry=reg,
        )
        self.one_way_audio_calls = Counter(
            "recproxy_one_way_audio_calls",
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
            "recproxy_recording_actions",
            "Recording stopped, discarded, paused or resumed on request, by channel.",
            ["action", "channel"],
            registry=reg,
        )
        self.audit_entries = Gauge(
            "recproxy_audit_entries",
            "Entries in the audit chain, as last checked by the periodic anchoring.",
            registry=reg,
        )
        self.audit_verify_failures = Counter(
            "recproxy_audit_verify_failures",
            "Periodic audit checks that found the chain broken (edited, removed, reordered "
            "or cut off below an anchor) or could not use the anchor file.",
            registry=reg,
        )
        # every fixed label value exists from the start, so rules see zeros, not gaps
        for stage in SETUP_STAGES:
            self.call_setup_seconds.labels(stage=stage)
        for result in NOTICE_RESULTS:
            self.notices.labels(result=result)
        for outcome in TRANSFER_OUTCOMES:
            self.transfers.labels(outcome=outcome)
        for leg in LEGS:
            self.one_way_audio_calls.labels(silent=leg)
            self.leg_loss_ratio.labels(leg=leg)
            self.leg_late_ratio.labels(leg=leg)
        for action in RECORDING_ACTIONS:
            for channel in RECORDING_CHANNELS:
                self.recording_actions.labels(action=action, channel=channel)

        reg.register(_ScrapeCollector(self))

    # -- wiring --------------------------------------------------------------------------

    def subscribe(self, bus: EventBus) -> None:
        """Count the call and recording events published on ``bus`` from now on.  The
        bus keeps a handler's exception from the publisher (and logs it)."""
        bus.subscribe(NoticeStarted, self._notice_started)
        bus.subscribe(NoticeFinished, self._notice_finished)
        bus.subscribe(NoticeAbandoned, self._notice_abandoned)
        bus.subscribe(CallTakerInvited, self._call_taker_invited)
        bus.subscribe(CallBridged, self._call_bridged)
        bus.subscribe(TransferRequested, self._transfer_requested)
        bus.subscribe(CallTransferred, self._call_transferred)
        bus.subscribe(CallEnded, self._call_ended)
        bus.subscribe(RecordingSwitched, self._recording_switched)
        bus.subscribe(AuditChecked, self._audit_checked)

    def attach(
        self,
        *,
        calls: Callable[[], CallsSnapshot] | None = None,
        core: Callable[[], CoreSnapshot] | None = None,
        ports: Callable[[], PortsSnapshot] | None = None,
        clock: Callable[[], ClockSnapshot] | None = None,
        recorder: Callable[[], RecorderStats] | None = None,
        writer: RecordingWriter | None = None,
        recordings: Callable[[], RecordingsSnapshot] | None = None,
        recordings_dir: str | os.PathLike[str] | None = None,
        loop_name: str | None = None,
        webhook: WebhookSender | None = None,
        holds: Callable[[], HoldsSnapshot | None] | None = None,
        flags: Callable[[], FlagsSnapshot | None] | None = None,
        sar: Callable[[], SarSnapshot | None] | None = None,
        registrar: Callable[[], RegistrarSnapshot | None] | None = None,
    ) -> None:
        """Read these at each scrape; each is optional, and a later call adds sources
        (``None`` leaves a source as it was).  A family whose source is missing is
        described but has no samples."""
        if loop_name is not None and loop_name not in LOOP_NAMES:
            raise MetricsError(f"loop_name must be one of {LOOP_NAMES}, not {loop_name!r}")
        old = self._sources
        self._sources = _Sources(
            calls if calls is not None else old.calls,
            core if core is not None else old.core,
            ports if ports is not None else old.ports,
            clock if clock is not None else old.clock,
            recorder if recorder is not None else old.recorder,
            writer if writer is not None else old.writer,
            recordings if recordings is not None else old.recordings,
            recordings_dir if recordings_dir is not None else old.recordings_dir,
            loop_name if loop_name is not None else old.loop_name,
            webhook if webhook is not None else old.webhook,
            holds if holds is not None else old.holds,
            flags if flags is not None else old.flags,
            sar if sar is not None else old.sar,
            registrar if registrar is not None else old.registrar,
        )

    def render(self) -> bytes:
        """The text exposition of the registry (serve with ``CONTENT_TYPE``)."""
        return generate_latest(self.registry)

    # -- constructor callbacks -----------------------------------------------------------

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

    # -- event handlers ------------------------------------------------------------------

    def _notice_started(self, event: NoticeStarted) -> None:
        self.notices.labels(result="started").inc()
        self._notice_ms[event.call_id] = event.duration_ms

    def _notice_finished(self, event: NoticeFinished) -> None:
        self.notices.labels(result="completed").inc()
        self._notice_played(event.call_id, event.played_ms)

    def _notice_abandoned(self, event: NoticeAbandoned) -> None:
        self.notices.labels(result="abandoned" if event.caller_left else "interrupted").inc()
        self._notice_played(event.call_id, event.played_ms)

    def _notice_played(self, call_id: str, played_ms: int) -> None:
        """Seconds played, never more than the prompt (a pacer may run a packet over)."""
        whole = self._notice_ms.pop(call_id, None)
        if whole is not None:
            played_ms = min(played_ms, whole)
        self.notice_played_seconds.inc(max(played_ms, 0) / 1000)

    def _call_taker_invited(self, event: CallTakerInvited) -> None:
        seconds = max(event.setup_seconds, 0.0)
        self.call_setup_seconds.labels(stage="calltaker_invited").observe(seconds)

    def _call_bridged(self, event: CallBridged) -> None:
        self.call_setup_seconds.labels(stage="bridged").observe(max(event.setup_seconds, 0.0))

    def _transfer_requested(self, event: TransferRequested) -> None:
        self.transfers.labels(outcome="requested").inc()

    def _call_transferred(self, event: CallTransferred) -> None:
        self.transfers.labels(outcome=event.outcome).inc()

    def _call_ended(self, event: CallEnded) -> None:
        self._notice_ms.pop(event.call_id, None)
        self._outcomes[event.outcome] = self._outcomes.get(event.outcome, 0) + 1
        for leg, summary in (("caller", event.caller), ("call_taker", event.taker)):
            if summary is None:
                continue
            self._closed_late += summary.late
            self._closed_duplicates += summary.duplicates
            loss = loss_ratio(summary)
            if loss is not None:
                self.leg_loss_ratio.labels(leg=leg).observe(loss)
            late = late_ratio(summary)
            if late is not None:
                self.leg_late_ratio.labels(leg=leg).observe(late)
        if event.bridged_seconds is None:
            return
        seconds = max(event.bridged_seconds, 0.0)
        self.call_bridged_seconds.observe(seconds)
        if event.caller is None or event.taker is None:
            return  # what the parties sent is unknown: no verdict
        caller, taker = _side("caller", event.caller), _side("call_taker", event.taker)
        silent = one_way_silent_side(caller, taker, seconds, self.one_way_audio_seconds)
        if silent is not None:
            self.one_way_audio_calls.labels(silent=silent).inc()

    def _recording_switched(self, event: RecordingSwitched) -> None:
        # a pause while the call is on hold is not a request: only dtmf and api count
        if event.channel in RECORDING_CHANNELS:
            self.recording_action(event.action, event.channel)

    def _audit_checked(self, event: AuditChecked) -> None:
        if event.entries is not None:
            self.audit_entries.set(event.entries)
        if not event.intact:
            self.audit_verify_failures.inc()

    # -- read at scrape time ---------------------------------------------------------------

    def _families(self, sampled: bool) -> Iterator[Metric]:
        sources = self._sources if sampled else _Sources()
        calls = sources.calls() if sources.calls is not None else None
        yield from self._call_families(calls, sampled)
        yield from _sip_families(sources.core() if sources.core is not None else None)
        yield from self._rtp_families(calls, sources.ports() if sources.ports else None)
        yield from _runtime_families(sources.clock() if sources.clock else None, sources.loop_name)
        yield from _recorder_families(sources.recorder() if sources.recorder else None)
        yield from _writer_families(sources.writer)
        yield from _recording_families(sources.recordings() if sources.recordings else None)
        yield from _storage_families(sources.recordings_dir)
        yield from _webhook_families(sources.webhook)
        yield from hold_families(sources.holds() if sources.holds else None)
        yield from flag_families(sources.flags() if sources.flags else None)
        yield from sar_families(sources.sar() if sources.sar else None)
        yield from registrar_families(sources.registrar() if sources.registrar else None)

    def _call_families(self, calls: CallsSnapshot | None, sampled: bool) -> Iterator[Metric]:
        active = GaugeMetricFamily(
            "recproxy_calls_active", "Calls in progress, by phase.", labels=["phase"]
        )
        total = CounterMetricFamily(
            "recproxy_calls",
            "Calls ended, by outcome (rejected ones included).",
            labels=["outcome"],
        )
        if calls is not None:
            for phase, count in calls.by_phase.items():
                active.add_metric([phase], count)
        if sampled:
            outcomes = dict(self._outcomes)
            if calls is not None:  # calls refused before they became a call
                for key, value in calls.refused.items():
                    if key in outcomes:
                        outcomes[key] += value
            for outcome, count in outcomes.items():
                total.add_metric([outcome], count)
        yield active
        yield total

    def _rtp_families(
        self, calls: CallsSnapshot | None, ports: PortsSnapshot | None
    ) -> Iterator[Metric]:
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
        if ports is not None:
            totals = ports.totals
            packets.add_metric(["in"], totals.packets_in)
            packets.add_metric(["out"], totals.packets_out)
            octets.add_metric(["in"], totals.bytes_in)
            octets.add_metric(["out"], totals.bytes_out)
            rtcp.add_metric(["in"], totals.rtcp_in)
            rtcp.add_metric(["out"], totals.rtcp_out)
            dropped.add_metric(["unknown_source"], totals.dropped_unknown_source)
            dropped.add_metric(["malformed"], totals.dropped_malformed)
            send_errors.add_metric([], totals.send_errors)
            in_use.add_metric([], ports.in_use)
            capacity.add_metric([], ports.capacity)
        if calls is not None:
            dropped.add_metric(["late"], self._closed_late + calls.late)
            dropped.add_metric(["duplicate"], self._closed_duplicates + calls.duplicates)
        yield from (packets, octets, rtcp, dropped, send_errors, in_use, capacity)
        yield _srtp_family(ports)


def _srtp_family(ports: PortsSnapshot | None) -> Metric:
    """SRTP and SRTCP packets dropped per leg (issue 18): ``authentication`` (the tag did
    not verify: tampered, or not the party's key) and ``replayed`` (libsrtp's replay
    window had seen it, or it was too old) on what a party sends; ``repeated`` (a
    sequence number its SSRC had sent: protecting it again would reuse the keystream)
    and ``ssrc_limit`` (one SSRC too many for the session) on what we send it."""
    family = CounterMetricFamily(
        "recproxy_srtp_dropped",
        "SRTP/SRTCP packets dropped, by leg (caller, call_taker) and reason "
        "(authentication, replayed, repeated, ssrc_limit).",
        labels=["leg", "reason"],
    )
    if ports is not None:
        for leg, stats in ports.by_party.items():
            family.add_metric([leg, "authentication"], stats.srtp_auth_failed)
            family.add_metric([leg, "replayed"], stats.srtp_replayed)
            family.add_metric([leg, "repeated"], stats.srtp_repeated)
            family.add_metric([leg, "ssrc_limit"], stats.srtp_ssrc_limit)
    return family


class _ScrapeCollector:
    """The collector registered on the registry: reads the sources when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return list(self._metrics._families(sampled=True))

    def describe(self) -> Iterable[Metric]:
        return list(self._metrics._families(sampled=False))


def _sip_families(core: CoreSnapshot | None) -> Iterator[Metric]:
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
        "tcp_idle_timeout, tcp_header_timeout, tcp_write_overflow, tls_connect_failed, "
        "tls_unavailable (a sips: target with TLS off), tls_idle_timeout, "
        "tls_header_timeout.",
        labels=["kind"],
    )
    keepalives = CounterMetricFamily(
        "recproxy_sip_keepalives", "Keep-alive datagrams (blank lines) received."
    )
    reliable = CounterMetricFamily(
        "recproxy_sip_reliable_provisional_errors",
        "Reliable provisional responses (RFC 3262) gone wrong: prack_timeout, "
        "prack_unmatched, repeated_or_out_of_order, bad_rseq.",
        labels=["kind"],
    )
    transactions = GaugeMetricFamily("recproxy_sip_transactions", "SIP transactions alive.")
    dialogs = GaugeMetricFamily("recproxy_sip_dialogs", "SIP dialogs alive.")
    if core is not None:
        stats = core.stats
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
        for key, kind in _SIP_RELIABLE.items():
            reliable.add_metric([kind], stats.get(key, 0))
        transactions.add_metric([], core.transactions)
        dialogs.add_metric([], core.dialogs)
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
        reliable,
        transactions,
        dialogs,
    )


def _runtime_families(clock: ClockSnapshot | None, loop_name: str | None) -> Iterator[Metric]:
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
        ticks.add_metric([], clock.ticks)
        overruns.add_metric([], clock.overruns)
        tick_age = clock.tick_age
        age.add_metric([], math.inf if tick_age is None else tick_age)  # inf: never ticked
        errors.add_metric(["player"], clock.player_errors)
        errors.add_metric(["recorder"], clock.recorder_errors)
    yield from (info, ticks, overruns, age, errors)


def _recorder_families(stats: RecorderStats | None) -> Iterator[Metric]:
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
    if stats is not None:
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
        "Recordings handled by the writer thread: opened, completed, failed, and written "
        "ahead of their catalog row (held past the bound while the catalog refused writes).",
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
        recordings.add_metric(["written_ahead"], m.recordings_written_ahead)
        depth.add_metric([], writer.queue_depth)
        limit.add_metric([], writer.max_queued_blocks)
    yield from (written, chunks, blocks, lost_audio, fsyncs, recordings, depth, limit)


def _recording_families(service: RecordingsSnapshot | None) -> Iterator[Metric]:
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
        active.add_metric([], service.active)
        reasons = dict.fromkeys(RECORDING_FAILURE_REASONS, 0)
        for reason, count in service.failures.items():
            reasons[reason] = reasons.get(reason, 0) + count
        for reason, count in reasons.items():
            failed.add_metric([reason], count)
        for reason, count in service.degraded.items():
            degraded.add_metric([reason], count)
        journal.add_metric([], service.journal_pending)
        journal_dropped.add_metric([], service.journal_dropped)
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
