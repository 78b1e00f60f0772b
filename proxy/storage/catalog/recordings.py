"""Recordings, their segments and their quality: the recording aggregate.

A recording is made in state ``recording`` when a call is bridged; its segment files
are catalogued as the writer seals them; when it ends, what each channel lost is kept
(``set_recording_quality``) and it moves to its final state.

States and their moves are :mod:`proxy.recording_state`'s one table; each move appends
the matching recording event in the same transaction (``ACTION_ON_ENTRY``).  The catalog
stores no ``paused`` state: a pause inside a recording (a hold, for example) is an event
of a running recording (:class:`RecordingEventLog`), which stays ``recording``.  At
start-up :meth:`RecordingRepository.recover_interrupted` ends as ``interrupted`` every
recording a crash of this node left ``recording`` (several nodes may share the catalog:
each row names the node that recorded it).

``degraded`` is a recording that ended with more audio lost or late than the configured
limits allow (``degraded_reason`` says which); it is never ``complete``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Final, NamedTuple, Protocol, Unpack

from ...recording_state import ENDINGS, REMOVAL, RecordingState
from . import audit
from . import rows as to
from .db import Connection, Database, insert, one, rows, update
from .errors import InvalidFieldError, InvalidTransitionError
from .model import (
    BY_SYSTEM,
    QUALITY_CHANNELS,
    Attribution,
    ChannelQuality,
    EventChannel,
    Expiry,
    NewRecording,
    NewSegment,
    Recording,
    RecordingAction,
    RecordingSummary,
    RecordingUpdate,
    Segment,
    SegmentFacts,
)
from .recording_events import checked, insert_event
from .values import (
    at_or_now_ms,
    count,
    flag,
    from_ms,
    member,
    not_before,
    of_node,
    only_fields,
    opt_ms,
    relative_dir,
    text,
    to_ms,
    uuid_or_new,
)
from .values import file_name as bare_file_name  # the names of keyword arguments below
from .values import sha256 as hex_sha256

_S = RecordingState
_A = RecordingAction

#: The event logged when a recording enters each state the catalog stores.
ACTION_ON_ENTRY: Final[Mapping[RecordingState, RecordingAction]] = {
    _S.RECORDING: _A.RESUME,
    _S.STOPPED: _A.STOP,
    _S.COMPLETE: _A.COMPLETE,
    _S.DEGRADED: _A.DEGRADED,
    _S.INTERRUPTED: _A.INTERRUPTED,
    _S.FAILED: _A.FAILED,
    _S.DISCARDED: _A.DISCARD,
}

#: The audit action of each move a person asks for (P14): a stop, a discard, and a
#: resume (the only way back into ``recording``: a recording starts in it).
AUDITED_ON_ENTRY: Final[Mapping[RecordingState, str]] = {
    _S.STOPPED: "recording.stop",
    _S.DISCARDED: "recording.discard",
    _S.RECORDING: "recording.resume",
}
# Final states that keep audio: it is deleted when its retention period is over.
_KEPT = frozenset(state for state in ENDINGS if state.can_become(_S.DELETING))

# States whose entry marks the end of the audio written so far.
_AUDIO_ENDS = (ENDINGS - {_S.DISCARDED}) | {_S.STOPPED}

# States whose audio is gone or going: nothing more is written to them.
_GONE = REMOVAL | {_S.DISCARDED}
_IDS_PER_QUERY = 500  # under SQLite's 999 host parameters of old builds

RECOVERY_REASON: Final = "process ended while recording"


def catalog_allows(old: RecordingState, new: RecordingState) -> bool:
    """Whether ``set_recording_state`` takes ``old -> new``: the shared table's moves
    among the states the catalog stores."""
    return old in ACTION_ON_ENTRY and new in ACTION_ON_ENTRY and old.can_become(new)


class RecordingRepository(Protocol):
    """What the proxy keeps about recordings and their segment files."""

    async def create_recording(self, recording: NewRecording) -> Recording: ...

    async def update_recording(
        self, recording_id: str, **fields: Unpack[RecordingUpdate]
    ) -> Recording: ...

    async def set_recording_state(
        self,
        recording_id: str,
        state: RecordingState,
        by: Attribution = BY_SYSTEM,
        *,
        expires: Expiry | None = None,
    ) -> Recording: ...

    async def get_recording(self, recording_id: str) -> Recording | None: ...

    async def existing(self, recording_ids: Collection[str]) -> set[str]:
        """Which of ``recording_ids`` have a row: a few queries for any number of ids
        (start-up checks every recording folder against the catalog)."""
        ...

    async def list_recordings(
        self, state: RecordingState | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[RecordingSummary]: ...

    async def set_recording_quality(
        self, recording_id: str, channels: Sequence[ChannelQuality]
    ) -> None: ...

    async def recording_quality(self, recording_id: str) -> list[ChannelQuality]: ...

    async def add_segment(self, segment: NewSegment) -> Segment: ...

    async def update_segment(
        self, recording_id: str, segment_index: int, facts: SegmentFacts
    ) -> Segment: ...

    async def segments(self, recording_id: str) -> list[Segment]: ...

    async def recover_interrupted(
        self, *, node: str | None = None, at: datetime | None = None
    ) -> list[str]: ...


_RECORDING_UPDATE_FIELDS = frozenset(RecordingUpdate.__annotations__)

_SUMMARY_SELECT = """
    SELECT r.id, r.call_id, c.caller, c.callee, c.started_at AS call_started_at, r.state,
           r.failure_reason, r.degraded_reason, c.config_version,
           r.expires_at, r.deleted_at, r.deleted_reason, r.node,
           COALESCE(
               r.duration_ms,
               (SELECT CAST(SUM(s.frames) AS BIGINT) FROM segments AS s WHERE s.recording_id = r.id)
                   * 1000 / r.sample_rate,
               0
           ) AS duration_ms,
           (SELECT COUNT(*) FROM segments AS s WHERE s.recording_id = r.id) AS segments
    FROM recordings AS r JOIN calls AS c ON c.id = r.call_id
