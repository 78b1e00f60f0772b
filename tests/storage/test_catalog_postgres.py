"""What the PostgreSQL catalog must add to SQLite's behaviour, against a real server:
one schema on both engines, writers serialised across nodes (the audit chain stays
verifiable with two nodes appending), migrations applied once when nodes start
together, a server that goes away turning into "unavailable" (journalled, replayed) and
a password never taken from the URL.  The rest of the catalog's behaviour is the
parametrised suite (``backend``) in the other ``test_catalog*`` modules."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from proxy.config import build_config
from proxy.storage.catalog import (
    MIGRATIONS,
    SCHEMA_VERSION,
    CallDirection,
    CatalogJournal,
    CatalogUnavailableError,
    InvalidFieldError,
    Migration,
    NewCall,
    SqliteCatalog,
)
from proxy.storage.catalog.db import WRITE_LOCK
from proxy.storage.catalog.pg_connection import PgConnection, translate
from proxy.storage.catalog.postgres import PostgresCatalog, check_url
from tests.e2e.proxy_process import reserve_ports
from tests.pg_server import PgServer, running_server

T0 = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def call_id(n: int) -> str:
    return f"{n:08d}-0000-4000-8000-000000000000"


def new_call(n: int) -> NewCall:
    return NewCall(
        f"call-{n}@trunk", f"+44{n:04d}", "reception", CallDirection.INBOUND, T0, call_id=call_id(n)
    )


# ------------------------------------------------------------------- the translation


def test_placeholders_are_translated_outside_literals_and_user_is_quoted() -> None:
    sql = "SELECT '?:x' || ?, :name, 'it''s 50%', user, users, u.user FROM t -- ?\n WHERE a = ?"
    assert translate(sql) == (
        "SELECT '?:x' || %s, %(name)s, 'it''s 50%%', \"user\", users, u.\"user\" FROM t -- ?\n"
        " WHERE a = %s"
    )


@pytest.mark.parametrize(
    "url",
    ["postgresql://rec:secret@db.example:5432/catalog", "postgresql://db/x?password=secret"],
)
def test_a_password_in_the_url_is_refused_without_repeating_it(url: str) -> None:
    with pytest.raises(InvalidFieldError, match="PGPASSWORD") as refused:
        check_url(url)
    assert "secret" not in str(refused.value)
    with pytest.raises(InvalidFieldError):
        PostgresCatalog(url)


@pytest.mark.parametrize("parameter", ["sslpassword", "oauth_client_secret"])
def test_a_secret_libpq_parameter_in_the_url_is_refused_naming_it(
    parameter: str, tmp_path: Path
) -> None:
    url = f"postgresql://rec@db.example/catalog?sslmode=require&{parameter}=hunter2"
    with pytest.raises(InvalidFieldError, match=parameter) as refused:
        check_url(url)
    assert "hunter2" not in str(refused.value)
    with pytest.raises(ValueError, match=r"catalog\.url") as in_config:
        build_config({"catalog": {"url": url}}, base=tmp_path)
    assert "hunter2" not in str(in_config.value)


async def test_errors_name_the_catalog_without_its_query_string() -> None:
    """Unavailable errors are logged by the journal: the URL's parameters stay out."""
    block = reserve_ports()  # nobody listens on it: the server is "down"
    try:
        url = f"postgresql://rec@127.0.0.1:{block.base}/catalog"
        catalog = PostgresCatalog(f"{url}?application_name=secretive&connect_timeout=2")
        assert catalog.name == f"{url}?..."
        with pytest.raises(CatalogUnavailableError) as down:
            await catalog.open()
    finally:
        block.release()
    assert str(down.value).startswith(f"catalog {url}?...: ")
    assert "secretive" not in str(down.value)


def test_only_a_postgresql_url_is_taken() -> None:
    assert check_url("postgresql://rec@db.example:5432/catalog")
    with pytest.raises(InvalidFieldError, match="postgresql://"):
        check_url("mysql://rec@db/catalog")


# ------------------------------------------------------------------------- the schema


def _sqlite_schema(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )]  # fmt: skip
        columns, foreign, unique, checks = {}, set(), set(), {}
        for table in tables:
            info = conn.execute(f"PRAGMA table_info({table})").fetchall()
            columns[table] = {(c[1], bool(c[3]) or c[5] > 0, c[5] > 0) for c in info}
            for fk in conn.execute(f"PRAGMA foreign_key_list({table})").fetchall():
                foreign.add((table, fk[3], fk[2], fk[4]))
            for index in conn.execute(f"PRAGMA index_list({table})").fetchall():
                if index[3] == "u":
                    cols = [r[2] for r in conn.execute(f"PRAGMA index_info({index[1]})")]
                    unique.add((table, tuple(cols)))
            (sql,) = conn.execute(
                "SELECT sql FROM sqlite_master WHERE name = ?", (table,)
            ).fetchone()
            checks[table] = len(re.findall(r"\bCHECK\s*\(", sql, re.IGNORECASE))
        indexes = {}
        for name, table in conn.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        ):
            cols = tuple(r[2] for r in conn.execute(f"PRAGMA index_info({name})"))
            indexes[name] = (table, cols)
        triggers = {
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        }
    finally:
        conn.close()
    return {
        "tables": set(tables), "columns": columns, "foreign keys": foreign, "unique": unique,
        "checks": checks, "indexes": indexes, "triggers": triggers,
    }  # fmt: skip


