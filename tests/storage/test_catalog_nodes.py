"""Several recproxy nodes on one catalog (issue 20): each call and recording names the
node that wrote it, and start-up recovery ends only the recovering node's own (and the
rows written before nodes had names), never another node's live recordings."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proxy.recording_state import RecordingState
from proxy.storage.catalog import (
    MIGRATIONS,
    CallDirection,
    CallOutcome,
    InvalidFieldError,
    NewCall,
    NewRecording,
    SqliteCatalog,
)

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


async def recording_on(catalog: SqliteCatalog, node: str | None, n: int) -> tuple[str, str]:
    """A bridged call and its running recording, written by ``node``: (call, recording)."""
    call = await catalog.calls.create_call(NewCall(
        sip_call_id=f"sip-{n}", caller="+441234567890", callee="surgery",
        direction=CallDirection.INBOUND, started_at=T0 + timedelta(seconds=n), node=node,
    ))  # fmt: skip
    recording = await catalog.recordings.create_recording(NewRecording(
        call.id, directory=f"rec-{n}", encoding="g711", sample_rate=8000, channels=2,
        started_at=T0 + timedelta(seconds=n), node=node,
    ))  # fmt: skip
    return call.id, recording.id


async def test_rows_name_the_node_that_wrote_them(tmp_path: Path) -> None:
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        call_id, rec_id = await recording_on(catalog, "node-a", 1)
        call = await catalog.calls.get_call(call_id)
        recording = await catalog.recordings.get_recording(rec_id)
        [summary] = await catalog.recordings.list_recordings()
    assert call is not None and call.node == "node-a"
    assert recording is not None and recording.node == "node-a"
    assert summary.node == "node-a" and summary.as_dict()["node"] == "node-a"


async def test_recovery_ends_only_the_nodes_own_and_unnamed_rows(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    # two nodes, each with its own connection to the one file, as two processes have
    async with SqliteCatalog(path) as node_a, SqliteCatalog(path) as node_b:
        a_call, a_rec = await recording_on(node_a, "node-a", 1)
        b_call, b_rec = await recording_on(node_b, "node-b", 2)
        old_call, old_rec = await recording_on(node_a, None, 0)  # before nodes had names

        # node-a restarts after a crash: node-b's call goes on
        assert await node_a.recordings.recover_interrupted(node="node-a") == [old_rec, a_rec]
        assert await node_a.calls.recover_calls(node="node-a") == [old_call, a_call]

        b_recording = await node_b.recordings.get_recording(b_rec)
        b_call_row = await node_b.calls.get_call(b_call)
        assert b_recording is not None and b_recording.state is RecordingState.RECORDING
        assert b_call_row is not None and b_call_row.ended_at is None
        for rec_id in (a_rec, old_rec):
            row = await node_b.recordings.get_recording(rec_id)
            assert row is not None and row.state is RecordingState.INTERRUPTED
        a_call_row = await node_b.calls.get_call(a_call)
        assert a_call_row is not None and a_call_row.outcome is CallOutcome.INTERRUPTED

        # the operator's `recproxy recover --node node-b` once node-b is gone for good
        assert await node_a.recordings.recover_interrupted(node="node-b") == [b_rec]
        assert await node_a.calls.recover_calls(node="node-b") == [b_call]
        assert await node_a.recordings.recover_interrupted(node="node-a") == []


async def test_a_blank_node_name_is_refused(tmp_path: Path) -> None:
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        with pytest.raises(InvalidFieldError, match="node"):
            await recording_on(catalog, " ", 1)
        with pytest.raises(InvalidFieldError, match="node"):
            await catalog.recordings.recover_interrupted(node="")


async def test_a_catalog_without_the_node_migration_still_takes_unnamed_rows(
    tmp_path: Path,
) -> None:
    before = tuple(m for m in MIGRATIONS if m.version < 17)
    async with SqliteCatalog(tmp_path / "catalog.sqlite3", migrations=before) as catalog:
        _, rec_id = await recording_on(catalog, None, 1)
        recording = await catalog.recordings.get_recording(rec_id)
    assert recording is not None and recording.node is None


async def test_the_node_migration_indexes_open_rows_by_node(tmp_path: Path) -> None:
    """Call recovery looks up one node's open calls, not every call ever taken."""
    path = tmp_path / "catalog.sqlite3"
    async with SqliteCatalog(path):
        pass
    with sqlite3.connect(path) as conn:
        plan = " ".join(
            str(row[3])
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT id FROM calls c WHERE c.ended_at IS NULL"
                " AND (c.node = 'a' OR c.node IS NULL)"
            )
        )
    assert "calls_open_by_node" in plan
