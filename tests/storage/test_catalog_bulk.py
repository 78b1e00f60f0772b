"""Bulk requests in the catalog (migration 12, issue 15): made pending with their
recordings in order, decided once, never by their requester, each change audited in the
same transaction; a refused write leaves nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

import pytest

from proxy.storage.catalog import (
    InvalidFieldError,
    NewBulkRequest,
    NotFoundError,
    RequestState,
    RequestStateError,
    SqlCatalog,
)
from tests.catalog_backends import Backend

from .test_catalog import FakeClock, at, new_call, new_recording


@pytest.fixture
async def catalog(backend: Backend) -> AsyncIterator[SqlCatalog]:
    async with backend.catalog(clock=FakeClock(at(3600))) as opened:
        yield opened


async def recordings(catalog: SqlCatalog, count: int) -> list[str]:
    return [await new_recording(catalog, await new_call(catalog)) for _ in range(count)]


def asking(*ids: str, who: str = "rita") -> NewBulkRequest:
    return NewBulkRequest(who, "legal", "disclosure to the court, case 9", ids)


async def test_a_request_keeps_its_recordings_in_order_and_is_audited(
    catalog: SqlCatalog,
) -> None:
    ids = await recordings(catalog, 3)
    made = await catalog.bulk.request(asking(ids[2], ids[0], ids[1]), at=at(100))
    assert made.state is RequestState.PENDING and made.recording_ids == (ids[2], ids[0], ids[1])
    assert await catalog.bulk.get(made.id) == made
    [entry] = await catalog.audit.entries()
    assert (entry.actor, entry.action, entry.object) == ("rita", "bulk.request", f"bulk:{made.id}")
    assert entry.detail["recordings"] == [ids[2], ids[0], ids[1]]
    assert entry.reason == "disclosure to the court, case 9"


@pytest.mark.parametrize("problem", ["unknown", "twice", "none"])
async def test_a_bad_list_is_refused_and_leaves_nothing(catalog: SqlCatalog, problem: str) -> None:
    [rid] = await recordings(catalog, 1)
    given = {"unknown": (rid, "no-such-recording"), "twice": (rid, rid), "none": ()}[problem]
    error = NotFoundError if problem == "unknown" else InvalidFieldError
    with pytest.raises(error):
        await catalog.bulk.request(asking(*given))
    assert await catalog.bulk.requests() == []
    assert await catalog.audit.entries() == []


async def test_an_approval_carries_its_expiry_and_is_decided_once(catalog: SqlCatalog) -> None:
    ids = await recordings(catalog, 2)
    made = await catalog.bulk.request(asking(*ids), at=at(100))
    approved = await catalog.bulk.decide(
        made.id, approve=True, by="dora", reason="court order seen", expires_at=at(900), at=at(200)
    )
    assert (approved.state, approved.decided_by, approved.expires_at) == (
        RequestState.APPROVED,
        "dora",
        at(900),
    )
    with pytest.raises(RequestStateError):
        await catalog.bulk.decide(made.id, approve=False, by="dora", reason="changed my mind")
    actions = [(e.actor, e.action) for e in await catalog.audit.entries()]
    assert actions == [("rita", "bulk.request"), ("dora", "bulk.approve")]
    assert await catalog.bulk.requests(state=RequestState.APPROVED) == [approved]
    assert await catalog.bulk.requests(state=RequestState.PENDING) == []
    assert (await catalog.audit.verify()).intact


async def test_nobody_decides_their_own_request_even_past_the_use_case(
    catalog: SqlCatalog, backend: Backend
) -> None:
    ids = await recordings(catalog, 1)
    made = await catalog.bulk.request(asking(*ids))
    with pytest.raises(InvalidFieldError, match="their own"):
        await catalog.bulk.decide(made.id, approve=False, by="rita", reason="no")
    with pytest.raises(sqlite3.IntegrityError), backend.raw() as conn:
        conn.execute("UPDATE bulk_requests SET decided_by = requester")  # the table says no
    assert (await catalog.bulk.get(made.id)) == made


async def test_a_refusal_and_a_withdrawal_are_audited(catalog: SqlCatalog) -> None:
    ids = await recordings(catalog, 1)
    first = await catalog.bulk.request(asking(*ids))
    second = await catalog.bulk.request(asking(*ids))
    refused = await catalog.bulk.decide(first.id, approve=False, by="dora", reason="too broad")
    assert refused.state is RequestState.REFUSED and refused.expires_at is None
    with pytest.raises(InvalidFieldError):
        await catalog.bulk.withdraw(second.id, by="dora")
    withdrawn = await catalog.bulk.withdraw(second.id, by="rita")
    assert withdrawn.state is RequestState.WITHDRAWN
    actions = [e.action for e in await catalog.audit.entries()]
    assert actions == ["bulk.request", "bulk.request", "bulk.refuse", "bulk.withdraw"]
    assert await catalog.bulk.requests(requester="rita") == [refused, withdrawn]
