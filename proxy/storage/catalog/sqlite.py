"""``SqliteCatalog``: the catalog in one SQLite file, its repositories sharing one
database thread (:mod:`.db`).

Storage rules
-------------
- WAL journal, ``synchronous=FULL`` by default, ``foreign_keys=ON`` and a busy
  timeout, set when the catalog opens.
- Every operation is one transaction in the database thread, and a write returns only
  after its commit: a write that has been awaited survives the process being killed.
- Times are stored as INTEGER milliseconds since the Unix epoch, UTC, in every table.
- The schema is brought up to date when the catalog opens (:mod:`.migrations`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from .access import SqliteAccessLog
from .access_requests import SqliteAccessRequests
from .audit import SqliteAuditLog
from .bulk import SqliteBulkRequests
from .call_writes import SqliteCallWrites
from .calls import SqliteCalls
from .config_versions import SqliteConfigVersions
from .db import Database, Synchronous
from .do_not_record import SqliteDoNotRecord
from .errors import InvalidFieldError
from .flags import SqliteFlags
from .holds import SqliteHolds
from .migrations import MIGRATIONS, Migration, applied_version, check_numbering, migrate
from .parts import SqliteParts
from .recording_events import SqliteRecordingEvents
from .recordings import SqliteRecordings
from .retention import SqliteRetention
from .sar import SqliteSarCases
from .search import SqliteRecordingSearch
from .sip_credentials import SqliteSipCredentials
from .siprec import SqliteSiprec
from .users import SqliteUsers
from .values import count, to_ms, utc_now


class SqliteCatalog:
    """``async with SqliteCatalog(path) as catalog: ...`` or ``await catalog.open()`` /
    ``await catalog.close()``.  One instance holds one connection; several instances,
    in one process or several, may share a file (WAL readers never block, writers wait
    up to ``busy_timeout_ms``).  ``clock`` supplies the time of events written without
    an explicit ``at``."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], datetime] = utc_now,
        synchronous: Synchronous = "FULL",
        busy_timeout_ms: int = 5000,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise InvalidFieldError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        self.path = Path(path)
        self._clock = clock
        self._migrations = check_numbering(migrations)
        self._db = Database(
            self.path,
            synchronous=synchronous,
            busy_timeout_ms=count("busy_timeout_ms", busy_timeout_ms),
        )
        self.calls = SqliteCalls(self._db)
        self.recordings = SqliteRecordings(self._db, clock)
        self.events = SqliteRecordingEvents(self._db, clock)
        self.do_not_record = SqliteDoNotRecord(self._db, clock)
        self.access = SqliteAccessLog(self._db, clock)
        self.audit = SqliteAuditLog(self._db, clock)
        self.config_versions = SqliteConfigVersions(self._db, clock)
        self.holds = SqliteHolds(self._db, clock)
        self.retention = SqliteRetention(self._db)
        self.users = SqliteUsers(self._db, clock)
        self.parts = SqliteParts(self._db)
        self.flags = SqliteFlags(self._db, clock)
        self.access_requests = SqliteAccessRequests(self._db, clock)
        self.search = SqliteRecordingSearch(self._db, self.parts)
        self.bulk = SqliteBulkRequests(self._db, clock)
        self.sar = SqliteSarCases(self._db, clock)
        self.siprec = SqliteSiprec(self._db)
        self.sip_credentials = SqliteSipCredentials(self._db, clock)
        self.call_writes = SqliteCallWrites(self._db, clock)

    async def open(self) -> Self:
        """Connect, set the pragmas and bring the schema up to date."""
        if not self._db.is_open:
            now_ms = to_ms("now", self._clock())
            await self._db.open(lambda conn: migrate(conn, self._migrations, now_ms, self.path))
        return self

    async def close(self) -> None:
        """Close once the operations already asked for have run."""
        await self._db.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def schema_version(self) -> int:
        """The highest migration applied to the open database."""
        return await self._db.read(applied_version)


if TYPE_CHECKING:  # SqliteCatalog must satisfy the Catalog interface.
    from .interface import Catalog

    _check: type[Catalog] = SqliteCatalog
