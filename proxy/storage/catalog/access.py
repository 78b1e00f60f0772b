"""The access log: every read of a recording (export, playback), who, when and why
(P5, P20).  An entry is written before any audio leaves the store, and with it, in the
same transaction, the audit entry (action: the access's kind, ``export-wav`` → ``export``;
object ``recording:ID``; the access's reason; ``facts`` as its detail)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from . import audit
from . import rows as to
from .db import Connection, Database
from .model import AccessEntry
from .values import at_or_now_ms, from_ms, opt_text, text


class AccessLog(Protocol):
    """Who read which recording, when and why."""

    async def log_access(
        self,
        *,
        actor: str,
        action: str,
        reason: str,
        recording_id: str | None = None,
        detail: str | None = None,
        facts: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AccessEntry: ...

    async def access_log(self, recording_id: str | None = None) -> list[AccessEntry]: ...


class SqliteAccessLog:
    """:class:`AccessLog` in the catalog's SQLite database."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock

    async def log_access(
        self,
        *,
        actor: str,
        action: str,
        reason: str,
        recording_id: str | None = None,
        detail: str | None = None,
        facts: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AccessEntry:
        """Record a read of a recording, and its audit entry (``facts``: its detail, plain
        JSON data).  An access needs a named actor and a reason."""
        values = (
            at_or_now_ms(self._clock, at),
            text("actor", actor),
            text("action", action),
            recording_id,
            text("reason", reason),
            opt_text("detail", detail),
        )

        def body(conn: Connection) -> AccessEntry:
            if recording_id is not None:
                to.require_recording(conn, recording_id)
            cursor = conn.execute(
                "INSERT INTO access_log (at, actor, action, recording_id, reason, detail)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                values,
            )
            entry_id = int(cursor.fetchone()[0])
            audit.append(
                conn,
                at_ms=values[0],
                actor=values[1],
                action=values[2].partition("-")[0],
                object=None if recording_id is None else f"recording:{recording_id}",
                reason=values[4],
                detail=facts,
            )
            return AccessEntry(entry_id, from_ms(values[0]), *values[1:])

        return await self._db.write(body)

    async def access_log(self, recording_id: str | None = None) -> list[AccessEntry]:
        """Access entries, oldest first; for one recording when ``recording_id`` is given."""
        params: tuple[str, ...] = ()
        if recording_id is None:
            sql = "SELECT * FROM access_log ORDER BY at, id"
        else:
            sql = "SELECT * FROM access_log WHERE recording_id = ? ORDER BY at, id"
            params = (recording_id,)
        return await self._db.read(lambda conn: to.find_all(conn, to.access, sql, params))
