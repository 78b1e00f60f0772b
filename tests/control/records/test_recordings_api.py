"""Search and a recording's page over real HTTP from a running records service: each
person finds what their role lets them see (metadata only), a search is one audit
entry, a page is one decision (a refusal names its rule), and bad filters change
nothing."""

from __future__ import annotations

import aiohttp
import pytest

from .records_world import World, http, world

__all__ = ["http", "world"]


def ids(body: dict[str, object]) -> set[str]:
    return {row["id"] for row in body["recordings"]}  # type: ignore[attr-defined, index]


@pytest.mark.parametrize(
    ("who", "sees_all"),
    [
        ("alice", True),  # took part 1
        ("bob", True),  # took part 2
        ("carl", False),  # staff on no call
        ("mona", True),  # manager of part 1's team
        ("nina", True),  # manager of part 2's team
        ("olive", True),  # records officer
        ("dora", True),  # DPO
        ("max", False),  # maintenance
    ],
)
async def test_search_shows_each_role_what_it_may_see(
    world: World, http: aiohttp.ClientSession, who: str, sees_all: bool
) -> None:
    every = {world.transferred.id, world.open_id, world.damaged_id}
    seq = world.last_seq()
    status, body, _ = await world.call(http, who, "GET", "/recordings")
    assert status == 200, body
    assert ids(body) == (every if sees_all else set())
    assert body["page"] == 1 and body["more"] is False
    [entry] = world.audit_since(seq)
    assert (entry["actor"], entry["action"]) == (who, "recordings.search")
    assert entry["detail"]["shown"] == (3 if sees_all else 0)


async def test_search_rows_are_metadata_with_parts_never_audio(
    world: World, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await world.call(http, "olive", "GET", "/recordings")
    assert status == 200
    [row] = [r for r in body["recordings"] if r["id"] == world.transferred.id]
    assert row["caller"] == "+441234567890" and row["state"] == "complete"
    assert [(p["part"], p["operator"], p["team"]) for p in row["parts"]] == [
        (1, "alice", "reception"),
        (2, "bob", "nurses"),
    ]
    text = str(body)
    assert "recordings/" not in text and "key" not in text


async def test_filters_and_pages_narrow_the_search(
    world: World, http: aiohttp.ClientSession
) -> None:
    async def found(**params: str) -> set[str]:
        status, body, _ = await world.call(http, "dora", "GET", "/recordings", params=params)
        assert status == 200, body
        return ids(body)

    every = {world.transferred.id, world.open_id, world.damaged_id}
    assert await found(state="recording") == {world.open_id}
    assert await found(number="+441234567890", operator="bob", team="nurses") == every
    assert await found(operator="carl") == set()
    assert await found(direction="inbound") == every
    assert await found(direction="outbound") == set()
    assert await found(service="triage") == set()  # the calls name no service
    assert await found(to="2023-11-14T22:00:00Z") == set()  # the calls began 22:13:20
    assert await found(**{"from": "2023-11-14T22:00:00Z"}) == every
    status, first, _ = await world.call(
        http, "dora", "GET", "/recordings", params={"page": "1", "size": "2"}
    )
    assert status == 200 and len(first["recordings"]) == 2 and first["more"] is True
    status, last, _ = await world.call(
        http, "dora", "GET", "/recordings", params={"page": "2", "size": "2"}
    )
    assert len(last["recordings"]) == 1 and last["more"] is False
    assert ids(first) | ids(last) == every


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("from=yesterday", "from"),
        ("state=lost", "state must be one of"),
        ("size=0", "size must be a whole number"),
        ("page=%C2%B2", "page must be a whole number"),
        ("colour=red", "unknown query parameter 'colour'"),
        ("team=a&team=b", "'team' is given more than once"),
        ("from=2024-01-02T00:00:00Z&to=2024-01-01T00:00:00Z", "to must be after from"),
        ("number=" + "9" * 201, "longer than 200"),
        ("direction=sideways", "direction must be one of inbound, outbound"),
        ("service=" + "s" * 201, "service is longer than 200"),
        ("direction=inbound&direction=outbound", "'direction' is given more than once"),
        ("operator=%27%20OR%201%3D1%20--", None),  # SQL as text: a filter matching nothing
    ],
)
async def test_a_bad_filter_is_422_and_changes_nothing(
    world: World, http: aiohttp.ClientSession, query: str, says: str | None
) -> None:
    before, seq = world.snapshot(), world.last_seq()
    status, body, answer = await world.call(http, "dora", "GET", f"/recordings?{query}")
    if says is None:
        assert status == 200 and body["recordings"] == []
        assert [e["action"] for e in world.audit_since(seq)] == ["recordings.search"]
    else:
        assert status == 422, body
        assert answer.content_type == "application/problem+json"
        assert says in body["detail"]
        assert world.audit_since(seq) == []
    assert world.snapshot() == before


