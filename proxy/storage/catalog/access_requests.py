"""Access requests and grants (P7, P8): someone who may not hear a recording asks for it,
with a purpose and a reason; a records officer or the DPO approves or refuses.  An
approved request is a *grant*: that requester, that recording, that purpose, until
``expires_at``.

The rules (who may ask, who may decide, how long a grant lasts) are the use case's
(:mod:`proxy.records.access`, asking :mod:`proxy.records.policy`); this repository keeps
what was decided, and refuses what can never be right whoever asks:

* only a pending request is decided or withdrawn (:class:`RequestStateError`);
* nobody decides their own request (the table's CHECK says so too);
* an approval carries its expiry, a refusal none.

Each change appends its audit entry in the same transaction (``access.request``,
``access.approve``, ``access.refuse``, ``access.withdraw``; object ``recording:ID``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from . import rows as to
from .audit import append
from .db import Connection, Database, Row, insert
from .decisions import Decidable, DecidedRequests, RequestState, RequestTable
from .model import format_utc
from .values import at_or_now_ms, from_ms, member, opt_dt, text, to_ms, uuid_or_new


@dataclass(frozen=True, slots=True)
class NewAccessRequest:
    """A request as it is made."""

    recording_id: str
    requester: str
    purpose: str
    reason: str


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """A request and, once decided, its decision; approved, it is a grant until
    ``expires_at``."""

    id: str
    recording_id: str
    requester: str
    purpose: str
    reason: str
    state: RequestState
    requested_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_reason: str | None = None
    expires_at: datetime | None = None

    def live(self, now: datetime) -> bool:
        """An approved request not yet expired at ``now``: a grant in force."""
        return (
            self.state is RequestState.APPROVED
            and self.expires_at is not None
            and now < self.expires_at
        )

    def as_dict(self) -> dict[str, Any]:
        """For ``--json`` and the API: times in ISO 8601 UTC."""

        def iso(value: datetime | None) -> str | None:
            return None if value is None else format_utc(value)

        return {
            "id": self.id,
            "recording_id": self.recording_id,
            "requester": self.requester,
            "purpose": self.purpose,
            "reason": self.reason,
            "state": self.state.value,
            "requested_at": format_utc(self.requested_at),
            "decided_by": self.decided_by,
            "decided_at": iso(self.decided_at),
            "decision_reason": self.decision_reason,
            "expires_at": iso(self.expires_at),
        }


class AccessRequestRepository(Decidable[AccessRequest], Protocol):
    """Access requests: make, decide, withdraw, look up, list; the grants in force."""

    async def request(
        self, new: NewAccessRequest, *, at: datetime | None = None
    ) -> AccessRequest: ...

    async def get(self, request_id: str) -> AccessRequest | None: ...

    async def requests(
        self,
        *,
        state: RequestState | None = None,
        requester: str | None = None,
        recording_id: str | None = None,
    ) -> list[AccessRequest]: ...

    async def grants_for(self, user: str, now: datetime) -> list[AccessRequest]: ...


def _request(row: Row) -> AccessRequest:
    return AccessRequest(
        id=row["id"],
        recording_id=row["recording_id"],
        requester=row["requester"],
        purpose=row["purpose"],
        reason=row["reason"],
        state=RequestState(row["state"]),
        requested_at=from_ms(row["requested_at"]),
        decided_by=row["decided_by"],
        decided_at=opt_dt(row["decided_at"]),
        decision_reason=row["decision_reason"],
        expires_at=opt_dt(row["expires_at"]),
    )


_SELECT = "SELECT * FROM access_requests"


def _find(conn: Connection, request_id: str) -> AccessRequest | None:
    return to.find(conn, _request, f"{_SELECT} WHERE id = ?", (request_id,))


_TABLE = RequestTable("access_requests", "access request", _find)


def _audit(
    conn: Connection, at_ms: int, actor: str, action: str, found: AccessRequest, reason: str
) -> None:
    append(
        conn,
        at_ms=at_ms,
        actor=actor,
        action=action,
        object=f"recording:{found.recording_id}",
        reason=reason,
        detail={
            "request": found.id,
            "requester": found.requester,
            "purpose": found.purpose,
            "expires_at": None if found.expires_at is None else format_utc(found.expires_at),
        },
    )


_ORDER = "ORDER BY requested_at, rowid"


class SqliteAccessRequests(DecidedRequests[AccessRequest]):
    """:class:`AccessRequestRepository` in the catalog's SQLite database (migration 11)."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        super().__init__(db, clock, _TABLE, "access", _audit)

    async def request(self, new: NewAccessRequest, *, at: datetime | None = None) -> AccessRequest:
        """Record a pending request, with its audit entry; ``NotFoundError`` for an
        unknown recording."""
        made = AccessRequest(
            id=uuid_or_new("request id", None),
            recording_id=text("recording_id", new.recording_id),
            requester=text("requester", new.requester),
            purpose=text("purpose", new.purpose),
            reason=text("reason", new.reason),
            state=RequestState.PENDING,
            requested_at=from_ms(at_or_now_ms(self._clock, at)),
        )
        at_ms = to_ms("at", made.requested_at)

        def body(conn: Connection) -> AccessRequest:
            to.require_recording(conn, made.recording_id)
            insert(
                conn,
                "INSERT INTO access_requests (id, recording_id, requester, purpose, reason,"
                " state, requested_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    made.id,
                    made.recording_id,
                    made.requester,
                    made.purpose,
                    made.reason,
                    made.state.value,
                    at_ms,
                ),
            )
            _audit(conn, at_ms, made.requester, "access.request", made, made.reason)
            return made

        return await self._db.write(body)

    async def get(self, request_id: str) -> AccessRequest | None:
        return await self._db.read(lambda conn: _find(conn, request_id))

    async def requests(
        self,
        *,
        state: RequestState | None = None,
        requester: str | None = None,
        recording_id: str | None = None,
    ) -> list[AccessRequest]:
        """Requests in the order made, filtered by state, requester and recording."""
        where, params = ["1 = 1"], list[object]()
        if state is not None:
            where.append("state = ?")
            params.append(member(RequestState, "state", state).value)
        if requester is not None:
            where.append("requester = ?")
            params.append(requester)
        if recording_id is not None:
            where.append("recording_id = ?")
            params.append(recording_id)
        sql = f"{_SELECT} WHERE {' AND '.join(where)} {_ORDER}"
        return await self._db.read(lambda conn: to.find_all(conn, _request, sql, params))

    async def grants_for(self, user: str, now: datetime) -> list[AccessRequest]:
        """``user``'s grants in force at ``now`` (approved, not expired)."""
        sql = f"{_SELECT} WHERE requester = ? AND state = ? AND expires_at > ? {_ORDER}"
        params = (user, RequestState.APPROVED.value, to_ms("now", now))
        return await self._db.read(lambda conn: to.find_all(conn, _request, sql, params))
