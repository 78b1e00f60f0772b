"""The catalog's one PostgreSQL connection, in one thread of its own: the same model as
:mod:`.db` (one connection, one thread, one transaction per operation), so every
repository body, a plain function of a :class:`~.db.Connection`, serves both engines.

Why a synchronous psycopg 3 connection in a thread, not psycopg's async API or asyncpg:
the bodies are synchronous functions that run several statements and decide between
them (read the chain head, then append); run in the catalog thread they cost one thread
hop per operation, whatever the engine, and there is one implementation of the SQL.  An
async driver would need every body rewritten as a coroutine (two copies of the SQL, or
SQLite moved to a thread per statement), for no gain: one connection serialises the
operations anyway, as SQLite does.

:class:`PgConnection` gives the bodies the part of ``sqlite3.Connection`` they use:

- placeholders ``?`` and ``:name`` become psycopg's ``%s`` and ``%(name)s`` (a ``%``,
  even in a literal, doubles), translated once per statement text; the bare identifier
  ``user`` (a column of several tables, a reserved word on PostgreSQL) is quoted;
- parameters are bound client side (psycopg's ``ClientCursor``), so an untyped ``?`` is
  typed by its context, as on SQLite; ``True``/``False`` are bound as 1/0 (the schema
  keeps SQLite's 0/1 integers);
- rows read by name or index (:class:`PgRow`); ``numeric`` results (``SUM`` of BIGINT)
  come back as ``int`` (or ``float``), as SQLite's do;
- a refused statement raises ``sqlite3.IntegrityError`` naming the constraint kind
  (``UNIQUE``, ``FOREIGN KEY``, ``CHECK``), which :func:`.db.insert` reads.

:class:`PgDatabase` maps a lost connection, a server that is down or a lock wait past
``lock_timeout_ms`` to :class:`CatalogUnavailableError` (the journal queues and replays),
and the next operation connects again.
"""

from __future__ import annotations

import asyncio
import functools
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from psycopg.adapt import Buffer, Loader
from psycopg.pq import TransactionStatus
from psycopg.rows import RowMaker

from .db import Connection, Params, in_transaction
from .errors import CatalogClosedError, CatalogUnavailableError

T = TypeVar("T")

#: How long a write whose COMMIT lost its reply asks the server what became of it.
OUTCOME_SECONDS = 10.0

#: psycopg errors that mean "not now": the server went away or is down, the connection
#: broke, a lock waited past lock_timeout, a transaction lost a serialisation race.
UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, psycopg.errors.TransactionRollback)

_TOKENS = re.compile(
    r"""(?P<skip>'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*)"""
    r"|(?P<qmark>\?)|(?P<named>(?<!:):[A-Za-z_]\w*)|(?P<percent>%)|(?P<user>\buser\b)"
)

_REFUSALS = {
    "23505": "UNIQUE constraint failed",
    "23503": "FOREIGN KEY constraint failed",
    "23514": "CHECK constraint failed",
    "23502": "NOT NULL constraint failed",
}


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """SQLite's statement text as psycopg takes it (see the module docstring)."""

    def one(match: re.Match[str]) -> str:
        kind = match.lastgroup
        if kind == "qmark":
            return "%s"
        if kind == "named":
            return f"%({match.group()[1:]})s"
        if kind == "percent":
            return "%%"
        if kind == "user":
            return '"user"'
        return match.group().replace("%", "%%")  # psycopg formats the whole text

    return _TOKENS.sub(one, sql)


def _bound(params: Params) -> Params:
    if isinstance(params, Mapping):
        return {k: int(v) if isinstance(v, bool) else v for k, v in params.items()}
    return tuple(int(v) if isinstance(v, bool) else v for v in params)