"""
_SUMMARY_ORDER = "ORDER BY c.started_at DESC, r.started_at DESC, r.id DESC LIMIT ? OFFSET ?"


def _progress(facts: SegmentFacts) -> dict[str, object]:
    """The segment columns given (not None), checked."""
    changes: dict[str, object] = {}
    for name in ("chunks", "frames", "size_bytes"):
        value = getattr(facts, name)
        if value is not None:
            changes[name] = count(name, value)
    if facts.sha256 is not None:
        changes["sha256"] = hex_sha256("sha256", facts.sha256)
    if facts.closed is not None:
        if not flag("closed", facts.closed):
            raise InvalidFieldError("a segment cannot be reopened (closed=False)")
        changes["closed"] = 1
    return changes


# -- each write as a check (before any SQL) and a function of the connection, run inside
# the caller's transaction: the repository below runs one per transaction, a call's
# unit of work (:mod:`.call_writes`) several in one


_RECORDING_COLUMNS = 9  # recording_values without a node


def recording_values(recording: NewRecording) -> tuple[object, ...]:
    """A new recording's row, checked."""
    key_sha256 = recording.wrapped_key_sha256
    return (
        uuid_or_new("recording_id", recording.recording_id),
        recording.call_id,
        _S.RECORDING.value,
        relative_dir(recording.directory),
        text("encoding", recording.encoding),
        count("sample_rate", recording.sample_rate, minimum=1),
        count("channels", recording.channels, minimum=1),
        to_ms("started_at", recording.started_at),
        None if key_sha256 is None else hex_sha256("wrapped_key_sha256", key_sha256),
    ) + (() if recording.node is None else (text("node", recording.node),))


def insert_recording(conn: Connection, values: tuple[object, ...]) -> None:
    """Insert a recording (``recording_values``) with its ``start`` event.  Its node is
    named only when given, so a catalog opened without migration 17 still takes it."""
    rec_id, call_id, started_ms = str(values[0]), values[1], values[7]
    assert isinstance(started_ms, int)
    node = ", node" if len(values) > _RECORDING_COLUMNS else ""
    insert(
        conn,
        "INSERT INTO recordings (id, call_id, state, directory, encoding,"
        f" sample_rate, channels, started_at, wrapped_key_sha256{node})"
        f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?{', ?' if node else ''})",
        values,
        missing=f"call {call_id} does not exist",
        duplicate=f"a recording with id {rec_id} or directory {values[3]!r} already exists",
    )
    insert_event(conn, rec_id, started_ms, _A.START, None, EventChannel.SYSTEM, None)


