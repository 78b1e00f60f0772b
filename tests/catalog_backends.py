"""The catalog's two engines for the tests: one fixture, ``backend``, parametrised over
SQLite and PostgreSQL, so one test body runs against both.

``backend.catalog(name)`` makes a catalog (not opened); the same ``name`` twice is the
same database (a file, or a PostgreSQL database), for tests that reopen it.
``backend.raw(name)`` is a plain connection to that database, to look or poke behind
the catalog's back; on PostgreSQL it takes the same SQL as SQLite (placeholders, the
``user`` column) and raises ``sqlite3.IntegrityError`` for a refused statement.

The PostgreSQL server (:mod:`tests.pg_server`) starts once per session (or xdist
worker), only if a test asks for it; each catalog is a fresh database, copied from a
template migrated once.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from proxy.storage.catalog import MIGRATIONS, Migration, SqlCatalog, SqliteCatalog
from proxy.storage.catalog.migrations import migrate
from proxy.storage.catalog.pg_connection import PgConnection, connect
from proxy.storage.catalog.pg_schema import translate_statement
from proxy.storage.catalog.postgres import PostgresCatalog
from proxy.storage.catalog.values import to_ms, utc_now
from tests.pg_server import PgServer, running_server

BACKENDS = ("sqlite", "postgresql")


class Backend:
    """See the module docstring."""

    def __init__(self, kind: str, tmp_path: Path, server: PgServer | None) -> None:
        self.kind = kind
        self._tmp_path = tmp_path
        self._server = server
        self._urls: dict[str, str] = {}

    @property
    def is_sqlite(self) -> bool:
        return self.kind == "sqlite"

    def path(self, name: str = "catalog.db") -> Path:
        return self._tmp_path / name

    def url(self, name: str = "catalog.db", *, migrated: bool = True) -> str:
        assert self._server is not None
        if name not in self._urls:
            if migrated and _CLEAN:
                self._urls[name] = _CLEAN.pop()
            else:
                template = _template(self._server) if migrated else None
                self._urls[name] = self._server.fresh_database(template)
                if not migrated:
                    _DIRTY.add(self._urls[name])
        return self._urls[name]

    def catalog(
        self,
        name: str = "catalog.db",
        *,
        clock: Callable[[], datetime] = utc_now,
        migrations: tuple[Migration, ...] = MIGRATIONS,
        **options: Any,
    ) -> SqlCatalog:
        if self.is_sqlite:
            return SqliteCatalog(self.path(name), clock=clock, migrations=migrations, **options)
        url = self.url(name, migrated=migrations == MIGRATIONS)
        return PostgresCatalog(url, clock=clock, migrations=migrations)

    def release(self) -> None:
        """After the test: a database only the catalog touched is emptied for the next
        test (a few ms, where a new one costs ~100 ms); one a raw connection may have
        altered (triggers dropped or added), or migrated otherwise, is dropped."""
        if self._server is None:
            return
        for url in self._urls.values():
            if url not in _DIRTY and _emptied(url):
                _CLEAN.append(url)
                continue
            _DIRTY.discard(url)
            with self._server.admin() as conn:
                conn.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')

    def names(self, conn: Any) -> set[str]:
        """The tables and indexes of the database ``conn`` (from :meth:`raw`) is open on."""
        sql = (
            "SELECT name FROM sqlite_master"
            if self.is_sqlite
            else "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " UNION SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
        )
        return {row[0] for row in conn.execute(sql)}

    def raw(self, name: str = "catalog.db") -> AbstractContextManager[Any]:
        return _raw(self.path(name)) if self.is_sqlite else _raw(self.url(name))


def raw(catalog: SqlCatalog) -> AbstractContextManager[Any]:
    """A plain connection to ``catalog``'s database (see the module docstring)."""
    return _raw(catalog.path if isinstance(catalog, SqliteCatalog) else catalog.name)


@contextmanager
def _raw(where: Path | str) -> Iterator[Any]:
    if isinstance(where, Path):
        conn = sqlite3.connect(where)
        try:
            yield conn
            conn.commit()
        finally:
            conn.close()
        return
    _DIRTY.add(where)
    pg = RawPg(psycopg.connect(where, autocommit=True))  # type: ignore[arg-type]
    try:
        yield pg
    finally:
        pg.close()


class RawPg(PgConnection):
    """A PostgreSQL connection for tests that also takes SQLite's trigger statements:
    ``CREATE TRIGGER ... RAISE(ABORT, ...)`` (translated as a migration's would be) and
    ``DROP TRIGGER name`` (its table looked up)."""

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        dropped = re.fullmatch(r"\s*DROP TRIGGER (\w+)\s*", sql)
        if dropped is not None:
            name = dropped.group(1)
            cursor = super().execute(
                "SELECT tgrelid::regclass FROM pg_trigger WHERE tgname = ?", (name,)
            )
            [table] = cursor.fetchone()
            return super().execute(f"DROP TRIGGER {name} ON {table}")
        if re.match(r"\s*CREATE TRIGGER", sql):
            *statements, last = translate_statement(sql)
            for statement in statements:
                super().execute(statement)
            return super().execute(last)
        return super().execute(sql, parameters)


_TEMPLATES: dict[int, str] = {}
_CLEAN: list[str] = []  # migrated databases emptied after their test, to use again
_DIRTY: set[str] = set()  # databases a raw connection touched: dropped after the test


def _emptied(url: str) -> bool:
    """Every row deleted (triggers and foreign keys off for it) and every identity
    restarted: the database is as the template made it.  False if that failed."""
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'schema_migrations'"
            )]  # fmt: skip
            identities = conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = 'public' AND is_identity = 'YES'"
            ).fetchall()
            statements = [
                "BEGIN",
                "SET LOCAL session_replication_role = replica",
                *(f"DELETE FROM {table}" for table in tables),
                *(f'ALTER TABLE {t} ALTER COLUMN "{c}" RESTART' for t, c in identities),
                "COMMIT",
            ]
            conn.execute("; ".join(statements).encode())
    except psycopg.Error:
        return False
    return True


def _template(server: PgServer) -> str:
    """A database migrated to the current schema once, for ``CREATE DATABASE ... TEMPLATE``."""
    if id(server) not in _TEMPLATES:
        name = "recproxy_template"
        conn = connect(server.create_database(name), lock_timeout_ms=5000)
        try:
            migrate(conn, MIGRATIONS, to_ms("now", utc_now()), name)
        finally:
            conn.close()
        _TEMPLATES[id(server)] = name
    return _TEMPLATES[id(server)]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    with running_server() as server:
        yield server


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    server = request.getfixturevalue("pg_server") if request.param == "postgresql" else None
    made = Backend(request.param, tmp_path, server)
    yield made
    made.release()
