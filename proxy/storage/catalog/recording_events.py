"""Recording events: the append-only log of what happened to a recording, by whom, how
and why (P14).

A state change appends its event in the same transaction
(:meth:`RecordingRepository.set_recording_state`); this repository logs what happens
*inside* a running recording without changing its state — a pause, a resume, a party's
hold — and reads a recording's log back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final, Protocol

from ...recording_state import RecordingState
from . import rows as to
from .db import Connection, Database, insert
from .errors import InvalidFieldError, InvalidTransitionError
from .model import BY_SYSTEM, Attribution, EventChannel, RecordingAction, RecordingEvent
from .values import at_or_now_ms, member, opt_text

#: Actions logged without a change of state (the others come with one).
NOTE_ACTIONS: Final = frozenset(
    {
        RecordingAction.PAUSE,
        RecordingAction.RESUME,
        RecordingAction.HOLD,
        RecordingAction.UNHOLD,
        RecordingAction.TRANSFER,
    }
)


class RecordingEventLog(Protocol):
    """The log of a recording's events."""

    async def add_recording_event(
        self, recording_id: str, action: RecordingAction, by: Attribution = BY_SYSTEM
    ) -> RecordingEvent: ...

    async def recording_events(self, recording_id: str) -> list[RecordingEvent]: ...


def checked(
    by: Attribution, clock: Callable[[], datetime]
) -> tuple[str | None, EventChannel, str | None, int]:
    """``by``'s actor, channel, reason and time (now if not given, in ms), checked."""
    return (
        opt_text("actor", by.actor),
        member(EventChannel, "channel", by.channel),
        opt_text("reason", by.reason),
        at_or_now_ms(clock, by.at),
    )


def insert_event(
    conn: Connection,
    recording_id: str,
    at_ms: int,
    action: RecordingAction,
    actor: str | None,
    channel: EventChannel,
    reason: str | None,
) -> int:
    """Append one event inside the caller's transaction; returns its id."""
    cursor = insert(
        conn,
        "INSERT INTO recording_events (recording_id, at, action, actor, channel, reason)"
        " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        (recording_id, at_ms, action.value, actor, channel.value, reason),
        missing=f"recording {recording_id} does not exist",
    )
    return int(cursor.fetchone()[0])


class SqliteRecordingEvents:
    """:class:`RecordingEventLog` in the catalog's SQLite database."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock

    async def add_recording_event(
        self, recording_id: str, action: RecordingAction, by: Attribution = BY_SYSTEM
    ) -> RecordingEvent:
        """Log a ``pause``, ``resume``, ``hold``, ``unhold`` or ``transfer`` inside a
        running recording.

        The other actions change the state, so they go through ``set_recording_state``
        (or ``create_recording`` for ``start``), which logs them itself.
        """
        kind = member(RecordingAction, "action", action)
        if kind not in NOTE_ACTIONS:
            raise InvalidFieldError(
                f"action {kind.value} changes the recording state; use set_recording_state"
            )
        actor, event_channel, reason, at_ms = checked(by, self._clock)

        def body(conn: Connection) -> RecordingEvent:
            current = to.require_recording(conn, recording_id)
            if current.state is not RecordingState.RECORDING:
                raise InvalidTransitionError(
                    f"recording {recording_id} is {current.state.value}; "
                    f"{kind.value} applies only while recording"
                )
            event_id = insert_event(conn, recording_id, at_ms, kind, actor, event_channel, reason)
            event = to.find(
                conn, to.event, "SELECT * FROM recording_events WHERE id = ?", (event_id,)
            )
            assert event is not None
            return event

        return await self._db.write(body)

    async def recording_events(self, recording_id: str) -> list[RecordingEvent]:
        """A recording's events in the order they happened."""
        return await self._db.read(
            lambda conn: to.find_all(
                conn,
                to.event,
                "SELECT * FROM recording_events WHERE recording_id = ? ORDER BY at, id",
                (recording_id,),
            )
        )
