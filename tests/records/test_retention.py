"""The retention sweep, in process, on a real catalog and real segment files, with an
injected clock: exactly the expired recordings no hold keeps are crypto-shredded (key
gone, files gone, row ``deleted`` with when and why, an audit entry each); releasing a
hold re-arms expiry; a deletion cut short is finished by the next sweep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from proxy.config import AccessSettings
from proxy.events import EventBus, RecordingDeleted, RetentionSwept
from proxy.recording_state import RecordingState
from proxy.records.export import ExportError, ExportRequest, export_recording
from proxy.records.retention import RetentionSweeper, sweep_every
from proxy.storage.catalog import Attribution, SqliteCatalog
from proxy.storage.store import LocalDiskStore
from tests.records.retention_world import (
    POLICY,
    Planned,
    catalogue,
    has_files,
    has_key,
    place_hold,
    release_hold,
)
from tests.storage.faulty_store import FaultyStore

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
S = RecordingState


@dataclass
class World:
    catalog: SqliteCatalog
    root: Path
    db: Path
    ids: dict[str, str]

    def sweeper(self, **changes: object) -> RetentionSweeper:
        sweeper = RetentionSweeper(
            self.catalog.retention,
            self.catalog.audit,
            LocalDiskStore(),
            self.root,
            POLICY,
            clock=lambda: NOW,
        )
        return replace(sweeper, **changes)  # type: ignore[arg-type]

    async def state(self, name: str) -> RecordingState:
        found = await self.catalog.recordings.get_recording(self.ids[name])
        assert found is not None
        return found.state


PLAN = (
    Planned("old", NOW - timedelta(days=40)),
    Planned("old_degraded", NOW - timedelta(days=31), S.DEGRADED),
    Planned("old_interrupted_unstamped", NOW - timedelta(days=45), S.INTERRUPTED, False),
    Planned("old_held", NOW - timedelta(days=50), held=True),
    Planned("young", NOW - timedelta(days=10)),
    Planned("young_unstamped", NOW - timedelta(days=29), stored_expiry=False),
    Planned("discarded_long_ago", NOW - timedelta(days=90), S.DISCARDED),
)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    db = tmp_path / "catalog.sqlite3"
    root = tmp_path / "recordings"
    catalog = await SqliteCatalog(db).open()
    ids: dict[str, str] = {}
    for plan in PLAN:
        if plan.state is S.DISCARDED:
            ids[plan.name] = await catalogue(catalog, root, replace(plan, state=S.FAILED))
            await catalog.recordings.set_recording_state(
                ids[plan.name],
                S.DISCARDED,
                Attribution(actor="call taker", reason="asked", at=plan.ended),
            )
            LocalDiskStore().delete(root / ids[plan.name])
        else:
            ids[plan.name] = await catalogue(catalog, root, plan)
        if plan.held:
            place_hold(db, ids[plan.name], plan.ended)
    yield World(catalog, root, db, ids)
    await catalog.close()


async def test_a_recording_expires_a_period_after_its_audio_ended(world: World) -> None:
    found = await world.catalog.recordings.get_recording(world.ids["old"])
    assert found is not None and found.ended_at is not None
    assert found.expires_at == found.ended_at + timedelta(days=30)
    unstamped = await world.catalog.recordings.get_recording(world.ids["young_unstamped"])
    assert unstamped is not None and unstamped.expires_at is None


async def test_exactly_the_expired_unheld_recordings_are_deleted(world: World) -> None:
    bus = EventBus()
    seen: list[object] = []
    bus.subscribe(RecordingDeleted, seen.append)
    bus.subscribe(RetentionSwept, seen.append)
    report = await world.sweeper(publish=bus.publish).sweep()

    gone = {"old", "old_degraded", "old_interrupted_unstamped"}
    assert {world.ids[name] for name in gone} == set(report.deleted)
    assert report.failed == ()
    for name in gone:
        rid = world.ids[name]
        assert not has_key(world.root, rid) and not has_files(world.root, rid), name
        row = await world.catalog.recordings.get_recording(rid)
        assert row is not None and row.state is S.DELETED
        assert row.deleted_at == NOW
        assert row.deleted_reason is not None
        assert row.deleted_reason.startswith("retention: expired 20")
        assert await world.catalog.recordings.segments(rid) == []
    old = await world.catalog.recordings.get_recording(world.ids["old"])
    assert old is not None and old.deleted_reason == "retention: expired 2030-05-22"
    for name in ("old_held", "young", "young_unstamped"):
        rid = world.ids[name]
        assert has_key(world.root, rid) and has_files(world.root, rid), name
        assert await world.state(name) is S.COMPLETE
        assert len(await world.catalog.recordings.segments(rid)) == 1
    assert await world.state("discarded_long_ago") is S.DISCARDED

    assert report.standing.as_dict() == {
        "retained": 2,
        "held": 1,
        "expired": 0,
        "deleting": 0,
        "deleted": 3,
    }
    assert report.summary().startswith("deleted 3, kept 1 held, 2 not yet expired")
    entries = await world.catalog.audit.entries(action="recording.delete")
    assert sorted(e.object for e in entries) == sorted(f"recording:{world.ids[n]}" for n in gone)
    assert {e.actor for e in entries} == {"retention"}
    sweeps = await world.catalog.audit.entries(action="retention.sweep")
    assert [s.detail["deleted"] for s in sweeps] == [3]
    assert (await world.catalog.audit.verify()).intact
    deleted_events = [e for e in seen if isinstance(e, RecordingDeleted)]
    assert len(deleted_events) == 3
    assert isinstance(seen[-1], RetentionSwept) and seen[-1].standing["held"] == 1


async def test_releasing_a_hold_lets_the_next_sweep_delete_it(world: World) -> None:
    await world.sweeper().sweep()
    held = world.ids["old_held"]
    (hold_id,) = _active_holds(world.db, held)
    again = await world.sweeper().sweep()
    assert again.deleted == () and has_key(world.root, held)
    release_hold(world.db, hold_id, NOW)
    released = await world.sweeper().sweep()
    assert released.deleted == (held,)
    assert not has_key(world.root, held) and not has_files(world.root, held)
    assert await world.state("old_held") is S.DELETED


async def test_travelling_forward_deletes_the_young_ones_in_their_turn(world: World) -> None:
    await world.sweeper().sweep()
    later = await world.sweeper().sweep(NOW + timedelta(days=2))
    assert later.deleted == (world.ids["young_unstamped"],)
    last = await world.sweeper().sweep(NOW + timedelta(days=21))
    assert last.deleted == (world.ids["young"],)
    assert last.standing.retained == 0 and last.standing.held == 1


async def test_a_dry_run_lists_what_would_go_and_changes_nothing(world: World) -> None:
    audited = await world.catalog.audit.entries()  # the world's own set-up (a stop...)
    report = await world.sweeper().sweep(dry_run=True)
    assert len(report.deleted) == 3 and report.summary().startswith("would delete 3")
    for rid in world.ids.values():
        if (world.root / rid).exists():
            assert has_key(world.root, rid)
    assert await world.state("old") is S.COMPLETE
    assert await world.catalog.audit.entries() == audited


async def test_the_sweep_reports_progress_to_the_end(world: World) -> None:
    seen: list[tuple[int, int]] = []
    await world.sweeper().sweep(progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


async def test_a_store_failure_leaves_deleting_and_the_next_sweep_finishes(world: World) -> None:
    faulty = FaultyStore()

    def refuse(recording: Path) -> None:
        raise OSError(5, "Input/output error", str(recording))

    faulty.delete = refuse  # type: ignore[method-assign]
    report = await world.sweeper(store=faulty).sweep()
    assert report.deleted == () and len(report.failed) == 3
    assert "3 failed" in report.summary()
    for name in ("old", "old_degraded"):
        assert await world.state(name) is S.DELETING
        assert not has_key(world.root, world.ids[name])  # the key went first
        assert has_files(world.root, world.ids[name])
    assert await world.catalog.audit.entries(action="recording.delete") == []
    finished = await world.sweeper().sweep(NOW - timedelta(days=365))  # due even so
    assert len(finished.deleted) == 3
    assert await world.state("old") is S.DELETED
    assert not has_files(world.root, world.ids["old"])


async def test_a_hold_placed_after_the_listing_wins(world: World) -> None:
    rid = world.ids["old"]
    place_hold(world.db, rid, NOW)
    assert not await world.catalog.retention.begin_deletion(rid, world.sweeper().due_at(NOW))
    assert await world.state("old") is S.COMPLETE


def _active_holds(db: Path, recording_id: str) -> list[str]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        found = conn.execute(
            "SELECT id FROM holds WHERE recording_id = ? AND released_at IS NULL",
            (recording_id,),
        ).fetchall()
    conn.close()
    return [row[0] for row in found]


async def test_export_of_a_deleted_or_deleting_recording_is_refused(
    world: World, tmp_path: Path
) -> None:
    await world.sweeper().sweep()
    held = world.ids["old_held"]
    (hold_id,) = _active_holds(world.db, held)
    release_hold(world.db, hold_id, NOW)
    assert await world.catalog.retention.begin_deletion(held, world.sweeper().due_at(NOW))

    def no_key() -> X25519PrivateKey:  # refused before the key is ever needed
        raise AssertionError("the key was loaded")

    def export(name: str) -> ExportRequest:
        return ExportRequest(
            world.ids[name], "wav", "stereo", tmp_path / f"{name}.wav", "complaint", "dr_smith"
        )

    with pytest.raises(
        ExportError, match=r"was deleted 2030-06-01 \(retention: expired 2030-05-22\)"
    ):
        await export_recording(
            world.catalog,
            export("old"),
            recordings_dir=world.root,
            private_key=no_key,
            access=AccessSettings(),
        )
    with pytest.raises(ExportError, match="is being deleted"):
        await export_recording(
            world.catalog,
            export("old_held"),
            recordings_dir=world.root,
            private_key=no_key,
            access=AccessSettings(),
        )
    assert not list(tmp_path.glob("*.wav"))
    assert await world.catalog.access.access_log() == []


async def test_the_serve_loop_sweeps_again_each_interval(world: World) -> None:
    task = asyncio.create_task(sweep_every(world.sweeper(), 0.05))
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if len(await world.catalog.audit.entries(action="retention.sweep")) >= 3:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    sweeps = await world.catalog.audit.entries(action="retention.sweep")
    assert len(sweeps) >= 3
    assert [s.detail["deleted"] for s in sweeps[:3]] == [3, 0, 0]
