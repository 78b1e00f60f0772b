"""The catalog's database thread (``proxy.storage.catalog.db``), on real SQLite files:
every operation runs whole in one thread of its own, one transaction each, and what the
database refuses comes back as ``CatalogUnavailableError`` with nothing changed."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.storage.catalog import CatalogClosedError, CatalogUnavailableError
from proxy.storage.catalog.db import Connection, SqliteDatabase


def make_table(conn: Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS notes (n INTEGER PRIMARY KEY, body TEXT)")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    opened = SqliteDatabase(tmp_path / "catalog.db", synchronous="NORMAL", busy_timeout_ms=20)
    await opened.open(make_table)
    yield opened
    await opened.close()


def count_notes(conn: Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM notes").fetchone()[0])


async def test_every_operation_runs_in_one_thread_that_is_not_the_loops(db: SqliteDatabase) -> None:
    def where(conn: Connection) -> int:
        conn.execute("INSERT INTO notes (body) VALUES ('x')")
        return threading.get_ident()

    threads = await asyncio.gather(
        *(db.write(where) for _ in range(10)),
        *(db.read(lambda conn: threading.get_ident()) for _ in range(10)),
    )
    assert len(set(threads)) == 1
    assert threads[0] != threading.get_ident()
    assert await db.read(count_notes) == 10


async def test_a_write_is_one_transaction_rolled_back_whole_when_it_raises(
    db: SqliteDatabase,
) -> None:
    def half(conn: Connection) -> None:
        conn.execute("INSERT INTO notes (body) VALUES ('first')")
        raise LookupError("the second step found nothing")

    with pytest.raises(LookupError):
        await db.write(half)
    assert await db.read(count_notes) == 0
    assert await db.read(lambda conn: conn.in_transaction) is True  # a read is one too
    await db.write(lambda conn: conn.execute("INSERT INTO notes (body) VALUES ('next')"))
    assert await db.read(count_notes) == 1


async def test_a_full_disk_is_unavailable_and_changes_nothing(tmp_path: Path) -> None:
    def small(conn: Connection) -> None:
        make_table(conn)
        conn.execute("PRAGMA max_page_count = 8")  # SQLite's own "disk full" (SQLITE_FULL)

    db = SqliteDatabase(tmp_path / "full.db", synchronous="NORMAL", busy_timeout_ms=20)
    await db.open(small)
    try:

        def grow(conn: Connection) -> None:
            conn.execute("INSERT INTO notes (body) VALUES ('small')")
            conn.execute("INSERT INTO notes (body) VALUES (?)", ("x" * 100_000,))

        with pytest.raises(CatalogUnavailableError, match="full"):
            await db.write(grow)
        assert await db.read(count_notes) == 0
    finally:
        await db.close()


async def test_a_locked_database_is_unavailable_until_the_lock_goes(
    db: SqliteDatabase, tmp_path: Path
) -> None:
    blocker = sqlite3.connect(tmp_path / "catalog.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(CatalogUnavailableError, match="locked"):
            await db.write(lambda conn: conn.execute("INSERT INTO notes (body) VALUES ('x')"))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await db.write(lambda conn: conn.execute("INSERT INTO notes (body) VALUES ('y')"))
    assert await db.read(count_notes) == 1


async def test_close_waits_for_the_operations_already_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    db = SqliteDatabase(path, synchronous="FULL", busy_timeout_ms=20)
    await db.open(make_table)
    writes = [
        asyncio.ensure_future(
            db.write(lambda conn, n=n: conn.execute("INSERT INTO notes VALUES (?, 'x')", (n,)))
        )
        for n in range(50)
    ]
    await asyncio.sleep(0)  # each write has now been handed to the database thread
    await db.close()
    await asyncio.gather(*writes)
    with pytest.raises(CatalogClosedError):
        await db.read(count_notes)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM notes").fetchone() == (50,)
    conn.close()
