"""A call taker rung by its AOR (issue 18): every phone registered for it rings at once
(a parallel fork by our UAC), driven by SIP bytes through the real sans-IO core without
sockets (the harness of ``test_hunt``): the first 2xx wins and the others are
CANCELled, a refusal ends only its own branch, all failing moves the hunt on, a 2xx
crossing our CANCEL is ACKed and ended, and an AOR with nothing registered is skipped."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from proxy.calls.hunt import forked_status
from proxy.config import OperatorSettings, RegistrarSettings, RoutingSettings
from proxy.events import CallBridged, CallTakerFailedOver, CallTakerInvited
from proxy.sip.message import Request, parse_message
from proxy.sip.uri import parse_uri

from .call_harness import CALLER, TAKER, Harness, Peer, sdp
from .test_call_flow import invite, no_sockets  # noqa: F401
from .test_hunt import TAKER2, answer_and_ack, end_notice, invited, invites, parties

REALM = "calls.example"
DESK = f"sip:desk@{REALM}"
TAKER3 = ("127.0.0.1", 5074)
CAROL = f"sip:carol@{TAKER3[0]}:{TAKER3[1]}"
ANN_PHONE = f"sip:ann@{TAKER[0]}:{TAKER[1]}"
BOB_PHONE = f"sip:bob@{TAKER2[0]}:{TAKER2[1]}"
OPERATORS = (
    OperatorSettings("ann", "0" * 64, identities=(ANN_PHONE,), team="red"),
    OperatorSettings("bob", "1" * 64, identities=(BOB_PHONE,), team="blue"),
)


def desk_harness(tmp_path: Path, *call_takers: str, no_answer: float = 0.0) -> Harness:
    routing = RoutingSettings(
        call_takers=call_takers or (DESK,), no_answer_seconds=no_answer, ring_timeout_seconds=5
    )
    return Harness(
        tmp_path,
        routing=routing,
        operators=OPERATORS,
        registrar=RegistrarSettings(enabled=True, realm=REALM),
    )


def register(h: Harness, phone: Peer, user: str = "desk") -> None:
    """``phone`` registered for ``sip:user@realm`` (the digest is the registrar's test)."""
    data = Peer(phone.address, phone.user, f"reg-{phone.user}").request(
        "REGISTER", to=f"<sip:{user}@{REALM}>", uri=f"sip:{REALM}", headers=(("Expires", "600"),)
    )
    request = parse_message(data)
    assert isinstance(request, Request)
    registrar = h.b2bua.registrar.registrar
    assert registrar is not None
    now = asyncio.get_running_loop().time()
    registrar.bindings.update(registrar.aor(user), request, now)


async def both_invited(h: Harness, caller: Peer) -> tuple[Request, Request]:
    await invite(h, caller)
    await end_notice(h)
    return await invited(h, TAKER), await invited(h, TAKER2)


def cancels(h: Harness, address: tuple[str, int]) -> int:
    return sum(1 for s in h.to(address) if s.is_request("CANCEL"))


async def test_both_phones_ring_and_the_one_that_answers_takes_the_call(tmp_path: Path) -> None:
    async with desk_harness(tmp_path) as h:
        caller, ann, bob = parties("aor-1")
        register(h, ann)
        register(h, bob)
        first, second = await both_invited(h, caller)
        assert (str(first.uri), str(second.uri)) == (ANN_PHONE, BOB_PHONE)  # the contacts
        assert first.body == second.body != b""  # one offer: leg B's one RTP port
        assert first.call_id != second.call_id  # each its own transaction and dialog
        h.feed(ann.answer(first, 180), TAKER)
        h.feed(bob.answer(second, 180), TAKER2)
        await answer_and_ack(h, caller, bob, second)

        assert cancels(h, TAKER) == 1 and cancels(h, TAKER2) == 0
        h.feed(ann.answer(first, 487), TAKER)  # the CANCELled INVITE's end: nothing more
        await h.until(lambda: any(s.is_request("ACK") for s in h.to(TAKER)))
        call = h.call
        assert call.sip.b_txn is not None and call.sip.b_txn.request.call_id == second.call_id
        assert call.sip.ringing == set()
        assert call.sip.b_dialog is not None and call.sip.b_dialog.remote_target.port == TAKER2[1]
        assert str(call.plan.target) == BOB_PHONE
        assert call.operator == "bob"
        assert len(h.published(CallTakerInvited)) == 1
        assert h.published(CallTakerFailedOver) == []
        recording = call.recording
        assert recording is not None
        for _ in range(200):  # the part is written just after the bridge
            parts = await h.catalog.parts.parts(recording.id)
            if parts and parts[0].team is not None:
                break
            await asyncio.sleep(0.005)
        assert [(p.operator, p.team) for p in parts] == [("bob", "blue")]
        assert not any(s.is_request("BYE") for s in h.to(TAKER))


async def test_one_phone_busy_does_not_end_the_ring_while_another_rings(tmp_path: Path) -> None:
    async with desk_harness(tmp_path) as h:
        caller, ann, bob = parties("aor-2")
        register(h, ann)
        register(h, bob)
        first, second = await both_invited(h, caller)
        h.feed(ann.answer(first, 486), TAKER)
        await h.until(lambda: any(s.is_request("ACK") for s in h.to(TAKER)))  # 486 ACKed
        await answer_and_ack(h, caller, bob, second)
        assert h.call.operator == "bob"
        assert cancels(h, TAKER) == 0  # nothing left to cancel
        assert h.published(CallTakerFailedOver) == []


async def test_every_phone_refusing_moves_the_hunt_to_the_next_entry(tmp_path: Path) -> None:
    async with desk_harness(tmp_path, DESK, CAROL) as h:
        caller, ann, bob = parties("aor-3")
        carol = Peer(TAKER3, "carol", "")
        register(h, ann)
        register(h, bob)
        first, second = await both_invited(h, caller)
        h.feed(ann.answer(first, 486), TAKER)
        assert invites(h, TAKER3) == []
        h.feed(bob.answer(second, 603), TAKER2)
        await answer_and_ack(h, caller, carol, await invited(h, TAKER3))
        (moved,) = h.published(CallTakerFailedOver)
        assert (moved.call_taker, moved.target) == (DESK, DESK)
        assert (moved.reason, moved.status) == ("refused", 603)  # a 6xx wins (§16.7)


async def test_phones_ringing_past_no_answer_are_all_cancelled(tmp_path: Path) -> None:
    async with desk_harness(tmp_path, DESK, CAROL, no_answer=0.3) as h:
        caller, ann, bob = parties("aor-4")
        carol = Peer(TAKER3, "carol", "")
        register(h, ann)
        register(h, bob)
        first, second = await both_invited(h, caller)
        h.feed(ann.answer(first, 180), TAKER)
        h.feed(bob.answer(second, 100), TAKER2)  # a CANCEL waits for a 1xx (§9.1)
        await answer_and_ack(h, caller, carol, await invited(h, TAKER3))
        assert cancels(h, TAKER) == 1 and cancels(h, TAKER2) == 1
        (moved,) = h.published(CallTakerFailedOver)
        assert (moved.reason, moved.status) == ("no_answer", 480)


@pytest.mark.parametrize("rang", [True, False])
async def test_a_2xx_crossing_the_cancel_is_acked_and_ended(tmp_path: Path, rang: bool) -> None:
    async with desk_harness(tmp_path) as h:
        caller, ann, bob = parties("aor-5")
        register(h, ann)
        register(h, bob)
        first, second = await both_invited(h, caller)
        if rang:
            h.feed(ann.answer(first, 180), TAKER)
        await answer_and_ack(h, caller, bob, second)
        assert cancels(h, TAKER) == (1 if rang else 0)  # without a 1xx it waits (§9.1)
        h.feed(ann.answer(first, 200, sdp(50004)), TAKER)  # answered as we cancelled
        await h.until(lambda: any(s.is_request("BYE") for s in h.to(TAKER)))
        assert any(s.is_request("ACK") for s in h.to(TAKER))
        b_dialog = h.call.sip.b_dialog
        assert b_dialog is not None and b_dialog.remote_target.port == TAKER2[1]  # bob's goes on
        assert not any(s.is_request("BYE") for s in h.to(TAKER2))
        assert not any(s.is_request("BYE") for s in h.to(CALLER))
        assert h.call.operator == "bob"


async def test_an_aor_with_no_phone_registered_is_skipped(tmp_path: Path) -> None:
    async with desk_harness(tmp_path, DESK, CAROL) as h:
        caller, ann, _ = parties("aor-6")
        carol = Peer(TAKER3, "carol", "")
        register(h, ann, user="someone-else")
        await invite(h, caller)
        await end_notice(h)
        await answer_and_ack(h, caller, carol, await invited(h, TAKER3))
        assert invites(h, TAKER) == []
        (moved,) = h.published(CallTakerFailedOver)
        assert (moved.call_taker, moved.reason, moved.status) == (DESK, "unregistered", None)
        assert h.published(CallBridged)


async def test_an_entry_is_an_aor_only_at_our_realm_or_address_and_port(tmp_path: Path) -> None:
    (tmp_path / "probed").mkdir()
    async with desk_harness(tmp_path) as h:
        desk = h.b2bua.registrar
        assert desk.aor_of(parse_uri(DESK)) == DESK
        assert desk.aor_of(parse_uri("sip:Desk@127.0.0.1")) == DESK  # our advertised address
        assert desk.aor_of(parse_uri("sip:desk@127.0.0.1:5060")) == DESK  # ... and port
        assert desk.aor_of(parse_uri(ANN_PHONE)) is None  # a phone at our address
        assert desk.aor_of(parse_uri("sip:desk@pbx.example")) is None
        assert desk.aor_of(parse_uri(f"sip:{REALM}")) is None  # no user
    async with desk_harness(tmp_path / "probed", DESK, CAROL) as h:  # no OPTIONS to an AOR
        assert [str(u) for u in h.b2bua.prober.call_takers] == [CAROL]
    (tmp_path / "off").mkdir()
    async with Harness(tmp_path / "off") as off:  # registrar disabled: never an AOR
        assert off.b2bua.registrar.aor_of(parse_uri(DESK)) is None


def test_a_failed_fork_ends_with_a_6xx_else_the_lowest_class_heard() -> None:
    assert forked_status([486, 603]) == 603
    assert forked_status([503, 486, 480]) == 486
    assert forked_status([408, 503]) == 503  # a timeout is ours, not a phone's answer
    assert forked_status([408, 408]) == 408
    assert forked_status([]) == 480