def _pg_schema(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )}  # fmt: skip
        columns: dict[str, set[tuple[str, bool, bool]]] = {t: set() for t in tables}
        primary = {
            (r[0], r[1])
            for r in conn.execute(
                "SELECT c.conrelid::regclass::text, a.attname FROM pg_constraint c"
                " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)"
                " WHERE c.contype = 'p'"
            )
        }
        for table, name, nullable in conn.execute(
            "SELECT table_name, column_name, is_nullable FROM information_schema.columns"
            " WHERE table_schema = 'public'"
        ):
            if name != "rowid":  # SQLite's implicit rowid, made explicit
                pk = (table, name) in primary
                columns[table].add((name, nullable == "NO", pk))

        def constraint_columns(kind: str) -> list[tuple[Any, ...]]:
            return list(conn.execute(
                "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text,"
                " ARRAY(SELECT attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i)"
                "  JOIN pg_attribute ON attrelid = c.conrelid AND attnum = k.n ORDER BY k.i),"
                " ARRAY(SELECT attname FROM unnest(c.confkey) WITH ORDINALITY k(n, i)"
                "  JOIN pg_attribute ON attrelid = c.confrelid AND attnum = k.n ORDER BY k.i)"
                " FROM pg_constraint c"
                " WHERE c.contype = %s AND c.connamespace = 'public'::regnamespace",
                (kind,),
            ))  # fmt: skip

        foreign = {
            (t, col, ref, refcol)
            for t, ref, cols, refcols in constraint_columns("f")
            for col, refcol in zip(cols, refcols, strict=True)
        }
        unique = {(t, tuple(cols)) for t, _, cols, _ in constraint_columns("u")}
        checks = dict.fromkeys(tables, 0)
        for (table,) in conn.execute(
            "SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'c'"
            " AND connamespace = 'public'::regnamespace"
        ):
            checks[table] += 1
        indexes = {}
        for name, table, cols in conn.execute(
            "SELECT i.relname, t.relname, ARRAY(SELECT a.attname FROM unnest(x.indkey)"
            "  WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = t.oid"
            "  AND a.attnum = k.n ORDER BY k.o)"
            " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
            " JOIN pg_class t ON t.oid = x.indrelid"
            " WHERE t.relnamespace = 'public'::regnamespace AND NOT x.indisprimary"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"
        ):
            indexes[name] = (table, tuple(cols))
        triggers = {r[0] for r in conn.execute(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
        )}  # fmt: skip
    return {
        "tables": tables, "columns": columns, "foreign keys": foreign, "unique": unique,
        "checks": checks, "indexes": indexes, "triggers": triggers,
    }  # fmt: skip


async def test_both_engines_have_the_same_schema(tmp_path: Path, pg_server: PgServer) -> None:
    path, url = tmp_path / "catalog.sqlite3", pg_server.fresh_database()
    async with SqliteCatalog(path), PostgresCatalog(url) as catalog:
        assert await catalog.schema_version() == SCHEMA_VERSION
    sqlite, postgres = _sqlite_schema(path), _pg_schema(url)
    assert len(sqlite["tables"]) > 25 and len(sqlite["indexes"]) > 30  # the check can fail
    for part in sqlite:
        assert postgres[part] == sqlite[part], part


