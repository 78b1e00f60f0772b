"""The configuration versions in the catalog (migration 9): a version is stored once, a
change of version is one ``config.change`` audit entry in the same transaction, and no
secret reaches the database.  A real SQLite catalog."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from proxy.config import load_config
from proxy.config_version import version_of
from proxy.storage.catalog import SqlCatalog, SqliteCatalog
from proxy.storage.catalog.config_versions import version_of_settings
from proxy.storage.catalog.errors import InvalidFieldError
from tests.catalog_backends import Backend

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
A = {"media.jitter_ms": 60, "sip.listen": ["127.0.0.1", 5060], "webhook.url": "not set"}
B = {"media.jitter_ms": 80, "sip.listen": ["127.0.0.1", 5060], "dtmf.stop": "*0"}


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
async def catalog(backend: Backend) -> AsyncIterator[SqlCatalog]:
    async with backend.catalog() as opened:
        yield opened


async def start(catalog: SqlCatalog, settings: dict[str, Any], minutes: int) -> Any:
    return await catalog.config_versions.record(
        version_of_settings(settings), settings, actor="recproxy", at=at(minutes)
    )


async def test_the_first_version_and_the_same_again_are_no_change(catalog: SqlCatalog) -> None:
    assert await start(catalog, A, 0) is None
    assert await start(catalog, A, 5) is None
    [stored] = await catalog.config_versions.history()
    assert stored.version == version_of_settings(A)
    assert (stored.first_seen_at, stored.last_seen_at, stored.settings) == (at(0), at(5), A)
    assert await catalog.audit.entries() == []


async def test_a_change_of_version_is_one_audit_entry_with_the_diff(
    catalog: SqlCatalog,
) -> None:
    await start(catalog, A, 0)
    change = await start(catalog, B, 1)
    old, new = version_of_settings(A), version_of_settings(B)
    assert change is not None and change.keys == ["dtmf.stop", "media.jitter_ms", "webhook.url"]
    [entry] = await catalog.audit.entries(action="config.change")
    assert (entry.actor, entry.object, entry.at) == ("recproxy", f"config:{new}", at(1))
    assert entry.detail == {
        "from": old,
        "to": new,
        "changed": {"media.jitter_ms": [60, 80]},
        "added": {"dtmf.stop": "*0"},
        "removed": {"webhook.url": "not set"},
    }
    assert [v.version for v in await catalog.config_versions.history()] == [old, new]
    assert (await catalog.audit.verify()).intact


async def test_going_back_to_an_earlier_version_is_a_change_too(catalog: SqlCatalog) -> None:
    await start(catalog, A, 0)
    await start(catalog, B, 1)
    back = await start(catalog, A, 2)
    assert back is not None and back.new == version_of_settings(A)
    assert await start(catalog, A, 3) is None  # ...once: A is the latest seen now
    entries = await catalog.audit.entries(action="config.change")
    assert [e.detail["to"] for e in entries] == [version_of_settings(B), version_of_settings(A)]
    history = await catalog.config_versions.history()
    assert [v.version for v in history] == [version_of_settings(A), version_of_settings(B)]
    assert history[0].last_seen_at == at(3)


async def test_a_version_that_is_not_the_hash_of_its_settings_is_refused(
    catalog: SqlCatalog,
) -> None:
    await start(catalog, A, 0)
    with pytest.raises(InvalidFieldError, match="is not the SHA-256 of its settings"):
        await catalog.config_versions.record(version_of_settings(A), B, actor="recproxy")
    with pytest.raises(InvalidFieldError, match="plain JSON"):
        await catalog.config_versions.record("x", {"k": object()}, actor="recproxy")
    with pytest.raises(InvalidFieldError, match="actor"):
        await catalog.config_versions.record(version_of_settings(B), B, actor=" ")
    assert [v.version for v in await catalog.config_versions.history()] == [version_of_settings(A)]
    assert await catalog.audit.entries() == []


async def test_no_secret_reaches_the_database(tmp_path: Path) -> None:
    token_hash, webhook = "ef" * 32, "https://hooks.example.org/hook/S3CRET-PATH?key=S3CRET-QUERY"
    texts = []
    for n, url in enumerate((webhook, webhook.replace("hooks", "hooks2"))):
        (tmp_path / f"{n}.toml").write_text(
            f'[webhook]\nurl = "{url}"\n[media]\njitter_ms = {60 + 20 * n}\n'
            f'[[operators]]\nname = "alice"\ntoken_sha256 = "{token_hash}"\n'
        )
        config = load_config(tmp_path / f"{n}.toml")
        digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for _, p in config.prompt_files()}
        texts.append(version_of(config, digests))
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        for minutes, effective in enumerate(texts):
            await catalog.config_versions.record(
                effective.version, effective.settings, actor="recproxy", at=at(minutes)
            )
        [entry] = await catalog.audit.entries()
        assert entry.detail["changed"] == {"media.jitter_ms": [60, 80]}
    with sqlite3.connect(tmp_path / "catalog.sqlite3") as conn:
        dump = "\n".join(conn.iterdump())
    assert "S3CRET" not in dump and token_hash not in dump and "hooks.example" not in dump
    assert '"operators.alice.token_sha256":"set"' in dump


async def test_a_change_whose_audit_entry_fails_is_not_recorded_either(
    catalog: SqlCatalog, backend: Backend
) -> None:
    await start(catalog, A, 0)
    with backend.raw() as conn:  # the audit log refuses every new entry
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON audit_log"
            " BEGIN SELECT RAISE(ABORT, 'audit log full'); END"
        )
    with pytest.raises(sqlite3.IntegrityError, match="audit log full"):
        await start(catalog, B, 1)
    [stored] = await catalog.config_versions.history()
    assert (stored.version, stored.last_seen_at) == (version_of_settings(A), at(0))
