"""What the catalog holds, as the rest of the proxy sees it: frozen rows, the closed
vocabularies stored as text (StrEnums), and the fields an update may change.

A recording's state is :class:`proxy.recording_state.RecordingState`, the one
definition every layer shares; the catalog adds the vocabulary of what is *logged*
about a recording (``RecordingAction``) and where it came from (``EventChannel``).

Times are timezone-aware ``datetime`` objects in UTC (stored as INTEGER milliseconds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, TypedDict

from ...recording_state import RecordingState

# ---------------------------------------------------------------------------- vocabularies


class CallDirection(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class CallKind(StrEnum):
    """What a call row is: a call recproxy bridged, or a SIPREC recording session
    (RFC 7866) whose media a recording client sent us."""

    CALL = "call"
    SIPREC = "siprec"


class CallOutcome(StrEnum):
    """How a call ended.  Stored as text; a new value needs no migration."""

    COMPLETED = "completed"
    CALLER_ABANDONED_DURING_NOTICE = "caller_abandoned_during_notice"
    CALLER_ABANDONED_WHILE_RINGING = "caller_abandoned_while_ringing"
    CALLTAKER_BUSY = "calltaker_busy"
    CALLTAKER_DECLINED = "calltaker_declined"
    NO_ANSWER = "no_answer"
    FAILED = "failed"
    REJECTED_UNTRUSTED = "rejected_untrusted"
    REJECTED_OUT_OF_SCOPE = "rejected_out_of_scope"
    INTERRUPTED = "interrupted"  # the process ended during the call (crash, power cut)
    SESSION_EXPIRED = "session_expired"  # no session refresh came (RFC 4028): torn down


class RecordingAction(StrEnum):
    """What a recording event says happened."""

    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    DISCARD = "discard"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    COMPLETE = "complete"
    DEGRADED = "degraded"
    HOLD = "hold"  # a party put the call on hold (the actor names which)
    UNHOLD = "unhold"  # ... and took it off hold
    TRANSFER = "transfer"  # the call taker transferred the call: a new part began


class EventChannel(StrEnum):
    """Where a recording action came from."""

    DTMF = "dtmf"
    API = "api"  # the live-call API, with an operator's token
    CONSOLE = "console"  # a signed-in user on the call takers' page
    SYSTEM = "system"


class NoticeMode(StrEnum):
    """How the recording notice reached the caller (P13)."""

    ANSWER = "answer"
    EARLY_MEDIA = "early-media"
    NONE = "none"
    SRC = "src"  # a SIPREC session: the recording client's notice, not ours (P13)


#: The channels of a recording: the member of the public (left), staff (right).
QUALITY_CHANNELS: Final = ("caller", "call_taker")


def format_utc(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a ``Z``: ``2024-05-01T09:30:00.250Z``."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_utc(text: str) -> datetime:
    """An ISO 8601 date or time as an aware UTC ``datetime`` (no zone given: UTC).
    Raises ``ValueError`` with a one-line message for anything else."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not an ISO 8601 date or time: {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: When a recording that ended at the given time expires (the retention policy).
Expiry = Callable[[datetime], datetime]


# ------------------------------------------------------------------------------------ rows


@dataclass(frozen=True, slots=True)
class Call:
    id: str
    sip_call_id: str
    caller: str
    callee: str
    direction: CallDirection
    started_at: datetime
    service: str | None = None
    operator: str | None = None
    answered_at: datetime | None = None
    bridged_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: CallOutcome | None = None
    config_version: str | None = None
    kind: CallKind = CallKind.CALL
    node: str | None = None  # the node that took it; None before nodes had names


@dataclass(frozen=True, slots=True)
class ConsentReceipt:
    call_id: str
    mode: NoticeMode
    notice_sha256: str | None
    notice_version: str | None
    started_at: datetime | None
    played_ms: int
    notice_ms: int
    completed: bool
    caller_left_during_notice: bool
    do_not_record: bool
    notice_restarts: int = 0  # times a hold stopped the notice (it then starts again)
    held_ms: int = 0  # how long the caller held the call during the notice


@dataclass(frozen=True, slots=True)
class Recording:
    id: str
    call_id: str
    state: RecordingState
    directory: str
    encoding: str
    sample_rate: int
    channels: int
    started_at: datetime
    ended_at: datetime | None = None
    duration_ms: int | None = None
    failure_reason: str | None = None
    wrapped_key_sha256: str | None = None
    discarded_by: str | None = None
    discarded_reason: str | None = None
    discarded_at: datetime | None = None
    degraded_reason: str | None = None
    expires_at: datetime | None = None  # set when it ends: ended_at + the retention period
    deleted_at: datetime | None = None  # removed after its retention period (state deleted)
    deleted_reason: str | None = None
    node: str | None = None  # the node that recorded it; None before nodes had names


@dataclass(frozen=True, slots=True)
class ChannelQuality:
    """What one channel of a recording lost: of ``frames`` 20 ms frames that counted
    (not on hold, paused or stopped), those filled with silence because the audio was
    lost (a hole in the stream), late (arrived after its slot) or missing (nothing
    was sent: silence suppression, comfort noise, a party that went quiet), and the
    longest run of lost or late audio."""

    channel: str  # one of QUALITY_CHANNELS
    frames: int
    lost_frames: int
    late_frames: int
    missing_frames: int
    longest_gap_ms: int

    def as_dict(self) -> dict[str, int]:
        return {
            "frames": self.frames,
            "lost_frames": self.lost_frames,
            "late_frames": self.late_frames,
            "missing_frames": self.missing_frames,
            "longest_gap_ms": self.longest_gap_ms,
        }


