"""``SqlCatalog``: the catalog's repositories on one :class:`.db.Database`, whichever the
engine: :class:`.sqlite.SqliteCatalog` gives it a SQLite file, :class:`.postgres.
PostgresCatalog` a PostgreSQL server.  The repositories (named ``Sqlite...`` from when
SQLite was the only engine) run the same SQL on both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Self

from .access import SqliteAccessLog
from .access_requests import SqliteAccessRequests
from .audit import SqliteAuditLog
from .bulk import SqliteBulkRequests
from .call_writes import SqliteCallWrites
from .calls import SqliteCalls
from .config_versions import SqliteConfigVersions
from .db import Connection, Database
from .do_not_record import SqliteDoNotRecord
from .flags import SqliteFlags
from .holds import SqliteHolds
from .maintenance import CatalogCheck, check
from .migrations import Migration, applied_version, check_numbering, migrate
from .parts import SqliteParts
from .recording_events import SqliteRecordingEvents
from .recordings import SqliteRecordings
from .retention import SqliteRetention
from .sar import SqliteSarCases
from .search import SqliteRecordingSearch
from .sip_credentials import SqliteSipCredentials
from .siprec import SqliteSiprec
from .users import SqliteUsers
from .values import to_ms


class SqlCatalog:
    """The repositories on ``db``; ``name`` (a path or a URL) names the catalog in
    errors.  ``clock`` supplies the time of events written without an explicit ``at``."""

    def __init__(
        self,
        db: Database,
        *,
        name: str,
        clock: Callable[[], datetime],
        migrations: Sequence[Migration],
    ) -> None:
        self.name = name
        self._clock = clock
        self._migrations = check_numbering(migrations)
        self._db = db
        self.calls = SqliteCalls(db)
        self.recordings = SqliteRecordings(db, clock)
        self.events = SqliteRecordingEvents(db, clock)
        self.do_not_record = SqliteDoNotRecord(db, clock)
        self.access = SqliteAccessLog(db, clock)
        self.audit = SqliteAuditLog(db, clock)
        self.config_versions = SqliteConfigVersions(db, clock)
        self.holds = SqliteHolds(db, clock)
        self.retention = SqliteRetention(db)
        self.users = SqliteUsers(db, clock)
        self.parts = SqliteParts(db)
        self.flags = SqliteFlags(db, clock)
        self.access_requests = SqliteAccessRequests(db, clock)
        self.search = SqliteRecordingSearch(db, self.parts)
        self.bulk = SqliteBulkRequests(db, clock)
        self.sar = SqliteSarCases(db, clock)
        self.siprec = SqliteSiprec(db)
        self.sip_credentials = SqliteSipCredentials(db, clock)
        self.call_writes = SqliteCallWrites(db, clock)

    async def open(self, *, upgrade: bool = True) -> Self:
        """Connect and bring the schema up to date (``upgrade=False``: leave it as it is,
        for ``recproxy db check``, which only looks)."""
        if not self._db.is_open:
            now_ms = to_ms("now", self._clock())

            def setup(conn: Connection) -> None:
                if upgrade:
                    migrate(conn, self._migrations, now_ms, self.name)

            await self._db.open(setup)
        return self

    async def check(self) -> CatalogCheck:
        """The schema version applied and the engine's integrity checks (one read)."""
        return await self._db.read(check)

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


if TYPE_CHECKING:  # SqlCatalog must satisfy the Catalog interface.
    from .interface import Catalog

    _check: type[Catalog] = SqlCatalog
