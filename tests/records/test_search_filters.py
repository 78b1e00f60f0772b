"""Each search filter against a real catalog (issue 16): a number in E.164 or as dialled,
as caller or callee; the window's edges (from inclusive, to exclusive); an operator or a
team of any part of a transferred call; a recording no call taker took (its call's
operator); service and direction; and every filter combined with a role's scope."""

from __future__ import annotations

from datetime import timedelta

import pytest

from proxy.config import NumberSettings
from proxy.records.errors import InvalidAccessRequest
from proxy.records.policy import Actor
from proxy.records.search import Page, RecordSearch, parse_filters
from proxy.roles import Role
from proxy.storage.catalog import CallDirection, NewCall

from ..storage.test_catalog import T0, at, new_recording
from .access_world import ALICE, BOB, DEE, MONA, World, world

__all__ = ["world"]

NUMBERS = NumberSettings("GB")
NURSES = Actor("nina", Role.MANAGER, frozenset({"nurses"}))


async def found(w: World, actor: Actor, **raw: object) -> set[str]:
    result = await RecordSearch(w.gate, w.catalog).search(
        actor, parse_filters(raw, NUMBERS), Page(1, 200)
    )
    return {row.recording_id for row in result.rows}


async def add_call(
    w: World,
    *,
    caller: str,
    callee: str,
    direction: CallDirection,
    service: str | None,
    seconds: float,
    operator: str | None = None,
) -> str:
    """A call (as the proxy stores it: numbers normalised) and its recording."""
    call = await w.catalog.calls.create_call(
        NewCall(f"{seconds}@test", caller, callee, direction, at(seconds), service=service)
    )
    if operator is not None:  # bridged, but its part never written (a crash between)
        await w.catalog.calls.update_call(call.id, operator=operator)
    return await new_recording(w.catalog, call)


@pytest.fixture
async def more(world: World) -> dict[str, str]:
    """Besides the world's two calls (transferred: alice then bob, from +441234567890 to
    reception, service general, at T0; single: carl, from +442079460000, at T0+100 s):"""
    return {
        # an outbound call to the same number, for the results service
        "outbound": await add_call(
            world, caller="2001", callee="+441234567890", direction=CallDirection.OUTBOUND,
            service="results", seconds=200,
        ),
        # a caller hung up during the notice: no part, no operator
        "unbridged": await add_call(
            world, caller="+441234567890", callee="reception", direction=CallDirection.INBOUND,
            service="triage", seconds=300,
        ),
        # the call's operator is alice, but no part row was written
        "partless": await add_call(
            world, caller="anonymous", callee="reception", direction=CallDirection.INBOUND,
            service="triage", seconds=400, operator="alice",
        ),
    }  # fmt: skip


@pytest.mark.parametrize(
    "number",
    ["+441234567890", "01234 567890", "01234567890", "+44 (0)1234 567890", "0044 1234 567890",
     "441234567890"],
)  # fmt: skip
async def test_a_number_in_any_form_finds_its_calls_as_caller_and_callee(
    world: World, more: dict[str, str], number: str
) -> None:
    assert await found(world, DEE, number=number) == {
        world.transferred,
        more["outbound"],
        more["unbridged"],
    }


async def test_a_number_as_dialled_that_is_no_e164_matches_as_stored(
    world: World, more: dict[str, str]
) -> None:
    assert await found(world, DEE, number="anonymous") == {more["partless"]}
    assert await found(world, DEE, number="2001") == {more["outbound"]}
    assert await found(world, DEE, number="+15550000000") == set()


async def test_the_window_includes_from_and_excludes_to(world: World, more: dict[str, str]) -> None:
    single = at(100)  # the single call started exactly here
    exact, before = single.isoformat(), (single - timedelta(milliseconds=1)).isoformat()
    after = (single + timedelta(milliseconds=1)).isoformat()
    assert world.single in await found(world, DEE, **{"from": exact})
    assert world.single not in await found(world, DEE, **{"from": after})
    assert world.single not in await found(world, DEE, to=exact)
    assert world.single in await found(world, DEE, to=after)
    assert await found(world, DEE, **{"from": before, "to": after}) == {world.single}
    assert await found(world, DEE, to=T0.isoformat()) == set()


@pytest.mark.parametrize(
    ("filters", "names"),
    [
        ({"operator": "alice"}, {"transferred", "partless"}),  # part 1; the call's operator
        ({"operator": "bob"}, {"transferred"}),  # part 2 of the transferred call
        ({"operator": "carl"}, {"single"}),
        ({"team": "reception"}, {"transferred"}),  # part 1's team
        ({"team": "nurses"}, {"transferred", "single"}),  # part 2's, and carl's
        ({"team": "nobody"}, set()),
        ({"service": "triage"}, {"unbridged", "partless"}),
        ({"service": "general"}, {"transferred", "single"}),
        ({"direction": "outbound"}, {"outbound"}),
        ({"direction": "inbound"}, {"transferred", "single", "unbridged", "partless"}),
        ({"direction": "inbound", "service": "results"}, set()),
        ({"number": "01234 567890", "direction": "inbound"}, {"transferred", "unbridged"}),
        ({"number": "01234 567890", "operator": "bob", "team": "nurses"}, {"transferred"}),
    ],
)
async def test_each_filter_narrows_the_search(
    world: World, more: dict[str, str], filters: dict[str, str], names: set[str]
) -> None:
    ids = {"transferred": world.transferred, "single": world.single, **more}
    assert await found(world, DEE, **filters) == {ids[name] for name in names}


@pytest.mark.parametrize(
    ("actor", "filters", "names"),
    [
        (BOB, {}, {"transferred"}),  # his part 2
        (BOB, {"operator": "alice"}, {"transferred"}),  # alice's part, bob's call too
        (ALICE, {}, {"transferred", "partless"}),
        (ALICE, {"service": "triage"}, {"partless"}),
        (MONA, {"team": "nurses"}, {"transferred"}),  # reception's call, nurses' part 2
        (NURSES, {"direction": "outbound"}, set()),
        (NURSES, {"number": "+442079460000"}, {"single"}),
    ],
)
async def test_filters_stay_within_the_role_scope(
    world: World,
    more: dict[str, str],
    actor: Actor,
    filters: dict[str, str],
    names: set[str],
) -> None:
    ids = {"transferred": world.transferred, "single": world.single, **more}
    assert await found(world, actor, **filters) == {ids[name] for name in names}


async def test_the_audit_entry_names_service_and_direction(world: World) -> None:
    await found(world, DEE, service="triage", direction="inbound")
    [entry] = await world.audit()
    filters = entry.detail["filters"]
    assert (filters["service"], filters["direction"]) == ("triage", "inbound")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"direction": "sideways"}, "direction must be one of inbound, outbound"),
        ({"direction": 1}, "direction must be text"),
        ({"service": "s" * 201}, "service is longer than 200"),
        ({"service": ["a"]}, "service must be text"),
    ],
)
def test_bad_service_or_direction_is_refused(raw: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidAccessRequest, match=message):
        parse_filters(raw, NUMBERS)