@dataclass(frozen=True, slots=True)
class Segment:
    recording_id: str
    segment_index: int
    file_name: str
    first_frame: int
    chunks: int = 0
    frames: int = 0
    size_bytes: int = 0
    sha256: str | None = None
    closed: bool = False


@dataclass(frozen=True, slots=True)
class RecordingSummary:
    """One line of ``recproxy recordings list``.

    ``started_at`` is when the call started.  ``duration_ms`` is the recording's
    ``duration_ms`` when that has been set, otherwise the audio held in its segments
    (frames / sample rate), 0 when it has none.
    """

    id: str
    call_id: str
    caller: str
    callee: str
    started_at: datetime
    duration_ms: int
    state: RecordingState
    segments: int
    reason: str | None = None  # why it is failed or degraded
    quality: tuple[ChannelQuality, ...] = ()
    config_version: str | None = None  # the configuration its call ran under (P22)
    expires_at: datetime | None = None
    deleted_at: datetime | None = None
    deleted_reason: str | None = None
    node: str | None = None  # the node that recorded it (issue 20)

    def as_dict(self) -> dict[str, object]:
        """The fields as JSON-ready values, times as ISO 8601 UTC (``...Z``)."""
        return {
            "id": self.id,
            "call_id": self.call_id,
            "caller": self.caller,
            "callee": self.callee,
            "started_at": format_utc(self.started_at),
            "duration_ms": self.duration_ms,
            "state": self.state.value,
            "segments": self.segments,
            "reason": self.reason,
            "quality": {q.channel: q.as_dict() for q in self.quality},
            "config_version": self.config_version,
            "node": self.node,
        }


@dataclass(frozen=True, slots=True)
class RecordingEvent:
    id: int
    recording_id: str
    at: datetime
    action: RecordingAction
    channel: EventChannel
    actor: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class DoNotRecordEntry:
    """A caller who asked in writing not to be recorded (P14a)."""

    number: str  # E.164
    reference: str  # the written request (letter, email, case number)
    added_by: str
    added_at: datetime


@dataclass(frozen=True, slots=True)
class AccessEntry:
    """One read of a recording (export, playback): who, when, why (P5, P20)."""

    id: int
    at: datetime
    actor: str
    action: str
    recording_id: str | None
    reason: str
    detail: str | None = None


# ---------------------------------------------------------------------------------- inputs
# What a repository takes to make a row: one value each, so that a protocol and each
# implementation name it once instead of repeating a long keyword signature.


@dataclass(frozen=True, slots=True)
class NewCall:
    """A call as it is admitted (``create_call``); no ``call_id``: a new UUID."""

    sip_call_id: str
    caller: str
    callee: str
    direction: CallDirection
    started_at: datetime
    service: str | None = None
    operator: str | None = None
    config_version: str | None = None
    call_id: str | None = None
    kind: CallKind = CallKind.CALL
    node: str | None = None  # the recproxy node taking the call (issue 20)


@dataclass(frozen=True, slots=True)
class NewRecording:
    """A recording as it starts, in state ``recording`` (``create_recording``); no
    ``recording_id``: a new UUID."""

    call_id: str
    directory: str
    encoding: str
    sample_rate: int
    channels: int
    started_at: datetime
    wrapped_key_sha256: str | None = None
    recording_id: str | None = None
    node: str | None = None  # the recproxy node recording it (issue 20)


@dataclass(frozen=True, slots=True)
class SegmentFacts:
    """What is known of a segment file's content: the writer's report of a sealed
    segment (``closed=True``, with its sha256), or progress so far.  A field left None
    is not given: an update keeps what is stored, a new segment starts at zero."""

    chunks: int | None = None
    frames: int | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    closed: bool | None = None


@dataclass(frozen=True, slots=True)
class NewSegment:
    """A segment file of a recording as it is catalogued (``add_segment``), with what is
    known of its content: a segment the writer has sealed is catalogued whole."""

    recording_id: str
    segment_index: int
    file_name: str
    first_frame: int
    facts: SegmentFacts = SegmentFacts()


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who did something to a recording, how, why and when (P14): what a state change
    or a recording event is logged with.  By default the system, now."""

    actor: str | None = None
    channel: EventChannel = EventChannel.SYSTEM
    reason: str | None = None
    at: datetime | None = None


#: The system, now: what happens to a recording unless someone is named.
BY_SYSTEM: Final = Attribution()


# --------------------------------------------------------------------------------- updates


class CallUpdate(TypedDict, total=False):
    """The fields of a call that ``update_call`` may change."""

    callee: str
    service: str | None
    operator: str | None
    answered_at: datetime | None
    bridged_at: datetime | None
    ended_at: datetime | None
    outcome: CallOutcome | None
    config_version: str | None


class RecordingUpdate(TypedDict, total=False):
    """Fields of a recording that ``update_recording`` may set outside the state
    machine (storage recovery learns the real end and duration from the chunks)."""

    ended_at: datetime | None
    duration_ms: int | None
    wrapped_key_sha256: str
    expires_at: datetime | None
