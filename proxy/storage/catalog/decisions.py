"""What every kind of request a person decides shares (access requests, bulk requests):
it is pending until decided once, approved until an expiry or refused, never by its own
requester, or withdrawn by that requester while pending.

:class:`Verdict` checks a decision before any SQL runs; :class:`RequestTable` applies
it (or a withdrawal) to one table inside a write transaction, and
:class:`DecidedRequests` gives a repository its ``decide`` and ``withdraw``, each with
the repository's own audit entry in the same transaction.  The tables share their
decision columns: ``state``, ``decided_by``, ``decided_at``, ``decision_reason``,
``expires_at``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from .db import Connection, Database
from .errors import CatalogError, InvalidFieldError, NotFoundError
from .values import at_or_now_ms, text, to_ms


class RequestState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"


class RequestStateError(CatalogError):
    """The request is no longer pending: it cannot be decided or withdrawn again."""


class Request(Protocol):
    """What :class:`RequestTable` reads of a request."""

    @property
    def id(self) -> str: ...

    @property
    def requester(self) -> str: ...

    @property
    def state(self) -> RequestState: ...


R = TypeVar("R", bound=Request)
R_co = TypeVar("R_co", bound=Request, covariant=True)


class Decidable(Protocol[R_co]):
    """A repository's ``decide`` and ``withdraw`` (see :class:`DecidedRequests`)."""

    async def decide(
        self,
        request_id: str,
        *,
        approve: bool,
        by: str,
        reason: str,
        expires_at: datetime | None = None,
        at: datetime | None = None,
    ) -> R_co: ...

    async def withdraw(self, request_id: str, *, by: str, at: datetime | None = None) -> R_co: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    """A decision, checked: who, why, when (``at_ms``) and, approved, until when."""

    approve: bool
    by: str
    reason: str
    at_ms: int
    expires_ms: int | None

    @classmethod
    def of(
        cls, *, approve: bool, by: str, reason: str, expires_at: datetime | None, at_ms: int
    ) -> Verdict:
        """``InvalidFieldError`` for a missing ``by`` or ``reason``, or an approval
        without an expiry after ``at_ms`` (a refusal has none)."""
        by, reason = text("by", by), text("reason", reason)
        if approve and expires_at is None:
            raise InvalidFieldError("an approval needs expires_at")
        if not approve and expires_at is not None:
            raise InvalidFieldError("a refusal has no expires_at")
        expires_ms = None if expires_at is None else to_ms("expires_at", expires_at)
        if expires_ms is not None and expires_ms <= at_ms:
            raise InvalidFieldError("expires_at must be after the decision")
        return cls(approve, by, reason, at_ms, expires_ms)

    @property
    def verb(self) -> str:
        """``approve`` or ``refuse``: the last word of its audit action."""
        return "approve" if self.approve else "refuse"


class RequestTable(Generic[R]):
    """The requests of ``table`` (called ``noun`` in errors), read by ``find``."""

    def __init__(self, table: str, noun: str, find: Callable[[Connection, str], R | None]) -> None:
        self._table = table
        self._noun = noun
        self._find = find

    def require(self, conn: Connection, request_id: str) -> R:
        found = self._find(conn, request_id)
        if found is None:
            raise NotFoundError(f"{self._noun} {request_id} does not exist")
        return found

    def require_pending(self, conn: Connection, request_id: str) -> R:
        found = self.require(conn, request_id)
        if found.state is not RequestState.PENDING:
            raise RequestStateError(f"{self._noun} {found.id} is {found.state.value}, not pending")
        return found

    def decide(self, conn: Connection, request_id: str, verdict: Verdict) -> R:
        """Record ``verdict`` on the pending request; the request as decided."""
        found = self.require_pending(conn, request_id)
        if found.requester == verdict.by:
            raise InvalidFieldError(f"{verdict.by} cannot decide their own {self._noun}")
        state = RequestState.APPROVED if verdict.approve else RequestState.REFUSED
        conn.execute(
            f"UPDATE {self._table} SET state = ?, decided_by = ?, decided_at = ?,"
            " decision_reason = ?, expires_at = ? WHERE id = ?",
            (state.value, verdict.by, verdict.at_ms, verdict.reason, verdict.expires_ms, found.id),
        )
        return self.require(conn, found.id)

    def withdraw(self, conn: Connection, request_id: str, by: str) -> R:
        """The requester ``by`` withdraws the pending request; the request withdrawn."""
        found = self.require_pending(conn, request_id)
        if found.requester != by:
            raise InvalidFieldError(f"only {found.requester} may withdraw their request")
        conn.execute(
            f"UPDATE {self._table} SET state = ? WHERE id = ?",
            (RequestState.WITHDRAWN.value, found.id),
        )
        return self.require(conn, found.id)


#: Appends a request's audit entry: (conn, at_ms, actor, action, request, reason).
AuditRequest = Callable[[Connection, int, str, str, R, str], None]


class DecidedRequests(Generic[R]):
    """``decide`` and ``withdraw`` of a repository of requests kept in ``table``, each
    change audited by ``audit`` as ``PREFIX.approve``, ``.refuse`` or ``.withdraw``."""

    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime],
        table: RequestTable[R],
        prefix: str,
        audit: AuditRequest[R],
    ) -> None:
        self._db = db
        self._clock = clock
        self._table = table
        self._prefix = prefix
        self._audit = audit

    async def decide(
        self,
        request_id: str,
        *,
        approve: bool,
        by: str,
        reason: str,
        expires_at: datetime | None = None,
        at: datetime | None = None,
    ) -> R:
        """Approve (until ``expires_at``, required) or refuse (no expiry) a pending
        request, with its audit entry.  ``NotFoundError`` for an unknown id,
        ``RequestStateError`` for one already decided or withdrawn,
        ``InvalidFieldError`` for one's own request or a missing or stray expiry."""
        verdict = Verdict.of(
            approve=approve,
            by=by,
            reason=reason,
            expires_at=expires_at,
            at_ms=at_or_now_ms(self._clock, at),
        )

        def body(conn: Connection) -> R:
            decided = self._table.decide(conn, request_id, verdict)
            action = f"{self._prefix}.{verdict.verb}"
            self._audit(conn, verdict.at_ms, verdict.by, action, decided, verdict.reason)
            return decided

        return await self._db.write(body)

    async def withdraw(self, request_id: str, *, by: str, at: datetime | None = None) -> R:
        """The requester withdraws a pending request, with its audit entry;
        ``NotFoundError``, ``RequestStateError`` as for :meth:`decide`, and
        ``InvalidFieldError`` when ``by`` is not the requester."""
        by = text("by", by)
        at_ms = at_or_now_ms(self._clock, at)

        def body(conn: Connection) -> R:
            withdrawn = self._table.withdraw(conn, request_id, by)
            action = f"{self._prefix}.withdraw"
            self._audit(conn, at_ms, by, action, withdrawn, "withdrawn by the requester")
            return withdrawn

        return await self._db.write(body)
