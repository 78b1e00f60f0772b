"""Metadata search over recordings (P6): who called whom, when, who took it, in what
state — never where the audio lies or its key.

The caller (:mod:`proxy.records.search`) says who may see what as a :class:`Scope`,
which this module turns into SQL, so that a page of results holds only rows the person
may see and pagination is right; the caller checks each row with the policy as well.
A scope is "everything", or any of: the parts a staff member took (their operator
identity), the parts a manager's teams took, the recordings a live grant opens.

Every common shape reads through an index (migration 13; ``tests/storage/
test_catalog_search_plans.py`` asks SQLite's ``EXPLAIN QUERY PLAN``): a number by
``calls_by_caller`` or ``calls_by_callee``, a window or a service by the calls' start,
and the operator's, team's or grant's recordings as one set each, read once through
their index.  Pages are offsets, newest call first: a person pages through a few dozen
rows of a narrowed search, and page numbers are what the audit entry names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ...recording_state import RecordingState
from .db import Connection, Database, Dialect, Row, dialect, rows
from .model import CallDirection, format_utc
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
    ``operator`` or by ``team``; the call was for ``service``, in ``direction``."""

    numbers: tuple[str, ...] = ()
    started_from: datetime | None = None
    started_before: datetime | None = None
    operator: str | None = None
    team: str | None = None
    state: RecordingState | None = None
    service: str | None = None
    direction: CallDirection | None = None

    def as_dict(self) -> dict[str, Any]:
        """What was asked (for the audit entry of a search)."""
        return {
            "numbers": list(self.numbers),
            "from": None if self.started_from is None else format_utc(self.started_from),
            "to": None if self.started_before is None else format_utc(self.started_before),
            "operator": self.operator,
            "team": self.team,
            "state": None if self.state is None else self.state.value,
            "service": self.service,
            "direction": None if self.direction is None else self.direction.value,
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


_COLUMNS = """
    SELECT r.id, r.call_id, c.caller, c.callee, c.direction, c.service,
           c.started_at AS call_started_at, r.started_at, r.ended_at, r.duration_ms,
           r.state, r.expires_at
"""
_SELECT = f"{_COLUMNS} FROM recordings AS r JOIN calls AS c ON c.id = r.call_id"
# calls first, newest first through an index of calls, stopping at the page's end
# (SQLite's CROSS JOIN keeps the order written; PostgreSQL's planner picks its own)
_CALLS_FIRST: dict[Dialect, str] = {
    "sqlite": f"{_COLUMNS} FROM calls AS c CROSS JOIN recordings AS r ON r.call_id = c.id",
    "postgresql": f"{_COLUMNS} FROM calls AS c JOIN recordings AS r ON r.call_id = c.id",
}
_ORDER = "ORDER BY c.started_at DESC, r.started_at DESC, r.id DESC LIMIT ? OFFSET ?"
# The recordings a part of which was taken by an operator or a team, as one set each so
# SQLite reads it once through its index (migration 13) instead of probing every call
# of the window; a recording no call taker took has no part row: its call's operator.
_PARTS_OF = "SELECT recording_id FROM recording_parts WHERE {col} IN ({marks})"
_UNBRIDGED_OF = (
    "SELECT u.id FROM calls AS uc JOIN recordings AS u ON u.call_id = uc.id"
    " WHERE uc.operator = ?"
    " AND NOT EXISTS (SELECT 1 FROM recording_parts AS up WHERE up.recording_id = u.id)"
)
_GRANTED_TO = (
    "SELECT recording_id FROM access_requests"
    " WHERE requester = ? AND state = 'approved' AND expires_at > ?"
)


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def _by_operator(operator: str) -> tuple[list[str], list[object]]:
    return [_PARTS_OF.format(col="operator", marks="?"), _UNBRIDGED_OF], [operator, operator]


def _by_teams(teams: Sequence[str]) -> tuple[list[str], list[object]]:
    return [_PARTS_OF.format(col="team", marks=_marks(teams))], list(teams)


def _one_of(sets: tuple[list[str], list[object]]) -> tuple[str, list[object]]:
    """``r.id`` in the union of ``sets`` (selects and their parameters)."""
    selects, params = sets
    return f"r.id IN ({' UNION ALL '.join(selects)})", params


def _scope(scope: Scope) -> tuple[str, list[object]]:
    if scope.everything:
        return "1 = 1", []
    selects, params = list[str](), list[object]()
    if scope.operator is not None:
        more, values = _by_operator(scope.operator)
        selects += more
        params += values
    if scope.teams:
        more, values = _by_teams(sorted(scope.teams))
        selects += more
        params += values
    if scope.granted_to is not None:
        selects.append(_GRANTED_TO)
        params += [scope.granted_to, to_ms("now", scope.now)]
    return _one_of((selects, params)) if selects else ("FALSE", [])


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
        clause, values = _one_of(_by_operator(filters.operator))
        clauses.append(clause)
        params += values
    if filters.team is not None:
        clause, values = _one_of(_by_teams([filters.team]))
        clauses.append(clause)
        params += values
    if filters.state is not None:
        clauses.append("r.state = ?")
        params.append(filters.state.value)
    if filters.service is not None:
        clauses.append("c.service = ?")
        params.append(filters.service)
    if filters.direction is not None:
        clauses.append("c.direction = ?")
        params.append(filters.direction.value)
    return " AND ".join(clauses), params


def statement(query: SearchQuery, engine: Dialect = "sqlite") -> tuple[str, list[object]]:
    """The SQL and parameters of one page of ``query`` (what ``search`` runs, and what
    the tests of the query plans ask SQLite to explain)."""
    where, params = _where(query)
    params += [count("limit", query.limit, minimum=1), count("offset", query.offset)]
    select = _CALLS_FIRST[engine] if _calls_first(query) else _SELECT
    return f"{select} WHERE {where} {_ORDER}", params


def _calls_first(query: SearchQuery) -> bool:
    """Whether to read calls first, newest first, through an index of calls (a number,
    a window, a service) or of their start (nothing narrows by parts either), so the
    scan stops at the page's end; else SQLite starts from the operator's, team's or
    grant's set of recordings, which bounds the rows read by that set (benchmarks/
    search_index.py measures both)."""
    filters = query.filters
    narrows_calls = (
        bool(filters.numbers)
        or filters.service is not None
        or filters.started_from is not None
        or filters.started_before is not None
    )
    narrows_parts = (
        filters.operator is not None or filters.team is not None or not query.scope.everything
    )
    return narrows_calls or not narrows_parts


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

        def body(conn: Connection) -> list[Row]:
            return rows(conn, *statement(query, dialect(conn)))

        found = await self._db.read(body)
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
