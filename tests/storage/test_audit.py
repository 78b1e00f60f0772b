"""The audit chain: entries link by digest, and editing, removing or swapping any entry
with raw SQL is found and named by ``verify``.  A real SQLite catalog."""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from proxy.storage.catalog import SqlCatalog
from proxy.storage.catalog.audit import GENESIS, canonical_bytes
from proxy.storage.catalog.errors import InvalidFieldError
from tests.catalog_backends import Backend
from tests.catalog_backends import raw as raw_db

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
async def audited(backend: Backend) -> AsyncIterator[SqlCatalog]:
    async with backend.catalog() as catalog:
        for n in range(5):
            await catalog.audit.append(
                actor=f"user{n % 2}", action="export" if n % 2 else "search",
                object=f"recording:r{n}", reason=f"complaint {n}", detail={"n": n, "é": "ü"},
                at=T0 + timedelta(minutes=n),
            )  # fmt: skip
        yield catalog


def raw(catalog: SqlCatalog, *statements: str) -> None:
    """Tamper as someone with the file would: drop the guards, change rows."""
    with raw_db(catalog) as conn:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("DROP TRIGGER audit_log_no_delete")
        for statement in statements:
            conn.execute(statement)


async def test_entries_chain_by_digest(audited: SqlCatalog) -> None:
    entries = await audited.audit.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev == GENESIS
    assert all(b.prev == a.sha256 for a, b in itertools.pairwise(entries))
    first = entries[0]
    body = canonical_bytes(
        1, int(T0.timestamp() * 1000), "user0", "search", "recording:r0", "complaint 0",
        {"n": 0, "é": "ü"}, GENESIS,
    )  # fmt: skip
    assert body.startswith(b'{"action":"search","actor":"user0","at":%d,' % (T0.timestamp() * 1000))
    assert hashlib.sha256(body).hexdigest() == first.sha256
    verdict = await audited.audit.verify()
    assert verdict.intact and verdict.count == 5 and verdict.head.seq == 5
    assert verdict.head.sha256 == entries[-1].sha256


async def test_filters(audited: SqlCatalog) -> None:
    assert [e.seq for e in await audited.audit.entries(actor="user1")] == [2, 4]
    assert [e.seq for e in await audited.audit.entries(action="search")] == [1, 3, 5]
    since = T0 + timedelta(minutes=3)
    assert [e.seq for e in await audited.audit.entries(since=since)] == [4, 5]


async def test_latest_is_the_newest_entry_of_an_action(audited: SqlCatalog) -> None:
    latest = await audited.audit.latest("search")
    assert latest is not None and (latest.seq, latest.at) == (5, T0 + timedelta(minutes=4))
    assert (await audited.audit.latest("export")).seq == 4  # type: ignore[union-attr]
    assert await audited.audit.latest("retention.sweep") is None


async def test_the_table_refuses_edits(audited: SqlCatalog, backend: Backend) -> None:
    with backend.raw() as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE audit_log SET reason = 'x' WHERE seq = 2")
    with backend.raw() as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("DELETE FROM audit_log WHERE seq = 5")


@pytest.mark.parametrize(
    ("statements", "broken_at"),
    [
        (["UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 3"], 3),
        (['UPDATE audit_log SET detail = \'{"n":9,"é":"ü"}\' WHERE seq = 1'], 1),
        (["UPDATE audit_log SET at = at + 1 WHERE seq = 5"], 5),
        (["DELETE FROM audit_log WHERE seq = 2"], 2),
        (
            [  # swap the contents of 3 and 4, keeping their places
                "UPDATE audit_log SET seq = 99 WHERE seq = 3",
                "UPDATE audit_log SET seq = 3 WHERE seq = 4",
                "UPDATE audit_log SET seq = 4 WHERE seq = 99",
            ],
            3,
        ),
    ],
)
async def test_tampering_is_found_and_named(
    audited: SqlCatalog, statements: list[str], broken_at: int
) -> None:
    raw(audited, *statements)
    verdict = await audited.audit.verify()
    assert not verdict.intact
    assert verdict.broken_at == broken_at, verdict.why


async def test_an_edit_with_a_recomputed_digest_breaks_the_next_link(
    audited: SqlCatalog,
) -> None:
    entries = await audited.audit.entries()
    second = entries[1]
    forged = hashlib.sha256(
        canonical_bytes(
            2,
            int(second.at.timestamp() * 1000),
            second.actor,
            second.action,
            second.object,
            "forged",
            dict(second.detail),
            second.prev,
        )
    ).hexdigest()
    raw(audited, f"UPDATE audit_log SET reason = 'forged', sha256 = '{forged}' WHERE seq = 2")
    verdict = await audited.audit.verify()
    assert verdict.broken_at == 3


async def test_bad_entries_are_refused_and_change_nothing(audited: SqlCatalog) -> None:
    with pytest.raises(InvalidFieldError):
        await audited.audit.append(actor=" ", action="export")
    with pytest.raises(InvalidFieldError):
        await audited.audit.append(actor="a", action="export", detail={"x": object()})
    assert len(await audited.audit.entries()) == 5
    assert (await audited.audit.verify()).intact
