"""Calls and their consent receipts: the call aggregate.

A call row is made when a call is admitted and updated as it is answered, bridged and
ended; its consent receipt (P13) says which notice the caller heard and how much of it.
At start-up :meth:`CallRepository.recover_calls` closes the calls a crash left open.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, Unpack

from . import rows as to
from .db import GREATEST, Connection, Database, dialect, insert, one, rows, update
from .errors import InvalidFieldError, NotFoundError
from .model import (
    Call,
    CallDirection,
    CallKind,
    CallOutcome,
    CallUpdate,
    ConsentReceipt,
    NewCall,
    NoticeMode,
)
from .values import (
    count,
    flag,
    member,
    not_before,
    of_node,
    only_fields,
    opt_ms,
    opt_text,
    sha256,
    text,
    to_ms,
    uuid_or_new,
)


class CallRepository(Protocol):
    """What the proxy keeps about calls."""

    async def create_call(self, call: NewCall) -> Call: ...

    async def update_call(self, call_id: str, **fields: Unpack[CallUpdate]) -> Call: ...

    async def get_call(self, call_id: str) -> Call | None: ...

    async def add_consent_receipt(self, receipt: ConsentReceipt) -> ConsentReceipt: ...

    async def consent_receipt(self, call_id: str) -> ConsentReceipt | None: ...

    async def recover_calls(self, *, node: str | None = None) -> list[str]: ...


_CALL_UPDATE_FIELDS = frozenset(CallUpdate.__annotations__)
_CALL_TIMES = ("started_at", "answered_at", "bridged_at", "ended_at")


def _find_receipt(conn: Connection, call_id: str) -> ConsentReceipt | None:
    return to.find(conn, to.receipt, "SELECT * FROM consent_receipts WHERE call_id = ?", (call_id,))


class CallInsert(NamedTuple):
    """A new call's row, checked: its ``INSERT`` and parameters."""

    call_id: str
    sql: str
    params: tuple[object, ...]


def call_insert(call: NewCall) -> CallInsert:
    """Check ``call`` (before any SQL) and say how to insert it."""
    values = (
        uuid_or_new("call_id", call.call_id),
        text("sip_call_id", call.sip_call_id),
        text("caller", call.caller),
        text("callee", call.callee),
        member(CallDirection, "direction", call.direction).value,
        opt_text("service", call.service),
        opt_text("operator", call.operator),
        to_ms("started_at", call.started_at),
        opt_text("config_version", call.config_version),
    )
    # a call's kind and node are named only when given (a SIPREC session; a named
    # node), so a catalog opened without their migrations still takes calls
    kind = member(CallKind, "kind", call.kind)
    extra: dict[str, object] = {} if kind is CallKind.CALL else {"kind": kind.value}
    if call.node is not None:
        extra["node"] = text("node", call.node)
    columns = "".join(f", {name}" for name in extra)
    sql = (
        "INSERT INTO calls (id, sip_call_id, caller, callee, direction, service,"
        f" operator, started_at, config_version{columns})"
        f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?{', ?' * len(extra)})"
    )
    return CallInsert(values[0], sql, values + tuple(extra.values()))


def insert_call(conn: Connection, statement: CallInsert) -> None:
    """Insert the call inside the caller's transaction."""
    insert(
        conn,
        statement.sql,
        statement.params,
        duplicate=f"call {statement.call_id} already exists",
    )


class CallChange(NamedTuple):
    """A call update's columns, checked; ``times`` are the time columns among them."""

    columns: dict[str, object]
    times: dict[str, int | None]


def call_change(fields: CallUpdate) -> CallChange:
    """Check an update's fields (before any SQL) as their column values."""
    only_fields("update_call", set(fields), _CALL_UPDATE_FIELDS)
    changes: dict[str, object] = {}
    time_changes: dict[str, int | None] = {}
    for name, value in fields.items():
        if name == "callee":
            changes[name] = text(name, value)
        elif name in ("service", "operator", "config_version"):
            changes[name] = opt_text(name, value)
        elif name == "outcome":
            changes[name] = None if value is None else member(CallOutcome, name, value).value
        else:  # answered_at, bridged_at, ended_at
            changes[name] = time_changes[name] = opt_ms(name, value)
    return CallChange(changes, time_changes)


def change_call(conn: Connection, call_id: str, change: CallChange) -> None:
    """Apply ``change`` inside the caller's transaction, keeping the call's times in
    order (answered, bridged and ended not before started, bridged not before answered)."""
    row = one(
        conn,
        "SELECT started_at, answered_at, bridged_at, ended_at FROM calls WHERE id = ?",
        (call_id,),
    )
    if row is None:
        raise NotFoundError(f"call {call_id} does not exist")
    times = {name: change.times.get(name, row[name]) for name in _CALL_TIMES}
    not_before("answered_at", times["answered_at"], "started_at", times["started_at"])
    not_before("bridged_at", times["bridged_at"], "answered_at", times["answered_at"])
    not_before("bridged_at", times["bridged_at"], "started_at", times["started_at"])
    not_before("ended_at", times["ended_at"], "started_at", times["started_at"])
    if change.columns:
        update(conn, "calls", change.columns, "id = :id", id=call_id)


