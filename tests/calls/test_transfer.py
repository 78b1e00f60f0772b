"""Blind and attended transfer (REFER from the call taker) through the real sans-IO SIP
core, without sockets: the refusals, the 202 and sipfrag NOTIFYs, the target invited
with our offer (and an attended transfer's ``Replaces``), the media handed over, the
parts of the recording, a busy target, a target that never answers or cannot replace,
and a caller who hangs up during the transfer."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from proxy.calls.transfer import refer_refusal, transfer_target
from proxy.config import OperatorSettings
from proxy.events import CallEnded, CallTransferred, TransferRequested
from proxy.sip.errors import RemoteSipError
from proxy.sip.events import Address
from proxy.sip.message import Request, parse_message

from .call_harness import CALLER, TAKER, Harness, Peer, sdp
from .test_call_flow import bridge, invite, no_sockets, taker_request, to_proxy

__all__ = ["no_sockets"]  # the fixture, used here too

SECOND: Address = ("127.0.0.1", 5080)
ANN = OperatorSettings("ann", "a" * 64, identities=("sip:taker@127.0.0.1:5070",), team="red")
BOB = OperatorSettings("bob", "b" * 64, identities=("sip:bob@127.0.0.1:5080",), team="blue")
CAROL = OperatorSettings("carol", "c" * 64, identities=("3003",), team="green")
OPERATORS = (ANN, BOB, CAROL)
BOB_PHONE = "<sip:bob@127.0.0.1:5080>"


def refer(refer_to: str | None) -> Request:
    headers = "" if refer_to is None else f"Refer-To: {refer_to}\r\n"
    data = (
        "REFER sip:proxy@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n"
        "From: <sip:taker@127.0.0.1>;tag=t\r\nTo: <sip:p@127.0.0.1>;tag=p\r\nCall-ID: c\r\n"
        f"CSeq: 2 REFER\r\nMax-Forwards: 70\r\n{headers}Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


# -- who may transfer, and to whom (pure) -----------------------------------------------


def test_only_a_bridged_incoming_calls_taker_may_refer_and_only_once_at_a_time() -> None:
    def ask(**changes: bool) -> int | None:
        facts = {"from_public": False, "outbound": False, "bridged": True, "busy": False}
        refusal = refer_refusal(**(facts | changes))
        return None if refusal is None else refusal[0]

    assert ask() is None
    assert ask(from_public=True) == 403
    assert ask(outbound=True) == 403
    assert ask(bridged=False) == 403
    assert ask(busy=True) == 491


def test_the_target_must_be_an_operators_phone_with_a_host() -> None:
    target, operator, replaces = transfer_target(refer("<sip:bob@127.0.0.1:5080>"), OPERATORS)
    assert (operator, target.port, replaces) == (BOB, 5080, None)
    # the INVITE goes to bob's configured phone, whatever the REFER adds to it
    sneaky = "<sip:bob@127.0.0.1:5080;maddr=203.0.113.9;transport=tcp>"
    target, operator, _ = transfer_target(refer(sneaky), OPERATORS)
    assert operator == BOB
    assert (target.host, target.port, target.user, target.params) == ("127.0.0.1", 5080, "bob", ())
    for refused in (
        "<sip:mallory@198.51.100.7>",  # nobody's phone
        "<sip:3003@198.51.100.7>",  # carol's user, but her identity names no host
        "<sip:bob@127.0.0.1:5081>",  # bob's user at another port
    ):
        with pytest.raises(RemoteSipError) as refusal:
            transfer_target(refer(refused), OPERATORS)
        assert refusal.value.status == 403, refused
    with pytest.raises(RemoteSipError) as missing:
        transfer_target(refer(None), OPERATORS)
    assert missing.value.status == 400


# -- the flow ---------------------------------------------------------------------------


async def bridged(h: Harness, name: str) -> tuple[Peer, Peer, Request, str]:
    """A bridged call; (caller, first call taker, the INVITE it got, leg A's To)."""
    caller, taker = Peer(CALLER, "caller", name), Peer(TAKER, "taker", "")
    await invite(h, caller)
    ok = await bridge(h, caller, taker)
    taker_invite = next(s.message for s in h.to(TAKER) if s.is_request("INVITE"))
    assert isinstance(taker_invite, Request)
    return caller, taker, taker_invite, to_proxy(ok)


async def transferring(h: Harness, name: str) -> tuple[Peer, Peer, Request, str]:
    """A bridged call whose call taker sent REFER to bob, who is now invited."""
    caller, taker, taker_invite, to = await bridged(h, name)
    h.feed(sent_refer(taker, taker_invite), TAKER)
    await h.until(lambda: any(s.is_request("INVITE") for s in h.to(SECOND)))
    return caller, taker, taker_invite, to


def sent_refer(
    taker: Peer, taker_invite: Request, target: str = "<sip:bob@127.0.0.1:5080>"
) -> bytes:
    return taker_request(taker, taker_invite, "REFER", 2, headers=(("Refer-To", target),))


def notifies(h: Harness) -> list[tuple[bytes, str | None]]:
    """The NOTIFYs the first call taker got: (sipfrag, Subscription-State)."""
    found = []
    for sent in h.to(TAKER):
        message = sent.message
        if isinstance(message, Request) and message.method == "NOTIFY":
            assert message.headers.get("event") == "refer"
            assert message.headers.get("content-type") == "message/sipfrag;version=2.0"
            found.append((message.body, message.headers.get("subscription-state")))
    return found


def target_invite(h: Harness) -> Request:
    (sent,) = [s.message for s in h.to(SECOND) if s.is_request("INVITE")]
    assert isinstance(sent, Request)
    return sent


def ringing(h: Harness) -> None:
    h.feed(Peer(SECOND, "bob", "").answer(target_invite(h), 180), SECOND)


async def test_a_transfer_hands_the_caller_to_the_target_as_a_second_part(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path, operators=OPERATORS) as h:
        caller, _, _, to = await transferring(h, "transfer-1")
        first_leg = h.call.media.b_leg
        assert first_leg is not None and first_leg.name == "call_taker"
        assert any(s.is_response(202, "REFER") for s in h.to(TAKER))
        assert notifies(h) == [(b"SIP/2.0 100 Trying\r\n", "active;expires=60")]
        (requested,) = h.published(TransferRequested)
        assert (requested.operator, requested.target_operator) == ("ann", "bob")
        # our own offer, from a new leg of ours, to the Refer-To's phone
        offered = target_invite(h)
        assert str(offered.uri) == "sip:bob@127.0.0.1:5080"
        assert offered.body and b"m=audio" in offered.body
        assert (
            h.call.media.a_leg is not None and h.call.media.a_leg.peer is first_leg
        )  # until bob answers

        bob = Peer(SECOND, "bob", "")
        h.feed(bob.answer(offered, 200, sdp(52000)), SECOND)
        await h.until(lambda: h.published(CallTransferred))
        await h.until(lambda: any(s.is_request("BYE") for s in h.to(TAKER)))
        assert any(s.is_request("ACK") for s in h.to(SECOND))
        assert notifies(h)[-1] == (b"SIP/2.0 200 OK\r\n", "terminated;reason=noresource")
        (done,) = h.published(CallTransferred)
        assert (done.outcome, done.target_operator, done.status) == ("succeeded", "bob", 200)
        new_leg = h.call.media.b_leg
        assert new_leg is not None and new_leg is not first_leg
        assert first_leg is not None and first_leg.sink is None  # out of the recording
        assert h.call.media.a_leg is not None and h.call.media.a_leg.peer is new_leg
        assert h.call.operator == "bob"
        recording = h.call.recording
        assert recording is not None
        parts = await h.catalog.parts.parts(recording.id)
        assert [(p.part, p.operator, p.team) for p in parts] == [
            (1, "ann", "red"),
            (2, "bob", "blue"),
        ]
        assert parts[0].ended_at == parts[1].started_at
        actions = [e.action.value for e in await h.catalog.events.recording_events(recording.id)]
        assert "transfer" in actions

        # the caller now talks to bob: its BYE ends bob's leg, not the first call taker's
        before = len([s for s in h.to(TAKER) if s.is_request("BYE")])
        h.feed(caller.request("BYE", to=to, cseq=2), CALLER)
        await h.until(lambda: h.published(CallEnded))
        assert any(s.is_request("BYE") for s in h.to(SECOND))
        assert len([s for s in h.to(TAKER) if s.is_request("BYE")]) == before


#: Bob's phone, replacing the call ann made to it first (its Call-ID, bob's tag, ann's)
CONSULTATION = (
    "<sip:bob@127.0.0.1:5080?Replaces=consult-1%40127.0.0.1%3Bto-tag%3Dbob7%3Bfrom-tag%3Dann3>"
)


def test_an_attended_transfer_names_the_consultation_dialog() -> None:
    target, operator, replaces = transfer_target(refer(CONSULTATION), OPERATORS)
    assert operator == BOB and target.headers is None  # our INVITE's URI embeds nothing
    assert replaces is not None
    assert (replaces.call_id, replaces.to_tag, replaces.from_tag) == (
        "consult-1@127.0.0.1",
        "bob7",
        "ann3",
    )


async def test_an_attended_transfer_invites_the_target_to_replace_its_consultation(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path, operators=OPERATORS) as h:
        _, taker, taker_invite, _ = await bridged(h, "transfer-attended")
        h.feed(sent_refer(taker, taker_invite, CONSULTATION), TAKER)
        await h.until(lambda: any(s.is_request("INVITE") for s in h.to(SECOND)))
        offered = target_invite(h)
        assert str(offered.uri) == "sip:bob@127.0.0.1:5080"
        assert offered.headers.get("replaces") == "consult-1@127.0.0.1;to-tag=bob7;from-tag=ann3"
        assert "replaces" in offered.headers.get_all("require")
        h.feed(Peer(SECOND, "bob", "").answer(offered, 200, sdp(52000)), SECOND)
        await h.until(lambda: h.published(CallTransferred))
        (done,) = h.published(CallTransferred)
        assert (done.outcome, done.target_operator) == ("succeeded", "bob")
        await h.until(lambda: any(s.is_request("BYE") for s in h.to(TAKER)))
        recording = h.call.recording
        assert recording is not None
        parts = await h.catalog.parts.parts(recording.id)
        assert [p.operator for p in parts] == ["ann", "bob"]


@pytest.mark.parametrize("status", [481, 420])
async def test_a_target_that_cannot_replace_leaves_the_caller_with_the_first_call_taker(
    tmp_path: Path, status: int
) -> None:
    """481: the consultation is gone; 420: the phone does not do Replaces (it never rings
    as a second call, since we require it)."""
    async with Harness(tmp_path, operators=OPERATORS) as h:
        _, taker, taker_invite, _ = await bridged(h, f"transfer-attended-{status}")
        first_leg = h.call.media.b_leg
        h.feed(sent_refer(taker, taker_invite, CONSULTATION), TAKER)
        await h.until(lambda: any(s.is_request("INVITE") for s in h.to(SECOND)))
        h.feed(Peer(SECOND, "bob", "").answer(target_invite(h), status), SECOND)
        await h.until(lambda: h.published(CallTransferred))
        (done,) = h.published(CallTransferred)
        assert (done.outcome, done.status) == ("failed", status)
        assert notifies(h)[-1][0].startswith(f"SIP/2.0 {status} ".encode())
        assert not any(s.is_request("BYE") for s in h.to(TAKER))
        assert h.call.media.b_leg is first_leg and h.call.operator == "ann"


async def test_a_busy_target_leaves_the_caller_with_the_first_call_taker(tmp_path: Path) -> None:
    async with Harness(tmp_path, operators=OPERATORS) as h:
        _, taker, taker_invite, _ = await transferring(h, "transfer-2")
        first_leg = h.call.media.b_leg
        assert first_leg is not None and first_leg.name == "call_taker"
        bob = Peer(SECOND, "bob", "")
        h.feed(bob.answer(target_invite(h), 486), SECOND)
        await h.until(lambda: h.published(CallTransferred))
        (done,) = h.published(CallTransferred)
        assert (done.outcome, done.status) == ("failed", 486)
        assert notifies(h)[-1] == (b"SIP/2.0 486 Busy Here\r\n", "terminated;reason=noresource")
        assert not any(s.is_request("BYE") for s in h.to(TAKER))
        assert h.call.media.b_leg is first_leg and h.call.operator == "ann"
        recording = h.call.recording
        assert recording is not None
        parts = await h.catalog.parts.parts(recording.id)
        assert [p.operator for p in parts] == ["ann"]
        # and a second transfer may follow
        again = taker_request(taker, taker_invite, "REFER", 3, headers=(("Refer-To", BOB_PHONE),))
        h.feed(again, TAKER)
        await h.until(lambda: len(h.published(TransferRequested)) == 2)


async def test_no_answer_within_the_ring_time_cancels_the_target(tmp_path: Path) -> None:
    async with Harness(tmp_path, operators=OPERATORS) as h:
        _, taker, taker_invite, _ = await bridged(h, "transfer-3")
        config = h.call.config
        h.call.config = replace(config, routing=replace(config.routing, ring_timeout_seconds=0.2))
        h.feed(sent_refer(taker, taker_invite), TAKER)
        await h.until(lambda: any(s.is_request("INVITE") for s in h.to(SECOND)))
        ringing(h)  # a CANCEL waits for a provisional response (RFC 3261 §9.1)
        await h.until(lambda: any(s.is_request("CANCEL") for s in h.to(SECOND)), seconds=3)
        await h.until(lambda: h.published(CallTransferred))
        (done,) = h.published(CallTransferred)
        assert (done.outcome, done.status) == ("failed", 408)
        assert notifies(h)[-1][0] == b"SIP/2.0 408 Request Timeout\r\n"


async def test_a_caller_who_hangs_up_during_the_transfer_cancels_the_target(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path, operators=OPERATORS) as h:
        caller, _, _, to = await transferring(h, "transfer-4")
        ringing(h)
        h.feed(caller.request("BYE", to=to, cseq=2), CALLER)
        await h.until(lambda: h.published(CallEnded))
        assert any(s.is_request("CANCEL") for s in h.to(SECOND))
        (done,) = h.published(CallTransferred)
        assert done.outcome == "abandoned"


@pytest.mark.parametrize(
    ("refer_to", "status"),
    [
        ("<sip:mallory@198.51.100.7>", 403),
        ("<sip:bob@127.0.0.1:5080?Replaces=abc>", 400),  # no tags: matches no dialog
        ("<sip:bob@127.0.0.1:5080?Subject=hi>", 403),  # only Replaces may be embedded
        ("<sip:mallory@198.51.100.7?Replaces=c%3Bto-tag%3Db%3Bfrom-tag%3Da>", 403),
        ("not a uri at all <", 400),
    ],
)
async def test_a_bad_refer_is_refused_and_changes_nothing(
    tmp_path: Path, refer_to: str, status: int
) -> None:
    async with Harness(tmp_path, operators=OPERATORS) as h:
        _, taker, taker_invite, _ = await bridged(h, "transfer-5")
        h.feed(sent_refer(taker, taker_invite, refer_to), TAKER)
        await h.until(lambda: any(s.is_response(status, "REFER") for s in h.to(TAKER)))
        assert h.to(SECOND) == [] and notifies(h) == []
        assert h.published(TransferRequested) == []


async def test_the_callers_refer_is_forbidden(tmp_path: Path) -> None:
    async with Harness(tmp_path, operators=OPERATORS) as h:
        caller, _, _, to = await bridged(h, "transfer-6")
        h.feed(caller.request("REFER", to=to, cseq=2, headers=(("Refer-To", BOB_PHONE),)), CALLER)
        await h.until(lambda: any(s.is_response(403, "REFER") for s in h.to(CALLER)))
        assert h.to(SECOND) == []


async def test_a_second_refer_during_a_transfer_is_491_and_the_first_goes_on(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path, operators=OPERATORS) as h:
        _, taker, taker_invite, _ = await transferring(h, "transfer-7")
        again = taker_request(taker, taker_invite, "REFER", 3, headers=(("Refer-To", BOB_PHONE),))
        h.feed(again, TAKER)
        await h.until(lambda: any(s.is_response(491, "REFER") for s in h.to(TAKER)))
        assert len([s for s in h.to(SECOND) if s.is_request("INVITE")]) == 1
        assert len(h.published(TransferRequested)) == 1


async def test_the_callers_refer_during_the_notice_is_forbidden(tmp_path: Path) -> None:
    async with Harness(tmp_path, operators=OPERATORS) as h:
        caller = Peer(CALLER, "caller", "transfer-8")
        await invite(h, caller)
        ok = next(s.message for s in h.to(CALLER) if s.is_response(183))
        refer_request = caller.request(
            "REFER", to=str(ok.to), cseq=2, headers=(("Refer-To", BOB_PHONE),)
        )
        h.feed(refer_request, CALLER)
        await h.until(lambda: any(s.is_response(403, "REFER") for s in h.to(CALLER)))
        assert h.to(SECOND) == [] and h.published(TransferRequested) == []
