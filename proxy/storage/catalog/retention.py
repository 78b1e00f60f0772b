"""Retention (P15): which recordings are due for deletion, and the two catalog writes
that bracket crypto-shredding.

A recording that kept audio (complete, degraded, failed, interrupted) is *due* once its
``expires_at`` has passed and no hold is active on it (migration 7's ``holds`` rows
with ``released_at`` NULL).  A row catalogued before expiry was stored has no
``expires_at``: it is due when it ended (or, with no end, started) at or before
:attr:`Due.ended_by`.  Deleting it is four steps, two of them here:

1. :meth:`RetentionRepository.begin_deletion` marks it ``deleting`` in one transaction
   that checks, again, that it is due and not held (so a hold placed a moment ago wins);
2. the store destroys the wrapped key, durably; 3. the store removes the files;
4. :meth:`RetentionRepository.finish_deletion` marks it ``deleted`` with when and why,
   drops its segment rows and appends the ``recording.delete`` audit entry, in one
   transaction.

A row in ``deleting`` is never readable (export refuses it) and is always due: the
key may be gone already, so finishing the deletion is the only honest end, and each
step may run again.  :meth:`RetentionRepository.counts` says where every recording
stands, for the sweep's summary and the retention metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from ...recording_state import ENDINGS, RecordingState
from .audit import append
from .db import Connection, Database, one, rows
from .values import count, from_ms, text, to_ms

_S = RecordingState

#: Final states whose audio is kept until its retention period is over.
KEPT: Final = frozenset(state for state in ENDINGS if state.can_become(_S.DELETING))

_KEPT_SQL = "r.state IN ({})".format(", ".join(f"'{s.value}'" for s in sorted(KEPT)))
# never NULL (NOT of it must be true for a row not expired): the stored expiry, or
# for an older row without one, its end (or start) against ``ended_by``
_EXPIRED_SQL = "COALESCE(r.expires_at <= :as_of, COALESCE(r.ended_at, r.started_at) <= :ended_by)"
_HELD_SQL = (
    "EXISTS (SELECT 1 FROM holds AS h WHERE h.recording_id = r.id AND h.released_at IS NULL)"
)
_DUE_SQL = f"(r.state = 'deleting' OR ({_KEPT_SQL} AND {_EXPIRED_SQL} AND NOT {_HELD_SQL}))"

#: The audit action of one recording's deletion.
DELETE_ACTION: Final = "recording.delete"


@dataclass(frozen=True, slots=True)
class Due:
    """What is due at ``as_of``; ``ended_by`` is the latest end of a recording expired
    by then, for rows without ``expires_at`` (the policy computes it)."""

    as_of: datetime
    ended_by: datetime

    def params(self) -> dict[str, object]:
        return {"as_of": to_ms("as_of", self.as_of), "ended_by": to_ms("ended_by", self.ended_by)}


@dataclass(frozen=True, slots=True)
class Expired:
    """A recording due for deletion: ``deleting`` when an earlier sweep began it."""

    recording_id: str
    call_id: str
    directory: str
    state: RecordingState
    expires_at: datetime  # stored, or ended + period for an older row


@dataclass(frozen=True, slots=True)
class RetentionCounts:
    """Recordings by where they stand at one moment: ``retained`` (kept audio, not yet
    expired), ``held`` (expired, kept by a hold), ``expired`` (due: the next sweep
    deletes them), ``deleting`` (a deletion under way) and ``deleted``."""

    retained: int = 0
    held: int = 0
    expired: int = 0
    deleting: int = 0
    deleted: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "retained": self.retained,
            "held": self.held,
            "expired": self.expired,
            "deleting": self.deleting,
            "deleted": self.deleted,
        }


class RetentionRepository(Protocol):
    """The catalog's side of retention (see the module docstring)."""

    async def due(self, due: Due, *, after: str | None = None, limit: int) -> list[Expired]: ...

    async def counts(self, due: Due) -> RetentionCounts: ...

    async def begin_deletion(self, recording_id: str, due: Due) -> bool: ...

    async def finish_deletion(
        self, recording_id: str, *, at: datetime, actor: str, reason: str
    ) -> bool: ...


