"""Responses built on the lines copied from their request, and bytes serialised once.

``make_response`` reads what a response copies from its request (Via, From, To, Call-ID,
CSeq, Record-Route) once per request, with the lines' wire bytes; each response's bytes
start from them.  They must be exactly the bytes the header-by-header serialiser writes
for the same fields, for every request of the test corpus and of the torture tests, and
nothing kept may outlive a change to the request, the response or its body.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.sip.errors import RemoteSipError
from proxy.sip.message import (
    Request,
    Response,
    error_response,
    make_response,
    parse_message,
)

Loader = Callable[[Path], bytes]

STATUSES = (100, 180, 183, 200, 202, 400, 401, 481, 486, 487, 488, 500, 503, 603)

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"v: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds\r\n"
    b"Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1, SIP/2.0/TCP p2.example.com\r\n"
    b"Record-Route: <sip:proxy.example.com;lr>\r\n"
    b"Max-Forwards: 70\r\n"
    b't: "Bob" <sip:bob@example.com>\r\n'
    b"From: Alice <sip:alice@example.com>;tag=1928301774\r\n"
    b"i: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def header_by_header(response: Response) -> bytes:
    """The same response with nothing known in advance: every field serialised."""
    fresh = Response(response.status, response.reason, response.headers.copy(), response.body)
    return fresh.serialize()


def requests_in(root: Path, load: Loader) -> list[tuple[str, Request]]:
    found: list[tuple[str, Request]] = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix in (".md", ".tsv", ".pcap", ".pcapng", ".txt"):
            continue
        try:
            message = parse_message(load(path))
        except RemoteSipError as exc:
            if exc.request is not None:
                found.append((f"{path.name} (refused)", exc.request))
            continue
        if isinstance(message, Request):
            found.append((path.name, message))
    return found


def test_every_corpus_request_gets_the_same_bytes(testdata: Path, load_wire: Loader) -> None:
    requests = requests_in(testdata / "sip", load_wire)
    assert len(requests) > 100
    for name, request in requests:
        for status in STATUSES:
            response = make_response(
                request,
                status,
                to_tag="b2f7",
                server="recproxy",
                headers=[("Allow", "INVITE, ACK, BYE"), ("Content-Type", "application/sdp")],
                body=b"v=0\r\n" if status == 200 else b"",
            )
            assert response.serialize() == header_by_header(response), (name, status)


def test_the_responses_to_one_request_share_its_lines_and_stay_exact() -> None:
    request = parse_message(INVITE)
    assert isinstance(request, Request)
    trying = make_response(request, 100, server="recproxy")
    ringing = make_response(request, 180, to_tag="t1")
    ok = make_response(request, 200, to_tag="t1", headers=[("Contact", "<sip:b@x>")])
    busy = make_response(request, 486, to_tag="t1")
    for response in (trying, ringing, ok, busy):
        assert response.serialize() == header_by_header(response)
    assert ok.serialize().decode().split("\r\n")[:10] == [
        "SIP/2.0 200 OK",
        "Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds",
        "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1, SIP/2.0/TCP p2.example.com",
        "Record-Route: <sip:proxy.example.com;lr>",
        'To: "Bob" <sip:bob@example.com>;tag=t1',
        "From: Alice <sip:alice@example.com>;tag=1928301774",
        "Call-ID: a84b4c76e66710@pc33.example.com",
        "CSeq: 314159 INVITE",
        "Contact: <sip:b@x>",
        "Content-Length: 0",
    ]
    assert b"Record-Route" not in busy.serialize() and b"tag=" not in trying.serialize()[:120]


def test_error_responses_to_refused_requests_are_exact() -> None:
    refused = INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE")
    with pytest.raises(RemoteSipError) as caught:
        parse_message(refused)
    response = error_response(caught.value)
    assert response is not None and response.status == 400
    assert response.serialize() == header_by_header(response)


def test_a_change_to_the_request_reaches_its_next_response() -> None:
    request = parse_message(INVITE)
    assert isinstance(request, Request)
    assert b"received=" not in make_response(request, 100).serialize()
    top = request.top_via.with_params(received="192.0.2.9")
    request.headers.replace_first_value("via", str(top))
    response = make_response(request, 180, to_tag="t")
    assert b"branch=z9hG4bK776asdhds;received=192.0.2.9\r\n" in response.serialize()
    assert response.serialize() == header_by_header(response)


def test_a_change_to_the_response_is_serialised() -> None:
    request = parse_message(INVITE)
    assert isinstance(request, Request)
    response = make_response(request, 200, to_tag="t")
    before = response.serialize()
    response.headers.set("To", "<sip:carol@example.com>;tag=t")
    after = response.serialize()
    assert after != before
    assert b"\r\nTo: <sip:carol@example.com>;tag=t\r\n" in after
    assert after == header_by_header(response)


# ---------------------------------------------------------------------------------------
# Serialised once


def test_serialising_again_gives_the_same_bytes_without_building_them() -> None:
    request = parse_message(INVITE)
    assert isinstance(request, Request)
    response = make_response(request, 200, to_tag="t", body=b"v=0\r\n")
    first = response.serialize()
    assert response.serialize() is first
    assert request.serialize() is request.serialize()


def test_a_new_body_start_line_or_header_is_serialised_again() -> None:
    request = parse_message(INVITE)
    assert isinstance(request, Request)
    response = make_response(request, 200, to_tag="t", body=b"v=0\r\n")
    first = response.serialize()
    response.body = b"v=0\r\no=x\r\n"
    assert b"Content-Length: 10\r\n\r\nv=0\r\no=x\r\n" in response.serialize()
    response.reason = "Fine"
    assert response.serialize().startswith(b"SIP/2.0 200 Fine\r\n")
    response.headers.add("Warning", '399 x "y"')
    assert b'Warning: 399 x "y"\r\n' in response.serialize()
    assert response.serialize() != first
    request.method = "OPTIONS"
    assert request.serialize().startswith(b"OPTIONS sip:bob@example.com SIP/2.0\r\n")
