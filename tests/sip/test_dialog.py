"""Dialogs (RFC 3261 §12): creation on both sides, route sets, loose and strict routing,
CSeq, the in-dialog requests a dialog builds, and matching their responses."""

from __future__ import annotations

import pytest

from proxy.sip.core import ALLOWED_METHODS, CoreSettings, SipCore
from proxy.sip.dialog import (
    Dialog,
    DialogState,
    Role,
    build_request,
    uri_destination,
)
from proxy.sip.errors import LocalSipError
from proxy.sip.events import RequestReceived, ResponseReceived
from proxy.sip.message import Request, Response, make_response, parse_message
from proxy.sip.uri import SipUri, parse_uri
from tests.sip.sipcore_helpers import (
    UAC_ADDR,
    UAS_ADDR,
    Network,
    drain_events,
    raw_request,
    run,
)

RR = [
    "<sip:p1.example.com;lr>",
    "<sip:p2.example.com;lr>",
    "<sip:p3.example.com;lr>",
]


def incoming_invite(record_route: list[str] | None = None) -> Request:
    headers = [("Record-Route", rr) for rr in record_route or []]
    data = raw_request(
        "INVITE",
        headers=headers,
        contact="<sip:alice@192.0.2.10:5070;transport=udp>",
        cseq=7,
    )
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def uas_dialog(record_route: list[str] | None = None) -> Dialog:
    return Dialog.from_request(
        incoming_invite(record_route),
        local_tag="bob-tag",
        local_contact="<sip:bob@127.0.0.2:5060>",
    )


def uac_dialog(
    record_route: list[str] | None = None,
    *,
    status: int = 200,
    contact: str = "<sip:bob@192.0.2.20:5080>",
) -> Dialog:
    invite = build_request(
        "INVITE",
        parse_uri("sip:bob@example.com"),
        from_="Alice <sip:alice@example.com>;tag=alice-tag",
        to="<sip:bob@example.com>",
        contact="<sip:alice@127.0.0.1:5060>",
        call_id="dlg-1@example.com",
        cseq=41,
    )
    invite.headers.prepend("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-d1")
    extra = [("Record-Route", rr) for rr in record_route or []]
    extra.append(("Contact", contact))
    response = make_response(invite, status, to_tag="bob-tag", headers=extra)
    return Dialog.from_response(invite, response, "UDP")


# ---------------------------------------------------------------------------------------
# Creation and route sets (§12.1)


def test_uas_dialog_from_request() -> None:
    dialog = uas_dialog(RR)
    assert dialog.role is Role.UAS
    assert dialog.id == ("call-1@192.0.2.10", "bob-tag", "peer-tag")
    assert dialog.remote_seq == 7 and dialog.local_seq == 0
    assert str(dialog.remote_target) == "sip:alice@192.0.2.10:5070;transport=udp"
    assert dialog.route_set == RR  # the UAS keeps the Record-Route order
    assert dialog.state is DialogState.EARLY
    assert dialog.local_party == "<sip:bob@127.0.0.2>"
    assert dialog.remote_party == "<sip:alice@192.0.2.10>"


def test_uas_dialog_without_contact_targets_the_from_uri() -> None:
    """An RFC 2543 INVITE may lack Contact; in-dialog requests then go to From."""
    request = parse_message(raw_request("INVITE", contact=None))
    assert isinstance(request, Request)
    dialog = Dialog.from_request(request, local_tag="t", local_contact="<sip:b@h>")
    assert dialog.remote_target == request.from_.uri


def test_uac_dialog_from_response_reverses_the_route_set() -> None:
    dialog = uac_dialog(RR)
    assert dialog.role is Role.UAC
    assert dialog.id == ("dlg-1@example.com", "alice-tag", "bob-tag")
    assert dialog.route_set == list(reversed(RR))
    assert dialog.local_seq == 41 and dialog.remote_seq is None
    assert str(dialog.remote_target) == "sip:bob@192.0.2.20:5080"
    assert dialog.state is DialogState.CONFIRMED


