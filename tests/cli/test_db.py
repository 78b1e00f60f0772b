"""``recproxy db upgrade|check|copy`` as the real command, on a SQLite file and on a
real PostgreSQL server (issue 20): the schema brought up to date on both, checked
without changes, and a SQLite catalog moved to PostgreSQL with its audit chain still
verifiable there (``recproxy audit verify`` on the copy)."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from proxy.recording_state import RecordingState
from proxy.storage.catalog import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Attribution,
    CallDirection,
    NewCall,
    NewRecording,
    NewSegment,
    NewUser,
    Role,
    SegmentFacts,
    SqliteCatalog,
)
from proxy.storage.catalog.postgres import PostgresCatalog
from tests.pg_server import PgServer

from .test_audit import CATALOG, chain
from .test_cli import recproxy

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"


def on_server(folder: Path, url: str) -> Path:
    """A config naming the server's database (the anchor file stays beside the path)."""
    config = folder / "pg.toml"
    config.write_text(f'[catalog]\npath = "{folder / CATALOG}"\nurl = "{url}"\n')
    return config


def db(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return recproxy("db", *args, cwd=folder)


def test_upgrade_makes_and_then_keeps_a_sqlite_catalog(tmp_path: Path) -> None:
    made = db(tmp_path, "upgrade")
    assert made.returncode == 0, made.stderr
    assert f"schema version {SCHEMA_VERSION} (upgraded from version 0)" in made.stdout
    again = db(tmp_path, "upgrade")
    assert f"schema version {SCHEMA_VERSION} (already up to date)" in again.stdout
    checked = db(tmp_path, "check")
    assert checked.returncode == 0, checked
    assert "integrity: ok" in checked.stdout


def test_check_finds_a_broken_foreign_key_in_sqlite(tmp_path: Path) -> None:
    assert db(tmp_path, "upgrade").returncode == 0
    with sqlite3.connect(tmp_path / CATALOG) as conn:  # foreign keys off: as an old tool
        conn.execute(
            "INSERT INTO recordings (id, call_id, state, directory, encoding, sample_rate,"
            " channels, started_at) VALUES ('r', 'no-such-call', 'recording', 'd', 'g711',"
            " 8000, 2, 0)"
        )
    conn.close()
    checked = db(tmp_path, "check")
    assert checked.returncode == 1
    assert "integrity: foreign key: recordings row" in checked.stdout


def test_check_and_upgrade_a_server_catalog_behind_this_code(
    tmp_path: Path, pg_server: PgServer
) -> None:
    url = pg_server.fresh_database()

    async def old() -> None:
        async with PostgresCatalog(url, migrations=MIGRATIONS[:10]):
            pass

    asyncio.run(old())
    config = str(on_server(tmp_path, url))
    behind = db(tmp_path, "check", "--config", config)
    assert behind.returncode == 1
    assert f"schema version 10 (this recproxy: {SCHEMA_VERSION})" in behind.stdout
    assert "run recproxy db upgrade" in behind.stdout
    upgraded = db(tmp_path, "upgrade", "--config", config)
    assert f"schema version {SCHEMA_VERSION} (upgraded from version 10)" in upgraded.stdout
    checked = db(tmp_path, "check", "--config", config)
    assert checked.returncode == 0, checked
    assert "integrity: ok" in checked.stdout


def test_a_password_in_the_url_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    config = on_server(tmp_path, "postgresql://rec:hunter2@127.0.0.1:1/catalog")
    refused = db(tmp_path, "check", "--config", str(config))
    assert refused.returncode == 78
    assert "catalog.url" in refused.stderr and "PGPASSWORD" in refused.stderr
    assert "hunter2" not in refused.stderr


def fill(path: Path) -> None:
    """Calls, recordings, segments, events, a user and a hold: most tables have rows."""

    async def build() -> None:
        async with SqliteCatalog(path) as catalog:
            await catalog.users.add(NewUser("alice", Role.ADMIN, HASH, ("north",)), by="root")
            for n in range(3):
                call = await catalog.calls.create_call(NewCall(
                    f"c{n}@trunk", f"+4412345{n}", "reception", CallDirection.INBOUND,
                    T0 + timedelta(minutes=n), operator="alice",
                ))  # fmt: skip
                rec = await catalog.recordings.create_recording(
                    NewRecording(call.id, f"d{n}", "g711", 8000, 2, call.started_at)
                )
                await catalog.recordings.add_segment(NewSegment(rec.id, 0, "0.seg", 0))
                await catalog.recordings.update_segment(
                    rec.id, 0, SegmentFacts(frames=8000, sha256="a" * 64, closed=True)
                )
                await catalog.recordings.set_recording_state(
                    rec.id, RecordingState.COMPLETE, Attribution("system")
                )
            await catalog.access.log_access(
                actor="alice", action="playback", recording_id=rec.id, reason="complaint 4"
            )

    asyncio.run(build())


def counts(rows_of: object, tables: list[str]) -> dict[str, int]:
    return {t: rows_of.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}  # type: ignore[attr-defined]


def test_copy_moves_a_sqlite_catalog_whole_and_its_chain_verifies_there(
    tmp_path: Path, pg_server: PgServer
) -> None:
    path = chain(tmp_path)
    fill(path)
    url = pg_server.fresh_database()
    copied = db(tmp_path, "copy", "--to", url)
    assert copied.returncode == 0, copied.stderr
    assert "audit_log: " in copied.stdout
    with sqlite3.connect(path) as source:
        tables = [r[0] for r in source.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name <> 'schema_migrations'"
        )]  # fmt: skip
        before = counts(source, tables)
    source.close()
    with psycopg.connect(url) as target:
        after = counts(target, tables)
        chain_rows = target.execute("SELECT seq, sha256 FROM audit_log ORDER BY seq").fetchall()
    assert after == before and before["audit_log"] > 5 and before["segments"] == 3
    with sqlite3.connect(path) as source:
        assert (
            chain_rows
            == source.execute("SELECT seq, sha256 FROM audit_log ORDER BY seq").fetchall()
        )
    source.close()

    verified = recproxy("audit", "verify", "--config", str(on_server(tmp_path, url)), cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert f"audit chain intact: {before['audit_log']} entries" in verified.stdout

    async def goes_on() -> None:  # ids continue after the highest copied
        async with PostgresCatalog(url) as catalog:
            await catalog.audit.append(actor="alice", action="search")
            assert (await catalog.audit.verify()).intact
            [summary, *_] = await catalog.recordings.list_recordings()
            await catalog.access.log_access(
                actor="alice", action="playback", recording_id=summary.id, reason="again"
            )

    asyncio.run(goes_on())
    again = db(tmp_path, "copy", "--to", url)
    assert again.returncode == 1
    assert "not empty" in again.stderr
