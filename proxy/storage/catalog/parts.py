"""Recording parts (P9): a transferred call is one recording on one timeline, split into
one part per call taker, each with its operator, team, start and end.  Access is decided
per part (``proxy.records.policy.Target``) and a part can be exported on its own.

A recording that was never bridged (the caller hung up during the notice) has no part
rows; :meth:`PartRepository.parts` answers one part for it all the same, with its
call's operator (none), so every reader sees at least one part.  Recordings catalogued
before migration 11 were given their part 1 by the migration.

The first part starts when the recording started (the notice belongs to the call taker
who then answered); a later part starts at the moment of transfer and ends the part
before it.  The last part's end is the recording's end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from . import rows as to
from .db import Connection, Database, Row, insert, one
from .model import Recording, format_utc
from .values import from_ms, opt_dt, opt_text, text, to_ms


@dataclass(frozen=True, slots=True)
class RecordingPart:
    """One call taker's share of a recording (numbered from 1)."""

    recording_id: str
    part: int
    operator: str | None
    team: str | None
    started_at: datetime
    ended_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """For ``--json`` and the API: times in ISO 8601 UTC."""
        return {
            "part": self.part,
            "operator": self.operator,
            "team": self.team,
            "started_at": format_utc(self.started_at),
            "ended_at": None if self.ended_at is None else format_utc(self.ended_at),
        }


class PartRepository(Protocol):
    """The parts of recordings: begun as call takers take the call, read per recording."""

    async def begin(
        self, recording_id: str, *, operator: str | None, team: str | None, at: datetime
    ) -> RecordingPart: ...

    async def parts(self, recording_id: str) -> list[RecordingPart]: ...

    async def parts_of(self, recording_ids: Sequence[str]) -> dict[str, list[RecordingPart]]: ...


def _part(row: Row) -> RecordingPart:
    return RecordingPart(
        recording_id=row["recording_id"],
        part=int(row["part"]),
        operator=row["operator"],
        team=row["team"],
        started_at=from_ms(row["started_at"]),
        ended_at=opt_dt(row["ended_at"]),
    )


def _unbridged(conn: Connection, recording: Recording) -> RecordingPart:
    """The one part of a recording no call taker took (or of any with no part rows)."""
    call = to.require_call(conn, recording.call_id)
    return RecordingPart(
        recording.id, 1, call.operator, None, recording.started_at, recording.ended_at
    )


def _with_end(parts: list[RecordingPart], recording: Recording) -> list[RecordingPart]:
    """The last part ends when the recording does."""
    if parts and parts[-1].ended_at is None and recording.ended_at is not None:
        last = parts[-1]
        parts[-1] = RecordingPart(
            last.recording_id,
            last.part,
            last.operator,
            last.team,
            last.started_at,
            recording.ended_at,
        )
    return parts


_PARTS_SQL = "SELECT * FROM recording_parts WHERE recording_id = ? ORDER BY part"
_CHUNK = 500  # ids per IN (...) list, well under SQLite's variable limit


def begin_part(
    conn: Connection, rid: str, operator: str | None, team: str | None, at_ms: int
) -> RecordingPart:
    """The next part of ``rid`` begins at ``at_ms`` (the first at the recording's start),
    ending the part before it: inside the caller's transaction."""
    recording = to.require_recording(conn, rid)
    last = one(conn, "SELECT MAX(part) FROM recording_parts WHERE recording_id = ?", (rid,))
    previous = 0 if last is None or last[0] is None else int(last[0])
    started_ms = to_ms("started_at", recording.started_at) if previous == 0 else at_ms
    conn.execute(
        "UPDATE recording_parts SET ended_at = ?"
        " WHERE recording_id = ? AND part = ? AND ended_at IS NULL",
        (at_ms, rid, previous),
    )
    return insert_part(conn, rid, previous + 1, operator, team, started_ms)


def insert_part(
    conn: Connection, rid: str, part: int, operator: str | None, team: str | None, at_ms: int
) -> RecordingPart:
    """Insert part ``part`` of ``rid`` from ``at_ms``; a new recording's part 1 needs
    nothing else (there is no part before it to end)."""
    insert(
        conn,
        "INSERT INTO recording_parts (recording_id, part, operator, team, started_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (rid, part, operator, team, at_ms),
    )
    return RecordingPart(rid, part, operator, team, from_ms(at_ms), None)


class SqliteParts:
    """:class:`PartRepository` in the catalog's SQLite database (migration 11)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def begin(
        self, recording_id: str, *, operator: str | None, team: str | None, at: datetime
    ) -> RecordingPart:
        """A call taker takes the call: the next part begins at ``at`` (the first at the
        recording's start) and the part before it ends at ``at``.  ``NotFoundError`` for
        an unknown recording."""
        rid = text("recording_id", recording_id)
        operator, team = opt_text("operator", operator), opt_text("team", team)
        at_ms = to_ms("at", at)
        return await self._db.write(lambda conn: begin_part(conn, rid, operator, team, at_ms))

    async def parts(self, recording_id: str) -> list[RecordingPart]:
        """The parts of ``recording_id`` in order (at least one); ``NotFoundError`` for
        an unknown recording."""

        def body(conn: Connection) -> list[RecordingPart]:
            recording = to.require_recording(conn, recording_id)
            return _parts(conn, recording)

        return await self._db.read(body)

    async def parts_of(self, recording_ids: Sequence[str]) -> dict[str, list[RecordingPart]]:
        """The parts of each known recording of ``recording_ids`` (unknown ids are left
        out), in one read: what a search result page shows."""
        wanted = list(dict.fromkeys(recording_ids))

        def body(conn: Connection) -> dict[str, list[RecordingPart]]:
            found: dict[str, list[RecordingPart]] = {}
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                recordings = to.find_all(
                    conn, to.recording, f"SELECT * FROM recordings WHERE id IN ({marks})", chunk
                )
                for recording in recordings:
                    found[recording.id] = _parts(conn, recording)
            return found

        return await self._db.read(body)


def _parts(conn: Connection, recording: Recording) -> list[RecordingPart]:
    stored = to.find_all(conn, _part, _PARTS_SQL, (recording.id,))
    return _with_end(stored, recording) if stored else [_unbridged(conn, recording)]