def test_uac_early_dialog_takes_the_route_set_of_the_2xx() -> None:
    dialog = uac_dialog(["<sip:old.example.com;lr>"], status=180)
    assert dialog.state is DialogState.EARLY
    ok = parse_message(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-d1\r\n"
        b"From: <sip:alice@example.com>;tag=alice-tag\r\nTo: <sip:bob@example.com>;tag=bob-tag\r\n"
        b"Call-ID: dlg-1@example.com\r\nCSeq: 41 INVITE\r\n"
        b"Record-Route: <sip:a.example.com;lr>, <sip:b.example.com;lr>\r\n"
        b"Contact: <sip:bob@192.0.2.21>\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(ok, Response)
    dialog.update_from_response(ok)
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.route_set == ["<sip:b.example.com;lr>", "<sip:a.example.com;lr>"]
    assert str(dialog.remote_target) == "sip:bob@192.0.2.21"
    # Once confirmed, the route set is fixed; only the target is refreshed (§12.2).
    ok.headers.set("Record-Route", "<sip:c.example.com;lr>")
    ok.headers.set("Contact", "<sip:bob@192.0.2.22>")
    dialog.update_from_response(ok)
    assert dialog.route_set == ["<sip:b.example.com;lr>", "<sip:a.example.com;lr>"]
    assert str(dialog.remote_target) == "sip:bob@192.0.2.22"


# ---------------------------------------------------------------------------------------
# Routing of in-dialog requests (§12.2.1.1)


def test_no_route_set_sends_to_the_remote_target() -> None:
    dialog = uac_dialog()
    bye = dialog.create_request("BYE")
    assert str(bye.uri) == "sip:bob@192.0.2.20:5080"
    assert bye.headers.get_all("route") == []
    assert dialog.next_hop() == ("192.0.2.20", 5080, "UDP")


def test_loose_routing_keeps_the_target_and_all_routes() -> None:
    dialog = uac_dialog(RR)
    bye = dialog.create_request("BYE")
    assert str(bye.uri) == "sip:bob@192.0.2.20:5080"
    assert bye.headers.get_all("route") == list(reversed(RR))
    assert dialog.next_hop() == ("p3.example.com", 5060, "UDP")


def test_strict_routing_puts_the_first_route_in_the_request_uri() -> None:
    routes = [
        "<sip:strict.example.com:5070;transport=tcp;maddr=10.0.0.1;method=INVITE?h=v>",
        "<sip:p2.example.com;lr>",
    ]
    dialog = uas_dialog(routes)
    bye = dialog.create_request("BYE")
    # The first URI, less what a Request-URI must not have (method, headers: §19.1.1),
    # is the Request-URI; the rest of the route set and then the remote target follow.
    assert isinstance(bye.uri, SipUri)
    assert bye.uri.host == "strict.example.com" and bye.uri.port == 5070
    assert bye.uri.param("method") is None and bye.uri.headers is None
    assert bye.uri.param("transport") == "tcp"
    assert bye.uri.param("maddr") == "10.0.0.1"
    assert bye.headers.get_all("route") == [
        "<sip:p2.example.com;lr>",
        "<sip:alice@192.0.2.10:5070;transport=udp>",
    ]
    assert dialog.next_hop() == ("10.0.0.1", 5070, "TCP")


def test_uri_destination_defaults() -> None:
    assert uri_destination(parse_uri("sip:a@h.example")) == ("h.example", 5060, "UDP")
    assert uri_destination(parse_uri("sips:a@h.example")) == ("h.example", 5061, "TLS")
    assert uri_destination(parse_uri("sip:h:5080;transport=tcp")) == ("h", 5080, "TCP")
    with pytest.raises(LocalSipError):
        uri_destination(parse_uri("tel:+15551234"))


# ---------------------------------------------------------------------------------------
# Building requests


@pytest.mark.parametrize(
    ("method", "has_contact"),
    [
        ("BYE", False),
        ("INVITE", True),
        ("UPDATE", True),
        ("INFO", False),
        ("REFER", True),
        ("NOTIFY", True),
        ("OPTIONS", False),
    ],
)
def test_create_request_headers(method: str, has_contact: bool) -> None:
    dialog = uac_dialog(RR)
    request = dialog.create_request(method, headers=[("X-Test", "1")])
    assert request.method == method
    assert request.cseq.number == 42 and request.cseq.method == method
    assert request.call_id == "dlg-1@example.com"
    assert request.from_.tag == "alice-tag" and request.to.tag == "bob-tag"
    assert request.from_.display == "Alice"
    assert request.headers.get("x-test") == "1"
    assert (request.headers.get("contact") == "<sip:alice@127.0.0.1:5060>") is has_contact
    assert request.headers.get_all("via") == []  # the core adds Via when sending
    # It is a well-formed request once the Via is on.
    request.headers.prepend("Via", "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-x")
    reparsed = parse_message(request.serialize())
    assert isinstance(reparsed, Request) and reparsed.method == method


def test_cseq_increments_per_request_but_not_for_ack() -> None:
    dialog = uac_dialog()
    assert [dialog.create_request(m).cseq.number for m in ("INFO", "INVITE", "BYE")] == [
        42,
        43,
        44,
    ]
    ack = dialog.create_ack(43, body=b"v=0\r\n")
    assert ack.cseq.number == 43 and ack.cseq.method == "ACK"
    assert ack.headers.get("content-type") == "application/sdp"
    assert ack.body == b"v=0\r\n"
    assert dialog.local_seq == 44


def test_uas_dialog_cseq_space_starts_at_one() -> None:
    dialog = uas_dialog()
    info = dialog.create_request("INFO")
    assert info.cseq.number == 1
    assert info.from_.tag == "bob-tag" and info.to.tag == "peer-tag"
    assert str(info.uri) == "sip:alice@192.0.2.10:5070;transport=udp"


def test_create_request_refuses_ack_cancel_and_terminated_dialogs() -> None:
    dialog = uac_dialog()
    for method in ("ACK", "CANCEL", "REGISTER"):
        with pytest.raises(LocalSipError):
            dialog.create_request(method)
    dialog.state = DialogState.TERMINATED
    with pytest.raises(LocalSipError):
        dialog.create_request("BYE")


def test_check_remote_cseq() -> None:
    dialog = uas_dialog()  # remote CSeq 7 from the INVITE

    def req(n: int) -> Request:
        message = parse_message(raw_request("INFO", cseq=n, to="<sip:b@h>;tag=bob-tag"))
        assert isinstance(message, Request)
        return message

    assert not dialog.check_remote_cseq(req(6))
    assert dialog.check_remote_cseq(req(8))
    assert not dialog.check_remote_cseq(req(7))
    assert dialog.remote_seq == 8
    empty = uac_dialog()
    assert empty.check_remote_cseq(req(1))  # no remote CSeq yet: anything goes
    assert empty.remote_seq == 1


def test_build_request_adds_a_from_tag_and_keeps_one() -> None:
    fresh = build_request("OPTIONS", parse_uri("sip:h"), from_="<sip:a@h>", to="<sip:b@h>")
    assert fresh.from_.tag
    kept = build_request("OPTIONS", parse_uri("sip:h"), from_="<sip:a@h>;tag=x", to="<sip:b@h>")
    assert kept.from_.tag == "x"
    assert kept.cseq.method == "OPTIONS" and kept.call_id


# ---------------------------------------------------------------------------------------
# In-dialog requests through two cores, and their responses matched to the dialog


@pytest.fixture
def established() -> tuple[Network, SipCore, SipCore, Dialog, Dialog]:
    net = Network()
    # a UA that takes REFER and NOTIFY too, so that every in-dialog method reaches the TU
    methods = (*ALLOWED_METHODS, "REFER", "NOTIFY")
    uac = net.add(SipCore(CoreSettings(host="127.0.0.1", allowed_methods=methods)), UAC_ADDR)
    uas = net.add(SipCore(CoreSettings(host="127.0.0.2", allowed_methods=methods)), UAS_ADDR)
    invite = build_request(
        "INVITE",
        parse_uri("sip:bob@127.0.0.2"),
        from_="<sip:alice@127.0.0.1>",
        to="<sip:bob@127.0.0.2>",
        contact=uac.default_contact("alice"),
    )
    uac.send_request(invite, 0.0)
    net.transfer()
    (event,) = drain_events(uas)
    assert isinstance(event, RequestReceived)
    uas_d = uas.accept_dialog(event.transaction)
    uas.respond(event.transaction, 200, now=0.0, dialog=uas_d)
    net.transfer()
    responses = [e for e in drain_events(uac) if isinstance(e, ResponseReceived)]
    uac_d = responses[-1].dialog
    assert uac_d is not None
    uac.send_ack(uac_d, uac_d.create_ack(1), 0.0)
    net.transfer()
    drain_events(uas)
    return net, uac, uas, uac_d, uas_d


@pytest.mark.parametrize("method", ["UPDATE", "INFO", "REFER", "NOTIFY", "OPTIONS", "BYE"])
def test_in_dialog_request_and_its_response_match_the_dialogs(
    established: tuple[Network, SipCore, SipCore, Dialog, Dialog], method: str
) -> None:
    net, uac, uas, uac_d, uas_d = established
    request = uac_d.create_request(method)
    client = uac.send_request(request, 0.0, dialog=uac_d)
    net.transfer()
    (received,) = drain_events(uas)
    assert isinstance(received, RequestReceived)
    assert received.dialog is uas_d
    assert received.request.method == method and received.request.cseq.number == 2
    uas.respond(received.transaction, 200, now=0.0, dialog=uas_d)
    net.transfer()
    (answered,) = drain_events(uac)
    assert isinstance(answered, ResponseReceived)
    assert answered.transaction is client
    assert answered.dialog is uac_d
    assert answered.response.cseq.method == method
    if method == "BYE":
        assert uac.dialogs == [] and uas.dialogs == []
        assert uac_d.state is uas_d.state is DialogState.TERMINATED
    else:
        assert uac.dialogs == [uac_d] and uas.dialogs == [uas_d]
        assert uac_d.state is uas_d.state is DialogState.CONFIRMED


def test_end_dialog_forgets_it_and_stops_requests(
    established: tuple[Network, SipCore, SipCore, Dialog, Dialog],
) -> None:
    net, uac, uas, uac_d, uas_d = established
    uac.end_dialog(uac_d)
    assert uac.dialogs == [] and uac_d.state is DialogState.TERMINATED
    # The peer's BYE now finds no dialog: 481 (§12.2.2).
    uas.send_request(uas_d.create_request("BYE"), 0.0, dialog=uas_d)
    net.transfer()
    (answered,) = drain_events(uas)
    assert isinstance(answered, ResponseReceived) and answered.response.status == 481
    assert uas.dialogs == []  # a BYE answered with anything final ends the dialog
    run(net, {})
    assert uac.transaction_count == uas.transaction_count == 0
