"""Recording parts and anomaly flags in the catalog (migration 11, issue 15)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.recording_state import RecordingState
from proxy.storage.catalog import (
    MIGRATIONS,
    Attribution,
    FlagStateError,
    NewFlag,
    NotFoundError,
    SqlCatalog,
    SqliteCatalog,
)
from proxy.storage.catalog.model import format_utc
from tests.catalog_backends import Backend

from .test_catalog import FakeClock, at, new_call, new_recording


@pytest.fixture
async def catalog(backend: Backend) -> AsyncIterator[SqlCatalog]:
    async with backend.catalog(clock=FakeClock(at(3600))) as opened:
        yield opened


async def test_a_recording_never_bridged_has_one_part_with_its_calls_operator(
    catalog: SqlCatalog,
) -> None:
    call = await new_call(catalog)
    rid = await new_recording(catalog, call)
    [part] = await catalog.parts.parts(rid)
    assert (part.part, part.operator, part.team, part.ended_at) == (1, None, None, None)
    assert part.started_at == at(5)


async def test_a_transfer_ends_one_part_and_begins_the_next(catalog: SqlCatalog) -> None:
    call = await new_call(catalog)
    rid = await new_recording(catalog, call)
    first = await catalog.parts.begin(rid, operator="alice", team="reception", at=at(12))
    assert first.part == 1 and first.started_at == at(5)  # the notice belongs to part 1
    await catalog.parts.begin(rid, operator="bob", team="nurses", at=at(40))
    await catalog.recordings.set_recording_state(
        rid, RecordingState.COMPLETE, Attribution(at=at(70))
    )
    parts = await catalog.parts.parts(rid)
    assert [(p.part, p.operator, p.team) for p in parts] == [
        (1, "alice", "reception"),
        (2, "bob", "nurses"),
    ]
    assert (parts[0].started_at, parts[0].ended_at) == (at(5), at(40))
    assert (parts[1].started_at, parts[1].ended_at) == (at(40), at(70))  # the recording's end
    assert parts[1].as_dict() == {
        "part": 2,
        "operator": "bob",
        "team": "nurses",
        "started_at": format_utc(at(40)),
        "ended_at": format_utc(at(70)),
    }


async def test_parts_of_reads_many_recordings_and_leaves_out_unknown_ids(
    catalog: SqlCatalog,
) -> None:
    call = await new_call(catalog)
    one = await new_recording(catalog, call, directory="a")
    two = await new_recording(catalog, call, directory="b")
    await catalog.parts.begin(two, operator="carol", team=None, at=at(9))
    found = await catalog.parts.parts_of([one, two, "00000000-0000-0000-0000-000000000000"])
    assert set(found) == {one, two}
    assert [p.operator for p in found[two]] == ["carol"]
    with pytest.raises(NotFoundError):
        await catalog.parts.parts("00000000-0000-0000-0000-000000000000")
    with pytest.raises(NotFoundError):
        await catalog.parts.begin("nope", operator="x", team=None, at=at(1))


async def test_a_flag_is_raised_and_cleared_once_each_audited(catalog: SqlCatalog) -> None:
    raised = await catalog.flags.raise_flag(
        NewFlag("too_many_playbacks", "dave", None, {"in_hour": 21}), at=at(100)
    )
    assert raised.open and raised.detail == {"in_hour": 21}
    assert await catalog.flags.open_counts() == {"too_many_playbacks": 1}
    cleared = await catalog.flags.clear(raised.id, by="dpo1", reason="spoke to dave", at=at(200))
    assert not cleared.open and cleared.cleared_by == "dpo1"
    assert await catalog.flags.open_counts() == {}
    assert [f.id for f in await catalog.flags.flags(open_only=True)] == []
    assert [f.id for f in await catalog.flags.flags(user="dave")] == [raised.id]
    with pytest.raises(FlagStateError):
        await catalog.flags.clear(raised.id, by="dpo1", reason="again")
    with pytest.raises(NotFoundError):
        await catalog.flags.clear(999, by="dpo1", reason="none")
    entries = await catalog.audit.entries()
    assert [(e.action, e.actor, e.object) for e in entries] == [
        ("flag.raise", "recproxy", "user:dave"),
        ("flag.clear", "dpo1", "user:dave"),
    ]
    assert (await catalog.audit.verify()).intact


async def test_migration_11_gives_each_earlier_recording_its_part_1(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    async with SqliteCatalog(path, migrations=MIGRATIONS[:10]) as old:
        call = await new_call(old)
        await old.calls.update_call(call.id, operator="jsmith")
        rid = await new_recording(old, call)
    async with SqliteCatalog(path) as upgraded:
        [part] = await upgraded.parts.parts(rid)
    with sqlite3.connect(path) as conn:
        stored = conn.execute("SELECT recording_id, part, operator FROM recording_parts").fetchall()
    assert stored == [(rid, 1, "jsmith")]
    assert (part.operator, part.started_at) == ("jsmith", at(5))
