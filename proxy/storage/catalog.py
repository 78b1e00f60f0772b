"""The recording catalog: the one source of truth for recording metadata.

Calls, recordings, segments, consent receipts (P13) and recording events (P14) live
here; segment files hold audio only.  ``Catalog`` is the interface the rest of the
proxy uses; ``SqliteCatalog`` implements it with SQLite through aiosqlite, so that a
PostgreSQL adapter can replace it without touching callers.

Storage rules
-------------
- WAL journal, ``synchronous=FULL`` by default, ``foreign_keys=ON`` and a busy
  timeout, set on every connection.
- Every write method runs one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction and
  returns only after the commit: a write that has been awaited survives the process
  being killed.  The transaction runs in a shielded task under a lock, so cancelling
  the caller can neither leave a transaction half done nor interleave two of them on
  the one connection.
- Times are stored as INTEGER milliseconds since the Unix epoch, UTC, in every table,
  and appear in Python as timezone-aware ``datetime`` objects in UTC.  Naive datetimes
  are refused; precision below a millisecond is dropped.
- The schema is built by numbered migrations recorded in ``schema_migrations``.  Each
  one is applied once, in its own transaction; a database written by newer code (a
  version this code does not know) is refused with ``SchemaTooNewError``.

Recording states
----------------
``recording`` is the only state in which audio is written.  Transitions, and the
``recording_events`` action each one appends::

    recording   -> complete (complete), degraded (degraded), stopped (stop),
                   interrupted (interrupted), failed (failed), discarded (discard)
    stopped     -> recording (resume), complete (complete), degraded (degraded),
                   failed (failed), discarded (discard)
    complete, degraded, interrupted, failed -> discarded (discard)
    discarded   -> nothing (terminal)

``degraded`` is a recording that ended with more audio lost or late than the configured
limits allow (``degraded_reason`` says which); it is never ``complete``.  What each
channel lost is in ``recording_quality`` (``set_recording_quality``).

``pause`` and ``resume`` may also be logged without a state change (a pause inside a
recording, for example during a hold) with ``add_recording_event``.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Literal,
    Protocol,
    Self,
    TypedDict,
    TypeVar,
    Unpack,
    cast,
)

import aiosqlite

__all__ = [
    "MIGRATIONS",
    "QUALITY_CHANNELS",
    "RECOVERY_REASON",
    "SCHEMA_VERSION",
    "TRANSITIONS",
    "AccessEntry",
    "Call",
    "CallDirection",
    "CallOutcome",
    "CallUpdate",
    "Catalog",
    "CatalogClosedError",
    "CatalogError",
    "CatalogUnavailableError",
    "ChannelQuality",
    "ConsentReceipt",
    "DuplicateError",
    "EventChannel",
    "InvalidFieldError",
    "InvalidTransitionError",
    "Migration",
    "NotFoundError",
    "NoticeMode",
    "Recording",
    "RecordingAction",
    "RecordingEvent",
    "RecordingState",
    "RecordingSummary",
    "RecordingUpdate",
    "SchemaTooNewError",
    "Segment",
    "SqliteCatalog",
    "format_utc",
]

T = TypeVar("T")


# --------------------------------------------------------------------------- errors


class CatalogError(Exception):
    """Base class of every error raised by the catalog."""


class SchemaTooNewError(CatalogError):
    """The database was migrated by newer code than this; refuse to touch it."""


class CatalogUnavailableError(CatalogError):
    """The database did not take the operation (locked past the busy timeout, read-only,
    disk full, an I/O error): nothing was changed, and the same call may succeed later."""


class CatalogClosedError(CatalogError):
    """The catalog was used before ``open()`` or after ``close()``."""


class NotFoundError(CatalogError, LookupError):
    """The call, recording or segment named does not exist."""


class DuplicateError(CatalogError):
    """A row with that identity already exists."""


class InvalidFieldError(CatalogError, ValueError):
    """A value given to the catalog is malformed or out of range (our caller's bug)."""


class InvalidTransitionError(CatalogError, ValueError):
    """A recording state change that the state machine does not allow."""


# ---------------------------------------------------------------------------- enums


class CallDirection(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


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


class RecordingState(StrEnum):
    RECORDING = "recording"
    COMPLETE = "complete"
    DEGRADED = "degraded"  # ended with more audio lost or late than the limits allow
    INTERRUPTED = "interrupted"
    STOPPED = "stopped"
    FAILED = "failed"
    DISCARDED = "discarded"


class RecordingAction(StrEnum):
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


class EventChannel(StrEnum):
    """Where a recording action came from."""

    DTMF = "dtmf"
    API = "api"
    SYSTEM = "system"


class NoticeMode(StrEnum):
    """How the recording notice reached the caller (P13)."""

    ANSWER = "answer"
    EARLY_MEDIA = "early-media"
    NONE = "none"


_S = RecordingState
_A = RecordingAction

# (current state, new state) -> the action logged for it.  Anything absent is refused.
TRANSITIONS: Mapping[RecordingState, Mapping[RecordingState, RecordingAction]] = {
    _S.RECORDING: {
        _S.COMPLETE: _A.COMPLETE,
        _S.DEGRADED: _A.DEGRADED,
        _S.STOPPED: _A.STOP,
        _S.INTERRUPTED: _A.INTERRUPTED,
        _S.FAILED: _A.FAILED,
        _S.DISCARDED: _A.DISCARD,
    },
    _S.STOPPED: {
        _S.RECORDING: _A.RESUME,
        _S.COMPLETE: _A.COMPLETE,
        _S.DEGRADED: _A.DEGRADED,
        _S.FAILED: _A.FAILED,
        _S.DISCARDED: _A.DISCARD,
    },
    _S.COMPLETE: {_S.DISCARDED: _A.DISCARD},
    _S.DEGRADED: {_S.DISCARDED: _A.DISCARD},
    _S.INTERRUPTED: {_S.DISCARDED: _A.DISCARD},
    _S.FAILED: {_S.DISCARDED: _A.DISCARD},
    _S.DISCARDED: {},
}

# States whose entry marks the end of the audio written so far.
_ENDING_STATES = frozenset({_S.COMPLETE, _S.DEGRADED, _S.STOPPED, _S.INTERRUPTED, _S.FAILED})

# Actions that only ``add_recording_event`` logs (no state change).
_NOTE_ACTIONS = frozenset({_A.PAUSE, _A.RESUME, _A.HOLD, _A.UNHOLD})

RECOVERY_REASON = "process ended while recording"


# ----------------------------------------------------------------------------- rows


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


#: The channels of a recording: the member of the public (left), staff (right).
QUALITY_CHANNELS = ("caller", "call_taker")


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
        }


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


# ------------------------------------------------------------------------ interface


class Catalog(Protocol):
    """What the proxy needs from a metadata store."""

    async def open(self) -> Self: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def create_call(
        self,
        *,
        sip_call_id: str,
        caller: str,
        callee: str,
        direction: CallDirection,
        started_at: datetime,
        service: str | None = None,
        operator: str | None = None,
        config_version: str | None = None,
        call_id: str | None = None,
    ) -> Call: ...

    async def update_call(self, call_id: str, **fields: Unpack[CallUpdate]) -> Call: ...

    async def get_call(self, call_id: str) -> Call | None: ...

    async def create_recording(
        self,
        call_id: str,
        *,
        directory: str,
        encoding: str,
        sample_rate: int,
        channels: int,
        started_at: datetime,
        wrapped_key_sha256: str | None = None,
        recording_id: str | None = None,
        actor: str | None = None,
        channel: EventChannel = EventChannel.SYSTEM,
    ) -> Recording: ...

    async def update_recording(
        self, recording_id: str, **fields: Unpack[RecordingUpdate]
    ) -> Recording: ...

    async def set_recording_state(
        self,
        recording_id: str,
        state: RecordingState,
        *,
        reason: str | None = None,
        actor: str | None = None,
        channel: EventChannel | None = None,
        at: datetime | None = None,
    ) -> Recording: ...

    async def get_recording(self, recording_id: str) -> Recording | None: ...

    async def list_recordings(
        self, state: RecordingState | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[RecordingSummary]: ...

    async def set_recording_quality(
        self, recording_id: str, channels: Sequence[ChannelQuality]
    ) -> None: ...

    async def recording_quality(self, recording_id: str) -> list[ChannelQuality]: ...

    async def add_segment(
        self, recording_id: str, segment_index: int, *, file_name: str, first_frame: int
    ) -> Segment: ...

    async def update_segment(
        self,
        recording_id: str,
        segment_index: int,
        *,
        chunks: int | None = None,
        frames: int | None = None,
        size_bytes: int | None = None,
        sha256: str | None = None,
        closed: bool | None = None,
    ) -> Segment: ...

    async def segments(self, recording_id: str) -> list[Segment]: ...

    async def add_consent_receipt(
        self,
        call_id: str,
        *,
        mode: NoticeMode,
        notice_sha256: str | None,
        notice_version: str | None,
        started_at: datetime | None,
        played_ms: int,
        notice_ms: int,
        completed: bool,
        caller_left_during_notice: bool,
        do_not_record: bool,
        notice_restarts: int = 0,
        held_ms: int = 0,
    ) -> ConsentReceipt: ...

    async def consent_receipt(self, call_id: str) -> ConsentReceipt | None: ...

    async def add_recording_event(
        self,
        recording_id: str,
        action: RecordingAction,
        *,
        actor: str | None = None,
        channel: EventChannel = EventChannel.SYSTEM,
        reason: str | None = None,
        at: datetime | None = None,
    ) -> RecordingEvent: ...

    async def recording_events(self, recording_id: str) -> list[RecordingEvent]: ...

    async def recover_interrupted(self, *, at: datetime | None = None) -> list[str]: ...

    async def do_not_record(self, number: str) -> DoNotRecordEntry | None: ...

    async def recover_calls(self) -> list[str]: ...

    async def log_access(
        self,
        *,
        actor: str,
        action: str,
        reason: str,
        recording_id: str | None = None,
        detail: str | None = None,
        at: datetime | None = None,
    ) -> AccessEntry: ...


def _dnr(row: Row) -> DoNotRecordEntry:
    return DoNotRecordEntry(
        row["number"], row["reference"], row["added_by"], _from_ms(row["added_at"])
    )


# ----------------------------------------------------------------------- migrations


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: its statements run in one transaction, then it is recorded."""

    version: int
    name: str
    statements: tuple[str, ...]


_MIGRATION_1 = Migration(
    1,
    "calls, recordings, segments, consent receipts, recording events",
    (
        """
        CREATE TABLE calls (
            id              TEXT PRIMARY KEY,
            sip_call_id     TEXT NOT NULL,
            caller          TEXT NOT NULL,
            callee          TEXT NOT NULL,
            direction       TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
            service         TEXT,
            operator        TEXT,
            started_at      INTEGER NOT NULL,
            answered_at     INTEGER,
            bridged_at      INTEGER,
            ended_at        INTEGER,
            outcome         TEXT,
            config_version  TEXT
        )
        """,
        "CREATE INDEX calls_by_caller ON calls (caller, started_at)",
        "CREATE INDEX calls_by_sip_call_id ON calls (sip_call_id)",
        "CREATE INDEX calls_by_started_at ON calls (started_at)",
        """
        CREATE TABLE recordings (
            id                  TEXT PRIMARY KEY,
            call_id             TEXT NOT NULL REFERENCES calls (id),
            state               TEXT NOT NULL,
            directory           TEXT NOT NULL UNIQUE,
            encoding            TEXT NOT NULL,
            sample_rate         INTEGER NOT NULL CHECK (sample_rate > 0),
            channels            INTEGER NOT NULL CHECK (channels > 0),
            started_at          INTEGER NOT NULL,
            ended_at            INTEGER,
            duration_ms         INTEGER CHECK (duration_ms >= 0),
            failure_reason      TEXT,
            wrapped_key_sha256  TEXT,
            discarded_by        TEXT,
            discarded_reason    TEXT,
            discarded_at        INTEGER
        )
        """,
        "CREATE INDEX recordings_by_state ON recordings (state, started_at)",
        "CREATE INDEX recordings_by_call ON recordings (call_id)",
        """
        CREATE TABLE segments (
            recording_id    TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
            segment_index   INTEGER NOT NULL CHECK (segment_index >= 0),
            file_name       TEXT NOT NULL,
            chunks          INTEGER NOT NULL DEFAULT 0 CHECK (chunks >= 0),
            first_frame     INTEGER NOT NULL CHECK (first_frame >= 0),
            frames          INTEGER NOT NULL DEFAULT 0 CHECK (frames >= 0),
            size_bytes      INTEGER NOT NULL DEFAULT 0 CHECK (size_bytes >= 0),
            sha256          TEXT,
            closed          INTEGER NOT NULL DEFAULT 0 CHECK (closed IN (0, 1)),
            PRIMARY KEY (recording_id, segment_index),
            UNIQUE (recording_id, file_name)
        )
        """,
        """
        CREATE TABLE consent_receipts (
            call_id                     TEXT PRIMARY KEY REFERENCES calls (id),
            mode                        TEXT NOT NULL,
            notice_sha256               TEXT,
            notice_version              TEXT,
            started_at                  INTEGER,
            played_ms                   INTEGER NOT NULL CHECK (played_ms >= 0),
            notice_ms                   INTEGER NOT NULL CHECK (notice_ms >= 0),
            completed                   INTEGER NOT NULL CHECK (completed IN (0, 1)),
            caller_left_during_notice   INTEGER NOT NULL
                                        CHECK (caller_left_during_notice IN (0, 1)),
            do_not_record               INTEGER NOT NULL CHECK (do_not_record IN (0, 1))
        )
        """,
        """
        CREATE TABLE recording_events (
            id              INTEGER PRIMARY KEY,
            recording_id    TEXT NOT NULL REFERENCES recordings (id),
            at              INTEGER NOT NULL,
            action          TEXT NOT NULL,
            actor           TEXT,
            channel         TEXT NOT NULL,
            reason          TEXT
        )
        """,
        "CREATE INDEX recording_events_by_recording ON recording_events (recording_id, at, id)",
    ),
)

_MIGRATION_2 = Migration(
    2,
    "access log: who read a recording, when and why",
    (
        """
        CREATE TABLE access_log (
            id              INTEGER PRIMARY KEY,
            at              INTEGER NOT NULL,
            actor           TEXT NOT NULL,
            action          TEXT NOT NULL,
            recording_id    TEXT REFERENCES recordings (id),
            reason          TEXT NOT NULL,
            detail          TEXT
        )
        """,
        "CREATE INDEX access_log_by_recording ON access_log (recording_id, at, id)",
        "CREATE INDEX access_log_by_actor ON access_log (actor, at)",
    ),
)

_MIGRATION_3 = Migration(
    3,
    "do-not-record list (P14): numbers from written requests",
    (
        """
        CREATE TABLE do_not_record (
            number          TEXT PRIMARY KEY,
            reference       TEXT NOT NULL,
            added_by        TEXT NOT NULL,
            added_at        INTEGER NOT NULL
        )
        """,
    ),
)

_MIGRATION_4 = Migration(
    4,
    "recording quality: frames filled per channel, and why a recording is degraded",
    (
        """
        CREATE TABLE recording_quality (
            recording_id    TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
            channel         TEXT NOT NULL CHECK (channel IN ('caller', 'call_taker')),
            frames          INTEGER NOT NULL CHECK (frames >= 0),
            lost_frames     INTEGER NOT NULL CHECK (lost_frames >= 0),
            late_frames     INTEGER NOT NULL CHECK (late_frames >= 0),
            missing_frames  INTEGER NOT NULL CHECK (missing_frames >= 0),
            longest_gap_ms  INTEGER NOT NULL CHECK (longest_gap_ms >= 0),
            PRIMARY KEY (recording_id, channel)
        )
        """,
        "ALTER TABLE recordings ADD COLUMN degraded_reason TEXT",
    ),
)

_MIGRATION_5 = Migration(
    5,
    "consent receipts: notice restarts and time held (a hold during the notice)",
    (
        "ALTER TABLE consent_receipts ADD COLUMN notice_restarts INTEGER NOT NULL DEFAULT 0"
        " CHECK (notice_restarts >= 0)",
        "ALTER TABLE consent_receipts ADD COLUMN held_ms INTEGER NOT NULL DEFAULT 0"
        " CHECK (held_ms >= 0)",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (
    _MIGRATION_1,
    _MIGRATION_2,
    _MIGRATION_3,
    _MIGRATION_4,
    _MIGRATION_5,
)
SCHEMA_VERSION = MIGRATIONS[-1].version

_CREATE_SCHEMA_MIGRATIONS = """
    CREATE TABLE IF NOT EXISTS schema_migrations (
        version     INTEGER PRIMARY KEY,
        name        TEXT NOT NULL,
        applied_at  INTEGER NOT NULL
    )
"""


# ------------------------------------------------------------------------ conversion

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def format_utc(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a ``Z``: ``2024-05-01T09:30:00.250Z``."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _to_ms(name: str, value: object) -> int:
    if not isinstance(value, datetime):
        raise InvalidFieldError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidFieldError(f"{name} must be timezone-aware (UTC), got naive {value}")
    return (value - _EPOCH) // _ONE_MS


def _opt_ms(name: str, value: object) -> int | None:
    return None if value is None else _to_ms(name, value)


def _from_ms(value: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=value)


def _opt_dt(value: int | None) -> datetime | None:
    return None if value is None else _from_ms(value)


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidFieldError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _opt_text(name: str, value: object) -> str | None:
    return None if value is None else _text(name, value)


def _count(name: str, value: object, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidFieldError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidFieldError(f"{name} must be a bool, got {value!r}")
    return value


def _sha256(name: str, value: object) -> str:
    if not isinstance(value, str) or not _SHA256_RE.fullmatch(value):
        raise InvalidFieldError(f"{name} must be 64 lowercase hex digits, got {value!r}")
    return value


def _uuid(name: str, value: str | None) -> str:
    if value is None:
        return str(uuid.uuid4())
    try:
        canonical = str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise InvalidFieldError(f"{name} must be a UUID, got {value!r}") from None
    if canonical != value:
        raise InvalidFieldError(f"{name} must be a lowercase hyphenated UUID, got {value!r}")
    return value


def _relative_dir(value: object) -> str:
    text = _text("directory", value)
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts or "\\" in text or str(path) == ".":
        raise InvalidFieldError(
            f"directory must be a path relative to the recordings directory, got {text!r}"
        )
    return str(path)


def _file_name(value: object) -> str:
    text = _text("file_name", value)
    if "/" in text or "\\" in text or text in {".", ".."}:
        raise InvalidFieldError(f"file_name must be a bare file name, got {text!r}")
    return text


E = TypeVar("E", bound=StrEnum)


def _enum(kind: type[E], name: str, value: object) -> E:
    try:
        if isinstance(value, str):
            return kind(value)
    except ValueError:
        pass
    allowed = ", ".join(member.value for member in kind)
    raise InvalidFieldError(f"{name} must be one of {allowed}; got {value!r}")


def _not_before(later_name: str, later: int | None, earlier_name: str, earlier: int | None) -> None:
    if later is not None and earlier is not None and later < earlier:
        raise InvalidFieldError(
            f"{later_name} ({format_utc(_from_ms(later))}) is before "
            f"{earlier_name} ({format_utc(_from_ms(earlier))})"
        )


Row = sqlite3.Row


def _call(row: Row) -> Call:
    return Call(
        id=row["id"],
        sip_call_id=row["sip_call_id"],
        caller=row["caller"],
        callee=row["callee"],
        direction=CallDirection(row["direction"]),
        started_at=_from_ms(row["started_at"]),
        service=row["service"],
        operator=row["operator"],
        answered_at=_opt_dt(row["answered_at"]),
        bridged_at=_opt_dt(row["bridged_at"]),
        ended_at=_opt_dt(row["ended_at"]),
        outcome=None if row["outcome"] is None else CallOutcome(row["outcome"]),
        config_version=row["config_version"],
    )


def _recording(row: Row) -> Recording:
    return Recording(
        id=row["id"],
        call_id=row["call_id"],
        state=RecordingState(row["state"]),
        directory=row["directory"],
        encoding=row["encoding"],
        sample_rate=row["sample_rate"],
        channels=row["channels"],
        started_at=_from_ms(row["started_at"]),
        ended_at=_opt_dt(row["ended_at"]),
        duration_ms=row["duration_ms"],
        failure_reason=row["failure_reason"],
        wrapped_key_sha256=row["wrapped_key_sha256"],
        discarded_by=row["discarded_by"],
        discarded_reason=row["discarded_reason"],
        discarded_at=_opt_dt(row["discarded_at"]),
        degraded_reason=row["degraded_reason"],
    )


def _segment(row: Row) -> Segment:
    return Segment(
        recording_id=row["recording_id"],
        segment_index=row["segment_index"],
        file_name=row["file_name"],
        first_frame=row["first_frame"],
        chunks=row["chunks"],
        frames=row["frames"],
        size_bytes=row["size_bytes"],
        sha256=row["sha256"],
        closed=bool(row["closed"]),
    )


def _receipt(row: Row) -> ConsentReceipt:
    return ConsentReceipt(
        call_id=row["call_id"],
        mode=NoticeMode(row["mode"]),
        notice_sha256=row["notice_sha256"],
        notice_version=row["notice_version"],
        started_at=_opt_dt(row["started_at"]),
        played_ms=row["played_ms"],
        notice_ms=row["notice_ms"],
        completed=bool(row["completed"]),
        caller_left_during_notice=bool(row["caller_left_during_notice"]),
        do_not_record=bool(row["do_not_record"]),
        notice_restarts=row["notice_restarts"],
        held_ms=row["held_ms"],
    )


def _event(row: Row) -> RecordingEvent:
    return RecordingEvent(
        id=row["id"],
        recording_id=row["recording_id"],
        at=_from_ms(row["at"]),
        action=RecordingAction(row["action"]),
        channel=EventChannel(row["channel"]),
        actor=row["actor"],
        reason=row["reason"],
    )


def _quality(row: Row) -> ChannelQuality:
    return ChannelQuality(
        channel=row["channel"],
        frames=row["frames"],
        lost_frames=row["lost_frames"],
        late_frames=row["late_frames"],
        missing_frames=row["missing_frames"],
        longest_gap_ms=row["longest_gap_ms"],
    )


def _summary(row: Row, quality: tuple[ChannelQuality, ...]) -> RecordingSummary:
    return RecordingSummary(
        id=row["id"],
        call_id=row["call_id"],
        caller=row["caller"],
        callee=row["callee"],
        started_at=_from_ms(row["call_started_at"]),
        duration_ms=row["duration_ms"],
        state=RecordingState(row["state"]),
        segments=row["segments"],
        reason=row["failure_reason"] or row["degraded_reason"],
        quality=quality,
    )


# ------------------------------------------------------------------ SQLite catalog

Connection = aiosqlite.Connection
_Params = Sequence[object] | Mapping[str, object]


async def _one(conn: Connection, sql: str, params: _Params = ()) -> Row | None:
    async with conn.execute(sql, params) as cursor:
        row: Row | None = await cursor.fetchone()
        return row


async def _all(conn: Connection, sql: str, params: _Params = ()) -> list[Row]:
    return list(await conn.execute_fetchall(sql, params))


def _is_fk_failure(error: sqlite3.IntegrityError) -> bool:
    return "FOREIGN KEY" in str(error)


def _is_unique_failure(error: sqlite3.IntegrityError) -> bool:
    return "UNIQUE" in str(error) or "PRIMARY KEY" in str(error)


_CALL_UPDATE_FIELDS = frozenset(CallUpdate.__annotations__)
_RECORDING_UPDATE_FIELDS = frozenset(RecordingUpdate.__annotations__)

_SUMMARY_SELECT = """
    SELECT r.id, r.call_id, c.caller, c.callee, c.started_at AS call_started_at, r.state,
           r.failure_reason, r.degraded_reason,
           COALESCE(
               r.duration_ms,
               (SELECT SUM(s.frames) FROM segments AS s WHERE s.recording_id = r.id)
                   * 1000 / r.sample_rate,
               0
           ) AS duration_ms,
           (SELECT COUNT(*) FROM segments AS s WHERE s.recording_id = r.id) AS segments
    FROM recordings AS r JOIN calls AS c ON c.id = r.call_id
"""
_SUMMARY_ORDER = "ORDER BY c.started_at DESC, r.started_at DESC, r.id DESC LIMIT ? OFFSET ?"

Synchronous = Literal["NORMAL", "FULL"]


class SqliteCatalog:
    """The catalog in one SQLite file, through aiosqlite.

    ``async with SqliteCatalog(path) as catalog: ...`` or ``await catalog.open()`` /
    ``await catalog.close()``.  One instance holds one connection; several instances,
    in one process or several, may share a file (WAL readers never block, writers wait
    up to ``busy_timeout_ms``).  ``clock`` supplies the time of events written
    without an explicit ``at``.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], datetime] = _utc_now,
        synchronous: Synchronous = "FULL",
        busy_timeout_ms: int = 5000,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise InvalidFieldError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        versions = [m.version for m in migrations]
        if versions != list(range(1, len(versions) + 1)):
            raise InvalidFieldError(f"migrations must be numbered 1, 2, 3...; got {versions}")
        self.path = Path(path)
        self._clock = clock
        self._synchronous = synchronous
        self._busy_timeout_ms = _count("busy_timeout_ms", busy_timeout_ms)
        self._migrations = tuple(migrations)
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()

    # -- life cycle

    async def open(self) -> Self:
        """Connect, set the pragmas and bring the schema up to date."""
        if self._conn is not None:
            return self
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            await conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            row = await _one(conn, "PRAGMA journal_mode = WAL")
            if row is None or str(row[0]).lower() != "wal":
                mode = None if row is None else row[0]
                raise CatalogError(f"{self.path}: cannot use WAL journal mode (got {mode!r})")
            await conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            await conn.execute("PRAGMA foreign_keys = ON")
            row = await _one(conn, "PRAGMA foreign_keys")
            if row is None or row[0] != 1:
                raise CatalogError(f"{self.path}: SQLite refused to enforce foreign keys")
            await self._migrate(conn)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        return self

    async def close(self) -> None:
        """Wait for the write in progress, if any, then close the connection."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def schema_version(self) -> int:
        """The highest migration applied to the open database."""
        return await self._read(_applied_max)

    async def _migrate(self, conn: Connection) -> None:
        known = {m.version for m in self._migrations}
        latest = max(known, default=0)
        await conn.execute("BEGIN IMMEDIATE")
        try:
            await conn.execute(_CREATE_SCHEMA_MIGRATIONS)
            applied = {int(r[0]) for r in await _all(conn, "SELECT version FROM schema_migrations")}
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()
        unknown = applied - known
        if unknown:
            raise SchemaTooNewError(
                f"{self.path} has schema version {max(applied)}, but this recproxy knows "
                f"versions up to {latest} only; run a newer recproxy (the catalog was "
                "left untouched)"
            )
        for migration in self._migrations:
            if migration.version in applied:
                continue
            await conn.execute("BEGIN IMMEDIATE")
            try:
                # Another process may have applied it while we waited for the lock.
                done = await _one(
                    conn, "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
                )
                if done is None:
                    for statement in migration.statements:
                        await conn.execute(statement)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at) "
                        "VALUES (?, ?, ?)",
                        (migration.version, migration.name, _to_ms("now", self._clock())),
                    )
            except BaseException:
                await conn.rollback()
                raise
            await conn.commit()

    # -- transactions

    def _connection(self) -> Connection:
        if self._conn is None:
            raise CatalogClosedError(f"catalog {self.path} is not open")
        return self._conn

    async def _read(self, body: Callable[[Connection], Awaitable[T]]) -> T:
        async with self._lock:
            return await self._in_thread(body, transaction=False)

    async def _in_thread(
        self, body: Callable[[Connection], Awaitable[T]], *, transaction: bool
    ) -> T:
        """Run ``body`` whole in the database thread: one hop for the whole operation
        instead of one per statement (each hop is a cross-thread wake-up; a call's
        catalog work went from ~60 of them to ~12).  ``body`` is written against the
        aiosqlite API; in the thread it gets a stand-in whose awaitables are already
        done, so the coroutine runs to completion without suspending."""
        conn = self._connection()

        def run() -> T:
            raw: sqlite3.Connection = conn._conn  # aiosqlite's own sqlite3 connection
            if transaction:
                raw.execute("BEGIN IMMEDIATE")
            try:
                coroutine = cast(
                    Coroutine[Any, Any, T], body(cast(Connection, _ThreadConnection(raw)))
                )
                result: T = _drive(coroutine)
            except BaseException:
                if transaction:
                    raw.rollback()
                raise
            if transaction:
                raw.commit()
            return result

        # run in the connection's own thread (aiosqlite's API for that is not public)
        try:
            return cast(T, await conn._execute(run))  # type: ignore[no-untyped-call]
        except sqlite3.OperationalError as exc:  # rolled back: the caller may retry
            raise CatalogUnavailableError(f"catalog {self.path}: {exc}") from exc

    async def _write(self, body: Callable[[Connection], Awaitable[T]]) -> T:
        """Run ``body`` in one committed transaction.

        Shielded: if the caller is cancelled, the transaction still runs to its commit
        or rollback, so the connection is never left inside a transaction.
        """
        return await asyncio.shield(self._write_locked(body))

    async def _write_locked(self, body: Callable[[Connection], Awaitable[T]]) -> T:
        async with self._lock:
            return await self._in_thread(body, transaction=True)

    def _now_ms(self, at: datetime | None) -> int:
        return _to_ms("at", self._clock() if at is None else at)

    # -- calls

    async def create_call(
        self,
        *,
        sip_call_id: str,
        caller: str,
        callee: str,
        direction: CallDirection,
        started_at: datetime,
        service: str | None = None,
        operator: str | None = None,
        config_version: str | None = None,
        call_id: str | None = None,
    ) -> Call:
        values = (
            _uuid("call_id", call_id),
            _text("sip_call_id", sip_call_id),
            _text("caller", caller),
            _text("callee", callee),
            _enum(CallDirection, "direction", direction).value,
            _opt_text("service", service),
            _opt_text("operator", operator),
            _to_ms("started_at", started_at),
            _opt_text("config_version", config_version),
        )

        async def body(conn: Connection) -> Call:
            try:
                await conn.execute(
                    "INSERT INTO calls (id, sip_call_id, caller, callee, direction, service,"
                    " operator, started_at, config_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    values,
                )
            except sqlite3.IntegrityError as error:
                if _is_unique_failure(error):
                    raise DuplicateError(f"call {values[0]} already exists") from None
                raise
            return await _require_call(conn, values[0])

        return await self._write(body)

    async def update_call(self, call_id: str, **fields: Unpack[CallUpdate]) -> Call:
        unknown = set(fields) - _CALL_UPDATE_FIELDS
        if unknown:
            raise InvalidFieldError(
                f"update_call cannot set {', '.join(sorted(unknown))}; "
                f"settable fields: {', '.join(sorted(_CALL_UPDATE_FIELDS))}"
            )
        changes: dict[str, object] = {}
        time_changes: dict[str, int | None] = {}
        for name, value in fields.items():
            if name == "callee":
                changes[name] = _text(name, value)
            elif name in ("service", "operator", "config_version"):
                changes[name] = _opt_text(name, value)
            elif name == "outcome":
                changes[name] = None if value is None else _enum(CallOutcome, name, value).value
            else:  # answered_at, bridged_at, ended_at
                changes[name] = time_changes[name] = _opt_ms(name, value)

        async def body(conn: Connection) -> Call:
            row = await _one(conn, "SELECT * FROM calls WHERE id = ?", (call_id,))
            if row is None:
                raise NotFoundError(f"call {call_id} does not exist")
            times: dict[str, int | None] = {
                name: time_changes[name] if name in time_changes else row[name]
                for name in ("started_at", "answered_at", "bridged_at", "ended_at")
            }
            _not_before("answered_at", times["answered_at"], "started_at", times["started_at"])
            _not_before("bridged_at", times["bridged_at"], "answered_at", times["answered_at"])
            _not_before("bridged_at", times["bridged_at"], "started_at", times["started_at"])
            _not_before("ended_at", times["ended_at"], "started_at", times["started_at"])
            if changes:
                assignments = ", ".join(f"{name} = :{name}" for name in changes)
                await conn.execute(
                    f"UPDATE calls SET {assignments} WHERE id = :id", changes | {"id": call_id}
                )
            return await _require_call(conn, call_id)

        return await self._write(body)

    async def get_call(self, call_id: str) -> Call | None:
        row = await self._read(
            lambda conn: _one(conn, "SELECT * FROM calls WHERE id = ?", (call_id,))
        )
        return None if row is None else _call(row)

    # -- recordings

    async def create_recording(
        self,
        call_id: str,
        *,
        directory: str,
        encoding: str,
        sample_rate: int,
        channels: int,
        started_at: datetime,
        wrapped_key_sha256: str | None = None,
        recording_id: str | None = None,
        actor: str | None = None,
        channel: EventChannel = EventChannel.SYSTEM,
    ) -> Recording:
        """A new recording in state ``recording``, with its ``start`` event."""
        rec_id = _uuid("recording_id", recording_id)
        started_ms = _to_ms("started_at", started_at)
        values = (
            rec_id,
            call_id,
            RecordingState.RECORDING.value,
            _relative_dir(directory),
            _text("encoding", encoding),
            _count("sample_rate", sample_rate, minimum=1),
            _count("channels", channels, minimum=1),
            started_ms,
            None
            if wrapped_key_sha256 is None
            else _sha256("wrapped_key_sha256", wrapped_key_sha256),
        )
        event_channel = _enum(EventChannel, "channel", channel)
        actor = _opt_text("actor", actor)

        async def body(conn: Connection) -> Recording:
            try:
                await conn.execute(
                    "INSERT INTO recordings (id, call_id, state, directory, encoding,"
                    " sample_rate, channels, started_at, wrapped_key_sha256)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    values,
                )
            except sqlite3.IntegrityError as error:
                if _is_fk_failure(error):
                    raise NotFoundError(f"call {call_id} does not exist") from None
                if _is_unique_failure(error):
                    raise DuplicateError(
                        f"a recording with id {rec_id} or directory {values[3]!r} already exists"
                    ) from None
                raise
            await _insert_event(conn, rec_id, started_ms, _A.START, actor, event_channel, None)
            return await _require_recording(conn, rec_id)

        return await self._write(body)

    async def update_recording(
        self, recording_id: str, **fields: Unpack[RecordingUpdate]
    ) -> Recording:
        """Set ``ended_at``, ``duration_ms`` or (once) ``wrapped_key_sha256``."""
        unknown = set(fields) - _RECORDING_UPDATE_FIELDS
        if unknown:
            raise InvalidFieldError(
                f"update_recording cannot set {', '.join(sorted(unknown))}; "
                f"settable fields: {', '.join(sorted(_RECORDING_UPDATE_FIELDS))}; "
                "the state changes only through set_recording_state"
            )
        changes: dict[str, object] = {}
        ended_ms: int | None = None
        if "ended_at" in fields:
            changes["ended_at"] = ended_ms = _opt_ms("ended_at", fields["ended_at"])
        if "duration_ms" in fields:
            duration = fields["duration_ms"]
            changes["duration_ms"] = None if duration is None else _count("duration_ms", duration)
        if "wrapped_key_sha256" in fields:
            changes["wrapped_key_sha256"] = _sha256(
                "wrapped_key_sha256", fields["wrapped_key_sha256"]
            )

        async def body(conn: Connection) -> Recording:
            current = await _require_recording(conn, recording_id)
            if current.state is RecordingState.DISCARDED:
                raise InvalidTransitionError(f"recording {recording_id} is discarded")
            key_hash = changes.get("wrapped_key_sha256")
            if key_hash is not None and current.wrapped_key_sha256 not in (None, key_hash):
                raise InvalidFieldError(
                    f"recording {recording_id} already has a different wrapped_key_sha256; "
                    "the key of a recording never changes"
                )
            _not_before(
                "ended_at",
                ended_ms,
                "started_at",
                _to_ms("started_at", current.started_at),
            )
            if changes:
                assignments = ", ".join(f"{name} = :{name}" for name in changes)
                await conn.execute(
                    f"UPDATE recordings SET {assignments} WHERE id = :id",
                    changes | {"id": recording_id},
                )
            return await _require_recording(conn, recording_id)

        return await self._write(body)

    async def set_recording_state(
        self,
        recording_id: str,
        state: RecordingState,
        *,
        reason: str | None = None,
        actor: str | None = None,
        channel: EventChannel | None = None,
        at: datetime | None = None,
    ) -> Recording:
        """Move a recording to ``state`` and append the matching recording event.

        ``discarded`` needs an ``actor`` and a ``reason`` (P14: who and why);
        ``failed`` and ``degraded`` need a ``reason``, kept as ``failure_reason`` or
        ``degraded_reason``.  Entering
        complete/stopped/interrupted/failed sets ``ended_at`` to ``at``; resuming
        clears it.  ``channel`` defaults to ``system``.
        """
        target = _enum(RecordingState, "state", state)
        reason = _opt_text("reason", reason)
        actor = _opt_text("actor", actor)
        event_channel = _enum(EventChannel, "channel", channel or EventChannel.SYSTEM)
        at_ms = self._now_ms(at)
        if target is _S.DISCARDED and (actor is None or reason is None):
            raise InvalidFieldError("discarding a recording needs an actor and a reason")
        if target in (_S.FAILED, _S.DEGRADED) and reason is None:
            raise InvalidFieldError(f"a {target.value} recording needs a reason")

        async def body(conn: Connection) -> Recording:
            current = await _require_recording(conn, recording_id)
            action = TRANSITIONS[current.state].get(target)
            if action is None:
                allowed = ", ".join(s.value for s in TRANSITIONS[current.state]) or "none"
                raise InvalidTransitionError(
                    f"recording {recording_id} cannot go from {current.state.value} to "
                    f"{target.value} (allowed from {current.state.value}: {allowed})"
                )
            _not_before("at", at_ms, "started_at", _to_ms("started_at", current.started_at))
            changes: dict[str, object] = {"state": target.value}
            if target in _ENDING_STATES and not (
                current.state is _S.STOPPED and current.ended_at is not None
            ):
                # a stopped recording's audio ended at the stop, not when the call did
                changes["ended_at"] = at_ms
            elif target is _S.RECORDING:
                changes["ended_at"] = None
            if target is _S.FAILED:
                changes["failure_reason"] = reason
            if target is _S.DEGRADED:
                changes["degraded_reason"] = reason
            if target is _S.DISCARDED:
                changes |= {
                    "discarded_by": actor,
                    "discarded_reason": reason,
                    "discarded_at": at_ms,
                }
            assignments = ", ".join(f"{name} = :{name}" for name in changes)
            # The state guard makes a concurrent writer's change visible as a failure.
            await conn.execute(
                f"UPDATE recordings SET {assignments} WHERE id = :id AND state = :old",
                changes | {"id": recording_id, "old": current.state.value},
            )
            if target is _S.DISCARDED:
                # only the fact that a recording existed and was discarded stays (P14)
                await conn.execute("DELETE FROM segments WHERE recording_id = ?", (recording_id,))
            await _insert_event(conn, recording_id, at_ms, action, actor, event_channel, reason)
            return await _require_recording(conn, recording_id)

        return await self._write(body)

    async def get_recording(self, recording_id: str) -> Recording | None:
        row = await self._read(
            lambda conn: _one(conn, "SELECT * FROM recordings WHERE id = ?", (recording_id,))
        )
        return None if row is None else _recording(row)

    async def list_recordings(
        self, state: RecordingState | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[RecordingSummary]:
        """Recordings, newest call first, with the call's parties and start time."""
        _count("limit", limit)
        _count("offset", offset)
        params: tuple[object, ...]
        if state is None:
            sql, params = f"{_SUMMARY_SELECT} {_SUMMARY_ORDER}", (limit, offset)
        else:
            wanted = _enum(RecordingState, "state", state).value
            sql = f"{_SUMMARY_SELECT} WHERE r.state = ? {_SUMMARY_ORDER}"
            params = (wanted, limit, offset)

        async def body(conn: Connection) -> list[RecordingSummary]:
            rows = await _all(conn, sql, params)
            ids = [row["id"] for row in rows]
            quality: dict[str, list[ChannelQuality]] = {}
            if ids:
                marks = ", ".join("?" * len(ids))
                for q in await _all(
                    conn,
                    f"SELECT * FROM recording_quality WHERE recording_id IN ({marks}) "
                    "ORDER BY recording_id, channel",
                    ids,
                ):
                    quality.setdefault(q["recording_id"], []).append(_quality(q))
            return [_summary(row, tuple(quality.get(row["id"], ()))) for row in rows]

        return await self._read(body)

    async def set_recording_quality(
        self, recording_id: str, channels: Sequence[ChannelQuality]
    ) -> None:
        """Store (or replace) what each channel of a recording lost."""
        values: list[tuple[object, ...]] = []
        for q in channels:
            if q.channel not in QUALITY_CHANNELS:
                raise InvalidFieldError(
                    f"channel must be one of {', '.join(QUALITY_CHANNELS)}, not {q.channel!r}"
                )
            values.append(
                (
                    recording_id,
                    q.channel,
                    _count("frames", q.frames),
                    _count("lost_frames", q.lost_frames),
                    _count("late_frames", q.late_frames),
                    _count("missing_frames", q.missing_frames),
                    _count("longest_gap_ms", q.longest_gap_ms),
                )
            )

        async def body(conn: Connection) -> None:
            await _require_recording(conn, recording_id)
            for row in values:
                await conn.execute(
                    "INSERT OR REPLACE INTO recording_quality (recording_id, channel, frames, "
                    "lost_frames, late_frames, missing_frames, longest_gap_ms) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    row,
                )

        await self._write(body)

    async def recording_quality(self, recording_id: str) -> list[ChannelQuality]:
        rows = await self._read(
            lambda conn: _all(
                conn,
                "SELECT * FROM recording_quality WHERE recording_id = ? ORDER BY channel",
                (recording_id,),
            )
        )
        return [_quality(row) for row in rows]

    # -- segments

    async def add_segment(
        self, recording_id: str, segment_index: int, *, file_name: str, first_frame: int
    ) -> Segment:
        values = (
            recording_id,
            _count("segment_index", segment_index),
            _file_name(file_name),
            _count("first_frame", first_frame),
        )

        async def body(conn: Connection) -> Segment:
            state = await _one(conn, "SELECT state FROM recordings WHERE id = ?", (recording_id,))
            if state is not None and state["state"] == _S.DISCARDED.value:
                raise InvalidTransitionError(
                    f"recording {recording_id} is discarded; it takes no new segments"
                )
            try:
                await conn.execute(
                    "INSERT INTO segments (recording_id, segment_index, file_name, first_frame)"
                    " VALUES (?, ?, ?, ?)",
                    values,
                )
            except sqlite3.IntegrityError as error:
                if _is_fk_failure(error):
                    raise NotFoundError(f"recording {recording_id} does not exist") from None
                if _is_unique_failure(error):
                    raise DuplicateError(
                        f"recording {recording_id} already has segment {segment_index} "
                        f"or a segment file named {file_name!r}"
                    ) from None
                raise
            return await _require_segment(conn, recording_id, segment_index)

        return await self._write(body)

    async def update_segment(
        self,
        recording_id: str,
        segment_index: int,
        *,
        chunks: int | None = None,
        frames: int | None = None,
        size_bytes: int | None = None,
        sha256: str | None = None,
        closed: bool | None = None,
    ) -> Segment:
        """Record progress on a segment; ``closed=True`` seals it (needs its sha256).

        A closed segment is immutable.
        """
        changes: dict[str, object] = {}
        if chunks is not None:
            changes["chunks"] = _count("chunks", chunks)
        if frames is not None:
            changes["frames"] = _count("frames", frames)
        if size_bytes is not None:
            changes["size_bytes"] = _count("size_bytes", size_bytes)
        if sha256 is not None:
            changes["sha256"] = _sha256("sha256", sha256)
        if closed is not None:
            if not _flag("closed", closed):
                raise InvalidFieldError("a segment cannot be reopened (closed=False)")
            changes["closed"] = 1

        async def body(conn: Connection) -> Segment:
            current = await _require_segment(conn, recording_id, segment_index)
            if current.closed:
                raise InvalidTransitionError(
                    f"segment {segment_index} of recording {recording_id} is closed; "
                    "a sealed segment does not change"
                )
            if changes.get("closed") and changes.get("sha256", current.sha256) is None:
                raise InvalidFieldError("closing a segment needs its sha256")
            if changes:
                assignments = ", ".join(f"{name} = :{name}" for name in changes)
                await conn.execute(
                    f"UPDATE segments SET {assignments}"
                    " WHERE recording_id = :recording_id AND segment_index = :segment_index",
                    changes | {"recording_id": recording_id, "segment_index": segment_index},
                )
            return await _require_segment(conn, recording_id, segment_index)

        return await self._write(body)

    async def segments(self, recording_id: str) -> list[Segment]:
        """A recording's segments in index order."""
        rows = await self._read(
            lambda conn: _all(
                conn,
                "SELECT * FROM segments WHERE recording_id = ? ORDER BY segment_index",
                (recording_id,),
            )
        )
        return [_segment(row) for row in rows]

    # -- consent receipts

    async def add_consent_receipt(
        self,
        call_id: str,
        *,
        mode: NoticeMode,
        notice_sha256: str | None,
        notice_version: str | None,
        started_at: datetime | None,
        played_ms: int,
        notice_ms: int,
        completed: bool,
        caller_left_during_notice: bool,
        do_not_record: bool,
        notice_restarts: int = 0,
        held_ms: int = 0,
    ) -> ConsentReceipt:
        """The P13 receipt of a call: which notice, when, how much of it played (of its
        last start), how often a hold restarted it and for how long the caller held.

        With ``mode`` ``none`` (no notice played, e.g. outbound) the notice fields may
        be None; otherwise the notice hash, version and start time are required.
        """
        notice_mode = _enum(NoticeMode, "mode", mode)
        if notice_mode is not NoticeMode.NONE:
            for name, value in (
                ("notice_sha256", notice_sha256),
                ("notice_version", notice_version),
                ("started_at", started_at),
            ):
                if value is None:
                    raise InvalidFieldError(f"a receipt with mode {notice_mode.value} needs {name}")
        completed = _flag("completed", completed)
        left = _flag("caller_left_during_notice", caller_left_during_notice)
        if completed and left:
            raise InvalidFieldError("a notice cannot both complete and be left during")
        values = (
            call_id,
            notice_mode.value,
            None if notice_sha256 is None else _sha256("notice_sha256", notice_sha256),
            _opt_text("notice_version", notice_version),
            _opt_ms("started_at", started_at),
            _count("played_ms", played_ms),
            _count("notice_ms", notice_ms),
            int(completed),
            int(left),
            int(_flag("do_not_record", do_not_record)),
            _count("notice_restarts", notice_restarts),
            _count("held_ms", held_ms),
        )

        async def body(conn: Connection) -> ConsentReceipt:
            try:
                await conn.execute(
                    "INSERT INTO consent_receipts (call_id, mode, notice_sha256, notice_version,"
                    " started_at, played_ms, notice_ms, completed, caller_left_during_notice,"
                    " do_not_record, notice_restarts, held_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    values,
                )
            except sqlite3.IntegrityError as error:
                if _is_fk_failure(error):
                    raise NotFoundError(f"call {call_id} does not exist") from None
                if _is_unique_failure(error):
                    raise DuplicateError(f"call {call_id} already has a consent receipt") from None
                raise
            row = await _one(conn, "SELECT * FROM consent_receipts WHERE call_id = ?", (call_id,))
            assert row is not None
            return _receipt(row)

        return await self._write(body)

    async def consent_receipt(self, call_id: str) -> ConsentReceipt | None:
        row = await self._read(
            lambda conn: _one(conn, "SELECT * FROM consent_receipts WHERE call_id = ?", (call_id,))
        )
        return None if row is None else _receipt(row)

    # -- recording events

    async def add_recording_event(
        self,
        recording_id: str,
        action: RecordingAction,
        *,
        actor: str | None = None,
        channel: EventChannel = EventChannel.SYSTEM,
        reason: str | None = None,
        at: datetime | None = None,
    ) -> RecordingEvent:
        """Log a ``pause`` or ``resume`` inside a running recording.

        The other actions change the state, so they go through ``set_recording_state``
        (or ``create_recording`` for ``start``), which logs them itself.
        """
        kind = _enum(RecordingAction, "action", action)
        if kind not in _NOTE_ACTIONS:
            raise InvalidFieldError(
                f"action {kind.value} changes the recording state; use set_recording_state"
            )
        values = (
            _opt_text("actor", actor),
            _enum(EventChannel, "channel", channel),
            _opt_text("reason", reason),
            self._now_ms(at),
        )

        async def body(conn: Connection) -> RecordingEvent:
            current = await _require_recording(conn, recording_id)
            if current.state is not _S.RECORDING:
                raise InvalidTransitionError(
                    f"recording {recording_id} is {current.state.value}; "
                    f"{kind.value} applies only while recording"
                )
            actor_, channel_, reason_, at_ms = values
            event_id = await _insert_event(
                conn, recording_id, at_ms, kind, actor_, channel_, reason_
            )
            row = await _one(conn, "SELECT * FROM recording_events WHERE id = ?", (event_id,))
            assert row is not None
            return _event(row)

        return await self._write(body)

    async def recording_events(self, recording_id: str) -> list[RecordingEvent]:
        """A recording's events in the order they happened."""
        rows = await self._read(
            lambda conn: _all(
                conn,
                "SELECT * FROM recording_events WHERE recording_id = ? ORDER BY at, id",
                (recording_id,),
            )
        )
        return [_event(row) for row in rows]

    # -- do-not-record list

    async def add_do_not_record(
        self,
        number: str,
        *,
        reference: str,
        added_by: str,
        replace: bool = False,
        at: datetime | None = None,
    ) -> DoNotRecordEntry:
        """Add an (E.164-normalised) number.  A number already listed raises
        ``DuplicateError`` unless ``replace``: its written request is the reason it is
        listed, and must not be overwritten by accident."""
        values = (
            _text("number", number),
            _text("reference", reference),
            _text("added_by", added_by),
            self._now_ms(at),
        )
        upsert = (
            " ON CONFLICT (number) DO UPDATE SET reference = excluded.reference,"
            " added_by = excluded.added_by, added_at = excluded.added_at"
        )

        async def body(conn: Connection) -> DoNotRecordEntry:
            try:
                await conn.execute(
                    "INSERT INTO do_not_record (number, reference, added_by, added_at)"
                    " VALUES (?, ?, ?, ?)" + (upsert if replace else ""),
                    values,
                )
            except sqlite3.IntegrityError as error:
                if _is_unique_failure(error):
                    raise DuplicateError(f"{number} is already on the do-not-record list") from None
                raise
            return DoNotRecordEntry(values[0], values[1], values[2], _from_ms(values[3]))

        return await self._write(body)

    async def remove_do_not_record(self, number: str) -> bool:
        """Remove a number; False if it was not on the list."""

        async def body(conn: Connection) -> bool:
            cursor = await conn.execute("DELETE FROM do_not_record WHERE number = ?", (number,))
            return cursor.rowcount > 0

        return await self._write(body)

    async def do_not_record(self, number: str) -> DoNotRecordEntry | None:
        rows = await self._read(
            lambda conn: _all(conn, "SELECT * FROM do_not_record WHERE number = ?", (number,))
        )
        return _dnr(rows[0]) if rows else None

    async def list_do_not_record(self) -> list[DoNotRecordEntry]:
        rows = await self._read(
            lambda conn: _all(conn, "SELECT * FROM do_not_record ORDER BY number", ())
        )
        return [_dnr(row) for row in rows]

    # -- access log

    async def log_access(
        self,
        *,
        actor: str,
        action: str,
        reason: str,
        recording_id: str | None = None,
        detail: str | None = None,
        at: datetime | None = None,
    ) -> AccessEntry:
        """Record a read of a recording.  An access needs a named actor and a reason."""
        values = (
            self._now_ms(at),
            _text("actor", actor),
            _text("action", action),
            recording_id,
            _text("reason", reason),
            _opt_text("detail", detail),
        )

        async def body(conn: Connection) -> AccessEntry:
            if recording_id is not None:
                await _require_recording(conn, recording_id)
            cursor = await conn.execute(
                "INSERT INTO access_log (at, actor, action, recording_id, reason, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                values,
            )
            entry_id = cursor.lastrowid
            assert entry_id is not None
            return AccessEntry(entry_id, _from_ms(values[0]), *values[1:])

        return await self._write(body)

    async def access_log(self, recording_id: str | None = None) -> list[AccessEntry]:
        """Access entries, oldest first; for one recording when ``recording_id`` is given."""
        params: tuple[str, ...] = ()
        if recording_id is None:
            sql = "SELECT * FROM access_log ORDER BY at, id"
        else:
            sql = "SELECT * FROM access_log WHERE recording_id = ? ORDER BY at, id"
            params = (recording_id,)
        rows = await self._read(lambda conn: _all(conn, sql, params))
        return [
            AccessEntry(
                row["id"],
                _from_ms(row["at"]),
                row["actor"],
                row["action"],
                row["recording_id"],
                row["reason"],
                row["detail"],
            )
            for row in rows
        ]

    # -- recovery

    async def recover_interrupted(self, *, at: datetime | None = None) -> list[str]:
        """At start-up: every recording still ``recording`` becomes ``interrupted``.

        Each gets an ``interrupted`` event (actor ``system``, reason "process ended
        while recording").  ``ended_at`` stays as it was: only the chunks on disk say
        when the audio really ends, so storage recovery sets it (``update_recording``).
        Returns the ids, oldest recording first.
        """
        at_ms = self._now_ms(at)

        async def body(conn: Connection) -> list[str]:
            rows = await _all(
                conn,
                "SELECT id FROM recordings WHERE state = ? ORDER BY started_at, id",
                (_S.RECORDING.value,),
            )
            ids = [str(row["id"]) for row in rows]
            for rec_id in ids:
                await conn.execute(
                    "UPDATE recordings SET state = ? WHERE id = ?",
                    (_S.INTERRUPTED.value, rec_id),
                )
                await _insert_event(
                    conn,
                    rec_id,
                    at_ms,
                    _A.INTERRUPTED,
                    "system",
                    EventChannel.SYSTEM,
                    RECOVERY_REASON,
                )
            return ids

        return await self._write(body)

    async def recover_calls(self) -> list[str]:
        """At start-up: calls a crash left open get outcome ``interrupted`` and an end
        time — the last moment known for them: their recordings' end, else when they
        were bridged, answered or started.  Run after recording recovery."""

        async def body(conn: Connection) -> list[str]:
            rows = await _all(
                conn,
                "SELECT c.id, MAX(COALESCE(r.ended_at, 0), COALESCE(c.bridged_at, 0),"
                " COALESCE(c.answered_at, 0), c.started_at) AS last"
                " FROM calls c LEFT JOIN recordings r ON r.call_id = c.id"
                " WHERE c.ended_at IS NULL GROUP BY c.id ORDER BY c.started_at",
            )
            for row in rows:
                await conn.execute(
                    "UPDATE calls SET ended_at = ?, outcome = ? WHERE id = ?",
                    (int(row["last"]), CallOutcome.INTERRUPTED.value, row["id"]),
                )
            return [str(row["id"]) for row in rows]

        return await self._write(body)


