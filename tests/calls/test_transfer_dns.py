"""A blind transfer to a call taker's phone named by a host name (issue 18): the target
is found by RFC 3263 (answered from a dict here, no sockets), and a name with no address
— or a lookup that fails or outlasts the ring time — fails the transfer with 503 while
the caller stays with the first call taker; the call's requests are handled meanwhile."""

from __future__ import annotations

import asyncio
from pathlib import Path

from proxy.config import OperatorSettings, RoutingSettings
from proxy.events import CallEnded, CallTransferred, TransferRequested
from proxy.sip.message import Request
from proxy.sip.resolve import Srv, Target
from proxy.sip.uri import SipUri

from .call_harness import CALLER, TAKER, Harness
from .test_call_flow import (
    no_sockets,  # noqa: F401 (the fixture)
    taker_request,
)
from .test_hunt import ZoneResolver
from .test_transfer import ANN, SECOND, bridged, notifies, sent_refer

BOB = OperatorSettings("bob", "b" * 64, identities=("sip:bob@phones.example",), team="blue")
ZONE = {
    ("_sip._udp.phones.example", "SRV"): [Srv(0, 0, SECOND[1], "bob.phones.example")],
    ("bob.phones.example", "A"): [SECOND[0]],
}


async def test_the_target_named_by_a_host_is_invited_at_its_dns_address(tmp_path: Path) -> None:
    resolver = ZoneResolver(ZONE)
    async with Harness(tmp_path, operators=(ANN, BOB), resolver=resolver) as h:
        _, taker, taker_invite, _ = await bridged(h, "transfer-dns-1")
        h.feed(sent_refer(taker, taker_invite, "<sip:bob@phones.example>"), TAKER)
        await h.until(lambda: any(s.is_request("INVITE") for s in h.to(SECOND)))
        (sent,) = [s.message for s in h.to(SECOND) if s.is_request("INVITE")]
        assert isinstance(sent, Request)
        assert str(sent.uri) == "sip:bob@phones.example"  # the name, sent to its address


async def test_a_target_name_without_an_address_fails_the_transfer_with_503(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path, operators=(ANN, BOB), resolver=ZoneResolver({})) as h:
        _, taker, taker_invite, _ = await bridged(h, "transfer-dns-2")
        h.feed(sent_refer(taker, taker_invite, "<sip:bob@phones.example>"), TAKER)
        await h.until(lambda: h.published(CallTransferred))
        (failed,) = h.published(CallTransferred)
        assert (failed.outcome, failed.status) == ("failed", 503)
        assert notifies(h)[-1][0] == b"SIP/2.0 503 Service Unavailable\r\n"
        assert h.call.operator == "ann" and h.b2bua.calls  # the caller stays with ann


class FailingResolver(ZoneResolver):
    """A resolver that breaks on the phone's name (a bug, a socket error)."""

    async def resolve(self, uri: SipUri) -> list[Target]:
        if uri.host == "phones.example":
            raise OSError("no route to the name server")
        return await super().resolve(uri)


class HangingResolver(ZoneResolver):
    """A name server that never answers about the phone's name."""

    def __init__(self, release: asyncio.Event | None = None) -> None:
        super().__init__(ZONE)
        self.release = release or asyncio.Event()

    async def resolve(self, uri: SipUri) -> list[Target]:
        if uri.host == "phones.example":
            await self.release.wait()
        return await super().resolve(uri)


async def test_a_failing_lookup_fails_the_transfer_with_503_and_the_caller_stays(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path, operators=(ANN, BOB), resolver=FailingResolver({})) as h:
        _, taker, taker_invite, _ = await bridged(h, "transfer-dns-3")
        h.feed(sent_refer(taker, taker_invite, "<sip:bob@phones.example>"), TAKER)
        await h.until(lambda: h.published(CallTransferred))
        (failed,) = h.published(CallTransferred)
        assert (failed.outcome, failed.status) == ("failed", 503)
        assert notifies(h)[-1][0] == b"SIP/2.0 503 Service Unavailable\r\n"
        assert h.call.operator == "ann" and not h.published(CallEnded)


async def test_a_lookup_that_never_answers_fails_at_the_ring_time(tmp_path: Path) -> None:
    routing = RoutingSettings(call_taker=f"sip:taker@{TAKER[0]}:{TAKER[1]}",
                              ring_timeout_seconds=1)  # fmt: skip
    async with Harness(
        tmp_path, operators=(ANN, BOB), resolver=HangingResolver(), routing=routing
    ) as h:
        _, taker, taker_invite, _ = await bridged(h, "transfer-dns-4")
        h.feed(sent_refer(taker, taker_invite, "<sip:bob@phones.example>"), TAKER)
        await h.until(lambda: h.published(CallTransferred), seconds=3.0)
        (failed,) = h.published(CallTransferred)
        assert (failed.outcome, failed.status) == ("failed", 503)
        assert notifies(h)[-1][0] == b"SIP/2.0 503 Service Unavailable\r\n"
        assert h.call.operator == "ann" and not h.published(CallEnded)


async def test_the_callers_bye_during_the_lookup_ends_the_call_at_once(tmp_path: Path) -> None:
    async with Harness(tmp_path, operators=(ANN, BOB), resolver=HangingResolver()) as h:
        caller, taker, taker_invite, to = await bridged(h, "transfer-dns-5")
        h.feed(sent_refer(taker, taker_invite, "<sip:bob@phones.example>"), TAKER)
        await h.until(lambda: notifies(h))  # 202 and 100 Trying: the lookup is under way
        h.feed(caller.request("BYE", to=to, cseq=2), CALLER)
        await h.until(lambda: h.published(CallEnded), seconds=1.0)
        assert any(s.is_response(200, "BYE") for s in h.to(CALLER))
        (abandoned,) = h.published(CallTransferred)
        assert abandoned.outcome == "abandoned"


async def test_during_the_lookup_a_second_refer_is_491_and_the_transferors_bye_is_answered(
    tmp_path: Path,
) -> None:
    resolver = HangingResolver()
    async with Harness(tmp_path, operators=(ANN, BOB), resolver=resolver) as h:
        _, taker, taker_invite, _ = await bridged(h, "transfer-dns-6")
        h.feed(sent_refer(taker, taker_invite, "<sip:bob@phones.example>"), TAKER)
        await h.until(lambda: notifies(h))
        again = sent_refer(taker, taker_invite, "<sip:bob@phones.example>").replace(
            b"CSeq: 2 REFER", b"CSeq: 3 REFER"
        )
        h.feed(again, TAKER)
        await h.until(lambda: any(s.is_response(491, "REFER") for s in h.to(TAKER)))
        h.feed(taker_request(taker, taker_invite, "BYE", 4), TAKER)  # a blind transferor
        await h.until(lambda: any(s.is_response(200, "BYE") for s in h.to(TAKER)))
        assert not h.published(CallEnded)  # the caller waits for bob
        resolver.release.set()
        await h.until(lambda: any(s.is_request("INVITE") for s in h.to(SECOND)))
        assert len(h.published(TransferRequested)) == 1