class RecordingChange(NamedTuple):
    columns: dict[str, object]
    ended_ms: int | None


def recording_change(fields: RecordingUpdate) -> RecordingChange:
    """An update's columns, checked: ``ended_at``, ``duration_ms``, ``expires_at``,
    ``wrapped_key_sha256``."""
    only_fields(
        "update_recording",
        set(fields),
        _RECORDING_UPDATE_FIELDS,
        "; the state changes only through set_recording_state",
    )
    changes: dict[str, object] = {}
    ended_ms: int | None = None
    if "ended_at" in fields:
        changes["ended_at"] = ended_ms = opt_ms("ended_at", fields["ended_at"])
    if "duration_ms" in fields:
        duration = fields["duration_ms"]
        changes["duration_ms"] = None if duration is None else count("duration_ms", duration)
    if "expires_at" in fields:
        changes["expires_at"] = opt_ms("expires_at", fields["expires_at"])
    if "wrapped_key_sha256" in fields:
        changes["wrapped_key_sha256"] = hex_sha256(
            "wrapped_key_sha256", fields["wrapped_key_sha256"]
        )
    return RecordingChange(changes, ended_ms)


def change_recording(conn: Connection, recording_id: str, change: RecordingChange) -> None:
    """Apply ``change``: not to a recording whose audio is gone, never a second key."""
    current = to.require_recording(conn, recording_id)
    if current.state in _GONE:
        raise InvalidTransitionError(f"recording {recording_id} is {current.state.value}")
    key_hash = change.columns.get("wrapped_key_sha256")
    if key_hash is not None and current.wrapped_key_sha256 not in (None, key_hash):
        raise InvalidFieldError(
            f"recording {recording_id} already has a different wrapped_key_sha256; "
            "the key of a recording never changes"
        )
    started_ms = to_ms("started_at", current.started_at)
    not_before("ended_at", change.ended_ms, "started_at", started_ms)
    if change.columns:
        update(conn, "recordings", change.columns, "id = :id", id=recording_id)


class StateMove(NamedTuple):
    target: RecordingState
    actor: str | None
    channel: EventChannel
    reason: str | None
    at_ms: int


def state_move(state: RecordingState, by: Attribution, clock: Callable[[], datetime]) -> StateMove:
    """A move to ``state`` by ``by``, checked (see ``set_recording_state``)."""
    target = member(RecordingState, "state", state)
    actor, event_channel, reason, at_ms = checked(by, clock)
    if target is _S.DISCARDED and (actor is None or reason is None):
        raise InvalidFieldError("discarding a recording needs an actor and a reason")
    if target in (_S.FAILED, _S.DEGRADED) and reason is None:
        raise InvalidFieldError(f"a {target.value} recording needs a reason")
    return StateMove(target, actor, event_channel, reason, at_ms)


