"""Bulk requests (P11, P21): a records officer or the DPO asks to export many recordings
at once, with a purpose and a reason; a DPO other than the one who asked approves or
refuses.  An approved request lets its requester export those recordings until
``expires_at``.

Who may ask and who may decide is the use case's (:mod:`proxy.records.bulk`, asking
:mod:`proxy.records.policy`); this repository keeps what was decided and refuses what
can never be right whoever asks:

* a request names one or more recordings, each once, each known to the catalog;
* only a pending request is decided or withdrawn (:class:`RequestStateError`, the same
  states as an access request's);
* nobody decides their own request (the table's CHECK says so too);
* an approval carries its expiry, a refusal none.

Each change appends its audit entry in the same transaction (``bulk.request``,
``bulk.approve``, ``bulk.refuse``, ``bulk.withdraw``; object ``bulk:ID``; the detail
names the requester, the purpose, the recordings and the expiry).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from . import rows as to
from .audit import append
from .db import Connection, Database, Row, insert, rows
from .decisions import Decidable, DecidedRequests, RequestState, RequestTable
from .errors import InvalidFieldError
from .model import format_utc
from .values import at_or_now_ms, from_ms, member, opt_dt, text, to_ms, uuid_or_new


@dataclass(frozen=True, slots=True)
class NewBulkRequest:
    """A bulk request as it is made: the recordings in the order asked for."""

    requester: str
    purpose: str
    reason: str
    recording_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BulkRequest:
    """A bulk request and, once decided, its decision; approved, its requester may
    export its recordings until ``expires_at``."""

    id: str
    requester: str
    purpose: str
    reason: str
    recording_ids: tuple[str, ...]
    state: RequestState
    requested_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_reason: str | None = None
    expires_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """For the API: times in ISO 8601 UTC."""

        def iso(value: datetime | None) -> str | None:
            return None if value is None else format_utc(value)

        return {
            "id": self.id,
            "requester": self.requester,
            "purpose": self.purpose,
            "reason": self.reason,
            "recording_ids": list(self.recording_ids),
            "state": self.state.value,
            "requested_at": format_utc(self.requested_at),
            "decided_by": self.decided_by,
            "decided_at": iso(self.decided_at),
            "decision_reason": self.decision_reason,
            "expires_at": iso(self.expires_at),
        }


class BulkRequestRepository(Decidable[BulkRequest], Protocol):
    """Bulk requests: make, decide, withdraw, look up, list."""

    async def request(self, new: NewBulkRequest, *, at: datetime | None = None) -> BulkRequest: ...

    async def get(self, request_id: str) -> BulkRequest | None: ...

    async def requests(
        self, *, state: RequestState | None = None, requester: str | None = None
    ) -> list[BulkRequest]: ...


_SELECT = "SELECT * FROM bulk_requests"
_ORDER = "ORDER BY requested_at, rowid"
_RECORDINGS = (
    "SELECT recording_id FROM bulk_request_recordings WHERE request_id = ? ORDER BY position"
)


def _bulk(conn: Connection, row: Row) -> BulkRequest:
    return BulkRequest(
        id=row["id"],
        requester=row["requester"],
        purpose=row["purpose"],
        reason=row["reason"],
        recording_ids=tuple(r[0] for r in rows(conn, _RECORDINGS, (row["id"],))),
        state=RequestState(row["state"]),
        requested_at=from_ms(row["requested_at"]),
        decided_by=row["decided_by"],
        decided_at=opt_dt(row["decided_at"]),
        decision_reason=row["decision_reason"],
        expires_at=opt_dt(row["expires_at"]),
    )


def _find_all(conn: Connection, sql: str, params: Sequence[object]) -> list[BulkRequest]:
    return [_bulk(conn, row) for row in rows(conn, sql, params)]


def _find(conn: Connection, request_id: str) -> BulkRequest | None:
    found = _find_all(conn, f"{_SELECT} WHERE id = ?", (request_id,))
    return found[0] if found else None


_TABLE = RequestTable("bulk_requests", "bulk request", _find)


def _audit(
    conn: Connection, at_ms: int, actor: str, action: str, found: BulkRequest, reason: str
) -> None:
    append(
        conn,
        at_ms=at_ms,
        actor=actor,
        action=action,
        object=f"bulk:{found.id}",
        reason=reason,
        detail={
            "requester": found.requester,
            "purpose": found.purpose,
            "recordings": list(found.recording_ids),
            "expires_at": None if found.expires_at is None else format_utc(found.expires_at),
        },
    )


def _recording_ids(values: Sequence[str]) -> tuple[str, ...]:
    """One or more recording ids, none twice."""
    ids = tuple(text("recording id", value) for value in values)
    if not ids:
        raise InvalidFieldError("a bulk request names one or more recordings")
    if len(set(ids)) != len(ids):
        twice = sorted({value for value in ids if ids.count(value) > 1})
        raise InvalidFieldError(f"recording {twice[0]} is named more than once")
    return ids


class SqliteBulkRequests(DecidedRequests[BulkRequest]):
    """:class:`BulkRequestRepository` in the catalog's SQLite database (migration 12)."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        super().__init__(db, clock, _TABLE, "bulk", _audit)

    async def request(self, new: NewBulkRequest, *, at: datetime | None = None) -> BulkRequest:
        """Record a pending request, with its audit entry; ``NotFoundError`` naming the
        first unknown recording, ``InvalidFieldError`` for none or one named twice."""
        made = BulkRequest(
            id=uuid_or_new("bulk request id", None),
            requester=text("requester", new.requester),
            purpose=text("purpose", new.purpose),
            reason=text("reason", new.reason),
            recording_ids=_recording_ids(new.recording_ids),
            state=RequestState.PENDING,
            requested_at=from_ms(at_or_now_ms(self._clock, at)),
        )
        at_ms = to_ms("at", made.requested_at)

        def body(conn: Connection) -> BulkRequest:
            for recording_id in made.recording_ids:
                to.require_recording(conn, recording_id)
            insert(
                conn,
                "INSERT INTO bulk_requests (id, requester, purpose, reason, state, requested_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (made.id, made.requester, made.purpose, made.reason, made.state.value, at_ms),
            )
            conn.executemany(
                "INSERT INTO bulk_request_recordings (request_id, position, recording_id)"
                " VALUES (?, ?, ?)",
                [(made.id, n, rid) for n, rid in enumerate(made.recording_ids, start=1)],
            )
            _audit(conn, at_ms, made.requester, "bulk.request", made, made.reason)
            return made

        return await self._db.write(body)

    async def get(self, request_id: str) -> BulkRequest | None:
        return await self._db.read(lambda conn: _find(conn, request_id))

    async def requests(
        self, *, state: RequestState | None = None, requester: str | None = None
    ) -> list[BulkRequest]:
        """Requests in the order made, filtered by state and requester."""
        where, params = ["1 = 1"], list[object]()
        if state is not None:
            where.append("state = ?")
            params.append(member(RequestState, "state", state).value)
        if requester is not None:
            where.append("requester = ?")
            params.append(requester)
        sql = f"{_SELECT} WHERE {' AND '.join(where)} {_ORDER}"
        return await self._db.read(lambda conn: _find_all(conn, sql, params))
