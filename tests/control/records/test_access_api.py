"""Access requests over real HTTP from a running records service: a person asks, a
records officer (never the requester) approves or refuses, the grant opens the audio
for its purpose and shows in the requester's list; the queue shows each person only
what they may decide; every refusal names its rule; bad input changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from proxy.storage.catalog import parse_utc

from .records_world import PLAY, World, http, world

__all__ = ["http", "world"]


async def ask(
    world: World, http: aiohttp.ClientSession, who: str, body: Any = None, rid: str | None = None
) -> tuple[int, Any]:
    path = f"/recordings/{rid or world.transferred.id}/access-requests"
    status, answer, _ = await world.call(http, who, "POST", path, json_body=body or PLAY)
    return status, answer


async def decide(
    world: World, http: aiohttp.ClientSession, who: str, request_id: str, **body: Any
) -> tuple[int, Any]:
    path = f"/access-requests/{request_id}/decision"
    status, answer, _ = await world.call(http, who, "POST", path, json_body=body)
    return status, answer


async def play(world: World, http: aiohttp.ClientSession, who: str, **params: str) -> int:
    status, _, _ = await world.call(
        http, who, "GET", f"/recordings/{world.transferred.id}/audio", params=PLAY | params
    )
    return status


async def queue(world: World, http: aiohttp.ClientSession, who: str, query: str = "") -> list[str]:
    status, body, _ = await world.call(http, who, "GET", f"/access-requests{query}")
    assert status == 200, body
    return [found["id"] for found in body["access_requests"]]


async def test_request_approve_by_an_officer_then_listen(
    world: World, http: aiohttp.ClientSession
) -> None:
    assert await play(world, http, "carl") == 403  # no grant yet
    seq = world.last_seq()
    status, made = await ask(world, http, "carl")
    assert status == 201, made
    assert made["state"] == "pending" and made["requester"] == "carl"
    assert made["purpose"] == "complaint" and made["reason"] == "case 17"
    actions = [(e["action"], e["detail"].get("rule")) for e in world.audit_since(seq)]
    assert ("access.allowed", "request.allowed") in actions  # the decision, audited
    assert made["id"] in await queue(world, http, "olive", "?state=pending")
    assert made["id"] in await queue(world, http, "dora")  # pending is the default
    assert await queue(world, http, "carl") == []  # nobody else's, nor his own to decide
    assert made["id"] in await queue(world, http, "carl", "?mine=1")

    status, body = await decide(world, http, "carl", made["id"], decision="approve", reason="me")
    assert (status, body["rule"]) == (403, "approve.not_officer")
    status, approved = await decide(
        world, http, "olive", made["id"], decision="approve", reason="complaint upheld", days=2
    )
    assert status == 200, approved
    assert approved["state"] == "approved" and approved["decided_by"] == "olive"
    expires = parse_utc(approved["expires_at"])
    assert (
        timedelta(days=2) - timedelta(minutes=1) < expires - datetime.now(UTC) <= timedelta(days=2)
    )
    assert made["id"] not in await queue(world, http, "olive")
    status, mine, _ = await world.call(http, "carl", "GET", "/access-requests?mine=1")
    [grant] = [r for r in mine["access_requests"] if r["id"] == made["id"]]
    assert grant["live"] is True and grant["state"] == "approved"

    assert await play(world, http, "carl") == 200  # the grant opens it, for its purpose
    assert await play(world, http, "carl", purpose="training") == 403
    status, page, _ = await world.call(http, "carl", "GET", f"/recordings/{world.transferred.id}")
    assert status == 200
    assert all("complaint" in row["purposes"] for row in page["access"]["listen"])


async def test_nobody_approves_their_own_request(world: World, http: aiohttp.ClientSession) -> None:
    status, made = await ask(world, http, "otto")
    assert status == 201
    assert made["id"] not in await queue(world, http, "otto")
    before, seq = world.snapshot(), world.last_seq()
    status, body = await decide(world, http, "otto", made["id"], decision="approve", reason="x")
    assert (status, body["rule"]) == (403, "approve.own_request")
    [entry] = world.audit_since(seq)
    assert (entry["action"], entry["detail"]["rule"]) == ("access.refused", "approve.own_request")
    assert world.snapshot() == before
    status, approved = await decide(
        world, http, "olive", made["id"], decision="approve", reason="ok"
    )
    assert status == 200 and approved["expires_at"]  # the default length: grant_days


async def test_a_refused_request_opens_nothing_and_cannot_be_decided_again(
    world: World, http: aiohttp.ClientSession
) -> None:
    status, made = await ask(world, http, "max")
    assert status == 201
    status, refused = await decide(world, http, "dora", made["id"], decision="refuse", reason="no")
    assert status == 200 and refused["state"] == "refused" and refused["expires_at"] is None
    assert await play(world, http, "max") == 403
    before, seq = world.snapshot(), world.last_seq()
    status, body = await decide(world, http, "olive", made["id"], decision="approve", reason="oh")
    assert status == 409 and "refused" in body["detail"]
    assert [e["action"] for e in world.audit_since(seq)] == ["access.allowed"]
    assert world.snapshot() == before


async def test_a_pending_request_is_withdrawn_by_its_requester_only(
    world: World, http: aiohttp.ClientSession
) -> None:
    status, made = await ask(world, http, "nina", {"purpose": "training", "reason": "course"})
    assert status == 201
    path = f"/access-requests/{made['id']}/withdraw"
    before = world.snapshot()
    status, body, _ = await world.call(http, "mona", "POST", path)
    assert status == 404 and world.snapshot() == before  # not hers: nothing to know about
    status, withdrawn, _ = await world.call(http, "nina", "POST", path)
    assert status == 200 and withdrawn["state"] == "withdrawn"
    assert made["id"] not in await queue(world, http, "dora")
    status, body, _ = await world.call(http, "nina", "POST", path)
    assert status == 409 and "withdrawn" in body["detail"]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"purpose": "curiosity", "reason": "why not"}, 403, "purpose.unknown"),
        ({"purpose": "complaint"}, 403, "reason.missing"),
        ({"purpose": "complaint", "reason": "x" * 501}, 422, "longer than 500"),
        ({"purpose": 7, "reason": "x"}, 422, "purpose must be text"),
        ({"purpose": "complaint", "reason": "x", "part": 1}, 422, "unknown member 'part'"),
        ([1, 2], 422, "JSON object"),
    ],
)
async def test_a_bad_request_changes_nothing(
    world: World, http: aiohttp.ClientSession, body: Any, status: int, says: str
) -> None:
    before, seq = world.snapshot(), world.last_seq()
    got, answer = await ask(world, http, "carl", body)
    assert got == status, answer
    assert says in (answer.get("rule") or answer["detail"])
    entries = world.audit_since(seq)
    assert [e["action"] for e in entries] == (["access.refused"] if status == 403 else [])
    assert world.snapshot() == before


async def test_an_unknown_recording_or_request_is_404_and_changes_nothing(
    world: World, http: aiohttp.ClientSession
) -> None:
    before, seq = world.snapshot(), world.last_seq()
    status, _ = await ask(world, http, "carl", rid="00000000-0000-4000-8000-000000000000")
    assert status == 404
    for rid in ("00000000-0000-4000-8000-000000000000", "1' OR '1'='1"):
        status, _ = await decide(world, http, "olive", rid, decision="approve", reason="r")
        assert status == 404
    assert world.audit_since(seq) == [] and world.snapshot() == before


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"decision": "approve"}, "a decision needs a reason"),
        ({"decision": "maybe", "reason": "r"}, "approve or refuse"),
        ({"decision": ["approve"], "reason": "r"}, "approve or refuse"),
        ({"decision": "refuse", "reason": "r", "days": 3}, "a refusal lasts no days"),
        ({"decision": "approve", "reason": "r", "days": 8}, "days must be a whole number"),
        ({"decision": "approve", "reason": "r", "days": 0}, "days must be a whole number"),
        ({"decision": "approve", "reason": "r", "days": True}, "days must be a whole number"),
        ({"decision": "approve", "reason": "r", "day": 3}, "unknown member 'day'"),
    ],
)
async def test_a_bad_decision_is_422_and_changes_nothing(
    world: World, http: aiohttp.ClientSession, body: dict[str, Any], says: str
) -> None:
    status, made = await ask(world, http, "bob", {"purpose": "quality", "reason": "review"})
    assert status == 201
    before, seq = world.snapshot(), world.last_seq()
    status, answer = await decide(world, http, "olive", made["id"], **body)
    assert status == 422 and says in answer["detail"]
    assert world.audit_since(seq) == [] and world.snapshot() == before


async def test_a_body_too_large_or_not_json_is_refused(
    world: World, http: aiohttp.ClientSession
) -> None:
    path = f"/recordings/{world.transferred.id}/access-requests"
    before = world.snapshot()
    for data, status in ((b"{" + b" " * 20_000 + b"}", 400), (b"[" * 40 + b"]" * 40, 400),
                         (b"purpose=complaint", 422)):  # fmt: skip
        got, body, answer = await world.call(http, "carl", "POST", path, data=data)
        assert got == status and answer.content_type == "application/problem+json", body
    assert world.snapshot() == before


@pytest.mark.parametrize("query", ["?state=approved", "?state=lost", "?mine=yes", "?who=me"])
async def test_a_bad_listing_is_422(world: World, http: aiohttp.ClientSession, query: str) -> None:
    seq = world.last_seq()
    status, body, _ = await world.call(http, "olive", "GET", f"/access-requests{query}")
    assert status == 422, body
    assert world.audit_since(seq) == []


async def test_mine_filters_by_state(world: World, http: aiohttp.ClientSession) -> None:
    status, made = await ask(world, http, "mona", {"purpose": "training", "reason": "course"})
    assert status == 201
    assert made["id"] in await queue(world, http, "mona", "?mine=1&state=pending")
    assert made["id"] not in await queue(world, http, "mona", "?mine=1&state=approved")


async def test_without_a_session_it_is_401(world: World, http: aiohttp.ClientSession) -> None:
    before = world.snapshot()
    for method, path in (
        ("POST", f"/recordings/{world.transferred.id}/access-requests"),
        ("GET", "/access-requests"),
        ("POST", "/access-requests/x/decision"),
        ("POST", "/access-requests/x/withdraw"),
    ):
        async with http.request(method, f"{world.url}{path}", json=PLAY) as answer:
            assert answer.status == 401, path
    assert world.snapshot() == before


async def test_the_openapi_document_describes_the_access_routes(
    world: World, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{world.url}/openapi.json") as answer:
        paths = (await answer.json())["paths"]
    ask_op = paths["/api/v1/recordings/{id}/access-requests"]["post"]
    assert ask_op["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "purpose",
        "reason",
    ]
    assert "201" in ask_op["responses"] and "403" in ask_op["responses"]
    decision = paths["/api/v1/access-requests/{id}/decision"]["post"]
    assert set(decision["responses"]) >= {"200", "401", "403", "404", "409", "422"}
    listing = paths["/api/v1/access-requests"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"state", "mine"}
    assert "post" in paths["/api/v1/access-requests/{id}/withdraw"]