def move_recording(
    conn: Connection, recording_id: str, move: StateMove, expires: Expiry | None
) -> None:
    """Make ``move``, with its recording event and (for a person's move) its audit
    entry, as ``set_recording_state`` says."""
    target, actor, event_channel, reason, at_ms = move
    current = to.require_recording(conn, recording_id)
    old = current.state
    if not catalog_allows(old, target):
        allowed = ", ".join(s.value for s in RecordingState if catalog_allows(old, s))
        raise InvalidTransitionError(
            f"recording {recording_id} cannot go from {old.value} to "
            f"{target.value} (allowed from {old.value}: {allowed or 'none'})"
        )
    not_before("at", at_ms, "started_at", to_ms("started_at", current.started_at))
    changes: dict[str, object] = {"state": target.value}
    if target in _AUDIO_ENDS and not (old is _S.STOPPED and current.ended_at is not None):
        # a stopped recording's audio ended at the stop, not when the call did
        changes["ended_at"] = at_ms
    elif target is _S.RECORDING:
        changes["ended_at"] = None
    if target is _S.FAILED:
        changes["failure_reason"] = reason
    if target is _S.DEGRADED:
        changes["degraded_reason"] = reason
    if expires is not None and target in _KEPT:
        # the audio ends now, or ended at the stop that came before
        end = from_ms(at_ms) if "ended_at" in changes else current.ended_at
        assert end is not None  # a stop always sets ended_at
        changes["expires_at"] = to_ms("expires_at", expires(end))
    if target is _S.DISCARDED:
        changes |= {
            "discarded_by": actor,
            "discarded_reason": reason,
            "discarded_at": at_ms,
        }
    # The state guard makes a concurrent writer's change visible as a failure.
    update(
        conn,
        "recordings",
        changes,
        "id = :id AND state = :old",
        id=recording_id,
        old=old.value,
    )
    if target is _S.DISCARDED:
        # only the fact that a recording existed and was discarded stays (P14)
        conn.execute("DELETE FROM segments WHERE recording_id = ?", (recording_id,))
    action = ACTION_ON_ENTRY[target]
    insert_event(conn, recording_id, at_ms, action, actor, event_channel, reason)
    if target in AUDITED_ON_ENTRY:
        audit.append(
            conn,
            at_ms=at_ms,
            actor=actor or "system",
            action=AUDITED_ON_ENTRY[target],
            object=f"recording:{recording_id}",
            reason=reason,
            detail={"from": old.value, "channel": event_channel.value},
        )


def quality_values(
    recording_id: str, channels: Sequence[ChannelQuality]
) -> list[tuple[object, ...]]:
    """What each channel lost, checked, as ``recording_quality`` rows."""
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
                count("frames", q.frames),
                count("lost_frames", q.lost_frames),
                count("late_frames", q.late_frames),
                count("missing_frames", q.missing_frames),
                count("longest_gap_ms", q.longest_gap_ms),
            )
        )
    return values


def replace_quality(
    conn: Connection, recording_id: str, values: Sequence[tuple[object, ...]]
) -> None:
    """Store (or replace) ``quality_values`` of a recording."""
    to.require_recording(conn, recording_id)
    conn.executemany(
        "INSERT INTO recording_quality (recording_id, channel, frames, "
        "lost_frames, late_frames, missing_frames, longest_gap_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (recording_id, channel) DO UPDATE SET "
        "frames = excluded.frames, lost_frames = excluded.lost_frames, "
        "late_frames = excluded.late_frames, missing_frames = excluded.missing_frames, "
        "longest_gap_ms = excluded.longest_gap_ms",
        values,
    )


class SegmentInsert(NamedTuple):
    recording_id: str
    segment_index: int
    sql: str
    values: dict[str, object]


def segment_insert(segment: NewSegment) -> SegmentInsert:
    """A new segment's row, checked.  Its facts may come with it: a segment the writer
    has already sealed is catalogued whole (``closed=True``, with its sha256)."""
    values = {
        "recording_id": segment.recording_id,
        "segment_index": count("segment_index", segment.segment_index),
        "file_name": bare_file_name(segment.file_name),
        "first_frame": count("first_frame", segment.first_frame),
    } | _progress(segment.facts)
    if values.get("closed") and "sha256" not in values:
        raise InvalidFieldError("closing a segment needs its sha256")
    columns = ", ".join(values)
    marks = ", ".join(f":{name}" for name in values)
    sql = f"INSERT INTO segments ({columns}) VALUES ({marks})"
    return SegmentInsert(segment.recording_id, segment.segment_index, sql, values)


def insert_segment(conn: Connection, statement: SegmentInsert) -> None:
    """Insert a segment, not into a recording whose audio is gone."""
    recording_id = statement.recording_id
    state = one(conn, "SELECT state FROM recordings WHERE id = ?", (recording_id,))
    if state is not None and state["state"] in _GONE:
        raise InvalidTransitionError(
            f"recording {recording_id} is {state['state']}; it takes no new segments"
        )
    insert(
        conn,
        statement.sql,
        statement.values,
        missing=f"recording {recording_id} does not exist",
        duplicate=(
            f"recording {recording_id} already has segment {statement.segment_index} "
            f"or a segment file named {statement.values['file_name']!r}"
        ),
    )


