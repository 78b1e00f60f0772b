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

from .db import SqliteDatabase, Synchronous
from .errors import InvalidFieldError
from .migrations import MIGRATIONS, Migration
from .sql_catalog import SqlCatalog
from .values import count, utc_now


class SqliteCatalog(SqlCatalog):
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
        db = SqliteDatabase(
            self.path,
            synchronous=synchronous,
            busy_timeout_ms=count("busy_timeout_ms", busy_timeout_ms),
        )
        super().__init__(db, name=str(self.path), clock=clock, migrations=migrations)
