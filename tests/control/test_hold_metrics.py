"""Hold gauges come from a catalog snapshot refreshed by a task, never from a query per
scrape (issue 14): on a real catalog, with a fake clock for "due"."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest

from proxy.control.hold_metrics import HoldCounter
from proxy.recording_state import RecordingState
from proxy.storage.catalog import Attribution, NewHold, SqliteCatalog

from ..storage.test_catalog import FakeClock, at, new_call, new_recording
from .metrics_helpers import fresh_metrics, value

KINDS = ("complaint", "training", "conduct")


@pytest.fixture
async def catalog(tmp_path: Path) -> AsyncIterator[SqliteCatalog]:
    async with SqliteCatalog(tmp_path / "catalog.db", clock=FakeClock(at(3600))) as opened:
        yield opened


async def held_recording(catalog: SqliteCatalog, *holds: tuple[str, date | None]) -> str:
    rec_id = await new_recording(catalog, await new_call(catalog))
    await catalog.recordings.set_recording_state(
        rec_id, RecordingState.COMPLETE, Attribution(at=at(30))
    )
    for kind, review in holds:
        await catalog.holds.place(NewHold(rec_id, kind, "ref", "alice", review))
    return rec_id


async def test_gauges_show_the_last_refresh_not_the_catalog_now(catalog: SqliteCatalog) -> None:
    await held_recording(catalog, ("complaint", date(1970, 1, 1)), ("conduct", None))
    counter = HoldCounter(catalog.holds, KINDS, clock=lambda: at(0))
    metrics = fresh_metrics()
    metrics.attach(holds=counter.snapshot)
    assert value(metrics, "recproxy_holds_active", kind="complaint") is None  # not counted yet
    await counter.refresh()
    assert [value(metrics, "recproxy_holds_active", kind=kind) for kind in KINDS] == [1, 0, 1]
    assert value(metrics, "recproxy_holds_due_for_review") == 1
    await held_recording(catalog, ("training", None))  # placed after the refresh
    assert value(metrics, "recproxy_holds_active", kind="training") == 0
    await counter.refresh()
    assert value(metrics, "recproxy_holds_active", kind="training") == 1


async def test_a_kind_no_longer_configured_is_shown_while_active(catalog: SqliteCatalog) -> None:
    await held_recording(catalog, ("legacy", None))
    counter = HoldCounter(catalog.holds, KINDS, clock=lambda: at(0))
    snapshot = await counter.refresh()
    expected = {"complaint": 0, "training": 0, "conduct": 0, "legacy": 1}
    assert dict(snapshot.active_by_kind) == expected


async def test_the_task_refreshes_every_interval_and_survives_a_closed_catalog(
    tmp_path: Path,
) -> None:
    catalog = await SqliteCatalog(tmp_path / "c.db", clock=FakeClock(at(3600))).open()
    counter = HoldCounter(catalog.holds, KINDS, clock=lambda: at(0), interval=0.02)
    task = asyncio.create_task(counter.run())
    try:
        for _ in range(100):  # bounded: 2 s at most
            if counter.snapshot() is not None:
                break
            await asyncio.sleep(0.02)
        assert counter.snapshot() is not None
        await held_recording(catalog, ("training", None))
        for _ in range(100):
            snapshot = counter.snapshot()
            if snapshot is not None and snapshot.active_by_kind["training"] == 1:
                break
            await asyncio.sleep(0.02)
        last = counter.snapshot()
        assert last is not None and last.active_by_kind["training"] == 1
        await catalog.close()  # refreshes now fail: the last counts stay, the task goes on
        await asyncio.sleep(0.1)
        assert counter.snapshot() == last and not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await catalog.close()
