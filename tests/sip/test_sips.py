"""The RFC 5630 rules in the sans-IO core, with bytes and a fake clock: a ``sips:``
request goes over TLS and is never downgraded, ``transport=tls`` is its legacy form,
Via says TLS at our TLS port, our Contact is ``sips:`` in a secure dialog, a ``sips:``
Request-URI that arrived over a hop without TLS gets 416, and a transport that cannot
reach a peer fails its transactions at once."""

from __future__ import annotations

import pytest

from proxy.sip.core import CoreSettings, SipCore
from proxy.sip.dialog import build_request, uri_destination
from proxy.sip.events import RequestReceived, TransactionTimedOut
from proxy.sip.message import Request, parse_message
from proxy.sip.uri import parse_uri
from tests.sip.sipcore_helpers import PEER_ADDR, drain_events, raw_request

HOST = "127.0.0.2"
TLS_PORT = 5061


def core() -> SipCore:
    return SipCore(CoreSettings(host=HOST, port=5060, tls_port=TLS_PORT))


def sent_request(c: SipCore, uri: str) -> tuple[Request, str, tuple[str, int]]:
    target = parse_uri(uri)
    request = build_request(
        "INVITE", target, from_="<sip:rec@127.0.0.2>", to=f"<{target}>", contact=c.default_contact()
    )
    c.send_request(request, 0.0)
    (out,) = c.datagrams_to_send()
    message = parse_message(out.data, stream=out.transport != "UDP")
    assert isinstance(message, Request)
    return message, out.transport, out.destination


@pytest.mark.parametrize(
    ("uri", "destination"),
    [
        ("sips:taker@192.0.2.20", ("192.0.2.20", 5061)),
        ("sips:taker@192.0.2.20:5071", ("192.0.2.20", 5071)),
        ("sips:taker@192.0.2.20;transport=tcp", ("192.0.2.20", 5061)),  # TLS over TCP
        ("sips:taker@192.0.2.20;transport=udp", ("192.0.2.20", 5061)),  # never downgraded
        ("sip:taker@192.0.2.20;transport=tls", ("192.0.2.20", 5061)),  # the legacy form
    ],
)
def test_a_sips_or_transport_tls_target_goes_over_tls(
    uri: str, destination: tuple[str, int]
) -> None:
    assert uri_destination(parse_uri(uri)) == (*destination, "TLS")
    request, transport, where = sent_request(core(), uri)
    assert transport == "TLS" and where == destination
    assert request.top_via.transport == "TLS"
    assert (request.top_via.host, request.top_via.port) == (HOST, TLS_PORT)


def test_our_contact_is_sips_toward_a_sips_target_and_transport_tls_toward_a_sip_one() -> None:
    request, _, _ = sent_request(core(), "sips:taker@192.0.2.20")
    assert request.headers.get("contact") == f"<sips:{HOST}:{TLS_PORT}>"
    request, _, _ = sent_request(core(), "sip:taker@192.0.2.20;transport=tls")
    assert request.headers.get("contact") == f"<sip:{HOST}:{TLS_PORT};transport=tls>"
    request, _, _ = sent_request(core(), "sip:taker@192.0.2.20")
    assert request.headers.get("contact") == f"<sip:{HOST}:5060>"


def test_a_sips_request_uri_over_tls_makes_a_secure_dialog_with_a_sips_contact() -> None:
    c = core()
    invite = raw_request(
        "INVITE",
        uri=f"sips:bob@{HOST}",
        via="SIP/2.0/TLS 192.0.2.10:5071;branch=z9hG4bK-tls-1",
        contact="<sips:alice@192.0.2.10:5071>",
    )
    c.receive_datagram(invite, PEER_ADDR, 0.0, "TLS")
    (event,) = drain_events(c)
    assert isinstance(event, RequestReceived) and event.transport == "TLS"
    outs = c.datagrams_to_send()  # the 100, on the connection it came on
    assert [(o.transport, o.destination) for o in outs] == [("TLS", PEER_ADDR)]
    dialog = c.accept_dialog(event.transaction)
    assert dialog.secure and dialog.local_contact == f"<sips:{HOST}:{TLS_PORT}>"
    assert dialog.next_hop() == ("192.0.2.10", 5071, "TLS")
    c.respond(event.transaction, 200, now=0.0, dialog=dialog)
    (ok,) = c.datagrams_to_send()
    assert ok.transport == "TLS" and f"Contact: <sips:{HOST}:{TLS_PORT}>".encode() in ok.data


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_a_sips_request_uri_over_a_hop_without_tls_gets_416(transport: str) -> None:
    c = core()
    via = f"SIP/2.0/{transport} 192.0.2.10:5070;branch=z9hG4bK-plain-1"
    c.receive_datagram(
        raw_request("INVITE", uri=f"sips:bob@{HOST}", via=via), PEER_ADDR, 0.0, transport
    )
    assert drain_events(c) == []
    (out,) = c.datagrams_to_send()
    assert out.data.startswith(b"SIP/2.0 416 Unsupported URI Scheme (sips: needs TLS)\r\n")
    assert c.dialogs == []


def test_a_failed_transport_fails_only_the_transactions_sent_its_way() -> None:
    c = core()
    c.send_request(
        build_request("OPTIONS", parse_uri("sips:a@192.0.2.20"), from_="<sip:r@x>", to="<sip:a@x>"),
        0.0,
    )
    c.send_request(
        build_request(
            "OPTIONS",
            parse_uri("sip:b@192.0.2.21;transport=tcp"),
            from_="<sip:r@x>",
            to="<sip:b@x>",
        ),
        0.0,
    )
    c.datagrams_to_send()
    c.transport_failed(("192.0.2.20", 5061), "TCP", 0.1)  # same address, other transport
    assert drain_events(c) == []
    c.transport_failed(("192.0.2.20", 5061), "TLS", 0.1)
    (event,) = drain_events(c)
    assert isinstance(event, TransactionTimedOut)
    assert str(event.transaction.request.uri) == "sips:a@192.0.2.20"
    assert c.transaction_count == 1  # the TCP one lives on, to its own Timer F
    assert c.stats["transaction_timeouts"] == 0  # a transport error, not a timeout
