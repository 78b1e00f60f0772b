"""Anomaly flags (P11, P21): unusual access the DPO should look at — too many playbacks
in an hour, an export outside working hours, repeated refusals.  Which access is unusual
is decided by the pure rules of ``proxy.records.anomaly``; this repository keeps what
they raised, until the DPO clears a flag with a reason.

Raising and clearing each append their audit entry (``flag.raise``, ``flag.clear``,
object ``user:NAME``) in the same transaction.  A cleared flag stays (the history is the
evidence) and cannot be cleared twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from . import rows as to
from .audit import append
from .db import Connection, Database, Row, insert
from .errors import CatalogError, NotFoundError
from .model import format_utc
from .values import at_or_now_ms, count, from_ms, opt_dt, opt_text, text

#: Who raises a flag in the audit chain: the records service, not a person.
RAISED_BY = "recproxy"


class FlagStateError(CatalogError):
    """The flag was already cleared."""


@dataclass(frozen=True, slots=True)
class NewFlag:
    """A flag as it is raised: the rule's name (``kind``), the user whose access raised
    it, the recording concerned if one was, and plain JSON facts."""

    kind: str
    user: str
    recording_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AccessFlag:
    """A flag, open while ``cleared_at`` is None."""

    id: int
    raised_at: datetime
    kind: str
    user: str
    recording_id: str | None
    detail: Mapping[str, Any]
    cleared_by: str | None = None
    cleared_at: datetime | None = None
    cleared_reason: str | None = None

    @property
    def open(self) -> bool:
        return self.cleared_at is None

    def as_dict(self) -> dict[str, Any]:
        """For ``--json`` and the API: times in ISO 8601 UTC."""
        return {
            "id": self.id,
            "raised_at": format_utc(self.raised_at),
            "kind": self.kind,
            "user": self.user,
            "recording_id": self.recording_id,
            "detail": dict(self.detail),
            "cleared_by": self.cleared_by,
            "cleared_at": None if self.cleared_at is None else format_utc(self.cleared_at),
            "cleared_reason": self.cleared_reason,
        }


class FlagRepository(Protocol):
    """Anomaly flags: raise, clear, list, count the open ones."""

    async def raise_flag(self, flag: NewFlag, *, at: datetime | None = None) -> AccessFlag: ...

    async def clear(
        self, flag_id: int, *, by: str, reason: str, at: datetime | None = None
    ) -> AccessFlag: ...

    async def flags(
        self, *, open_only: bool = False, user: str | None = None, limit: int = 500
    ) -> list[AccessFlag]: ...

    async def open_counts(self) -> dict[str, int]: ...


def _flag(row: Row) -> AccessFlag:
    return AccessFlag(
        id=int(row["id"]),
        raised_at=from_ms(row["raised_at"]),
        kind=row["kind"],
        user=row["user"],
        recording_id=row["recording_id"],
        detail=json.loads(row["detail"] or "{}"),
        cleared_by=row["cleared_by"],
        cleared_at=opt_dt(row["cleared_at"]),
        cleared_reason=row["cleared_reason"],
    )


def _require_flag(conn: Connection, flag_id: int) -> AccessFlag:
    found = to.find(conn, _flag, "SELECT * FROM access_flags WHERE id = ?", (flag_id,))
    if found is None:
        raise NotFoundError(f"flag {flag_id} does not exist")
    return found


class SqliteFlags:
    """:class:`FlagRepository` in the catalog's SQLite database (migration 11)."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock

    async def raise_flag(self, flag: NewFlag, *, at: datetime | None = None) -> AccessFlag:
        """Raise ``flag``, with its audit entry."""
        kind, user = text("kind", flag.kind), text("user", flag.user)
        recording_id = opt_text("recording_id", flag.recording_id)
        detail = json.dumps(dict(flag.detail), sort_keys=True, separators=(",", ":"))
        at_ms = at_or_now_ms(self._clock, at)

        def body(conn: Connection) -> AccessFlag:
            cursor = insert(
                conn,
                "INSERT INTO access_flags (raised_at, user, kind, recording_id, detail)"
                " VALUES (?, ?, ?, ?, ?) RETURNING id",
                (at_ms, user, kind, recording_id, detail),
            )
            flag_id = int(cursor.fetchone()[0])
            append(
                conn,
                at_ms=at_ms,
                actor=RAISED_BY,
                action="flag.raise",
                object=f"user:{user}",
                detail={"flag": flag_id, "kind": kind, "recording_id": recording_id},
            )
            return _require_flag(conn, flag_id)

        return await self._db.write(body)

    async def clear(
        self, flag_id: int, *, by: str, reason: str, at: datetime | None = None
    ) -> AccessFlag:
        """Clear an open flag; ``NotFoundError`` for an unknown id, ``FlagStateError``
        for one already cleared."""
        by, reason = text("by", by), text("reason", reason)
        at_ms = at_or_now_ms(self._clock, at)

        def body(conn: Connection) -> AccessFlag:
            flag = _require_flag(conn, flag_id)
            if flag.cleared_at is not None:
                raise FlagStateError(
                    f"flag {flag.id} was already cleared on {format_utc(flag.cleared_at)}"
                    f" by {flag.cleared_by}"
                )
            conn.execute(
                "UPDATE access_flags SET cleared_by = ?, cleared_at = ?, cleared_reason = ?"
                " WHERE id = ?",
                (by, at_ms, reason, flag.id),
            )
            append(
                conn,
                at_ms=at_ms,
                actor=by,
                action="flag.clear",
                object=f"user:{flag.user}",
                reason=reason,
                detail={"flag": flag.id, "kind": flag.kind},
            )
            return _require_flag(conn, flag.id)

        return await self._db.write(body)

    async def flags(
        self, *, open_only: bool = False, user: str | None = None, limit: int = 500
    ) -> list[AccessFlag]:
        """Flags, newest first: all, or only the open ones, or one user's."""
        where, params = ["1 = 1"], list[object]()
        if open_only:
            where.append("cleared_at IS NULL")
        if user is not None:
            where.append("user = ?")
            params.append(user)
        params.append(count("limit", limit, minimum=1))
        sql = (
            f"SELECT * FROM access_flags WHERE {' AND '.join(where)}"
            " ORDER BY raised_at DESC, id DESC LIMIT ?"
        )
        return await self._db.read(lambda conn: to.find_all(conn, _flag, sql, params))

    async def open_counts(self) -> dict[str, int]:
        """Open flags by kind (what the metric shows)."""
        return await self._db.read(
            lambda conn: {
                str(row[0]): int(row[1])
                for row in conn.execute(
                    "SELECT kind, COUNT(*) FROM access_flags WHERE cleared_at IS NULL GROUP BY kind"
                )
            }
        )
