"""Databases made before the catalog became a package open, upgrade and read unchanged.

``fixtures/catalog-v5.sql`` is a dump (``sqlite3 .dump``) of a database written through
the single-module catalog of commit c589d3e (every migration, 1-5, and a row in every
table); ``fixtures/catalog-v3.sql`` one that stopped at migration 3, as an older
recproxy left it.  Loading a dump gives back the same schema text SQLite stored, so
comparing ``sqlite_master`` with that of a new database shows the migrations build, and
upgrade to, byte for byte the same schema.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from proxy.recording_state import RecordingState
from proxy.storage.catalog import (
    MIGRATIONS,
    SCHEMA_VERSION,
    CallDirection,
    CallOutcome,
    ChannelQuality,
    EventChannel,
    Migration,
    NewCall,
    NewRecording,
    NoticeMode,
    RecordingAction,
    Scope,
    SearchFilters,
    SearchQuery,
    SqliteCatalog,
)

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2024, 5, 1, 9, 30, 0, 250_000, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def restore(dump: str, path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.executescript((FIXTURES / dump).read_text("utf-8"))
    db.close()


def schema(path: Path) -> list[tuple[str, str, str, str | None]]:
    with sqlite3.connect(path) as db:
        found = db.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
    db.close()
    return found


def migrations_applied(path: Path) -> list[tuple[int, str, int]]:
    with sqlite3.connect(path) as db:
        found = db.execute("SELECT * FROM schema_migrations ORDER BY version").fetchall()
    db.close()
    return found


FIRST_FIVE = MIGRATIONS[:5]  # what the single-module catalog of c589d3e applied


async def new_schema(
    path: Path, migrations: tuple[Migration, ...] = MIGRATIONS
) -> list[tuple[str, str, str, str | None]]:
    async with SqliteCatalog(path, migrations=migrations):
        pass
    return schema(path)


async def test_a_new_database_gets_the_schema_the_old_catalog_built(tmp_path: Path) -> None:
    restore("catalog-v5.sql", tmp_path / "old.db")
    assert await new_schema(tmp_path / "new.db", FIRST_FIVE) == schema(tmp_path / "old.db")


async def test_the_old_catalog_upgrades_to_the_schema_a_new_database_gets(
    tmp_path: Path,
) -> None:
    restore("catalog-v5.sql", tmp_path / "old.db")
    upgraded = await new_schema(tmp_path / "old.db")
    assert upgraded == await new_schema(tmp_path / "new.db")
    assert [v for v, _, _ in migrations_applied(tmp_path / "old.db")] == [
        m.version for m in MIGRATIONS
    ]


async def test_a_database_from_the_old_catalog_opens_unchanged_and_reads(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    restore("catalog-v5.sql", path)
    before = (schema(path), migrations_applied(path))
    async with SqliteCatalog(path, migrations=FIRST_FIVE) as catalog:
        assert await catalog.schema_version() == 5
        call = await catalog.calls.get_call("13131313-0000-4000-8000-0000000000c1")
        assert call is not None
        assert (call.caller, call.operator, call.outcome) == (
            "+441234567890",
            "ext-201",
            CallOutcome.COMPLETED,
        )
        assert (call.answered_at, call.bridged_at, call.ended_at) == (at(1), at(12), at(70))
        receipt = await catalog.calls.consent_receipt(call.id)
        assert receipt is not None and receipt.mode is NoticeMode.ANSWER
        assert (receipt.played_ms, receipt.notice_restarts, receipt.held_ms) == (9400, 1, 2500)
        rec_id = "13131313-0000-4000-8000-0000000000e1"
        recording = await catalog.recordings.get_recording(rec_id)
        assert recording is not None
        assert (recording.state, recording.duration_ms, recording.ended_at) == (
            RecordingState.COMPLETE,
            15000,
            at(70),
        )
        segments = await catalog.recordings.segments(rec_id)
        assert [(s.segment_index, s.frames, s.closed) for s in segments] == [
            (0, 80000, True),
            (1, 40000, True),
        ]
        assert await catalog.recordings.recording_quality(rec_id) == [
            ChannelQuality("call_taker", 3000, 0, 0, 0, 0),
            ChannelQuality("caller", 3000, 4, 2, 1, 60),
        ]
        events = await catalog.events.recording_events(rec_id)
        assert [(e.action, e.channel) for e in events] == [
            (RecordingAction.START, EventChannel.SYSTEM),
            (RecordingAction.STOP, EventChannel.DTMF),
            (RecordingAction.RESUME, EventChannel.DTMF),
            (RecordingAction.PAUSE, EventChannel.SYSTEM),
            (RecordingAction.COMPLETE, EventChannel.SYSTEM),
        ]
        [entry] = await catalog.access.access_log(rec_id)
        assert (entry.actor, entry.reason, entry.at) == ("alice", "complaint 42", at(7200))
        listed = await catalog.do_not_record.get("+447700900123")
        assert listed is not None and listed.reference == "letter 9"
    assert (schema(path), migrations_applied(path)) == before


async def test_a_version_3_database_upgrades_to_the_new_schema_keeping_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "catalog.sqlite3"
    restore("catalog-v3.sql", path)
    old_steps = migrations_applied(path)
    assert [v for v, _, _ in old_steps] == [1, 2, 3]
    async with SqliteCatalog(path, clock=lambda: at(86400)) as catalog:
        assert await catalog.schema_version() == SCHEMA_VERSION
        receipt = await catalog.calls.consent_receipt("13131313-0000-4000-8000-0000000000c3")
        assert receipt is not None
        assert (receipt.notice_restarts, receipt.held_ms) == (0, 0)  # migration 5's defaults
        rec_id = "13131313-0000-4000-8000-0000000000e3"
        recording = await catalog.recordings.get_recording(rec_id)
        assert recording is not None and recording.state is RecordingState.COMPLETE
        assert recording.degraded_reason is None  # migration 4's new column
        assert await catalog.recordings.recording_quality(rec_id) == []
        [summary] = await catalog.recordings.list_recordings()
        assert (summary.id, summary.duration_ms, summary.segments) == (rec_id, 58000, 1)
        [entry] = await catalog.do_not_record.entries()
        assert entry.number == "+447700900123"
    steps = migrations_applied(path)
    assert steps[:3] == old_steps  # applied once, never again
    assert [(v, name) for v, name, _ in steps] == [(m.version, m.name) for m in MIGRATIONS]
    assert {applied for v, _, applied in steps if v > 3} == {int(at(86400).timestamp() * 1000)}
    assert schema(path) == await new_schema(tmp_path / "new.db")


async def test_a_version_12_database_gains_the_search_indexes_and_finds_its_rows(
    tmp_path: Path,
) -> None:
    """Migration 13 adds indexes only (calls already hold the caller normalised, so no
    column is backfilled); the rows written before it are found through them."""
    path = tmp_path / "catalog.sqlite3"
    async with SqliteCatalog(path, migrations=MIGRATIONS[:12]) as catalog:
        call = await catalog.calls.create_call(
            NewCall("v12@test", "2001", "+441234567890", CallDirection.OUTBOUND, at(0),
                    service="results")
        )  # fmt: skip
        recording = await catalog.recordings.create_recording(
            NewRecording(call.id, "2024/05/01/v12", "pcmu", 8000, 2, at(1))
        )
        await catalog.parts.begin(recording.id, operator="alice", team="nurses", at=at(1))
    before = {name for _, name, _, _ in schema(path)}
    assert "calls_by_callee" not in before
    async with SqliteCatalog(path, migrations=MIGRATIONS[:13]) as catalog:
        assert await catalog.schema_version() == 13
        everything = Scope(at(60), everything=True)
        window = SearchFilters(started_from=at(0), started_before=at(1))
        for filters in (
            replace(window, numbers=("+441234567890",)),
            replace(window, operator="alice"),
            replace(window, team="nurses"),
            replace(window, service="results", direction=CallDirection.OUTBOUND),
        ):
            [hit] = await catalog.search.search(SearchQuery(everything, filters))
            assert hit.recording_id == recording.id
    added = {name for _, name, _, _ in schema(path)} - before
    assert added == {"calls_by_callee", "calls_by_service", "calls_by_operator"}
    assert schema(path) == await new_schema(tmp_path / "new.db", MIGRATIONS[:13])