# ------------------------------------------------------------- transaction helpers


def _drive(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (its awaitables are already done)."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a catalog operation tried to suspend inside the database thread")


class _Done(Generic[T]):
    """An awaitable (and async context manager) whose result is already there."""

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    def __await__(self) -> Generator[Any, None, T]:
        return self._value
        yield  # pragma: no cover - makes this a generator that never yields

    async def __aenter__(self) -> T:
        return self._value

    async def __aexit__(self, *exc: object) -> None:
        return None


class _ThreadCursor:
    """The part of ``aiosqlite.Cursor`` the catalog uses, on a plain cursor."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def fetchone(self) -> _Done[Any]:
        return _Done(self._cursor.fetchone())

    def fetchall(self) -> _Done[list[Any]]:
        return _Done(self._cursor.fetchall())


class _ThreadConnection:
    """The part of ``aiosqlite.Connection`` the catalog uses, inside its thread."""

    __slots__ = ("_raw",)

    def __init__(self, raw: sqlite3.Connection) -> None:
        self._raw = raw

    def execute(self, sql: str, parameters: _Params = ()) -> _Done[_ThreadCursor]:
        return _Done(_ThreadCursor(self._raw.execute(sql, parameters)))

    def execute_fetchall(self, sql: str, parameters: _Params = ()) -> _Done[list[Any]]:
        return _Done(self._raw.execute(sql, parameters).fetchall())


async def _applied_max(conn: Connection) -> int:
    row = await _one(conn, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
    return 0 if row is None else int(row[0])


async def _require_call(conn: Connection, call_id: str) -> Call:
    row = await _one(conn, "SELECT * FROM calls WHERE id = ?", (call_id,))
    if row is None:
        raise NotFoundError(f"call {call_id} does not exist")
    return _call(row)


async def _require_recording(conn: Connection, recording_id: str) -> Recording:
    row = await _one(conn, "SELECT * FROM recordings WHERE id = ?", (recording_id,))
    if row is None:
        raise NotFoundError(f"recording {recording_id} does not exist")
    return _recording(row)


async def _require_segment(conn: Connection, recording_id: str, segment_index: int) -> Segment:
    row = await _one(
        conn,
        "SELECT * FROM segments WHERE recording_id = ? AND segment_index = ?",
        (recording_id, segment_index),
    )
    if row is None:
        raise NotFoundError(f"recording {recording_id} has no segment {segment_index}")
    return _segment(row)


async def _insert_event(
    conn: Connection,
    recording_id: str,
    at_ms: int,
    action: RecordingAction,
    actor: str | None,
    channel: EventChannel,
    reason: str | None,
) -> int:
    try:
        async with conn.execute(
            "INSERT INTO recording_events (recording_id, at, action, actor, channel, reason)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (recording_id, at_ms, action.value, actor, channel.value, reason),
        ) as cursor:
            event_id = cursor.lastrowid
    except sqlite3.IntegrityError as error:
        if _is_fk_failure(error):
            raise NotFoundError(f"recording {recording_id} does not exist") from None
        raise
    assert event_id is not None
    return event_id


if TYPE_CHECKING:  # SqliteCatalog must satisfy the Catalog interface.
    _check: type[Catalog] = SqliteCatalog