async def test_a_migration_that_rebuilds_a_table_gives_its_own_postgresql_statements(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """SQLite cannot alter a column, so such a migration rebuilds the table; PostgreSQL
    alters it in place, as the migration's ``postgresql`` statements say."""
    made = Migration(SCHEMA_VERSION + 1, "notes", ("CREATE TABLE notes (body TEXT)",))
    widened = Migration(
        SCHEMA_VERSION + 2,
        "notes get a NOT NULL author",
        (
            "CREATE TABLE notes_new (body TEXT, author TEXT NOT NULL DEFAULT '')",
            "INSERT INTO notes_new (body) SELECT body FROM notes",
            "DROP TABLE notes",
            "ALTER TABLE notes_new RENAME TO notes",
            "PRAGMA foreign_key_check",  # SQLite's own: PostgreSQL would refuse this list
        ),
        postgresql=("ALTER TABLE notes ADD COLUMN author TEXT NOT NULL DEFAULT ''",),
    )
    path, url = tmp_path / "catalog.sqlite3", pg_server.fresh_database()
    migrations = (*MIGRATIONS, made, widened)
    async with (
        SqliteCatalog(path, migrations=migrations),
        PostgresCatalog(url, migrations=migrations) as catalog,
    ):
        assert await catalog.schema_version() == SCHEMA_VERSION + 2
    sqlite, postgres = _sqlite_schema(path), _pg_schema(url)
    assert (
        postgres["columns"]["notes"]
        == sqlite["columns"]["notes"]
        == {
            ("body", False, False),
            ("author", True, False),
        }
    )


# --------------------------------------------------------------------------- two nodes


async def test_two_nodes_appending_at_once_keep_one_verifiable_audit_chain(
    pg_server: PgServer,
) -> None:
    url = pg_server.fresh_database()
    async with PostgresCatalog(url) as first, PostgresCatalog(url) as second:

        async def append(node: PostgresCatalog, name: str) -> None:
            for n in range(40):
                await node.audit.append(actor=name, action="search", detail={"n": n})

        await asyncio.gather(append(first, "node-a"), append(second, "node-b"))
        verdict = await second.audit.verify()
        assert verdict.intact and verdict.count == 80 and verdict.head.seq == 80
        actors = [entry.actor for entry in await first.audit.entries(limit=100)]
        assert actors.count("node-a") == actors.count("node-b") == 40


async def test_nodes_starting_together_apply_each_migration_once(pg_server: PgServer) -> None:
    url = pg_server.fresh_database()  # empty: every migration to apply
    nodes = [PostgresCatalog(url) for _ in range(3)]
    try:
        await asyncio.gather(*(node.open() for node in nodes))
        versions = [await node.schema_version() for node in nodes]
    finally:
        await asyncio.gather(*(node.close() for node in nodes))
    assert versions == [SCHEMA_VERSION] * 3
    with psycopg.connect(url) as conn:
        applied = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert applied == list(range(1, SCHEMA_VERSION + 1))


async def test_a_write_waiting_past_the_lock_timeout_is_unavailable(pg_server: PgServer) -> None:
    url = pg_server.fresh_database()
    async with PostgresCatalog(url, lock_timeout_ms=100) as catalog:
        with psycopg.connect(url) as other_node:  # holds the writers' lock, mid-write
            other_node.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            with pytest.raises(CatalogUnavailableError, match="lock"):
                await catalog.calls.create_call(new_call(1))
            assert await catalog.calls.get_call(call_id(1)) is None  # reads never wait
        call = await catalog.calls.create_call(new_call(2))  # released: writes go on
        assert await catalog.calls.get_call(call.id) == call


# ------------------------------------------------------------------------- an outage


@pytest.fixture
def own_server() -> Iterator[PgServer]:
    """A server of the test's own, to stop and start (the session's is shared)."""
    with running_server() as server:
        yield server


async def test_writes_during_an_outage_are_journalled_and_land_after_it(
    own_server: PgServer,
) -> None:
    url = own_server.fresh_database()
    async with PostgresCatalog(url) as catalog:
        before = await catalog.calls.create_call(new_call(0))
        own_server.stop("fast")
        journal = CatalogJournal(retry_seconds=0.1)
        with pytest.raises(CatalogUnavailableError):
            await catalog.calls.get_call(before.id)
        for n in (1, 2, 3):
            write = lambda n=n: catalog.calls.create_call(new_call(n))  # noqa: E731
            assert not await journal.write(f"call {n}", write)  # journalled, in order
        assert not await journal.wait_empty(0.5)  # the server is still down
        assert journal.pending == 3
        own_server.start()
        assert await journal.wait_empty(20.0)  # the next operation connected again
        landed = [await catalog.calls.get_call(call_id(n)) for n in range(4)]
        assert [c.caller if c else None for c in landed] == [
            "+440000",
            "+440001",
            "+440002",
            "+440003",
        ]
        assert landed[0] == before
        await journal.close()


# -------------------------------------------------------------- a COMMIT without reply


@pytest.mark.parametrize("server_committed", [True, False])
async def test_a_commit_whose_reply_is_lost_is_done_once(
    pg_server: PgServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    server_committed: bool,
) -> None:
    """The connection breaks as the COMMIT is sent: after the server committed (the
    write returns its result, nothing is replayed) or before (unavailable: the journal
    replays it, and it lands once)."""
    url = pg_server.fresh_database()
    async with PostgresCatalog(url) as catalog:
        real_commit, lost = PgConnection.commit, []

        def commit(self: PgConnection) -> None:
            if not lost:
                lost.append(self)
                if server_committed:
                    real_commit(self)
                self.raw.close()  # the reply never comes
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            real_commit(self)

        monkeypatch.setattr(PgConnection, "commit", commit)
        journal = CatalogJournal(retry_seconds=0.1)
        done = await journal.write("call 1", lambda: catalog.calls.create_call(new_call(1)))
        assert done is server_committed  # done at once, or journalled
        assert await journal.wait_empty(10.0)
        assert lost and journal.failures == (0 if server_committed else 1)
        assert "failed for good" not in caplog.text  # not replayed into a duplicate
        call = await catalog.calls.get_call(call_id(1))
        assert call is not None and call.caller == "+440001"
        await journal.close()
