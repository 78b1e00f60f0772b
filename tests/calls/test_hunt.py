"""The hunt for a call taker, driven by SIP bytes through the real sans-IO core without
sockets (the harness of ``test_call_flow``): a hunt group rung in order, a call taker
that rings too long or refuses, an address that sends nothing or 503, a call taker
marked down by its keepalives, and a late answer from one the hunt moved on from."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

from proxy.calls.resolver import Resolver
from proxy.config import RoutingSettings, SipSettings, SrtpSettings
from proxy.events import CallBridged, CallEnded, CallTakerFailedOver, CallTakerInvited
from proxy.sip.message import Request, Response, make_response
from proxy.sip.resolve import Query, Record, Srv, Target

from .call_harness import CALLER, TAKER, Harness, Peer, sdp
from .test_call_flow import CALLER_TO, invite, invite_branch, no_sockets  # noqa: F401
from .test_call_srtp import crypto_of

TAKER2 = ("127.0.0.1", 5072)
ANN = f"sip:ann@{TAKER[0]}:{TAKER[1]}"
BOB = f"sip:bob@{TAKER2[0]}:{TAKER2[1]}"


def parties(call_id: str) -> tuple[Peer, Peer, Peer]:
    """The caller, ann (the first call taker) and bob (the second)."""
    return Peer(CALLER, "caller", call_id), Peer(TAKER, "ann", ""), Peer(TAKER2, "bob", "")


def hunt_group(*call_takers: str, no_answer: float = 0.0) -> RoutingSettings:
    return RoutingSettings(
        call_takers=call_takers, no_answer_seconds=no_answer, ring_timeout_seconds=5
    )


class ZoneResolver(Resolver):
    """RFC 3263 answered from a dict instead of a name server (no sockets here)."""

    def __init__(self, zone: Mapping[tuple[str, str], Sequence[Record]]) -> None:
        super().__init__(transports=("UDP",))
        self.zone = zone

    async def lookup(self, query: Query) -> list[Record]:
        return list(self.zone.get((query.name, query.rdtype), []))


class StuckResolver(Resolver):
    """A name server that never answers."""

    async def lookup(self, query: Query) -> list[Record]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def end_notice(h: Harness) -> None:
    a_leg = h.call.media.a_leg
    assert a_leg is not None
    await h.until(lambda: a_leg in h.player.playing)
    h.player.finish(a_leg)


async def invited(h: Harness, address: tuple[str, int], count: int = 1) -> Request:
    """The ``count``-th INVITE sent to ``address`` (waited for)."""
    await h.until(lambda: len(invites(h, address)) >= count)
    return invites(h, address)[count - 1]


def invites(h: Harness, address: tuple[str, int]) -> list[Request]:
    return [s.message for s in h.to(address) if isinstance(s.message, Request)
            and s.message.method == "INVITE"]  # fmt: skip


async def answer_and_ack(h: Harness, caller: Peer, taker: Peer, request: Request) -> None:
    h.feed(taker.answer(request, 200, sdp(50002)), taker.address)
    await h.until(lambda: any(s.is_response(200) for s in h.to(CALLER)))
    (ok,) = [s.message for s in h.to(CALLER) if s.is_response(200)]
    assert isinstance(ok, Response)
    h.feed(caller.request("ACK", to=str(ok.to), cseq=1), CALLER)
    await h.until(lambda: h.published(CallBridged))


async def ann_rings_too_long(h: Harness, caller: Peer, ann: Peer) -> tuple[Request, Request]:
    """The call to the hunt group; ann rings (180) and never answers: her INVITE and
    the one that follows to bob."""
    await invite(h, caller)
    await end_notice(h)
    first = await invited(h, TAKER)
    h.feed(ann.answer(first, 180), TAKER)
    return first, await invited(h, TAKER2)


async def test_a_call_taker_ringing_past_no_answer_is_cancelled_and_the_next_answers(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path, routing=hunt_group(ANN, BOB, no_answer=0.3)) as h:
        caller, ann, bob = parties("hunt-1")
        first, second = await ann_rings_too_long(h, caller, ann)
        assert any(s.is_request("CANCEL") for s in h.to(TAKER))
        assert str(second.uri) == BOB
        assert second.body != b"" and first.body != b""
        await answer_and_ack(h, caller, bob, second)

        (moved,) = h.published(CallTakerFailedOver)
        assert (moved.call_taker, moved.reason, moved.status) == (ANN, "no_answer", 480)
        assert moved.target == "127.0.0.1:5070;transport=udp"
        assert len(h.published(CallTakerInvited)) == 1  # one setup stage, not one a try
        assert str(h.call.plan.target) == BOB


async def test_a_busy_call_taker_rolls_to_the_next_at_once(tmp_path: Path) -> None:
    async with Harness(tmp_path, routing=hunt_group(ANN, BOB)) as h:
        caller, ann, bob = parties("hunt-2")
        await invite(h, caller)
        await end_notice(h)
        h.feed(ann.answer(await invited(h, TAKER), 486), TAKER)
        second = await invited(h, TAKER2)
        assert any(s.is_request("ACK") for s in h.to(TAKER))  # the 486 is ACKed
        await answer_and_ack(h, caller, bob, second)
        (moved,) = h.published(CallTakerFailedOver)
        assert (moved.reason, moved.status) == ("refused", 486)


async def test_after_the_last_refusal_the_caller_hears_it(tmp_path: Path) -> None:
    async with Harness(tmp_path, routing=hunt_group(ANN, BOB)) as h:
        caller, ann, bob = parties("hunt-3")
        await invite(h, caller)
        await end_notice(h)
        h.feed(ann.answer(await invited(h, TAKER), 486), TAKER)
        h.feed(bob.answer(await invited(h, TAKER2), 603), TAKER2)
        await h.until(lambda: h.published(CallEnded))

        finals = [s.message.status for s in h.to(CALLER) if isinstance(s.message, Response)]
        assert finals[-1] == 603
        (ended,) = h.published(CallEnded)
        assert (ended.outcome, ended.by) == ("calltaker_declined", "call_taker")
        assert [e.status for e in h.published(CallTakerFailedOver)] == [486, 603]


async def test_a_503_or_silence_moves_to_the_same_call_takers_next_address(
    tmp_path: Path,
) -> None:
    zone = {
        ("_sip._udp.pbx.example", "SRV"): [
            Srv(10, 0, 5070, "one.pbx.example"),
            Srv(20, 0, 5072, "two.pbx.example"),
            Srv(30, 0, 5074, "three.pbx.example"),
        ],
        ("one.pbx.example", "A"): ["127.0.0.1"],
        ("two.pbx.example", "A"): ["127.0.0.1"],
        ("three.pbx.example", "A"): ["127.0.0.1"],
    }
    third = ("127.0.0.1", 5074)
    routing = hunt_group("sip:desk@pbx.example", no_answer=0.3)
    async with Harness(tmp_path, routing=routing, resolver=ZoneResolver(zone)) as h:
        caller, one = Peer(CALLER, "caller", "hunt-4"), Peer(TAKER, "desk", "")
        three = Peer(third, "desk", "")
        await invite(h, caller)
        await end_notice(h)
        h.feed(one.answer(await invited(h, TAKER), 503), TAKER)
        await invited(h, TAKER2)  # sends nothing back: after no_answer_seconds, the next
        last = await invited(h, third)
        assert str(last.uri) == "sip:desk@pbx.example"  # the URI, not the address
        await answer_and_ack(h, caller, three, last)

        moved = h.published(CallTakerFailedOver)
        assert [(m.reason, m.status) for m in moved] == [("unavailable", 503), ("no_response", 408)]
        assert moved[1].target == str(Target("127.0.0.1", 5072, "UDP"))


async def test_a_call_taker_marked_down_is_skipped_without_ringing(tmp_path: Path) -> None:
    async with Harness(tmp_path, routing=hunt_group(ANN, BOB)) as h:
        for _ in range(3):  # [routing] options_failures: 3 probes unanswered
            h.b2bua.health.probed(ANN, Target(*TAKER, "UDP"), None)
        caller, bob = Peer(CALLER, "caller", "hunt-5"), Peer(TAKER2, "bob", "")
        await invite(h, caller)
        await end_notice(h)
        await answer_and_ack(h, caller, bob, await invited(h, TAKER2))
        assert invites(h, TAKER) == []
        assert h.published(CallTakerFailedOver) == []


async def test_a_late_answer_from_a_cancelled_call_taker_is_acked_and_ended(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path, routing=hunt_group(ANN, BOB, no_answer=0.3)) as h:
        caller, ann, bob = parties("hunt-6")
        first, second = await ann_rings_too_long(h, caller, ann)
        await answer_and_ack(h, caller, bob, second)
        h.feed(ann.answer(first, 200, sdp(50004)), TAKER)  # crossed our CANCEL
        await h.until(lambda: any(s.is_request("BYE") for s in h.to(TAKER)))
        assert any(s.is_request("ACK") for s in h.to(TAKER))
        assert h.call.sip.b_dialog is not None
        assert h.call.sip.b_dialog.remote_target.port == TAKER2[1]  # bob's call goes on
        assert not any(s.is_request("BYE") for s in h.to(TAKER2))
        assert not any(s.is_request("BYE") for s in h.to(CALLER))


async def test_a_caller_who_hangs_up_during_a_slow_lookup_is_not_kept_waiting(
    tmp_path: Path,
) -> None:
    routing = hunt_group("sip:desk@pbx.example")
    async with Harness(tmp_path, routing=routing, resolver=StuckResolver()) as h:
        caller = Peer(CALLER, "caller", "hunt-7")
        await invite(h, caller)
        await end_notice(h)
        await asyncio.sleep(0.05)  # the lookup is under way
        h.feed(caller.request("CANCEL", to=CALLER_TO, branch=invite_branch(caller)), CALLER)
        await h.until(lambda: h.published(CallEnded), seconds=1)
        (ended,) = h.published(CallEnded)
        assert ended.outcome == "caller_abandoned_while_ringing"
        assert not [s for s in h.sent if s.is_request("INVITE")]


async def test_a_lookup_still_unanswered_at_the_ring_timeout_fails_the_call(
    tmp_path: Path,
) -> None:
    routing = RoutingSettings(call_takers=("sip:desk@pbx.example",), ring_timeout_seconds=1)
    async with Harness(tmp_path, routing=routing, resolver=StuckResolver()) as h:
        await invite(h, Peer(CALLER, "caller", "hunt-8"))
        await end_notice(h)
        await h.until(lambda: h.published(CallEnded), seconds=3)
        (moved,) = h.published(CallTakerFailedOver)
        assert (moved.reason, moved.target) == ("unresolved", "")
        finals = [s.message.status for s in h.to(CALLER) if isinstance(s.message, Response)]
        assert finals[-1] == 480


async def test_a_sips_call_taker_is_invited_over_tls_when_tls_is_on(tmp_path: Path) -> None:
    """The resolver gets TLS from ``tls_listen`` (``[sip] transports`` only names UDP/TCP);
    a sips: URI is TLS even with ``transport=tcp`` (RFC 5630 §3.1.3)."""
    tls_on = SipSettings(tls_listen=("127.0.0.1", 5061))
    routing = hunt_group(f"sips:ann@{TAKER[0]}:{TAKER[1]};transport=tcp")
    async with Harness(tmp_path, routing=routing, sip=tls_on) as h:
        await invite(h, Peer(CALLER, "caller", "hunt-sips"))
        await end_notice(h)
        request = await invited(h, TAKER)
        assert str(request.headers.get("via")).startswith("SIP/2.0/TLS ")
        assert h.published(CallTakerFailedOver) == []


async def test_a_call_taker_found_through_dns_is_verified_as_its_domain(tmp_path: Path) -> None:
    """RFC 5922 §7.2: the INVITE goes to the address DNS gave, with the URI's domain as
    the name the call taker's TLS certificate must match."""
    zone = {
        ("_sips._tcp.pbx.example", "SRV"): [Srv(0, 0, TAKER[1], "host1.pbx.example")],
        ("host1.pbx.example", "A"): [TAKER[0]],
    }
    resolver = ZoneResolver(zone)
    resolver.transports = ("UDP", "TLS")
    tls_on = SipSettings(tls_listen=("127.0.0.1", 5061))
    routing = hunt_group("sips:desk@pbx.example")
    async with Harness(tmp_path, routing=routing, sip=tls_on, resolver=resolver) as h:
        await invite(h, Peer(CALLER, "caller", "hunt-sips-dns"))
        await end_notice(h)
        await invited(h, TAKER)
        (sent,) = [s for s in h.to(TAKER) if s.is_request("INVITE")]
        assert sent.server_name == "pbx.example"