class PgRow:
    """A row read by column name or index, like ``sqlite3.Row``."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: Mapping[str, int], values: Sequence[Any]) -> None:
        self._index = index
        self._values = values

    def __getitem__(self, key: int | str, /) -> Any:
        return self._values[key if isinstance(key, int) else self._index[key]]

    def keys(self) -> list[str]:
        return list(self._index)

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._index, self._values, strict=False))!r})"


def _row_factory(cursor: psycopg.Cursor[Any]) -> RowMaker[PgRow]:
    index: dict[str, int] = {}
    for position, column in enumerate(cursor.description or ()):
        index.setdefault(column.name, position)
    return functools.partial(PgRow, index)


class _NumericLoader(Loader):
    """``numeric`` (what ``SUM`` of BIGINT gives) as ``int``, or ``float``: as SQLite."""

    def load(self, data: Buffer) -> int | float:
        text = bytes(data).decode()
        return int(text) if text.lstrip("-").isdigit() else float(text)


class PgConnection:
    """See the module docstring: a psycopg connection in autocommit mode, on which
    :func:`.db.transaction` says ``BEGIN`` and ``COMMIT`` itself."""

    def __init__(self, raw: psycopg.Connection[PgRow]) -> None:
        self.raw = raw

    @property
    def in_transaction(self) -> bool:
        if self.raw.broken or self.raw.closed:
            return False
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def execute(self, sql: str, parameters: Params = (), /) -> psycopg.ClientCursor[PgRow]:
        cursor = psycopg.ClientCursor(self.raw)
        try:
            cursor.execute(translate(sql), _bound(parameters))
        except psycopg.IntegrityError as exc:
            raise _refused(exc) from exc
        return cursor

    def executemany(self, sql: str, parameters: Iterable[Params], /) -> psycopg.ClientCursor[PgRow]:
        cursor = psycopg.ClientCursor(self.raw)
        try:
            cursor.executemany(translate(sql), [_bound(p) for p in parameters])
        except psycopg.IntegrityError as exc:
            raise _refused(exc) from exc
        return cursor

    def commit(self) -> None:
        self.raw.execute("COMMIT")

    def rollback(self) -> None:
        self.raw.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()


def _refused(exc: psycopg.IntegrityError) -> sqlite3.IntegrityError:
    kind = _REFUSALS.get(exc.sqlstate or "", "constraint failed")
    return sqlite3.IntegrityError(f"{kind}: {str(exc).strip()}")


def connect(url: str, *, lock_timeout_ms: int) -> PgConnection:
    """A new connection to ``url`` (libpq finds the password: PGPASSWORD, ~/.pgpass)."""
    raw = psycopg.connect(
        url,
        autocommit=True,
        row_factory=_row_factory,
        connect_timeout=5,
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=3,
        application_name="recproxy",
        options=f"-c lock_timeout={lock_timeout_ms} -c TimeZone=UTC",
    )
    raw.adapters.register_loader("numeric", _NumericLoader)
    return PgConnection(raw)


def printable(url: str) -> str:
    """``url`` as logs and errors show it: without its query string, where libpq
    parameters go (any of them may say more than an operator's log should)."""
    base, query = url.partition("?")[::2]
    return f"{base}?..." if query else base


class PgDatabase:
    """:class:`.db.Database` on PostgreSQL.  ``name`` (the URL without its query string,
    :func:`printable`) names it in errors, which the journal logs."""

    def __init__(self, url: str, *, lock_timeout_ms: int) -> None:
        self.url = url
        self.name = printable(url)
        self._lock_timeout_ms = lock_timeout_ms
        self._conn: PgConnection | None = None
        self._thread: ThreadPoolExecutor | None = None

    @property
    def is_open(self) -> bool:
        return self._thread is not None

    async def open(self, setup: Callable[[Connection], None]) -> None:
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog")
        try:
            await asyncio.get_running_loop().run_in_executor(thread, self._first, setup)
        except UNAVAILABLE as exc:
            thread.shutdown(wait=False)
            raise CatalogUnavailableError(f"catalog {self.name}: {exc}") from exc
        except BaseException:
            thread.shutdown(wait=False)
            raise
        self._thread = thread

    def _first(self, setup: Callable[[Connection], None]) -> None:
        conn = connect(self.url, lock_timeout_ms=self._lock_timeout_ms)
        try:
            setup(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        """Close after the operations already asked for have run."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(thread, self._drop)
        finally:
            thread.shutdown(wait=False)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def write(self, body: Callable[[Connection], T]) -> T:
        """Run ``body`` in one write transaction (writers serialised); returns after the
        commit."""
        return await self._run(body, write=True)

    async def read(self, body: Callable[[Connection], T]) -> T:
        """Run ``body`` in one REPEATABLE READ transaction (one snapshot)."""
        return await self._run(body, write=False)

    async def _run(self, body: Callable[[Connection], T], *, write: bool) -> T:
        thread = self._thread
        if thread is None:
            raise CatalogClosedError(f"catalog {self.name} is not open")
        job = functools.partial(self._job, write, body)
        future = asyncio.get_running_loop().run_in_executor(thread, job)
        try:
            return await (asyncio.shield(future) if write else future)
        except UNAVAILABLE as exc:  # rolled back (or never begun): the caller may retry
            raise CatalogUnavailableError(f"catalog {self.name}: {exc}") from exc

    def _connected(self) -> PgConnection:
        conn = self._conn
        if conn is None or conn.raw.closed or conn.raw.broken:
            self._drop()
            conn = self._conn = connect(self.url, lock_timeout_ms=self._lock_timeout_ms)
        return conn

    def _job(self, write: bool, body: Callable[[Connection], T]) -> T:
        conn = self._connected()
        if not write:
            try:
                return in_transaction(write, body, conn)
            except UNAVAILABLE:
                if conn.raw.broken or conn.raw.closed:
                    self._drop()
                raise
        return self._write_job(conn, body)

    def _write_job(self, conn: PgConnection, body: Callable[[Connection], T]) -> T:
        """One write, which is never reported unavailable once it has committed.

        A connection can break after the server committed but before its reply came:
        reported unavailable, the journal would replay a write already done (an INSERT
        then refused as a duplicate, and its recording dropped; events twice).  So the
        write reads its transaction id first, and when the COMMIT itself fails (the body
        has run: its result is in hand) asks the server, on a new connection, what
        became of that transaction (``txid_status``): committed, the write returns that
        result; aborted, it is unavailable and the journal replays it.  This one check
        covers every write, where making each journalled write idempotent would need a
        rule per write (and events published once per replay)."""
        txid: int | None = None
        done: list[T] = []

        def numbered(c: Connection) -> T:
            nonlocal txid
            txid = int(c.execute("SELECT txid_current()").fetchone()[0])
            done.append(body(c))
            return done[0]

        try:
            return in_transaction(True, numbered, conn)
        except UNAVAILABLE:
            if conn.raw.broken or conn.raw.closed:
                self._drop()
            if not done or txid is None:  # the body had not finished: nothing committed
                raise
            if self._committed(txid):
                return done[0]
            raise

    def _committed(self, txid: int) -> bool:
        """Whether transaction ``txid``, whose COMMIT lost its reply, committed: asked
        again on a new connection until the server says (a transaction whose client
        went away ends at once), for at most ``OUTCOME_SECONDS``.  Still unknown then
        (the server unreachable), the write is reported unavailable: the journal's
        replay may then be refused as a duplicate (logged by the caller)."""
        deadline = time.monotonic() + OUTCOME_SECONDS
        while True:
            try:
                row = self._connected().execute("SELECT txid_status(?)", (txid,)).fetchone()
                status = None if row is None else row[0]
                if status != "in progress":
                    return bool(status == "committed")
            except UNAVAILABLE:
                self._drop()
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
