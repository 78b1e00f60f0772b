"""The access desk: request, approve or refuse, withdraw, list; every refusal path, and
what each leaves in the catalog and the audit chain."""

from __future__ import annotations

from datetime import timedelta

import pytest

from proxy.records.access import AccessDesk
from proxy.records.errors import (
    AccessDenied,
    AccessRequestConflict,
    InvalidAccessRequest,
    RecordNotFound,
)
from proxy.records.gate import ALLOWED, REFUSED
from proxy.records.policy import Action, Actor
from proxy.storage.catalog import RequestState, format_utc

from .access_world import ADAM, ALICE, DEE, MAX, OLIVE, SETTINGS, World, world

__all__ = ["world"]


def desk(w: World) -> AccessDesk:
    return AccessDesk(w.gate, w.catalog.access_requests)


async def actions(w: World) -> list[tuple[str, str]]:
    return [(e.actor, e.action) for e in await w.audit()]


async def test_request_approve_listen(world: World) -> None:
    access = desk(world)
    asked = await access.request(MAX, world.single, "complaint", "  case\n17 ")
    assert (asked.state, asked.requester, asked.reason) == (RequestState.PENDING, "max", "case 17")
    approved = await access.decide(OLIVE, asked.id, True, "agreed")
    assert approved.state is RequestState.APPROVED
    assert approved.expires_at == world.clock.now + timedelta(days=SETTINGS.grant_days)
    decision = await world.gate.check(
        MAX, Action.PLAY, recording_id=world.single, purpose="complaint", reason="case 17"
    )
    assert decision.rule == "audio.granted"
    assert await actions(world) == [
        ("max", ALLOWED),  # request_access
        ("max", "access.request"),
        ("olive", ALLOWED),  # approve_access
        ("olive", "access.approve"),
        ("max", ALLOWED),  # play
    ]
    assert (await world.catalog.audit.verify()).intact


async def test_the_requesters_list_shows_grants_and_their_expiry(world: World) -> None:
    access = desk(world)
    asked = await access.request(MAX, world.single, "complaint", "case 17")
    await access.decide(DEE, asked.id, True, "ok", days=2)
    [mine] = await access.mine(MAX)
    assert mine["state"] == "approved" and mine["live"] is True
    assert mine["expires_at"] == format_utc(world.clock.now + timedelta(days=2))
    world.tick(2 * 86400)
    [later] = await access.mine(MAX)
    assert later["live"] is False
    assert await access.mine(OLIVE) == []


async def test_a_refusal_grants_nothing(world: World) -> None:
    access = desk(world)
    asked = await access.request(MAX, world.single, "complaint", "case 17")
    refused = await access.decide(OLIVE, asked.id, False, "not needed")
    assert refused.state is RequestState.REFUSED and refused.expires_at is None
    assert await world.catalog.access_requests.grants_for("max", world.clock.now) == []


@pytest.mark.parametrize(
    ("purpose", "reason", "rule"),
    [
        ("", "x", "purpose.missing"),
        ("gossip", "x", "purpose.unknown"),
        ("legal", "", "reason.missing"),
    ],
)
async def test_a_request_without_purpose_or_reason_is_refused_by_the_policy(
    world: World, purpose: str, reason: str, rule: str
) -> None:
    with pytest.raises(AccessDenied) as denied:
        await desk(world).request(MAX, world.single, purpose, reason)
    assert denied.value.decision.rule == rule
    assert await world.catalog.access_requests.requests() == []
    assert await actions(world) == [("max", REFUSED)]


@pytest.mark.parametrize(("purpose", "reason"), [(3, "x"), ("legal", ["x"]), ("legal", "x" * 501)])
async def test_a_malformed_request_changes_nothing(
    world: World, purpose: object, reason: object
) -> None:
    with pytest.raises(InvalidAccessRequest):
        await desk(world).request(MAX, world.single, purpose, reason)
    assert await world.audit() == []