async def test_each_call_taker_is_offered_its_own_srtp_key(tmp_path: Path) -> None:
    """Ann rang and was cancelled: the key bob is offered (and the call then uses) is not
    the one she saw."""
    routing = hunt_group(ANN, BOB, no_answer=0.3)
    async with Harness(tmp_path, routing=routing, srtp=SrtpSettings("off", "require")) as h:
        caller, ann, _ = parties("hunt-srtp")
        first, second = await ann_rings_too_long(h, caller, ann)
        ann_keys = {k.key_salt for line in crypto_of(first) for k in line.keys}
        bob_keys = {k.key_salt for line in crypto_of(second) for k in line.keys}
        assert ann_keys and bob_keys
        assert not ann_keys & bob_keys


async def test_the_422_retry_to_the_same_call_taker_keeps_its_key(tmp_path: Path) -> None:
    async with Harness(tmp_path, routing=hunt_group(ANN), srtp=SrtpSettings("off", "require")) as h:
        caller = parties("hunt-srtp-422")[0]
        await invite(h, caller)
        await end_notice(h)
        first = await invited(h, TAKER)
        too_small = make_response(first, 422, to_tag="t1", headers=[("Min-SE", "3600")])
        h.feed(too_small.serialize(), TAKER)
        retry = await invited(h, TAKER, 2)
        keys = [{k.key_salt for line in crypto_of(m) for k in line.keys} for m in (first, retry)]
        assert keys[0] and keys[0] == keys[1]
