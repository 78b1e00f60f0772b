"""Metadata search over recordings (P6): who called whom, when, who took it, in what
state — never where the audio lies or its key.

The caller (:mod:`proxy.records.search`) says who may see what as a :class:`Scope`,
which this module turns into SQL, so that a page of results holds only rows the person
may see and pagination is right; the caller checks each row with the policy as well.
A scope is "everything", or any of: the parts a staff member took (their operator
identity), the parts a manager's teams took, the recordings a live grant opens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ...recording_state import RecordingState
from .db import Connection, Database, Row, rows
from .model import format_utc
from .parts import RecordingPart, SqliteParts
from .values import count, from_ms, opt_dt, to_ms


@dataclass(frozen=True, slots=True)
class Scope:
    """Which recordings a person may find (see the module docstring).  ``now`` decides
    which grants are live."""

    now: datetime
    everything: bool = False
    operator: str | None = None
    teams: frozenset[str] = frozenset()
    granted_to: str | None = None


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """What to look for; each optional, all must hold.  ``numbers`` are the forms of
    one number to look for as caller or callee (E.164 and as typed); the call started at
    or after ``started_from`` and before ``started_before``; some part was taken by
    ``operator`` or by ``team``."""

    numbers: tuple[str, ...] = ()
    started_from: datetime | None = None
    started_before: datetime | None = None
    operator: str | None = None
    team: str | None = None
    state: RecordingState | None = None

    def as_dict(self) -> dict[str, Any]:
        """What was asked (for the audit entry of a search)."""
        return {
            "numbers": list(self.numbers),
            "from": None if self.started_from is None else format_utc(self.started_from),
            "to": None if self.started_before is None else format_utc(self.started_before),
            "operator": self.operator,
            "team": self.team,
            "state": None if self.state is None else self.state.value,
        }


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """Filters within a scope, and a page (``limit`` rows from ``offset``)."""

    scope: Scope
    filters: SearchFilters = SearchFilters()
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One recording's metadata, and its parts."""

    recording_id: str
    call_id: str
    caller: str
    callee: str
    direction: str
    service: str | None
    call_started_at: datetime
    started_at: datetime
    ended_at: datetime | None
    duration_ms: int | None
    state: RecordingState
    expires_at: datetime | None
    parts: tuple[RecordingPart, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """For the API: times in ISO 8601 UTC."""

        def iso(value: datetime | None) -> str | None:
            return None if value is None else format_utc(value)

        return {
            "id": self.recording_id,
            "call_id": self.call_id,
            "caller": self.caller,
            "callee": self.callee,
            "direction": self.direction,
            "service": self.service,
            "call_started_at": format_utc(self.call_started_at),
            "started_at": format_utc(self.started_at),
            "ended_at": iso(self.ended_at),
            "duration_ms": self.duration_ms,
            "state": self.state.value,
            "expires_at": iso(self.expires_at),
            "parts": [part.as_dict() for part in self.parts],
        }


class RecordingSearch(Protocol):
    """Find recordings by metadata, within a scope, a page at a time."""

    async def search(self, query: SearchQuery) -> list[SearchHit]: ...

    async def hit(self, recording_id: str) -> SearchHit | None: ...


_SELECT = """
    SELECT r.id, r.call_id, c.caller, c.callee, c.direction, c.service,
           c.started_at AS call_started_at, r.started_at, r.ended_at, r.duration_ms,
           r.state, r.expires_at
    FROM recordings AS r JOIN calls AS c ON c.id = r.call_id
"""
_ORDER = "ORDER BY c.started_at DESC, r.started_at DESC, r.id DESC LIMIT ? OFFSET ?"
# a part taken by ...; a recording no call taker took has no part rows: its call's operator
_PART_BY = (
    "(EXISTS (SELECT 1 FROM recording_parts AS p WHERE p.recording_id = r.id AND p.{col} {test})"
    " OR (NOT EXISTS (SELECT 1 FROM recording_parts AS p WHERE p.recording_id = r.id)"
    " AND {fallback}))"
)


def _by_operator(test: str) -> str:
    return _PART_BY.format(col="operator", test=test, fallback=f"c.operator {test}")


def _by_team(test: str) -> str:
    return _PART_BY.format(col="team", test=test, fallback="0")


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def _scope(scope: Scope) -> tuple[str, list[object]]:
    if scope.everything:
        return "1 = 1", []
    ors, params = ["0"], list[object]()
    if scope.operator is not None:
        ors.append(_by_operator("= ?"))
        params += [scope.operator, scope.operator]
    if scope.teams:
        teams = sorted(scope.teams)
        ors.append(_by_team(f"IN ({_marks(teams)})"))
        params += teams
    if scope.granted_to is not None:
        ors.append(
            "r.id IN (SELECT recording_id FROM access_requests WHERE requester = ?"
            " AND state = 'approved' AND expires_at > ?)"
        )
        params += [scope.granted_to, to_ms("now", scope.now)]
    return f"({' OR '.join(ors)})", params


def _where(query: SearchQuery) -> tuple[str, list[object]]:
    where, params = _scope(query.scope)
    filters = query.filters
    clauses = [where]
    if filters.numbers:
        marks = _marks(filters.numbers)
        clauses.append(f"(c.caller IN ({marks}) OR c.callee IN ({marks}))")
        params += [*filters.numbers, *filters.numbers]
    if filters.started_from is not None:
        clauses.append("c.started_at >= ?")
        params.append(to_ms("started_from", filters.started_from))
    if filters.started_before is not None:
        clauses.append("c.started_at < ?")
        params.append(to_ms("started_before", filters.started_before))
    if filters.operator is not None:
        clauses.append(_by_operator("= ?"))
        params += [filters.operator, filters.operator]
    if filters.team is not None:
        clauses.append(_by_team("= ?"))
        params.append(filters.team)
    if filters.state is not None:
        clauses.append("r.state = ?")
        params.append(filters.state.value)
    return " AND ".join(clauses), params


def _hit(row: Row, parts: list[RecordingPart]) -> SearchHit:
    return SearchHit(
        recording_id=row["id"],
        call_id=row["call_id"],
        caller=row["caller"],
        callee=row["callee"],
        direction=row["direction"],
        service=row["service"],
        call_started_at=from_ms(row["call_started_at"]),
        started_at=from_ms(row["started_at"]),
        ended_at=opt_dt(row["ended_at"]),
        duration_ms=row["duration_ms"],
        state=RecordingState(row["state"]),
        expires_at=opt_dt(row["expires_at"]),
        parts=tuple(parts),
    )


class SqliteRecordingSearch:
    """:class:`RecordingSearch` in the catalog's SQLite database."""

    def __init__(self, db: Database, parts: SqliteParts) -> None:
        self._db = db
        self._parts = parts

    async def search(self, query: SearchQuery) -> list[SearchHit]:
        """One page of the recordings ``query`` finds, newest call first."""
        where, params = _where(query)
        params += [count("limit", query.limit, minimum=1), count("offset", query.offset)]
        sql = f"{_SELECT} WHERE {where} {_ORDER}"
        found = await self._db.read(lambda conn: rows(conn, sql, params))
        parts = await self._parts.parts_of([row["id"] for row in found])
        return [_hit(row, parts.get(row["id"], [])) for row in found]

    async def hit(self, recording_id: str) -> SearchHit | None:
        """One recording's metadata and parts (None for an unknown id)."""

        def body(conn: Connection) -> list[Row]:
            return rows(conn, f"{_SELECT} WHERE r.id = ?", (recording_id,))

        found = await self._db.read(body)
        if not found:
            return None
        parts = await self._parts.parts_of([recording_id])
        return _hit(found[0], parts.get(recording_id, []))
