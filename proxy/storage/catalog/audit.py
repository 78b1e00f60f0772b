"""The audit log: append-only and hash-chained (P5, P20, P22).

An entry is its sequence number, time, actor, action, object, reason and detail, plus the
SHA-256 of the previous entry's canonical bytes (``prev``).  Its *canonical bytes* are
those fields as JSON with sorted keys, no whitespace and UTF-8 text
(:func:`canonical_bytes`); its own ``sha256`` is the digest of them, and it becomes the
next entry's ``prev``.  The first entry's ``prev`` is 64 zeros.

So editing any field of any entry changes its digest, and the next entry's ``prev`` no
longer matches; removing an entry leaves a gap in the sequence; swapping two entries puts
their sequence numbers out of order inside their own canonical bytes.  :func:`verify`
finds each of these and names the first sequence number that is wrong.  Cutting off the
*last* entries leaves a valid, shorter chain: the anchor file (the chain head written
outside the database) catches that.

An entry is written by :func:`append` inside the same transaction as the change it
records: each repository that makes an audited change calls it from its write body, so
the change and its entry commit together or not at all.  Triggers refuse UPDATE and
DELETE on the table, so no code path edits the log by mistake (raw SQL that drops them
is what :func:`verify` is for).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from .db import Connection, Database, Row, one, rows
from .errors import InvalidFieldError
from .model import format_utc
from .values import at_or_now_ms, count, from_ms, opt_text, text, to_ms

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited action.  ``object`` names what it acted on (``recording:ID``,
    ``hold:ID``, ``config:VERSION``...); ``detail`` holds facts, never secrets."""

    seq: int
    at: datetime
    actor: str
    action: str
    object: str | None
    reason: str | None
    detail: Mapping[str, Any]
    prev: str
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        """For ``--json`` and the API: the time in ISO 8601 UTC."""
        return {
            "seq": self.seq,
            "at": format_utc(self.at),
            "actor": self.actor,
            "action": self.action,
            "object": self.object,
            "reason": self.reason,
            "detail": dict(self.detail),
            "prev": self.prev,
            "sha256": self.sha256,
        }


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last entry of an intact chain (``seq`` 0 and :data:`GENESIS` when empty)."""

    seq: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :func:`verify` found: ``broken_at`` is the first bad sequence number (or
    ``None`` when the chain is intact), ``why`` says what is wrong with it."""

    count: int
    head: ChainHead
    broken_at: int | None = None
    why: str | None = None

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def canonical_bytes(
    seq: int,
    at_ms: int,
    actor: str,
    action: str,
    object: str | None,
    reason: str | None,
    detail: Mapping[str, Any],
    prev: str,
) -> bytes:
    """The bytes an entry's digest is taken over (sorted keys, no spaces, UTF-8)."""
    fields = {
        "seq": seq,
        "at": at_ms,
        "actor": actor,
        "action": action,
        "object": object,
        "reason": reason,
        "detail": detail,
        "prev": prev,
    }
    return json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def _detail_json(detail: Mapping[str, Any] | None) -> str:
    try:
        return json.dumps(
            dict(detail or {}),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        raise InvalidFieldError(f"audit detail must be plain JSON data: {exc}") from None


def append(
    conn: Connection,
    *,
    at_ms: int,
    actor: str,
    action: str,
    object: str | None = None,
    reason: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry, in the caller's open write transaction (``BEGIN IMMEDIATE``
    serialises appends, so the chain cannot fork)."""
    actor, action = text("actor", actor), text("action", action)
    object, reason = opt_text("object", object), opt_text("reason", reason)
    detail_json = _detail_json(detail)
    parsed = json.loads(detail_json)
    last = one(conn, "SELECT seq, sha256 FROM audit_log ORDER BY seq DESC LIMIT 1")
    seq, prev = (1, GENESIS) if last is None else (int(last[0]) + 1, str(last[1]))
    fields = (seq, at_ms, actor, action, object, reason, parsed, prev)
    digest = hashlib.sha256(canonical_bytes(*fields)).hexdigest()
    conn.execute(
        "INSERT INTO audit_log (seq, at, actor, action, object, reason, detail, prev, sha256)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, at_ms, actor, action, object, reason, detail_json, prev, digest),
    )
    return AuditEntry(seq, from_ms(at_ms), actor, action, object, reason, parsed, prev, digest)


def entry(row: Row) -> AuditEntry:
    return AuditEntry(
        int(row["seq"]),
        from_ms(int(row["at"])),
        row["actor"],
        row["action"],
        row["object"],
        row["reason"],
        json.loads(row["detail"]),
        row["prev"],
        row["sha256"],
    )


def verify(rows: Iterable[Row], after: ChainHead | None = None) -> Verdict:
    """Walk the chain in ``seq`` order (as stored) and recompute every digest.  ``after``
    (the entry before the first of ``rows``, taken as good) starts the walk past it:
    ``rows`` then hold the entries after ``after.seq``, and ``count`` counts them all."""
    start = after if after is not None else ChainHead(0, GENESIS)
    count, expected_seq, prev = start.seq, start.seq + 1, start.sha256
    for row in rows:
        seq = int(row["seq"])
        if seq != expected_seq:
            why = f"entry {expected_seq} is missing (next is {seq})"
            return Verdict(count, ChainHead(expected_seq - 1, prev), expected_seq, why)
        if row["prev"] != prev:
            why = "its prev is not the digest of the entry before it"
            return Verdict(count, ChainHead(seq - 1, prev), seq, why)
        try:
            detail = json.loads(row["detail"])
        except (TypeError, ValueError):
            return Verdict(count, ChainHead(seq - 1, prev), seq, "its detail is not JSON")
        fields = (seq, int(row["at"]), row["actor"], row["action"], row["object"], row["reason"])
        digest = hashlib.sha256(canonical_bytes(*fields, detail, prev)).hexdigest()
        if digest != row["sha256"]:
            why = "its contents do not match its digest (edited)"
            return Verdict(count, ChainHead(seq - 1, prev), seq, why)
        count, expected_seq, prev = count + 1, seq + 1, digest
    return Verdict(count, ChainHead(expected_seq - 1, prev))


class AuditLog(Protocol):
    """The audit log: append an entry on its own, read entries, walk the chain.  A
    change that is audited appends its entry in its own transaction (:func:`append`)."""

    async def append(
        self,
        *,
        actor: str,
        action: str,
        object: str | None = None,
        reason: str | None = None,
        detail: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditEntry: ...

    async def entries(
        self,
        *,
        since: datetime | None = None,
        actor: str | None = None,
        action: str | None = None,
        until: datetime | None = None,
        object: str | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> list[AuditEntry]: ...

    async def latest(self, action: str) -> AuditEntry | None: ...

    async def verify(self, after: ChainHead | None = None) -> Verdict: ...

    async def digests(self, seqs: Iterable[int]) -> dict[int, str]: ...


class SqliteAuditLog:
    """:class:`AuditLog` in the catalog's SQLite database."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock

    async def append(
        self,
        *,
        actor: str,
        action: str,
        object: str | None = None,
        reason: str | None = None,
        detail: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditEntry:
        """An entry for an action that changes nothing else in the catalog (a search, a
        playback, a sweep that found nothing to delete)."""
        at_ms = at_or_now_ms(self._clock, at)
        return await self._db.write(
            lambda conn: append(
                conn,
                at_ms=at_ms,
                actor=actor,
                action=action,
                object=object,
                reason=reason,
                detail=detail,
            )
        )

    async def entries(
        self,
        *,
        since: datetime | None = None,
        actor: str | None = None,
        action: str | None = None,
        until: datetime | None = None,
        object: str | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> list[AuditEntry]:
        """Entries in sequence order, filtered by time (at or after ``since``, before
        ``until``), actor, action and object; only those after sequence number ``after``
        (to page on), and at most ``limit`` of them."""
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        for clause, value in (
            ("at >= ?", None if since is None else to_ms("since", since)),
            ("at < ?", None if until is None else to_ms("until", until)),
            ("actor = ?", actor),
            ("action = ?", action),
            ("object = ?", object),
            ("seq > ?", after),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = f"SELECT * FROM audit_log WHERE {' AND '.join(where)} ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(count("limit", limit, minimum=1))
        return await self._db.read(lambda conn: [entry(row) for row in rows(conn, sql, params)])

    async def latest(self, action: str) -> AuditEntry | None:
        """The newest entry of ``action`` (the last retention sweep, for the ops page),
        without reading the older ones."""
        sql = "SELECT * FROM audit_log WHERE action = ? ORDER BY seq DESC LIMIT 1"
        found = await self._db.read(lambda conn: one(conn, sql, (action,)))
        return None if found is None else entry(found)

    async def verify(self, after: ChainHead | None = None) -> Verdict:
        """Walk the whole chain, or from ``after`` (an anchored head, itself re-checked)
        on, in one read snapshot.  An ``after`` the chain no longer holds as it was is
        the break (``count`` is then the table's rows: nothing was walked)."""

        def body(conn: Connection) -> Verdict:
            if after is None or after.seq == 0:
                return verify(conn.execute("SELECT * FROM audit_log ORDER BY seq"))
            found = one(conn, "SELECT * FROM audit_log WHERE seq = ?", (after.seq,))
            if found is None or found["sha256"] != after.sha256:  # nothing walked: no good head
                why = "it is missing" if found is None else "it no longer matches the anchor"
                total = one(conn, "SELECT count(*) FROM audit_log")
                return Verdict(total[0] if total else 0, ChainHead(0, GENESIS), after.seq, why)
            # the anchored entry is walked too: its digest is recomputed from its contents
            sql = "SELECT * FROM audit_log WHERE seq >= ? ORDER BY seq"
            return verify(conn.execute(sql, (after.seq,)), ChainHead(after.seq - 1, found["prev"]))

        return await self._db.read(body)

    async def digests(self, seqs: Iterable[int]) -> dict[int, str]:
        """The stored ``sha256`` of each of ``seqs`` the table holds (for the anchors)."""
        wanted = sorted(set(seqs))

        def body(conn: Connection) -> dict[int, str]:
            found = (one(conn, "SELECT sha256 FROM audit_log WHERE seq = ?", (s,)) for s in wanted)
            return {s: str(row[0]) for s, row in zip(wanted, found, strict=True) if row}

        return await self._db.read(body)
