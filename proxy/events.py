"""Domain events: what happened to a call or a recording, said once, in the past tense.

The call flow and the recording service *publish* these; metrics, the audit log (issue
14) and the webhook *subscribe* at start-up.  Nothing here imports any other part of
recproxy, so every layer may publish and every layer may subscribe.

Delivery is synchronous and cheap: :meth:`EventBus.publish` calls each subscriber in
the order it subscribed, on the publisher's thread, and returns.  A subscriber that
raises is logged and counted (``EventBus.failures``) and never reaches the publisher,
so a broken subscriber cannot end a call.  Nothing on the RTP path publishes per packet:
events are per call, per recording, per sealed segment.

Events are frozen dataclasses with slots; times are wall-clock ``datetime`` in UTC where
a person reads them, and durations are seconds or milliseconds as named.  Identifiers are
strings: ``call_id`` is the catalog's call id, ``recording_id`` the recording's UUID.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

log = logging.getLogger(__name__)


# --- calls -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallStarted:
    """A caller's INVITE (or an outbound call) was admitted and a call began."""

    call_id: str
    started_at: datetime
    direction: str  # "inbound" | "outbound"
    service: str | None = None


@dataclass(frozen=True, slots=True)
class NoticeStarted:
    """The recording notice began playing to the caller."""

    call_id: str
    duration_ms: int  # the whole prompt


@dataclass(frozen=True, slots=True)
class NoticeFinished:
    """The notice was played to the end (the call taker is invited next)."""

    call_id: str
    played_ms: int


@dataclass(frozen=True, slots=True)
class NoticeAbandoned:
    """The notice stopped before its end: the caller left (``caller_left``), or the call
    ended for another reason (a failure, shutdown, a CANCEL race)."""

    call_id: str
    played_ms: int
    caller_left: bool


@dataclass(frozen=True, slots=True)
class CallTakerInvited:
    """The call taker's INVITE was sent; ``setup_seconds`` since the call started."""

    call_id: str
    setup_seconds: float


@dataclass(frozen=True, slots=True)
class CallBridged:
    """The call taker answered and the two legs were bridged."""

    call_id: str
    setup_seconds: float
    operator: str | None = None


@dataclass(frozen=True, slots=True)
class TransferRequested:
    """The call taker's REFER was accepted (202): recproxy invites ``target_operator``
    while the caller stays with ``operator``."""

    call_id: str
    operator: str | None
    target_operator: str


@dataclass(frozen=True, slots=True)
class CallTransferred:
    """A transfer is over.  ``outcome``: ``"succeeded"`` (the target took the call and
    the first call taker's leg ended), ``"failed"`` (busy, no answer within the ring
    time, an error: the caller stays with the first call taker) or ``"abandoned"`` (the
    call ended first).  ``status`` is the target's final response, when it sent one."""

    call_id: str
    outcome: str
    target_operator: str
    status: int | None = None


