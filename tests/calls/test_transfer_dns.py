"""A blind transfer to a call taker's phone named by a host name (issue 18): the target
is found by RFC 3263 (answered from a dict here, no sockets), and a name with no address
fails the transfer with 503 while the caller stays with the first call taker."""

from __future__ import annotations

from pathlib import Path

from proxy.config import OperatorSettings
from proxy.events import CallTransferred
from proxy.sip.message import Request
from proxy.sip.resolve import Srv

from .call_harness import TAKER, Harness
from .test_call_flow import no_sockets  # noqa: F401 (the fixture)
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