class SqliteRecordings:
    """:class:`RecordingRepository` in the catalog's SQLite database."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock

    async def create_recording(self, recording: NewRecording) -> Recording:
        """A new recording in state ``recording``, with its ``start`` event (by the
        system: a recording starts when its call is bridged)."""
        values = recording_values(recording)

        def body(conn: Connection) -> Recording:
            insert_recording(conn, values)
            return to.require_recording(conn, str(values[0]))

        return await self._db.write(body)

    async def update_recording(
        self, recording_id: str, **fields: Unpack[RecordingUpdate]
    ) -> Recording:
        """Set ``ended_at``, ``duration_ms``, ``expires_at`` or (once)
        ``wrapped_key_sha256``."""
        change = recording_change(fields)

        def body(conn: Connection) -> Recording:
            change_recording(conn, recording_id, change)
            return to.require_recording(conn, recording_id)

        return await self._db.write(body)

    async def set_recording_state(
        self,
        recording_id: str,
        state: RecordingState,
        by: Attribution = BY_SYSTEM,
        *,
        expires: Expiry | None = None,
    ) -> Recording:
        """Move a recording to ``state`` and append the matching recording event.

        ``expires`` (the retention policy) sets ``expires_at`` from the recording's end
        when the move ends audio that is kept (complete, degraded, failed), in this same
        write, so no recording ends without a date for its deletion.

        ``discarded`` needs an ``actor`` and a ``reason`` (P14: who and why);
        ``failed`` and ``degraded`` need a ``reason``, kept as ``failure_reason`` or
        ``degraded_reason``.  The moves allowed are :mod:`proxy.recording_state`'s
        (see ``catalog_allows``).  Stopping, or ending as complete, degraded,
        interrupted or failed, sets ``ended_at`` to ``at`` (a stopped recording keeps
        its stop as its end); resuming clears it.  ``by`` defaults to the system, now.
        A stop, discard or resume also appends its audit entry in the same transaction
        (``AUDITED_ON_ENTRY``; the actor is ``by.actor``, or ``system``).
        """
        move = state_move(state, by, self._clock)

        def body(conn: Connection) -> Recording:
            move_recording(conn, recording_id, move, expires)
            return to.require_recording(conn, recording_id)

        return await self._db.write(body)

    async def get_recording(self, recording_id: str) -> Recording | None:
        return await self._db.read(lambda conn: to.find_recording(conn, recording_id))

    async def existing(self, recording_ids: Collection[str]) -> set[str]:
        """One ``IN (...)`` per ``_IDS_PER_QUERY`` ids, all in one read transaction."""
        wanted = list(recording_ids)

        def body(conn: Connection) -> set[str]:
            found: set[str] = set()
            for start in range(0, len(wanted), _IDS_PER_QUERY):
                chunk = wanted[start : start + _IDS_PER_QUERY]
                marks = ", ".join("?" * len(chunk))
                sql = f"SELECT id FROM recordings WHERE id IN ({marks})"
                found.update(row["id"] for row in rows(conn, sql, chunk))
            return found

        return await self._db.read(body)

    async def list_recordings(
        self, state: RecordingState | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[RecordingSummary]:
        """Recordings, newest call first, with the call's parties and start time."""
        count("limit", limit)
        count("offset", offset)
        params: tuple[object, ...]
        if state is None:
            sql, params = f"{_SUMMARY_SELECT} {_SUMMARY_ORDER}", (limit, offset)
        else:
            wanted = member(RecordingState, "state", state).value
            sql = f"{_SUMMARY_SELECT} WHERE r.state = ? {_SUMMARY_ORDER}"
            params = (wanted, limit, offset)

        def body(conn: Connection) -> list[RecordingSummary]:
            found = rows(conn, sql, params)
            ids = [row["id"] for row in found]
            quality: dict[str, list[ChannelQuality]] = {}
            if ids:
                marks = ", ".join("?" * len(ids))
                for q in rows(
                    conn,
                    f"SELECT * FROM recording_quality WHERE recording_id IN ({marks}) "
                    "ORDER BY recording_id, channel",
                    ids,
                ):
                    quality.setdefault(q["recording_id"], []).append(to.quality(q))
            return [to.summary(row, tuple(quality.get(row["id"], ()))) for row in found]

        return await self._db.read(body)

    async def set_recording_quality(
        self, recording_id: str, channels: Sequence[ChannelQuality]
    ) -> None:
        """Store (or replace) what each channel of a recording lost."""
        values = quality_values(recording_id, channels)
        await self._db.write(lambda conn: replace_quality(conn, recording_id, values))

    async def recording_quality(self, recording_id: str) -> list[ChannelQuality]:
        return await self._db.read(
            lambda conn: to.find_all(
                conn,
                to.quality,
                "SELECT * FROM recording_quality WHERE recording_id = ? ORDER BY channel",
                (recording_id,),
            )
        )

    async def add_segment(self, segment: NewSegment) -> Segment:
        """A new segment of a recording.  Its facts may come with it: a segment the
        writer has already sealed is catalogued whole (``closed=True``, with its
        sha256) in this one write."""
        statement = segment_insert(segment)

        def body(conn: Connection) -> Segment:
            insert_segment(conn, statement)
            return to.require_segment(conn, segment.recording_id, segment.segment_index)

        return await self._db.write(body)

    async def update_segment(
        self, recording_id: str, segment_index: int, facts: SegmentFacts
    ) -> Segment:
        """Record progress on a segment; ``closed=True`` seals it (needs its sha256).

        A closed segment is immutable.
        """
        changes = _progress(facts)

        def body(conn: Connection) -> Segment:
            current = to.require_segment(conn, recording_id, segment_index)
            if current.closed:
                raise InvalidTransitionError(
                    f"segment {segment_index} of recording {recording_id} is closed; "
                    "a sealed segment does not change"
                )
            if changes.get("closed") and changes.get("sha256", current.sha256) is None:
                raise InvalidFieldError("closing a segment needs its sha256")
            if changes:
                update(
                    conn,
                    "segments",
                    changes,
                    "recording_id = :recording_id AND segment_index = :segment_index",
                    recording_id=recording_id,
                    segment_index=segment_index,
                )
            return to.require_segment(conn, recording_id, segment_index)

        return await self._db.write(body)

    async def segments(self, recording_id: str) -> list[Segment]:
        """A recording's segments in index order."""
        return await self._db.read(
            lambda conn: to.find_all(
                conn,
                to.segment,
                "SELECT * FROM segments WHERE recording_id = ? ORDER BY segment_index",
                (recording_id,),
            )
        )

    async def recover_interrupted(
        self, *, node: str | None = None, at: datetime | None = None
    ) -> list[str]:
        """At start-up: every recording of ``node`` still ``recording`` becomes
        ``interrupted`` — its own and those no node is named on (written before nodes
        had names); another node's are live.  ``node`` None: every recording (one
        process on the catalog).

        Each gets an ``interrupted`` event (actor ``system``, reason "process ended
        while recording").  ``ended_at`` stays as it was: only the chunks on disk say
        when the audio really ends, so storage recovery sets it (``update_recording``).
        Returns the ids, oldest recording first.
        """
        at_ms = at_or_now_ms(self._clock, at)
        mine, params = of_node(node)

        def body(conn: Connection) -> list[str]:
            found = rows(
                conn,
                f"SELECT id FROM recordings WHERE state = ?{mine} ORDER BY started_at, id",
                (_S.RECORDING.value, *params),
            )
            ids = [str(row["id"]) for row in found]
            for rec_id in ids:
                conn.execute(
                    "UPDATE recordings SET state = ? WHERE id = ?", (_S.INTERRUPTED.value, rec_id)
                )
                insert_event(
                    conn,
                    rec_id,
                    at_ms,
                    _A.INTERRUPTED,
                    "system",
                    EventChannel.SYSTEM,
                    RECOVERY_REASON,
                )
            return ids

        return await self._db.write(body)
