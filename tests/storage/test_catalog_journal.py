"""The catalog journal against a real SQLite catalog that refuses writes for a while."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from proxy.storage.catalog import (
    CallDirection,
    CatalogJournal,
    CatalogUnavailableError,
    JournalFullError,
    NewCall,
    NotFoundError,
    SqliteCatalog,
)


async def test_writes_wait_in_order_while_the_catalog_is_locked_and_overflow_is_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "catalog.sqlite3"
    async with SqliteCatalog(path, busy_timeout_ms=20) as catalog:
        journal = CatalogJournal(limit=3, retry_seconds=0.02)

        def create(n: int) -> Callable[[], Awaitable[object]]:
            return lambda: catalog.calls.create_call(NewCall(
                sip_call_id=f"call-{n}", caller="+441234567890", callee="surgery",
                direction=CallDirection.INBOUND, started_at=datetime.now(UTC),
                call_id=f"0000000{n}-0000-4000-8000-000000000000",
            ))  # fmt: skip

        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds the catalog
        try:
            with pytest.raises(CatalogUnavailableError, match="locked"):
                await create(9)()
            results = [await journal.write(f"call {n}", create(n)) for n in range(3)]
            assert results == [False] * 3  # journalled
            for n in (3, 4):  # the caller is told it was dropped, not queued
                with pytest.raises(JournalFullError, match=f"dropped call {n}"):
                    await journal.write(f"call {n}", create(n))
            assert (journal.pending, journal.failures, journal.dropped) == (3, 5, 2)
            assert "catalog journal full (3): dropped call 3" in caplog.text
            assert not await journal.wait_empty(0.1)  # still locked: nothing lands
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert await journal.wait_empty(5.0)
        for n in range(3):
            assert (
                await catalog.calls.get_call(f"0000000{n}-0000-4000-8000-000000000000") is not None
            )
        assert await catalog.calls.get_call("00000003-0000-4000-8000-000000000000") is None
        assert await journal.write("call 7", create(7))  # empty again: written at once
        await journal.close()


async def test_a_write_that_can_never_succeed_is_logged_and_the_rest_still_land(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "catalog.sqlite3"
    async with SqliteCatalog(path, busy_timeout_ms=20) as catalog:
        journal = CatalogJournal(retry_seconds=0.02)
        call_id = "11111111-1111-4111-8111-111111111111"
        caplog.set_level(logging.INFO)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            assert not await journal.write(
                "an update of a call that never was",
                lambda: catalog.calls.update_call(
                    "22222222-2222-4222-8222-222222222222", callee="x"
                ),
            )
            assert not await journal.write(
                "a new call",
                lambda: catalog.calls.create_call(NewCall(
                    sip_call_id="x", caller="+441234567890", callee="surgery",
                    direction=CallDirection.INBOUND, started_at=datetime.now(UTC),
                    call_id=call_id,
                )),
            )  # fmt: skip
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert await journal.wait_empty(5.0)
        assert await catalog.calls.get_call(call_id) is not None
        assert "an update of a call that never was failed for good" in caplog.text
        assert NotFoundError.__name__ in caplog.text
        await journal.close()