async def test_a_request_for_an_unknown_recording_is_not_found(world: World) -> None:
    with pytest.raises(RecordNotFound):
        await desk(world).request(MAX, "no-such", "legal", "x")
    assert await world.audit() == []


@pytest.mark.parametrize(
    ("who", "rule"), [(ALICE, "approve.not_officer"), (ADAM, "approve.not_officer")]
)
async def test_only_officers_decide(world: World, who: Actor, rule: str) -> None:
    access = desk(world)
    asked = await access.request(MAX, world.single, "legal", "x")
    with pytest.raises(AccessDenied) as denied:
        await access.decide(who, asked.id, True, "sure")
    assert denied.value.decision.rule == rule
    assert (await world.catalog.access_requests.get(asked.id)) == asked


async def test_nobody_approves_their_own_request(world: World) -> None:
    access = desk(world)
    asked = await access.request(OLIVE, world.single, "legal", "x")
    with pytest.raises(AccessDenied) as denied:
        await access.decide(OLIVE, asked.id, True, "mine")
    assert denied.value.decision.rule == "approve.own_request"
    approved = await access.decide(DEE, asked.id, True, "fine")
    assert approved.decided_by == "dee"


async def test_a_decided_request_is_a_conflict(world: World) -> None:
    access = desk(world)
    asked = await access.request(MAX, world.single, "legal", "x")
    await access.decide(OLIVE, asked.id, False, "no")
    with pytest.raises(AccessRequestConflict, match="refused"):
        await access.decide(DEE, asked.id, True, "yes")
    assert [r.state for r in await world.catalog.access_requests.requests()] == [
        RequestState.REFUSED
    ]


@pytest.mark.parametrize(
    ("approve", "reason", "days", "message"),
    [
        ("yes", "x", None, "approve or refuse"),
        (True, "", None, "needs a reason"),
        (True, None, None, "must be text"),
        (True, "x", 0, "from 1 to 7"),
        (True, "x", 8, "from 1 to 7"),
        (True, "x", "three", "from 1 to 7"),
        (True, "x", True, "from 1 to 7"),
        (False, "x", 3, "lasts no days"),
    ],
)
async def test_a_malformed_decision_changes_nothing(
    world: World, approve: object, reason: object, days: object, message: str
) -> None:
    access = desk(world)
    asked = await access.request(MAX, world.single, "legal", "x")
    before = await world.audit()
    with pytest.raises(InvalidAccessRequest, match=message):
        await access.decide(OLIVE, asked.id, approve, reason, days)
    assert await world.audit() == before
    assert (await world.catalog.access_requests.get(asked.id)) == asked


async def test_deciding_an_unknown_request_is_not_found(world: World) -> None:
    with pytest.raises(RecordNotFound):
        await desk(world).decide(OLIVE, "nope", True, "x")
    assert await world.audit() == []


async def test_withdraw_is_the_requesters_alone(world: World) -> None:
    access = desk(world)
    asked = await access.request(MAX, world.single, "legal", "x")
    with pytest.raises(RecordNotFound, match="of yours"):
        await access.withdraw(OLIVE, asked.id)
    withdrawn = await access.withdraw(MAX, asked.id)
    assert withdrawn.state is RequestState.WITHDRAWN
    with pytest.raises(AccessRequestConflict):
        await access.withdraw(MAX, asked.id)


async def test_pending_shows_officers_what_they_may_decide(world: World) -> None:
    access = desk(world)
    theirs = await access.request(MAX, world.single, "legal", "x")
    olives = await access.request(OLIVE, world.transferred, "legal", "x")
    decided = await access.request(ALICE, world.single, "legal", "x")
    await access.decide(DEE, decided.id, False, "no")
    assert [r.id for r in await access.pending(OLIVE)] == [theirs.id]
    assert [r.id for r in await access.pending(DEE)] == [theirs.id, olives.id]
    assert await access.pending(MAX) == []
    listed = await world.catalog.audit.entries(action="access_requests.list")
    assert [(e.actor, e.detail["shown"]) for e in listed] == [("olive", 1), ("dee", 2), ("max", 0)]
