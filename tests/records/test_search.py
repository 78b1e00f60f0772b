"""Metadata search scoped by role, its filters and pages, one audit entry a search; the
detail of one recording with the person's access to it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from proxy.config import NumberSettings
from proxy.recording_state import RecordingState
from proxy.records.errors import AccessDenied, InvalidAccessRequest, RecordNotFound
from proxy.records.gate import ALLOWED
from proxy.records.policy import Actor
from proxy.records.search import Page, RecordSearch, parse_filters, parse_page
from proxy.roles import Role
from proxy.storage.catalog import Attribution, NewAccessRequest, NewHold, SearchFilters

from ..storage.test_catalog import at, new_call, new_recording
from .access_world import ADAM, ALICE, BOB, DEE, MAX, MONA, OLIVE, SETTINGS, World, world

__all__ = ["world"]

CARL = Actor("carl", Role.STAFF, frozenset({"nurses"}), operator="carl")
NURSES = Actor("nina", Role.MANAGER, frozenset({"nurses"}))
NUMBERS = NumberSettings("GB")


def search(w: World) -> RecordSearch:
    return RecordSearch(w.gate, w.catalog)


async def found(w: World, actor: Actor, page: Page | None = None, **raw: object) -> list[str]:
    result = await search(w).search(actor, parse_filters(raw, NUMBERS), page or Page())
    return [row.recording_id for row in result.rows]


async def grant(w: World, who: str, rid: str, purpose: str = "complaint") -> None:
    asked = await w.catalog.access_requests.request(NewAccessRequest(rid, who, purpose, "x"))
    await w.catalog.access_requests.decide(
        asked.id, approve=True, by="dee", reason="ok", expires_at=w.clock.now + timedelta(days=1)
    )


@pytest.mark.parametrize(
    ("actor", "sees"),
    [
        (OLIVE, ["single", "transferred"]),
        (DEE, ["single", "transferred"]),
        (ALICE, ["transferred"]),
        (BOB, ["transferred"]),  # part 2 was his
        (CARL, ["single"]),
        (MONA, ["transferred"]),
        (NURSES, ["single", "transferred"]),
        (ADAM, []),
        (MAX, []),
    ],
)
async def test_each_role_finds_what_it_may_see(world: World, actor: Actor, sees: list[str]) -> None:
    names = {world.single: "single", world.transferred: "transferred"}
    assert [names[rid] for rid in await found(world, actor)] == sees


async def test_a_live_grant_opens_one_recording_to_search(world: World) -> None:
    await grant(world, "max", world.single)
    assert await found(world, MAX) == [world.single]
    world.tick(86400)
    assert await found(world, MAX) == []


async def test_a_disabled_account_finds_nothing(world: World) -> None:
    gone = Actor("olive", Role.RECORDS_OFFICER, disabled=True)
    assert await found(world, gone) == []


@pytest.mark.parametrize(
    ("raw", "sees"),
    [
        ({"number": "01234 567890"}, ["transferred"]),  # national form → E.164
        ({"number": "+44 20 7946 0000"}, ["single"]),
        ({"number": "reception"}, ["single", "transferred"]),  # as dialled: the callee
        ({"number": "+15550000000"}, []),
        ({"operator": "bob"}, ["transferred"]),
        ({"operator": "carl"}, ["single"]),
        ({"team": "nurses"}, ["single", "transferred"]),
        ({"team": "reception"}, ["transferred"]),
        ({"from": "2024-05-01T09:31:00Z"}, ["single"]),
        ({"to": "2024-05-01T09:31:00Z"}, ["transferred"]),
        ({"from": "2024-05-01", "to": "2024-05-02"}, ["single", "transferred"]),
        ({"state": "recording"}, ["single", "transferred"]),
        ({"state": "complete"}, []),
    ],
)
async def test_filters(world: World, raw: dict[str, object], sees: list[str]) -> None:
    names = {world.single: "single", world.transferred: "transferred"}
    assert [names[rid] for rid in await found(world, DEE, **raw)] == sees


async def test_one_audit_entry_a_search_with_its_filters(world: World) -> None:
    await found(world, ALICE, number="01234 567890", team="reception")
    [entry] = await world.audit()
    assert (entry.actor, entry.action, entry.object) == ("alice", "recordings.search", None)
    assert entry.detail["filters"]["numbers"] == ["+441234567890", "01234 567890"]
    assert entry.detail["filters"]["team"] == "reception"
    assert (entry.detail["page"], entry.detail["shown"]) == (1, 1)


async def test_pages_hold_only_what_the_person_may_see(world: World) -> None:
    for n in range(5):  # five more calls carl took
        call = await new_call(world.catalog, started=at(200 + n), caller=f"+4412345678{n:02d}")
        rid = await new_recording(world.catalog, call)
        await world.catalog.parts.begin(rid, operator="carl", team="nurses", at=at(201 + n))
    first = await search(world).search(CARL, SearchFilters(), Page(1, 4))
    second = await search(world).search(CARL, SearchFilters(), Page(2, 4))
    assert (len(first.rows), first.more, len(second.rows), second.more) == (4, True, 2, False)
    assert second.rows[-1].recording_id == world.single  # the oldest last
    alice = await search(world).search(ALICE, SearchFilters(), Page(1, 1))
    assert ([r.recording_id for r in alice.rows], alice.more) == ([world.transferred], False)


async def test_results_are_metadata_only(world: World) -> None:
    result = await search(world).search(DEE, SearchFilters(), Page())
    text = repr(result.as_dict())
    assert "2024/05/01" not in text and "key" not in text and "directory" not in text
    row = result.as_dict()["recordings"][-1]
    assert [(p["part"], p["operator"], p["team"]) for p in row["parts"]] == [
        (1, "alice", "reception"),
        (2, "bob", "nurses"),
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"caller": "x"}, "unknown filter 'caller'"),
        ({"from": "yesterday"}, "from: not an ISO 8601"),
        ({"from": "2024-05-02", "to": "2024-05-01"}, "to must be after from"),
        ({"state": "lost"}, "state must be one of"),
        ({"number": 123}, "number must be text"),
        ({"team": "x" * 201}, "longer than 200"),
    ],
)
def test_bad_filters_are_refused_with_one_line(raw: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidAccessRequest, match=message):
        parse_filters(raw, NUMBERS)


@pytest.mark.parametrize(("number", "size"), [(0, None), ("x", None), (None, 201), (True, 5)])
def test_bad_pages_are_refused(number: object, size: object) -> None:
    with pytest.raises(InvalidAccessRequest, match="whole number"):
        parse_page(number, size)


def test_pages_from_text() -> None:
    assert parse_page("3", "20") == Page(3, 20)
    assert parse_page() == Page(1, 50)


async def detail(w: World, actor: Actor, rid: str) -> dict[str, Any]:
    return await search(w).recording_detail(actor, rid)


async def test_the_detail_says_what_the_person_may_hear(world: World) -> None:
    shown = await detail(world, ALICE, world.transferred)
    assert shown["access"]["listen"] == [
        {"part": 1, "purposes": list(SETTINGS.purposes)},
        {"part": 2, "purposes": []},
    ]
    assert shown["access"]["may_place_hold"] is False
    assert [p["operator"] for p in shown["parts"]] == ["alice", "bob"]
    [entry] = await world.audit()
    assert (entry.action, entry.detail["action"]) == (ALLOWED, "view_metadata")


async def test_the_detail_shows_grants_requests_and_holds(world: World) -> None:
    await grant(world, "max", world.single, "legal")
    pending = NewAccessRequest(world.single, "max", "quality", "y")
    await world.catalog.access_requests.request(pending)
    await world.catalog.holds.place(NewHold(world.single, "complaint", "C-1", "olive"))
    shown = await detail(world, MAX, world.single)
    assert shown["access"]["listen"] == [{"part": 1, "purposes": ["legal"]}]
    assert [(r["purpose"], r["state"], r["live"]) for r in shown["access"]["requests"]] == [
        ("legal", "approved", True),
        ("quality", "pending", False),
    ]
    assert [h["reference"] for h in shown["holds"]] == ["C-1"]
    officer = await detail(world, OLIVE, world.single)
    assert officer["access"]["may_place_hold"] is True
    assert officer["access"]["listen"] == [{"part": 1, "purposes": []}]


async def test_no_audio_purposes_once_the_recording_is_discarded(world: World) -> None:
    await world.catalog.recordings.set_recording_state(
        world.single, RecordingState.DISCARDED, Attribution(actor="carl", reason="asked")
    )
    shown = await detail(world, CARL, world.single)
    assert shown["state"] == "discarded" and shown["access"]["listen"][0]["purposes"] == []


async def test_the_detail_is_refused_or_not_found(world: World) -> None:
    with pytest.raises(AccessDenied) as denied:
        await detail(world, ALICE, world.single)
    assert denied.value.decision.rule == "metadata.not_yours"
    with pytest.raises(RecordNotFound):
        await detail(world, OLIVE, "no-such")
    assert len(await world.audit()) == 1  # the refusal; the unknown id is no decision
