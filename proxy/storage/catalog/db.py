"""The catalog's one SQLite connection, used from one thread of its own.

Every operation is a plain function of a ``sqlite3.Connection``; :meth:`Database.write`
and :meth:`Database.read` hand it whole to the database thread, which runs it inside
one transaction (``BEGIN IMMEDIATE`` for a write, ``BEGIN`` for a read so that its
statements see one snapshot) and commits or rolls back.  So an operation costs one
thread hop however many statements it runs, and operations never interleave: the
thread takes them one at a time, in the order they were asked for.

A write, once asked for, runs to its commit or rollback even if the caller is
cancelled (it is shielded), so cancelling a task never leaves a transaction open.  A
write the database does not take (locked past the busy timeout, read-only, disk full,
an I/O error: ``sqlite3.OperationalError``) is rolled back and raised as
:class:`CatalogUnavailableError`, for the caller to retry.

Only the standard library's ``sqlite3`` is used, through its public API.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, TypeVar

from .errors import (
    CatalogClosedError,
    CatalogError,
    CatalogUnavailableError,
    DuplicateError,
    NotFoundError,
)

T = TypeVar("T")

Row = sqlite3.Row
Connection = sqlite3.Connection
Params = Sequence[object] | Mapping[str, object]
Synchronous = Literal["NORMAL", "FULL"]


def one(conn: Connection, sql: str, params: Params = ()) -> Row | None:
    row: Row | None = conn.execute(sql, params).fetchone()
    return row


def rows(conn: Connection, sql: str, params: Params = ()) -> list[Row]:
    return conn.execute(sql, params).fetchall()


def update(
    conn: Connection, table: str, changes: dict[str, object], where: str, **key: object
) -> None:
    """``UPDATE table SET`` each of ``changes`` ``WHERE where`` (named parameters)."""
    assignments = ", ".join(f"{name} = :{name}" for name in changes)
    conn.execute(f"UPDATE {table} SET {assignments} WHERE {where}", changes | key)


def insert(
    conn: Connection,
    sql: str,
    params: Params,
    *,
    missing: str | None = None,
    duplicate: str | None = None,
) -> sqlite3.Cursor:
    """Run an INSERT, saying what a refusal means: a foreign key that names nothing is
    ``NotFoundError(missing)``, an identity already taken ``DuplicateError(duplicate)``."""
    try:
        return conn.execute(sql, params)
    except sqlite3.IntegrityError as error:
        text = str(error)
        if missing is not None and "FOREIGN KEY" in text:
            raise NotFoundError(missing) from None
        if duplicate is not None and ("UNIQUE" in text or "PRIMARY KEY" in text):
            raise DuplicateError(duplicate) from None
        raise


@contextmanager
def transaction(conn: Connection, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
    """``begin`` ... ``COMMIT``; ``ROLLBACK`` if the block or the commit raised."""
    conn.execute(begin)
    try:
        yield
        conn.commit()
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise


def _in_transaction(begin: str, body: Callable[[Connection], T], conn: Connection) -> T:
    with transaction(conn, begin):
        return body(conn)


class Database:
    """See the module docstring.  ``open`` connects in the database thread, sets the
    pragmas (WAL, ``synchronous``, foreign keys, busy timeout) and runs ``setup`` (the
    migrations) there before anything else may run."""

    def __init__(self, path: Path, *, synchronous: Synchronous, busy_timeout_ms: int) -> None:
        self.path = path
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: Connection | None = None
        self._thread: ThreadPoolExecutor | None = None

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    async def open(self, setup: Callable[[Connection], None]) -> None:
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(thread, self._connect, setup)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        self._conn, self._thread = conn, thread

    def _connect(self, setup: Callable[[Connection], None]) -> Connection:
        conn = sqlite3.connect(self.path, isolation_level=None)  # we say BEGIN ourselves
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            mode = one(conn, "PRAGMA journal_mode = WAL")
            if mode is None or str(mode[0]).lower() != "wal":
                got = None if mode is None else mode[0]
                raise CatalogError(f"{self.path}: cannot use WAL journal mode (got {got!r})")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            enforced = one(conn, "PRAGMA foreign_keys")
            if enforced is None or enforced[0] != 1:
                raise CatalogError(f"{self.path}: SQLite refused to enforce foreign keys")
            setup(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        """Close after the operations already asked for have run."""
        conn, thread = self._conn, self._thread
        self._conn = self._thread = None
        if conn is None or thread is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(thread, conn.close)
        finally:
            thread.shutdown(wait=False)

    async def write(self, body: Callable[[Connection], T]) -> T:
        """Run ``body`` in one ``BEGIN IMMEDIATE`` transaction; returns after the commit."""
        return await self._run(body, "BEGIN IMMEDIATE", shielded=True)

    async def read(self, body: Callable[[Connection], T]) -> T:
        """Run ``body`` in one read transaction (one snapshot of the database)."""
        return await self._run(body, "BEGIN", shielded=False)

    async def _run(self, body: Callable[[Connection], T], begin: str, *, shielded: bool) -> T:
        conn, thread = self._conn, self._thread
        if conn is None or thread is None:
            raise CatalogClosedError(f"catalog {self.path} is not open")
        job = functools.partial(_in_transaction, begin, body, conn)
        future = asyncio.get_running_loop().run_in_executor(thread, job)
        try:
            return await (asyncio.shield(future) if shielded else future)
        except sqlite3.OperationalError as exc:  # rolled back: the caller may retry
            raise CatalogUnavailableError(f"catalog {self.path}: {exc}") from exc
