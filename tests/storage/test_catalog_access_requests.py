"""Access requests and grants in the catalog (migration 11's table, issue 15)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

import pytest

from proxy.storage.catalog import (
    InvalidFieldError,
    NewAccessRequest,
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


async def recording(catalog: SqlCatalog) -> str:
    return await new_recording(catalog, await new_call(catalog))


def asking(rid: str, who: str = "carol") -> NewAccessRequest:
    return NewAccessRequest(rid, who, "complaint", "case 17")


async def audit_actions(catalog: SqlCatalog) -> list[tuple[str, str, str | None]]:
    return [(e.actor, e.action, e.object) for e in await catalog.audit.entries()]


async def test_a_request_is_pending_and_audited(catalog: SqlCatalog) -> None:
    rid = await recording(catalog)
    made = await catalog.access_requests.request(asking(rid), at=at(100))
    assert made.state is RequestState.PENDING and made.requested_at == at(100)
    assert await catalog.access_requests.get(made.id) == made
    assert await audit_actions(catalog) == [("carol", "access.request", f"recording:{rid}")]
    [entry] = await catalog.audit.entries()
    assert entry.reason == "case 17"
    assert entry.detail["request"] == made.id and entry.detail["purpose"] == "complaint"


async def test_a_request_for_an_unknown_recording_is_refused_and_leaves_nothing(
    catalog: SqlCatalog,
) -> None:
    with pytest.raises(NotFoundError):
        await catalog.access_requests.request(asking("no-such-recording"))
    assert await catalog.access_requests.requests() == []
    assert await catalog.audit.entries() == []


async def test_an_approval_is_a_grant_until_it_expires(catalog: SqlCatalog) -> None:
    rid = await recording(catalog)
    made = await catalog.access_requests.request(asking(rid), at=at(100))
    approved = await catalog.access_requests.decide(
        made.id, approve=True, by="olive", reason="fine", expires_at=at(1000), at=at(200)
    )
    assert approved.state is RequestState.APPROVED
    assert (approved.decided_by, approved.decided_at, approved.expires_at) == (
        "olive",
        at(200),
        at(1000),
    )
    assert approved.live(at(999)) and not approved.live(at(1000))
    assert await catalog.access_requests.grants_for("carol", at(999)) == [approved]
    assert await catalog.access_requests.grants_for("carol", at(1000)) == []
    assert await catalog.access_requests.grants_for("olive", at(999)) == []
    assert (await audit_actions(catalog))[-1] == ("olive", "access.approve", f"recording:{rid}")
    assert (await catalog.audit.verify()).intact


async def test_a_refusal_is_no_grant(catalog: SqlCatalog) -> None:
    rid = await recording(catalog)
    made = await catalog.access_requests.request(asking(rid))
    refused = await catalog.access_requests.decide(made.id, approve=False, by="olive", reason="no")
    assert refused.state is RequestState.REFUSED and refused.expires_at is None
    assert await catalog.access_requests.grants_for("carol", at(3600)) == []
    assert (await audit_actions(catalog))[-1] == ("olive", "access.refuse", f"recording:{rid}")


async def test_only_a_pending_request_is_decided(catalog: SqlCatalog) -> None:
    rid = await recording(catalog)
    made = await catalog.access_requests.request(asking(rid))
    await catalog.access_requests.decide(made.id, approve=False, by="olive", reason="no")
    entries = len(await catalog.audit.entries())
    with pytest.raises(RequestStateError, match="refused, not pending"):
        await catalog.access_requests.decide(
            made.id, approve=True, by="olive", reason="changed my mind", expires_at=at(9999)
        )
    with pytest.raises(RequestStateError):
        await catalog.access_requests.withdraw(made.id, by="carol")
    assert (await catalog.access_requests.get(made.id)) == (
        await catalog.access_requests.requests()
    )[0]
    assert len(await catalog.audit.entries()) == entries


@pytest.mark.parametrize(
    ("by", "approve", "expires", "message"),
    [
        ("carol", True, 9999, "their own"),
        ("olive", True, None, "needs expires_at"),
        ("olive", False, 9999, "no expires_at"),
        ("olive", True, 3000, "after the decision"),
        ("", True, 9999, "by must be"),
    ],
)
async def test_a_bad_decision_changes_nothing(
    catalog: SqlCatalog, by: str, approve: bool, expires: int | None, message: str
) -> None:
    rid = await recording(catalog)
    made = await catalog.access_requests.request(asking(rid))
    with pytest.raises(InvalidFieldError, match=message):
        await catalog.access_requests.decide(
            made.id,
            approve=approve,
            by=by,
            reason="x",
            expires_at=None if expires is None else at(expires),
        )
    assert await catalog.access_requests.get(made.id) == made
    assert len(await catalog.audit.entries()) == 1


async def test_an_unknown_request_is_not_found(catalog: SqlCatalog) -> None:
    with pytest.raises(NotFoundError):
        await catalog.access_requests.decide("nope", approve=False, by="olive", reason="no")
    with pytest.raises(NotFoundError):
        await catalog.access_requests.withdraw("nope", by="carol")
    assert await catalog.access_requests.get("nope") is None


async def test_the_requester_withdraws_a_pending_request(catalog: SqlCatalog) -> None:
    rid = await recording(catalog)
    made = await catalog.access_requests.request(asking(rid))
    with pytest.raises(InvalidFieldError, match="only carol"):
        await catalog.access_requests.withdraw(made.id, by="mallory")
    withdrawn = await catalog.access_requests.withdraw(made.id, by="carol")
    assert withdrawn.state is RequestState.WITHDRAWN
    assert (await audit_actions(catalog))[-1] == ("carol", "access.withdraw", f"recording:{rid}")


async def test_requests_filter_by_state_requester_and_recording(catalog: SqlCatalog) -> None:
    first, second = await recording(catalog), await recording(catalog)
    a = await catalog.access_requests.request(asking(first, "carol"), at=at(1))
    b = await catalog.access_requests.request(asking(second, "dave"), at=at(2))
    c = await catalog.access_requests.request(asking(second, "carol"), at=at(3))
    await catalog.access_requests.decide(b.id, approve=False, by="olive", reason="no")
    ids = catalog.access_requests.requests
    assert [r.id for r in await ids()] == [a.id, b.id, c.id]
    assert [r.id for r in await ids(state=RequestState.PENDING)] == [a.id, c.id]
    assert [r.id for r in await ids(requester="carol")] == [a.id, c.id]
    assert [r.id for r in await ids(recording_id=second)] == [b.id, c.id]
    assert [r.id for r in await ids(recording_id=second, requester="carol")] == [c.id]


async def test_the_table_itself_refuses_deciding_ones_own_request(
    catalog: SqlCatalog, backend: Backend
) -> None:
    rid = await recording(catalog)
    made = await catalog.access_requests.request(asking(rid))
    with backend.raw() as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE access_requests SET decided_by = requester WHERE id = ?", (made.id,))
