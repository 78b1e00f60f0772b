"""Holds over the real HTTP API of a real ``recproxy records serve``, on real recordings:
records officers and the DPO place, list and release them as themselves; everyone else
is refused naming the rule; each decision is an audit entry; bad input is a problem
document and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .governance_world import World, make_world

UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    made = make_world(tmp_path_factory.mktemp("holds"))
    yield made
    assert made.service.stop() == 0
    assert "Traceback" not in made.service.log_text()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def holds(world: World) -> list[tuple[Any, ...]]:
    return world.rows("SELECT * FROM holds ORDER BY placed_at, rowid")


async def test_officers_place_list_and_release_holds_as_themselves(
    world: World, http: aiohttp.ClientSession
) -> None:
    seq = world.audit_seq()
    status, hold = await world.call(
        http, "olive", "POST", f"/api/v1/recordings/{world.recording}/holds",
        {"kind": "conduct", "reference": "HR-3", "review_at": "1999-12-31", "note": "x"},
    )  # fmt: skip
    assert status == 201, hold
    assert (hold["placed_by"], hold["kind"], hold["reference"], hold["due"]) == (
        "olive", "conduct", "HR-3", True,
    )  # fmt: skip
    status, listing = await world.call(http, "dee", "GET", "/api/v1/holds?due=1&active=true")
    assert status == 200 and hold["id"] in [h["id"] for h in listing["holds"]]
    status, released = await world.call(
        http, "oscar", "POST", f"/api/v1/holds/{hold['id']}/release", {"reason": "closed"}
    )
    assert status == 200, released
    assert (released["released_by"], released["release_reason"]) == ("oscar", "closed")
    status, listing = await world.call(http, "olive", "GET", "/api/v1/holds?active=1")
    assert status == 200 and hold["id"] not in [h["id"] for h in listing["holds"]]
    status, listing = await world.call(http, "olive", "GET", "/api/v1/holds")
    assert hold["id"] in [h["id"] for h in listing["holds"]]  # released holds stay listed
    obj = f"recording:{world.recording}"
    entries = world.audit_after(seq)
    assert [(a, act, o, d.get("action"), d.get("rule")) for a, act, o, d in entries] == [
        ("olive", "access.allowed", obj, "place_hold", "holds.allowed"),
        ("olive", "hold.place", obj, None, None),
        ("dee", "access.allowed", None, "view_holds", "holds.allowed"),
        ("oscar", "access.allowed", obj, "release_hold", "holds.allowed"),
        ("oscar", "hold.release", obj, None, None),
        ("olive", "access.allowed", None, "view_holds", "holds.allowed"),
        ("olive", "access.allowed", None, "view_holds", "holds.allowed"),
    ]  # fmt: skip


@pytest.mark.parametrize("name", ["sam", "mia", "ada", "max"])
async def test_everyone_else_is_refused_by_rule_and_the_refusal_is_audited(
    world: World, http: aiohttp.ClientSession, name: str
) -> None:
    status, hold = await world.call(
        http, "dee", "POST", f"/api/v1/recordings/{world.recording}/holds",
        {"kind": "complaint", "reference": f"C-{name}"},
    )  # fmt: skip
    assert status == 201, hold
    before, seq = holds(world), world.audit_seq()
    tries = [
        ("POST", f"/api/v1/recordings/{world.recording}/holds",
         {"kind": "complaint", "reference": "mine"}),
        ("POST", f"/api/v1/holds/{hold['id']}/release", {"reason": "mine now"}),
        ("GET", "/api/v1/holds", None),
    ]  # fmt: skip
    for method, path, body in tries:
        status, problem = await world.call(http, name, method, path, body)
        assert (status, problem["rule"]) == (403, "holds.not_officer"), (path, problem)
        assert "records officers and the DPO" in problem["detail"]
    assert holds(world) == before
    refusals = [
        (actor, detail["action"], detail["rule"])
        for actor, action, _, detail in world.audit_after(seq)
        if action == "access.refused"
    ]
    assert refusals == [
        (name, "place_hold", "holds.not_officer"),
        (name, "release_hold", "holds.not_officer"),
        (name, "view_holds", "holds.not_officer"),
    ]
    assert not [e for e in world.audit_after(seq) if e[1].startswith("hold.")]


BAD_BODIES = [
    ("/recordings/REC/holds", {"kind": "gossip", "reference": "r"}, 422, "kind must be one of"),
    ("/recordings/REC/holds", {"kind": "complaint"}, 422, "reference is required"),
    ("/recordings/REC/holds", {"kind": "complaint", "reference": "r", "review_at": "tomorrow"},
     422, "YYYY-MM-DD"),
    ("/recordings/REC/holds", {"kind": "complaint", "reference": "r" * 501}, 422, "longer than"),
    ("/recordings/REC/holds", ["kind"], 422, "JSON object"),
    (f"/recordings/{UNKNOWN}/holds", {"kind": "complaint", "reference": "r"}, 404,
     "does not exist"),
    ("/recordings/../../etc/passwd/holds", {"kind": "complaint", "reference": "r"}, 404, ""),
    ("/recordings/' OR 1=1 --/holds", {"kind": "complaint", "reference": "r"}, 404,
     "does not exist"),
    (f"/holds/{UNKNOWN}/release", {"reason": "x"}, 404, "does not exist"),
    ("/holds/HOLD/release", {}, 422, "reason is required"),
    ("/holds/HOLD/release", {"reason": 7}, 422, "reason is required"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "status", "words"), BAD_BODIES)
async def test_bad_input_is_a_problem_that_changes_nothing(
    world: World, http: aiohttp.ClientSession, path: str, body: Any, status: int, words: str
) -> None:
    _, hold = await world.call(
        http, "dee", "POST", f"/api/v1/recordings/{world.recording}/holds",
        {"kind": "training", "reference": "T"},
    )  # fmt: skip
    before, seq = holds(world), world.audit_seq()
    path = path.replace("REC", world.recording).replace("HOLD", hold["id"])
    got, problem = await world.call(http, "olive", "POST", "/api/v1" + path, body)
    assert got == status, problem
    assert words in problem["detail"]
    assert holds(world) == before
    assert world.audit_after(seq) == []  # malformed or unknown: nothing decided, nothing audited


@pytest.mark.parametrize(
    ("query", "words"),
    [("active=yes", "active must be 1 or 0"), ("due=2", "due must be 1 or 0"),
     ("mine=1", "unknown query parameter 'mine'")],
)  # fmt: skip
async def test_a_bad_listing_parameter_is_422_and_audits_nothing(
    world: World, http: aiohttp.ClientSession, query: str, words: str
) -> None:
    seq = world.audit_seq()
    status, problem = await world.call(http, "dee", "GET", f"/api/v1/holds?{query}")
    assert status == 422 and words in problem["detail"], problem
    assert world.audit_after(seq) == []


async def test_releasing_twice_is_409_and_unsigned_requests_are_401(
    world: World, http: aiohttp.ClientSession
) -> None:
    _, hold = await world.call(
        http, "olive", "POST", f"/api/v1/recordings/{world.recording}/holds",
        {"kind": "training", "reference": "T-2"},
    )  # fmt: skip
    release = f"/api/v1/holds/{hold['id']}/release"
    assert (await world.call(http, "olive", "POST", release, {"reason": "done"}))[0] == 200
    before, seq = holds(world), world.audit_seq()
    status, problem = await world.call(http, "dee", "POST", release, {"reason": "again"})
    assert status == 409 and "already released" in problem["detail"], problem
    assert holds(world) == before
    assert [e[1] for e in world.audit_after(seq)] == ["access.allowed"]  # the decision only
    for method, path in (("GET", "/api/v1/holds"), ("POST", release)):
        status, problem = await world.call(http, None, method, path, {"reason": "x"})
        assert status == 401, problem
    assert holds(world) == before


async def test_a_hold_on_a_deleted_recording_is_409(
    world: World, http: aiohttp.ClientSession
) -> None:
    gone = world.rows("SELECT id FROM recordings WHERE id != ?", world.recording)[0][0]
    with_state = "UPDATE recordings SET state = ? WHERE id = ?"
    world.rows(with_state, "deleted", gone)
    try:
        status, problem = await world.call(
            http, "olive", "POST", f"/api/v1/recordings/{gone}/holds",
            {"kind": "complaint", "reference": "late"},
        )  # fmt: skip
        assert status == 409 and "no audio left" in problem["detail"], problem
        assert world.rows("SELECT COUNT(*) FROM holds WHERE recording_id = ?", gone) == [(0,)]
    finally:
        world.rows(with_state, "complete", gone)


async def test_the_openapi_document_describes_the_hold_routes(
    world: World, http: aiohttp.ClientSession
) -> None:
    status, document = await world.call(http, None, "GET", "/api/v1/openapi.json")
    assert status == 200
    paths = document["paths"]
    assert sorted(paths["/api/v1/holds"]) == ["get"]
    place = paths["/api/v1/recordings/{recording_id}/holds"]["post"]
    assert set(place["responses"]) >= {"201", "401", "403", "404", "409", "422"}
    kinds = place["requestBody"]["content"]["application/json"]["schema"]["properties"]["kind"]
    assert kinds["enum"] == ["complaint", "training", "conduct"]
    assert "reason" in str(paths["/api/v1/holds/{hold_id}/release"]["post"]["requestBody"])


def test_the_call_proxy_keeps_no_hold_routes() -> None:
    source = Path(__file__).resolve().parents[3] / "proxy" / "control" / "api.py"
    assert "/holds" not in source.read_text().split('"""', 2)[2]