class SqliteRetention:
    """:class:`RetentionRepository` in the catalog's SQLite database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def due(self, due: Due, *, after: str | None = None, limit: int) -> list[Expired]:
        """Up to ``limit`` recordings due, in id order after ``after`` (so a sweep visits
        each once, even one it could not delete)."""
        params = due.params() | {"after": after or "", "limit": count("limit", limit, minimum=1)}
        sql = (
            "SELECT r.id, r.call_id, r.directory, r.state, r.expires_at,"
            " COALESCE(r.ended_at, r.started_at) AS ended"
            f" FROM recordings AS r WHERE r.id > :after AND {_DUE_SQL} ORDER BY r.id LIMIT :limit"
        )
        # an older row expires a period after its end: as_of - ended_by is that period
        period_ms = to_ms("as_of", due.as_of) - to_ms("ended_by", due.ended_by)

        def body(conn: Connection) -> list[Expired]:
            return [
                Expired(
                    row["id"],
                    row["call_id"],
                    row["directory"],
                    _S(row["state"]),
                    from_ms(
                        row["expires_at"]
                        if row["expires_at"] is not None
                        else row["ended"] + period_ms
                    ),
                )
                for row in rows(conn, sql, params)
            ]

        return await self._db.read(body)

    async def counts(self, due: Due) -> RetentionCounts:
        """Every recording's retention standing at ``due.as_of`` (one read snapshot)."""
        kept_expired = f"{_KEPT_SQL} AND {_EXPIRED_SQL}"
        sql = (
            "SELECT"
            f" COUNT(CASE WHEN {_KEPT_SQL} AND NOT {_EXPIRED_SQL} THEN 1 END),"
            f" COUNT(CASE WHEN {kept_expired} AND {_HELD_SQL} THEN 1 END),"
            f" COUNT(CASE WHEN {kept_expired} AND NOT {_HELD_SQL} THEN 1 END),"
            " COUNT(CASE WHEN r.state = 'deleting' THEN 1 END),"
            " COUNT(CASE WHEN r.state = 'deleted' THEN 1 END)"
            " FROM recordings AS r"
        )

        def body(conn: Connection) -> RetentionCounts:
            row = one(conn, sql, due.params())
            assert row is not None
            return RetentionCounts(*(int(value) for value in row))

        return await self._db.read(body)

    async def begin_deletion(self, recording_id: str, due: Due) -> bool:
        """Step 1: mark the recording ``deleting`` if it is still due and not held.
        True when it is ``deleting`` now (or was already); False when a hold, a new
        expiry or another process got there first."""
        params = due.params() | {"id": recording_id}

        def body(conn: Connection) -> bool:
            changed = conn.execute(
                "UPDATE recordings AS r SET state = 'deleting'"
                f" WHERE r.id = :id AND {_KEPT_SQL} AND {_EXPIRED_SQL} AND NOT {_HELD_SQL}",
                params,
            ).rowcount
            if changed:
                return True
            row = one(conn, "SELECT state FROM recordings WHERE id = ?", (recording_id,))
            return row is not None and row["state"] == _S.DELETING.value

        return await self._db.write(body)

    async def finish_deletion(
        self, recording_id: str, *, at: datetime, actor: str, reason: str
    ) -> bool:
        """Step 4, once the key and the files are gone: ``deleted`` with when and why,
        its segment rows dropped (they name files that no longer exist) and the
        ``recording.delete`` audit entry, in one transaction.  False if it was not
        ``deleting`` (another sweep finished it)."""
        at_ms = to_ms("at", at)
        actor, reason = text("actor", actor), text("reason", reason)

        def body(conn: Connection) -> bool:
            row = one(
                conn,
                "SELECT call_id, expires_at FROM recordings WHERE id = ? AND state = 'deleting'",
                (recording_id,),
            )
            if row is None:
                return False
            conn.execute(
                "UPDATE recordings SET state = 'deleted', deleted_at = ?, deleted_reason = ?"
                " WHERE id = ?",
                (at_ms, reason, recording_id),
            )
            conn.execute("DELETE FROM segments WHERE recording_id = ?", (recording_id,))
            expires = row["expires_at"]
            append(
                conn,
                at_ms=at_ms,
                actor=actor,
                action=DELETE_ACTION,
                object=f"recording:{recording_id}",
                reason=reason,
                detail={
                    "call_id": row["call_id"],
                    "expires_at": None if expires is None else int(expires),
                },
            )
            return True

        return await self._db.write(body)
