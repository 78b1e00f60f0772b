"""Two nodes' retention sweeps on one catalog and one recordings folder (issue 20): each
expired recording is deleted once — one ``recording.delete`` audit entry, one
``RecordingDeleted`` — and neither node reports the other's work as its failure."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proxy.events import RecordingDeleted
from proxy.recording_state import RecordingState
from proxy.records.retention import RetentionSweeper, SweepReport
from proxy.storage.catalog import SqliteCatalog
from proxy.storage.store import LocalDiskStore
from tests.records.retention_world import POLICY, Planned, catalogue, has_files, has_key

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
EXPIRED = 6


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[tuple[SqliteCatalog, SqliteCatalog]]:
    """Two connections to one catalog file, as two nodes have, with expired recordings."""
    db = tmp_path / "catalog.sqlite3"
    async with SqliteCatalog(db) as a, SqliteCatalog(db) as b:
        for n in range(EXPIRED):
            await catalogue(a, tmp_path / "recordings", Planned(f"r{n}", NOW - timedelta(days=40)))
        yield a, b


def sweeper(
    catalog: SqliteCatalog, root: Path, deleted: list[object], **hook: object
) -> RetentionSweeper:
    return RetentionSweeper(
        catalog.retention, catalog.audit, LocalDiskStore(), root, POLICY,
        publish=deleted.append, clock=lambda: NOW, **hook,  # type: ignore[arg-type]
    )  # fmt: skip


def delete_entries(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'recording.delete'")
        return int(row.fetchone()[0])


async def test_two_nodes_sweeping_at_once_delete_each_recording_once(
    nodes: tuple[SqliteCatalog, SqliteCatalog], tmp_path: Path
) -> None:
    root = tmp_path / "recordings"
    published: list[object] = []
    reports: list[SweepReport] = await asyncio.gather(
        *(sweeper(catalog, root, published).sweep() for catalog in nodes)
    )
    deleted = [rid for report in reports for rid in report.deleted]
    assert len(deleted) == len(set(deleted)) == EXPIRED  # each once, by one node
    assert all(report.failed == () for report in reports)
    assert len([e for e in published if isinstance(e, RecordingDeleted)]) == EXPIRED
    assert delete_entries(tmp_path / "catalog.sqlite3") == EXPIRED
    for rid in deleted:
        assert not has_key(root, rid) and not has_files(root, rid)
        row = await nodes[0].recordings.get_recording(rid)
        assert row is not None and row.state is RecordingState.DELETED


async def test_a_deletion_the_other_node_finished_first_is_not_counted_twice(
    nodes: tuple[SqliteCatalog, SqliteCatalog], tmp_path: Path
) -> None:
    root = tmp_path / "recordings"
    db = tmp_path / "catalog.sqlite3"

    def other_node_finishes(step: int, recording_id: str) -> None:
        if step == 3:  # files gone: the other node marks it deleted before we do
            with sqlite3.connect(db) as conn:
                conn.execute(
                    "UPDATE recordings SET state = 'deleted', deleted_at = 0,"
                    " deleted_reason = 'other node' WHERE id = ?",
                    (recording_id,),
                )

    published: list[object] = []
    report = await sweeper(nodes[0], root, published, after_step=other_node_finishes).sweep()
    assert report.deleted == () and report.failed == ()
    assert not any(isinstance(e, RecordingDeleted) for e in published)