@dataclass(frozen=True, slots=True)
class ChannelSummary:
    """One direction of a bridged call, as its call ended (``caller``: what the caller
    sent; ``taker``: what the call taker sent).

    ``packets`` counts RTP packets received from that party while bridged.
    ``classified_frames``/``speech_frames`` come from voice activity detection (both 0
    when the channel was not recorded or VAD was off).  The rest are the counters of the
    direction's jitter buffer (:class:`proxy.media.jitter.JitterStats`), whole call."""

    packets: int
    classified_frames: int = 0
    speech_frames: int = 0
    received: int = 0
    duplicates: int = 0
    late: int = 0
    lost: int = 0


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call is over (both legs ended) with ``outcome`` (a ``CallOutcome`` value),
    ended ``by`` ("caller", "call_taker", "proxy", ...).  ``bridged_seconds`` is talk
    time, ``None`` when the call was never bridged; ``caller``/``taker`` summarise the
    media, ``None`` when the call had no recording pair."""

    call_id: str
    outcome: str
    by: str
    bridged_seconds: float | None = None
    caller: ChannelSummary | None = None
    taker: ChannelSummary | None = None


@dataclass(frozen=True, slots=True)
class SessionTimerExpired:
    """No session refresh (RFC 4028) came from ``party`` ("caller" or "call taker") within
    its ``interval_seconds``: the call is being ended with BYE on both legs."""

    call_id: str
    party: str
    interval_seconds: int


# --- recordings ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordingStarted:
    recording_id: str
    call_id: str


@dataclass(frozen=True, slots=True)
class RecordingSwitched:
    """A person stopped, discarded, paused or resumed a live recording.

    ``action`` is one of "stop", "discard", "pause", "resume"; ``channel`` how it was
    asked for ("dtmf", "api", "console", "hold"); ``actor`` who (an operator name, "caller",
    "call_taker")."""

    recording_id: str
    call_id: str
    action: str
    actor: str
    channel: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SegmentSealed:
    """The writer finished one segment file: everything in it is on disk (per the fsync
    policy).  ``sha256`` is the hex digest of the whole file as written."""

    recording_id: str
    index: int
    frames: int  # 20 ms frames per channel
    bytes: int
    sha256: str
    path: str


@dataclass(frozen=True, slots=True)
class RecordingClosed:
    """A recording ended and its catalog entry was finalised with ``state``: complete,
    or degraded (``reason`` says how).  Totals as the writer reported them."""

    recording_id: str
    call_id: str
    state: str  # "complete" | "degraded"
    segments: int
    frames: int
    bytes: int
    started_at: datetime
    ended_at: datetime
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RecordingFailed:
    """Writing a recording failed (disk full, I/O error, the recorder broke); nothing
    more is written, and what was written before stays."""

    recording_id: str
    call_id: str
    reason: str
    started_at: datetime
    ended_at: datetime


@dataclass(frozen=True, slots=True)
class RecordingDiscarded:
    """A recording was destroyed on request: its data key first, then its files."""

    recording_id: str
    call_id: str
    actor: str
    channel: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RecordingInterrupted:
    """Found at start-up: the process ended while this recording was open."""

    recording_id: str


@dataclass(frozen=True, slots=True)
class RecordingExported:
    """A person exported (decrypted) a recording; the access log has the entry."""

    recording_id: str
    actor: str
    reason: str
    format: str
    channels: str


# --- routing: the hunt for a call taker and their health (issue 18) --------------------


@dataclass(frozen=True, slots=True)
class CallTakerFailedOver:
    """An INVITE to a call taker ended without an answer and the call moved on: to the
    call taker's next address (``no_response``, ``unavailable``: RFC 3263 §4.3) or to
    the next call taker (``no_answer``, ``refused``, ``unresolved``, ``unregistered``).
    For an AOR whose registered phones were rung together, ``target`` is the AOR."""

    call_id: str
    call_taker: str  # the URI as configured
    target: str  # the address tried ("" when none was found; an AOR's forks: the AOR)
    reason: str
    status: int | None = None  # the final response, if one came


@dataclass(frozen=True, slots=True)
class CallTakerProbed:
    """An OPTIONS keepalive to one of a call taker's addresses ended: ``up`` is the call
    taker's health after it (any address up), ``round_trip_seconds`` None when the probe
    got no answer or one meaning unavailable (408, 503)."""

    call_taker: str
    target: str
    up: bool
    round_trip_seconds: float | None


# --- records governance --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditChecked:
    """The audit chain was walked (since its last anchor) and checked against the anchor
    file: ``entries`` in the chain (``None``: the anchor file could not be used);
    ``intact`` False names a break at ``broken_at``."""

    entries: int | None
    intact: bool
    broken_at: int | None = None


@dataclass(frozen=True, slots=True)
class HoldPlaced:
    """A person placed a hold on a recording (the audit log has the entry)."""

    hold_id: str
    recording_id: str
    kind: str
    actor: str


@dataclass(frozen=True, slots=True)
class HoldReleased:
    """A person released a hold (the audit log has the entry); the recording may have
    others still active."""

    hold_id: str
    recording_id: str
    kind: str
    actor: str
    reason: str


@dataclass(frozen=True, slots=True)
class RecordingDeleted:
    """A recording's retention period was over: its key and files are gone, its row
    says ``deleted`` (the audit log has the entry)."""

    recording_id: str
    actor: str
    reason: str


@dataclass(frozen=True, slots=True)
class RetentionSwept:
    """A retention sweep ended: what it deleted, what failed (left for the next
    sweep), how long it took, and every recording's retention standing after it
    (``retained``, ``held``, ``expired``, ``deleting``, ``deleted``: counts)."""

    deleted: int
    failed: int
    seconds: float
    standing: Mapping[str, int]


Event = (
    CallStarted
    | NoticeStarted
    | NoticeFinished
    | NoticeAbandoned
    | CallTakerInvited
    | CallBridged
    | TransferRequested
    | CallTransferred
    | CallEnded
    | CallTakerFailedOver
    | CallTakerProbed
    | SessionTimerExpired
    | RecordingStarted
    | RecordingSwitched
    | SegmentSealed
    | RecordingClosed
    | RecordingFailed
    | RecordingDiscarded
    | RecordingInterrupted
    | RecordingExported
    | AuditChecked
    | HoldPlaced
    | HoldReleased
    | RecordingDeleted
    | RetentionSwept
)

E = TypeVar("E")
Handler = Callable[[E], None]


class EventBus:
    """Subscribers by event type, called synchronously in subscription order."""

    def __init__(self) -> None:
        self._handlers: dict[type, list[Callable[[object], None]]] = {}
        self.failures = 0  # subscriber exceptions swallowed (logged)

    def subscribe(self, kind: type[E], handler: Callable[[E], None]) -> None:
        """Call ``handler(event)`` for every published event of exactly type ``kind``."""
        self._handlers.setdefault(kind, []).append(handler)  # type: ignore[arg-type]

    def publish(self, event: object) -> None:
        """Deliver ``event`` to its subscribers; never raises."""
        handlers = self._handlers.get(type(event))
        if not handlers:
            return
        for handler in handlers:
            try:
                handler(event)
            except Exception:
                self.failures += 1
                log.exception("event subscriber %r failed on %r", handler, event)


Publish = Callable[[object], None]


def discard(event: object) -> None:
    """A ``Publish`` that drops everything: for parts built without a bus (unit tests)."""
