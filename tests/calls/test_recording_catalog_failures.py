"""What a recorded call keeps when its catalog writes go wrong (issue 19, the two
transactions made safe): a real recording service, writer thread, recorder and SQLite
catalog, with the catalog refusing, locked, full of journalled writes, or the task of
transaction 1 cancelled at shutdown."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from proxy import events
from proxy.calls.ending import call_end
from proxy.calls.recording_switch import RecordingSwitch
from proxy.recording_state import RecordingState
from proxy.records.errors import RecordingActionError
from proxy.storage.catalog import (
    Attribution,
    CallBatch,
    CallDirection,
    CallOutcome,
    CallUpdate,
    EventChannel,
    FirstPart,
    NewCall,
    NotFoundError,
    SqliteCatalog,
)

from .test_recording_service import Service, eventually, left_by_a_crash, recovered

BY_ALICE = Attribution("alice", EventChannel.API, "asked")


def set_up(call_id: str) -> CallBatch:
    """A bridged call's transaction 1 as the call flow hands it over."""
    new_call = NewCall(
        sip_call_id=f"c{call_id}", caller="+441234567890", callee="surgery",
        direction=CallDirection.INBOUND, started_at=datetime.now(UTC), call_id=call_id,
    )  # fmt: skip
    return CallBatch(
        call_id,
        new_call=new_call,
        first_part=FirstPart("alice", None),
        changes=CallUpdate(bridged_at=datetime.now(UTC), operator="alice"),
    )


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Another process holds the catalog."""
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def published(rig: Service, kind: type[Any]) -> list[Any]:
    return [e for e in rig.published if isinstance(e, kind)]


async def test_a_refused_recording_written_ahead_keeps_its_files_reported_and_is_failed(
    tmp_path: Path,
) -> None:
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        rig = Service(tmp_path, catalog, tmp_path / "recordings", hold_seconds=0)
        try:  # held for no time: written ahead at once, then its row is refused
            active = await rig.service.start(str(uuid.uuid4()), "PCMU", "PCMU")
            rig.talk(active, 1.0)
            await rig.service.finish(active)
        finally:
            rig.stop()
        assert await catalog.recordings.get_recording(active.id) is None
    assert (tmp_path / "recordings" / active.id / "key").exists()  # audio is not deleted
    assert rig.service.uncatalogued == [active.id]
    assert rig.service.failures["uncatalogued"] == 1
    assert published(rig, events.RecordingClosed) == []  # never "complete"
    (failed,) = published(rig, events.RecordingFailed)
    assert failed.recording_id == active.id and "refused" in failed.reason


async def test_a_journalled_set_up_refused_later_still_writes_the_call_and_its_end(
    tmp_path: Path,
) -> None:
    path = tmp_path / "catalog.sqlite3"
    async with SqliteCatalog(path, busy_timeout_ms=50) as catalog:
        rig = Service(tmp_path, catalog, tmp_path / "recordings")
        good_id, bad_id = str(uuid.uuid4()), str(uuid.uuid4())
        try:
            with locked(path):
                good = await rig.service.start(good_id, "PCMU", "PCMU", call=set_up(good_id))
                await eventually(lambda: asyncio.sleep(0, rig.service.journal.pending == 1))
                # queued behind it; refused when the journal retries it (a blank operator)
                refused = replace(set_up(bad_id), first_part=FirstPart(" ", None))
                bad = await rig.service.start(bad_id, "PCMU", "PCMU", call=refused)
                await eventually(lambda: asyncio.sleep(0, rig.service.journal.pending == 2))
            rig.talk(good, 1.0)
            for active, call_id in ((good, good_id), (bad, bad_id)):
                end = call_end(call_id, datetime.now(UTC), CallOutcome.COMPLETED)
                await rig.service.finish(active, end)
            assert await rig.service.journal.wait_empty(5.0)
        finally:
            rig.stop()
        call = await catalog.calls.get_call(bad_id)  # the call kept, without its recording
        assert call is not None and call.outcome is CallOutcome.COMPLETED
        assert call.bridged_at is None or call.ended_at is not None
        assert await catalog.recordings.get_recording(bad.id) is None
        recording = await catalog.recordings.get_recording(good.id)
        assert recording is not None and recording.state is RecordingState.COMPLETE
    assert not (tmp_path / "recordings" / bad.id).exists()  # the held audio was dropped


async def test_a_set_up_the_full_journal_drops_rides_with_the_calls_end(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    async with SqliteCatalog(path, busy_timeout_ms=50) as catalog:
        rig = Service(tmp_path, catalog, tmp_path / "recordings")
        rig.service.journal.limit = 1
        first_id, dropped_id = str(uuid.uuid4()), str(uuid.uuid4())
        try:
            with locked(path):
                first = await rig.service.start(first_id, "PCMU", "PCMU", call=set_up(first_id))
                dropped = await rig.service.start(
                    dropped_id, "PCMU", "PCMU", call=set_up(dropped_id)
                )
                await asyncio.wait_for(dropped.row_written(), 5)
                assert dropped.refused is not None and "journal full" in dropped.refused
            assert await rig.service.journal.wait_empty(5.0)
            for active, call_id in ((first, first_id), (dropped, dropped_id)):
                end = call_end(call_id, datetime.now(UTC), CallOutcome.COMPLETED)
                await rig.service.finish(active, end)
        finally:
            rig.stop()
        call = await catalog.calls.get_call(dropped_id)  # its row came with its end
        assert call is not None and call.outcome is CallOutcome.COMPLETED
        assert call.bridged_at is not None
        assert await catalog.recordings.get_recording(dropped.id) is None
        assert await catalog.recordings.get_recording(first.id) is not None
    assert not (tmp_path / "recordings" / dropped.id).exists()
    (failed,) = published(rig, events.RecordingFailed)
    assert failed.recording_id == dropped.id


async def test_the_calls_end_is_written_when_working_out_the_recordings_end_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        rig = Service(tmp_path, catalog, tmp_path / "recordings")
        call_id = str(uuid.uuid4())
        try:
            active = await rig.service.start(call_id, "PCMU", "PCMU", call=set_up(call_id))
            rig.talk(active, 0.5)

            def broken(*args: object) -> Any:
                raise RuntimeError("working out the degradation broke")

            monkeypatch.setattr("proxy.calls.recording.degradation", broken)
            end = call_end(call_id, datetime.now(UTC), CallOutcome.COMPLETED)
            await rig.service.finish(active, end)  # does not raise
        finally:
            rig.stop()
        call = await catalog.calls.get_call(call_id)
        assert call is not None and call.outcome is CallOutcome.COMPLETED
        assert call.ended_at is not None
        recording = await catalog.recordings.get_recording(active.id)
        assert recording is not None and recording.state is RecordingState.FAILED


async def test_a_cancelled_transaction_1_at_shutdown_does_not_stop_the_end(
    tmp_path: Path,
) -> None:
    path = tmp_path / "catalog.sqlite3"
    async with SqliteCatalog(path, busy_timeout_ms=2000) as catalog:
        rig = Service(tmp_path, catalog, tmp_path / "recordings", hold_seconds=0)
        call_id = str(uuid.uuid4())
        try:
            with locked(path):
                active = await rig.service.start(call_id, "PCMU", "PCMU", call=set_up(call_id))
                await asyncio.sleep(0.1)  # transaction 1 waits for the lock
                assert active.catalogued is not None
                active.catalogued.cancel()  # the loop cancels what is left at shutdown
                await asyncio.sleep(0)
            end = call_end(call_id, datetime.now(UTC), CallOutcome.COMPLETED)
            await asyncio.wait_for(rig.service.finish(active, end), 20)  # no CancelledError
            discarded = await rig.service.start(call_id, "PCMU", "PCMU")
            assert discarded.catalogued is not None
            discarded.catalogued.cancel()
            # its row never came: the discard says so, not with a CancelledError
            with pytest.raises(NotFoundError):
                await rig.service.discard(discarded, BY_ALICE)
        finally:
            rig.stop()
        assert active.ended is not None and active.ended.done()


async def test_a_stop_right_after_the_bridge_waits_for_the_recordings_row(
    tmp_path: Path,
) -> None:
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        rig = Service(tmp_path, catalog, tmp_path / "recordings")
        call_id = str(uuid.uuid4())
        switch = RecordingSwitch(
            call_id, catalog=catalog, recordings=rig.service, media=None, legs=None,  # type: ignore[arg-type]
            codes={}, now=time.monotonic, publish=rig.published.append,
        )  # fmt: skip
        try:
            active = await rig.service.start(call_id, "PCMU", "PCMU", call=set_up(call_id))
            switch.arm(active, outbound=False, operator="alice", staff=None)  # type: ignore[arg-type]
            # before the task of transaction 1 has run at all
            stopped = await switch.act("stop", actor="ann", channel="api", reason="asked")
            assert stopped["recording"] == "stopped"
            await rig.service.finish(active)
        finally:
            rig.stop()
        actions = [e.action.value for e in await catalog.events.recording_events(active.id)]
        assert "stop" in actions


async def test_a_stop_of_a_recording_whose_row_was_refused_says_so(tmp_path: Path) -> None:
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        rig = Service(tmp_path, catalog, tmp_path / "recordings")
        switch = RecordingSwitch(
            "c", catalog=catalog, recordings=rig.service, media=None, legs=None,  # type: ignore[arg-type]
            codes={}, now=time.monotonic, publish=rig.published.append,
        )  # fmt: skip
        try:
            active = await rig.service.start(str(uuid.uuid4()), "PCMU", "PCMU")  # no call
            switch.arm(active, outbound=False, operator="alice", staff=None)  # type: ignore[arg-type]
            with pytest.raises(RecordingActionError, match="not kept"):
                await switch.act("stop", actor="ann", channel="api", reason="asked")
            await rig.service.finish(active)
        finally:
            rig.stop()


async def test_recovery_finds_folders_without_a_row_in_a_few_queries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recordings = tmp_path / "recordings"
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        rig = Service(tmp_path, catalog, recordings)
        named = []
        try:
            for _ in range(3):  # three catalogued recordings among 3,000 folders
                call_id = str(uuid.uuid4())
                active = await rig.service.start(call_id, "PCMU", "PCMU", call=set_up(call_id))
                rig.talk(active, 0.1)
                await rig.service.finish(active)
                named.append(active.id)
        finally:
            rig.stop()
        orphans = sorted(str(uuid.uuid4()) for _ in range(2997))
        left_by_a_crash(recordings, *orphans)

        def one_by_one(*args: object) -> Any:
            raise AssertionError("one catalog lookup per folder")

        monkeypatch.setattr(catalog.recordings, "get_recording", one_by_one)
        assert await catalog.recordings.existing([*named, *orphans]) == set(named)
        service = await recovered(catalog, recordings)
    assert service.uncatalogued == orphans
    assert service.failures == {"uncatalogued": 2997}
