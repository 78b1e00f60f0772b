"""Checking and anchoring the audit chain (real SQLite, a real anchor file): an intact
head that moved is anchored once; rows cut off below an anchor, an anchored entry
rewritten, or an entry edited since the last anchor are found; ``serve``'s periodic check
publishes what it found for metrics."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proxy.events import AuditChecked
from proxy.records.audit import AuditAnchoring, check_and_anchor
from proxy.storage.catalog import SqliteCatalog
from proxy.storage.catalog.anchor import anchor_path, read_anchors

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
async def catalog(tmp_path: Path) -> AsyncIterator[SqliteCatalog]:
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as opened:
        yield opened


async def add(catalog: SqliteCatalog, n: int) -> None:
    for i in range(n):
        await catalog.audit.append(actor="alice", action="search", detail={"i": i})


def tamper(catalog: SqliteCatalog, statement: str) -> None:
    with sqlite3.connect(catalog.path) as conn:
        conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
        conn.execute(statement)


async def test_an_intact_head_that_moved_is_anchored_once(catalog: SqliteCatalog) -> None:
    path = anchor_path(catalog.path)
    empty = await check_and_anchor(catalog.audit, path, T0)
    assert empty.intact and empty.count == 0 and not empty.anchored
    assert not path.exists()  # nothing to anchor yet
    await add(catalog, 3)
    first = await check_and_anchor(catalog.audit, path, T0)
    assert first.intact and first.anchored and first.count == 3
    again = await check_and_anchor(catalog.audit, path, T0 + timedelta(minutes=5))
    assert again.intact and not again.anchored
    (anchor,) = read_anchors(path)
    assert anchor.at == T0 and anchor.head == first.head
    assert anchor.head.sha256 == (await catalog.audit.entries())[-1].sha256


async def test_rows_cut_off_below_an_anchor_are_caught(catalog: SqliteCatalog) -> None:
    path = anchor_path(catalog.path)
    await add(catalog, 5)
    await check_and_anchor(catalog.audit, path, T0)
    tamper(catalog, "DELETE FROM audit_log WHERE seq >= 4")
    assert (await catalog.audit.verify()).intact  # a shorter chain verifies on its own
    check = await check_and_anchor(catalog.audit, path, T0)
    assert (check.broken_at, check.count) == (5, 3)
    assert check.why is not None and "the chain ends at 3 but was anchored at 5" in check.why
    assert len(read_anchors(path)) == 1  # a broken chain is never anchored
    periodic = await check_and_anchor(catalog.audit, path, T0, since_last_anchor=True)
    assert periodic.broken_at == 5 and periodic.why == "it is missing"


async def test_a_rebuilt_chain_does_not_match_its_anchor(catalog: SqliteCatalog) -> None:
    path = anchor_path(catalog.path)
    await add(catalog, 2)
    await check_and_anchor(catalog.audit, path, T0)
    tamper(catalog, "DELETE FROM audit_log")
    await add(catalog, 3)  # a new, valid chain, longer than the anchored one
    check = await check_and_anchor(catalog.audit, path, T0)
    assert check.broken_at == 2 and check.why is not None and "not the one anchored" in check.why
    periodic = await check_and_anchor(catalog.audit, path, T0, since_last_anchor=True)
    assert periodic.broken_at == 2 and periodic.why == "it no longer matches the anchor"


async def test_the_periodic_check_walks_the_entries_since_the_last_anchor(
    catalog: SqliteCatalog,
) -> None:
    path = anchor_path(catalog.path)
    await add(catalog, 3)
    await check_and_anchor(catalog.audit, path, T0)
    await add(catalog, 3)
    tamper(catalog, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 5")
    check = await check_and_anchor(catalog.audit, path, T0, since_last_anchor=True)
    assert check.broken_at == 5 and check.why is not None and "edited" in check.why


async def test_anchoring_in_serve_publishes_each_check_and_stops(catalog: SqliteCatalog) -> None:
    path = anchor_path(catalog.path)
    await add(catalog, 2)
    published: list[object] = []
    anchoring = AuditAnchoring(
        catalog.audit, path, 0.05, clock=lambda: T0, publish=published.append
    )
    anchoring.start()
    try:
        async with asyncio.timeout(5):
            while not published:
                await asyncio.sleep(0.01)
        assert published[0] == AuditChecked(2, intact=True)
        assert [a.head.seq for a in read_anchors(path)] == [2]
        await add(catalog, 1)
        async with asyncio.timeout(5):
            while len(read_anchors(path)) < 2:
                await asyncio.sleep(0.01)
        tamper(catalog, "UPDATE audit_log SET reason = 'x' WHERE seq = 3")
        async with asyncio.timeout(5):
            while not any(getattr(e, "broken_at", None) == 3 for e in published):
                await asyncio.sleep(0.01)
    finally:
        await anchoring.stop()
    assert published[-1] == AuditChecked(2, intact=False, broken_at=3)  # 2 good before it
    count = len(published)
    await asyncio.sleep(0.15)
    assert len(published) == count  # stopped: no more checks


async def test_an_unusable_anchor_file_is_a_published_failure(
    catalog: SqliteCatalog, tmp_path: Path
) -> None:
    await add(catalog, 1)
    published: list[object] = []
    anchoring = AuditAnchoring(
        catalog.audit, tmp_path / "no" / "such" / "anchor", 60, clock=lambda: T0,
        publish=published.append,
    )  # fmt: skip
    assert await anchoring.check_once() is None
    assert published == [AuditChecked(None, intact=False)]
