"""The do-not-record list (P14a): callers who asked in writing not to be recorded.

The call flow looks a caller up before the notice; ``recproxy dnr`` adds, removes and
lists the numbers (E.164, normalised by the caller of this repository).  Adding and
removing a number each append their audit entry (``dnr.add``, ``dnr.remove``, object
``number:+44...``) in the same transaction: who stopped or restarted the recording of a
caller's calls is evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from . import rows as to
from .audit import append
from .db import Connection, Database, insert
from .model import DoNotRecordEntry
from .values import at_or_now_ms, from_ms, text


class DoNotRecordList(Protocol):
    """The numbers whose calls are not recorded."""

    async def add(
        self,
        number: str,
        *,
        reference: str,
        added_by: str,
        replace: bool = False,
        at: datetime | None = None,
    ) -> DoNotRecordEntry: ...

    async def remove(self, number: str, *, by: str, at: datetime | None = None) -> bool: ...

    async def get(self, number: str) -> DoNotRecordEntry | None: ...

    async def entries(self) -> list[DoNotRecordEntry]: ...


_UPSERT = (
    " ON CONFLICT (number) DO UPDATE SET reference = excluded.reference,"
    " added_by = excluded.added_by, added_at = excluded.added_at"
)


class SqliteDoNotRecord:
    """:class:`DoNotRecordList` in the catalog's SQLite database."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock

    async def add(
        self,
        number: str,
        *,
        reference: str,
        added_by: str,
        replace: bool = False,
        at: datetime | None = None,
    ) -> DoNotRecordEntry:
        """Add an (E.164-normalised) number.  A number already listed raises
        ``DuplicateError`` unless ``replace``: its written request is the reason it is
        listed, and must not be overwritten by accident."""
        values = (
            text("number", number),
            text("reference", reference),
            text("added_by", added_by),
            at_or_now_ms(self._clock, at),
        )

        def body(conn: Connection) -> DoNotRecordEntry:
            insert(
                conn,
                "INSERT INTO do_not_record (number, reference, added_by, added_at)"
                " VALUES (?, ?, ?, ?)" + (_UPSERT if replace else ""),
                values,
                duplicate=f"{number} is already on the do-not-record list",
            )
            append(
                conn,
                at_ms=values[3],
                actor=values[2],
                action="dnr.add",
                object=f"number:{values[0]}",
                reason=values[1],
                detail={"replace": replace},
            )
            return DoNotRecordEntry(values[0], values[1], values[2], from_ms(values[3]))

        return await self._db.write(body)

    async def remove(self, number: str, *, by: str, at: datetime | None = None) -> bool:
        """Remove a number (``by`` whom); False if it was not on the list (and nothing is
        audited)."""
        by = text("by", by)
        at_ms = at_or_now_ms(self._clock, at)

        def body(conn: Connection) -> bool:
            removed = conn.execute("DELETE FROM do_not_record WHERE number = ?", (number,))
            if removed.rowcount == 0:
                return False
            append(conn, at_ms=at_ms, actor=by, action="dnr.remove", object=f"number:{number}")
            return True

        return await self._db.write(body)

    async def get(self, number: str) -> DoNotRecordEntry | None:
        return await self._db.read(
            lambda conn: to.find(
                conn, to.do_not_record, "SELECT * FROM do_not_record WHERE number = ?", (number,)
            )
        )

    async def entries(self) -> list[DoNotRecordEntry]:
        """Every listed number, in order."""
        return await self._db.read(
            lambda conn: to.find_all(
                conn, to.do_not_record, "SELECT * FROM do_not_record ORDER BY number"
            )
        )