async def test_a_recordings_page_holds_parts_holds_and_your_access(
    world: World, http: aiohttp.ClientSession
) -> None:
    seq = world.last_seq()
    status, body, _ = await world.call(http, "alice", "GET", f"/recordings/{world.transferred.id}")
    assert status == 200, body
    assert body["id"] == world.transferred.id
    assert [p["operator"] for p in body["parts"]] == ["alice", "bob"]
    assert body["holds"] == []
    listen = {row["part"]: row["purposes"] for row in body["access"]["listen"]}
    assert "complaint" in listen[1] and listen[2] == []  # her own part only
    assert body["access"]["may_place_hold"] is False
    assert body["access"]["requests"] == []
    [entry] = world.audit_since(seq)
    assert (entry["action"], entry["object"]) == (
        "access.allowed",
        f"recording:{world.transferred.id}",
    )
    assert entry["detail"]["action"] == "view_metadata"


async def test_a_page_refused_names_the_rule_and_is_audited(
    world: World, http: aiohttp.ClientSession
) -> None:
    before, seq = world.snapshot(), world.last_seq()
    status, body, answer = await world.call(
        http, "carl", "GET", f"/recordings/{world.transferred.id}"
    )
    assert status == 403
    assert answer.content_type == "application/problem+json"
    assert body["rule"] == "metadata.not_yours" and body["detail"]
    [entry] = world.audit_since(seq)
    assert (entry["actor"], entry["action"]) == ("carl", "access.refused")
    assert entry["detail"]["rule"] == "metadata.not_yours"
    assert world.snapshot() == before


@pytest.mark.parametrize(
    "rid", ["00000000-0000-4000-8000-000000000000", "..%2F..%2Fetc%2Fpasswd", "x' OR '1'='1"]
)
async def test_an_unknown_recording_is_404_and_not_audited(
    world: World, http: aiohttp.ClientSession, rid: str
) -> None:
    seq = world.last_seq()
    status, body, _ = await world.call(http, "dora", "GET", f"/recordings/{rid}")
    assert status == 404 and body["status"] == 404
    assert world.audit_since(seq) == []


async def test_without_a_session_it_is_401(world: World, http: aiohttp.ClientSession) -> None:
    for path in ("/recordings", f"/recordings/{world.transferred.id}"):
        async with http.get(f"{world.url}{path}") as answer:
            assert answer.status == 401
            assert answer.content_type == "application/problem+json"


async def test_the_openapi_document_describes_the_recordings_routes(
    world: World, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{world.url}/openapi.json") as answer:
        paths = (await answer.json())["paths"]
    search = paths["/api/v1/recordings"]["get"]
    assert {p["name"] for p in search["parameters"]} == {
        "number", "from", "to", "operator", "team", "state", "service", "direction", "page",
        "size",
    }  # fmt: skip
    assert set(search["responses"]) == {"200", "401", "422"}
    detail = paths["/api/v1/recordings/{id}"]["get"]
    assert set(detail["responses"]) == {"200", "401", "403", "404", "422"}
    assert "rule" in str(detail["responses"]["403"])
