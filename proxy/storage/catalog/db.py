"""The catalog's one database connection, used from one thread of its own.

Every operation is a plain function of a :class:`Connection`; ``Database.write`` and
``Database.read`` hand it whole to the database thread, which runs it inside one
transaction and commits or rolls back.  So an operation costs one thread hop however
many statements it runs, and operations never interleave: the thread takes them one at
a time, in the order they were asked for.

The same bodies serve both engines.  A :class:`Connection` is the part of
``sqlite3.Connection`` they use (``execute`` and ``executemany`` returning a cursor with
``fetchone``/``fetchall``/``rowcount``, rows read by name or index); on PostgreSQL,
:mod:`.postgres` gives them exactly that, translating placeholders centrally.  The SQL is
the subset both engines accept; where they differ, :func:`dialect` picks a snippet.

On SQLite a write runs in ``BEGIN IMMEDIATE`` (writers serialised), a read in ``BEGIN``
(one snapshot).  A write, once asked for, runs to its commit or rollback even if the
caller is cancelled (it is shielded), so cancelling a task never leaves a transaction
open.  A write the database does not take (locked past the busy timeout, read-only,
disk full, an I/O error: ``sqlite3.OperationalError``) is rolled back and raised as
:class:`CatalogUnavailableError`, for the caller to retry.

A refused statement (a unique, foreign-key or check constraint; the append-only audit
log) raises ``sqlite3.IntegrityError`` (the DB-API's) on both engines, so the bodies and
:func:`insert` read one kind of refusal.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from .errors import (
    CatalogClosedError,
    CatalogError,
    CatalogUnavailableError,
    DuplicateError,
    NotFoundError,
)

T = TypeVar("T")

Params = Sequence[object] | Mapping[str, object]
Synchronous = Literal["NORMAL", "FULL"]
Dialect = Literal["sqlite", "postgresql"]


class Row(Protocol):
    """A result row: ``row["name"]`` or ``row[0]``, and ``keys()`` (``sqlite3.Row``)."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    """What the bodies read of a cursor."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """The part of ``sqlite3.Connection`` the catalog's bodies and transactions use."""

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Params = (), /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Params], /) -> Cursor: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


def dialect(conn: Connection) -> Dialect:
    """Which engine ``conn`` talks to, for the few statements the engines spell apart."""
    return "sqlite" if isinstance(conn, sqlite3.Connection) else "postgresql"


#: The greatest of several values: SQLite's scalar MAX, PostgreSQL's GREATEST.
GREATEST: dict[Dialect, str] = {"sqlite": "MAX", "postgresql": "GREATEST"}

#: How each engine opens a write and a read transaction.  PostgreSQL's READ COMMITTED
#: does not serialise writers as SQLite's ``BEGIN IMMEDIATE`` does, so every write first
#: takes one transaction-scoped advisory lock (the audit chain and every read-then-write
#: rely on it); a read sees one snapshot, as SQLite's ``BEGIN`` does.
WRITE_LOCK = 0x72656370  # "recp"
_BEGIN: dict[tuple[Dialect, bool], str] = {
    ("sqlite", True): "BEGIN IMMEDIATE",
    ("sqlite", False): "BEGIN",
    ("postgresql", True): "BEGIN ISOLATION LEVEL READ COMMITTED;"
    f" SELECT pg_advisory_xact_lock({WRITE_LOCK})",
    ("postgresql", False): "BEGIN ISOLATION LEVEL REPEATABLE READ",
}


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
) -> Cursor:
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
def transaction(conn: Connection, *, write: bool = True) -> Iterator[None]:
    """A write (or read) transaction ... ``COMMIT``; ``ROLLBACK`` if the block or the
    commit raised."""
    try:
        conn.execute(_BEGIN[dialect(conn), write])  # on PostgreSQL, the lock may time out
        yield
        conn.commit()
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise


def in_transaction(write: bool, body: Callable[[Connection], T], conn: Connection) -> T:
    with transaction(conn, write=write):
        return body(conn)


class Database(Protocol):
    """The catalog's connection and its thread, on either engine; the repositories hold
    one and hand it their bodies."""

    @property
    def is_open(self) -> bool: ...

    async def open(self, setup: Callable[[Connection], None]) -> None: ...

    async def close(self) -> None: ...

    async def write(self, body: Callable[[Connection], T]) -> T: ...

    async def read(self, body: Callable[[Connection], T]) -> T: ...


class SqliteDatabase:
    """See the module docstring.  ``open`` connects in the database thread, sets the
    pragmas (WAL, ``synchronous``, foreign keys, busy timeout) and runs ``setup`` (the
    migrations) there before anything else may run."""

    def __init__(self, path: Path, *, synchronous: Synchronous, busy_timeout_ms: int) -> None:
        self.path = path
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
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

    def _connect(self, setup: Callable[[Connection], None]) -> sqlite3.Connection:
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
        return await self._run(body, write=True)

    async def read(self, body: Callable[[Connection], T]) -> T:
        """Run ``body`` in one read transaction (one snapshot of the database)."""
        return await self._run(body, write=False)

    async def _run(self, body: Callable[[Connection], T], *, write: bool) -> T:
        conn, thread = self._conn, self._thread
        if conn is None or thread is None:
            raise CatalogClosedError(f"catalog {self.path} is not open")
        job = functools.partial(in_transaction, write, body, conn)
        future = asyncio.get_running_loop().run_in_executor(thread, job)
        try:
            return await (asyncio.shield(future) if write else future)
        except sqlite3.OperationalError as exc:  # rolled back: the caller may retry
            raise CatalogUnavailableError(f"catalog {self.path}: {exc}") from exc