def receipt_values(receipt: ConsentReceipt) -> tuple[object, ...]:
    """Check a consent receipt (before any SQL) as its row's values.

    With ``mode`` ``none`` (no notice played, e.g. outbound) or ``src`` (a SIPREC
    session: the recording client's notice) the notice fields may be None; otherwise
    the notice hash, version and start time are required."""
    notice_mode = member(NoticeMode, "mode", receipt.mode)
    if notice_mode not in (NoticeMode.NONE, NoticeMode.SRC):
        for name in ("notice_sha256", "notice_version", "started_at"):
            if getattr(receipt, name) is None:
                raise InvalidFieldError(f"a receipt with mode {notice_mode.value} needs {name}")
    completed = flag("completed", receipt.completed)
    left = flag("caller_left_during_notice", receipt.caller_left_during_notice)
    if completed and left:
        raise InvalidFieldError("a notice cannot both complete and be left during")
    notice_sha256 = receipt.notice_sha256
    return (
        receipt.call_id,
        notice_mode.value,
        None if notice_sha256 is None else sha256("notice_sha256", notice_sha256),
        opt_text("notice_version", receipt.notice_version),
        opt_ms("started_at", receipt.started_at),
        count("played_ms", receipt.played_ms),
        count("notice_ms", receipt.notice_ms),
        int(completed),
        int(left),
        int(flag("do_not_record", receipt.do_not_record)),
        count("notice_restarts", receipt.notice_restarts),
        count("held_ms", receipt.held_ms),
    )


def insert_receipt(conn: Connection, values: tuple[object, ...]) -> None:
    """Insert a receipt (``receipt_values``) inside the caller's transaction."""
    call_id = values[0]
    insert(
        conn,
        "INSERT INTO consent_receipts (call_id, mode, notice_sha256, notice_version,"
        " started_at, played_ms, notice_ms, completed, caller_left_during_notice,"
        " do_not_record, notice_restarts, held_ms)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        values,
        missing=f"call {call_id} does not exist",
        duplicate=f"call {call_id} already has a consent receipt",
    )


class SqliteCalls:
    """:class:`CallRepository` in the catalog's SQLite database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_call(self, call: NewCall) -> Call:
        statement = call_insert(call)

        def body(conn: Connection) -> Call:
            insert_call(conn, statement)
            return to.require_call(conn, statement.call_id)

        return await self._db.write(body)

    async def update_call(self, call_id: str, **fields: Unpack[CallUpdate]) -> Call:
        change = call_change(fields)

        def body(conn: Connection) -> Call:
            change_call(conn, call_id, change)
            return to.require_call(conn, call_id)

        return await self._db.write(body)

    async def get_call(self, call_id: str) -> Call | None:
        return await self._db.read(lambda conn: to.find_call(conn, call_id))

    async def add_consent_receipt(self, receipt: ConsentReceipt) -> ConsentReceipt:
        """Store the P13 receipt of a call: which notice, when, how much of it played
        (of its last start), how often a hold restarted it and for how long the caller
        held.  Returns it as stored.

        With ``mode`` ``none`` (no notice played, e.g. outbound) or ``src`` (a SIPREC
        session: the recording client's notice) the notice fields may be None;
        otherwise the notice hash, version and start time are required.
        """
        values = receipt_values(receipt)

        def body(conn: Connection) -> ConsentReceipt:
            insert_receipt(conn, values)
            stored = _find_receipt(conn, receipt.call_id)
            assert stored is not None
            return stored

        return await self._db.write(body)

    async def consent_receipt(self, call_id: str) -> ConsentReceipt | None:
        return await self._db.read(lambda conn: _find_receipt(conn, call_id))

    async def recover_calls(self, *, node: str | None = None) -> list[str]:
        """At start-up: calls a crash of ``node`` left open (its own, and those no node
        is named on; every call when None) get outcome ``interrupted`` and an end
        time — the last moment known for them: their recordings' end, else when they
        were bridged, answered or started.  Run after recording recovery."""
        mine, params = of_node(node, "c.")

        def body(conn: Connection) -> list[str]:
            greatest = GREATEST[dialect(conn)]
            found = rows(
                conn,
                f"SELECT c.id, {greatest}(MAX(COALESCE(r.ended_at, 0)),"
                " COALESCE(c.bridged_at, 0), COALESCE(c.answered_at, 0), c.started_at) AS last"
                " FROM calls c LEFT JOIN recordings r ON r.call_id = c.id"
                f" WHERE c.ended_at IS NULL{mine} GROUP BY c.id ORDER BY c.started_at",
                params,
            )
            for row in found:
                conn.execute(
                    "UPDATE calls SET ended_at = ?, outcome = ? WHERE id = ?",
                    (int(row["last"]), CallOutcome.INTERRUPTED.value, row["id"]),
                )
            return [str(row["id"]) for row in found]

        return await self._db.write(body)
