"""parse_message, serialize, make_response and error_response."""

from __future__ import annotations

import pytest

from proxy.sip.errors import RemoteSipError
from proxy.sip.headers import CSeq, Headers
from proxy.sip.message import (
    MAX_HEADERS,
    MAX_MESSAGE_SIZE,
    Request,
    Response,
    error_response,
    make_response,
    parse_message,
)
from proxy.sip.uri import SipUri

HEAD = (
    "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n"
    "Via: SIP/2.0/UDP bigbox3.site3.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1\r\n"
    "Record-Route: <sip:p1.example.com;lr>\r\n"
    "Record-Route: <sip:p2.example.com;lr>\r\n"
    "Max-Forwards: 70\r\n"
    "To: Bob <sip:bob@biloxi.example.com>\r\n"
    "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    "Content-Type: application/sdp\r\n"
)
BODY = b"v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n"


def invite(extra: str = "", body: bytes = BODY, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return (HEAD + extra + f"Content-Length: {size}\r\n\r\n").encode() + body


def parse_request(data: bytes, *, stream: bool = False) -> Request:
    message = parse_message(data, stream=stream)
    assert isinstance(message, Request)
    return message


def reject(data: bytes, status: int = 400) -> RemoteSipError:
    with pytest.raises(RemoteSipError) as info:
        parse_message(data)
    assert info.value.status == status, info.value.reason
    return info.value


# ---------------------------------------------------------------------------------------
# Parsing


def test_request_fields() -> None:
    msg = parse_request(invite())
    assert msg.method == "INVITE"
    assert msg.uri == SipUri(host="biloxi.example.com", user="bob")
    assert msg.version == "SIP/2.0"
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert msg.cseq == CSeq(314159, "INVITE")
    assert msg.max_forwards == 70
    assert msg.from_.tag == "1928301774"
    assert msg.to.tag is None
    assert msg.to.display == "Bob"
    assert [v.host for v in msg.vias] == [
        "pc33.atlanta.example.com",
        "bigbox3.site3.atlanta.example.com",
    ]
    assert msg.top_via.branch == "z9hG4bKnashds8"
    assert msg.record_route == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert msg.content_type == "application/sdp"
    assert msg.body == BODY


def test_response_fields() -> None:
    data = invite().replace(b"INVITE sip:bob@biloxi.example.com SIP/2.0", b"SIP/2.0 180 Ringing")
    msg = parse_message(data)
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason, msg.version) == (180, "Ringing", "SIP/2.0")
    assert msg.cseq.method == "INVITE"


def test_reason_phrase_with_spaces_and_utf8() -> None:
    data = invite().replace(
        b"INVITE sip:bob@biloxi.example.com SIP/2.0", "SIP/2.0 486 Occupé ici".encode()
    )
    msg = parse_message(data)
    assert isinstance(msg, Response) and msg.reason == "Occupé ici"


def test_keepalive_crlfs_before_a_message_are_ignored() -> None:
    assert parse_request(b"\r\n\r\n" + invite()).method == "INVITE"


def test_bare_lf_line_ends_are_accepted() -> None:
    head, body = invite().split(b"\r\n\r\n", 1)
    msg = parse_request(head.replace(b"\r\n", b"\n") + b"\n\n" + body)
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert msg.to.display == "Bob"
    assert msg.body == BODY


def test_compact_forms_in_a_message() -> None:
    data = (
        b"OPTIONS sip:carol@chicago.example.com SIP/2.0\r\n"
        b"v: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKhjhs8ass877\r\n"
        b"t: <sip:carol@chicago.example.com>\r\n"
        b"f: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"i: a84b4c76e66710\r\n"
        b"CSeq: 63104 OPTIONS\r\n"
        b"m: <sip:alice@pc33.atlanta.example.com>\r\n"
        b"k: 100rel, timer\r\n"
        b"s: Lunch\r\n"
        b"c: text/plain\r\n"
        b"l: 2\r\n\r\nhi"
    )
    msg = parse_request(data)
    assert msg.call_id == "a84b4c76e66710"
    assert msg.from_.tag == "1928301774"
    assert str(msg.to.uri) == "sip:carol@chicago.example.com"
    assert str(msg.contacts[0].uri) == "sip:alice@pc33.atlanta.example.com"
    assert msg.headers.get_all("supported") == ["100rel", "timer"]
    assert msg.headers.get("subject") == "Lunch"
    assert msg.content_type == "text/plain"
    assert msg.body == b"hi"
    assert msg.top_via.branch == "z9hG4bKhjhs8ass877"


def test_folded_headers_are_unfolded() -> None:
    data = invite(extra="Subject: I know you're there,\r\n\tpick up the phone\r\n   and talk\r\n")
    msg = parse_request(data)
    assert msg.headers.get("subject") == "I know you're there, pick up the phone and talk"


def test_lws_around_colon_and_in_values() -> None:
    data = invite().replace(b"CSeq: 314159 INVITE", b"CSeq \t:   314159\r\n   INVITE  ")
    assert parse_request(data).cseq == CSeq(314159, "INVITE")


def test_vias_on_one_line_equal_vias_on_several() -> None:
    one = invite().replace(
        b"pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\nVia: ",
        b"pc33.atlanta.example.com;branch=z9hG4bKnashds8 ,\r\n ",
    )
    split = parse_request(invite())
    joined = parse_request(one)
    assert len(joined.headers.get_lines("via")) == 1
    assert len(split.headers.get_lines("via")) == 2
    assert joined.headers.get_all("via") == split.headers.get_all("via")
    assert joined.vias == split.vias


def test_header_names_are_case_insensitive() -> None:
    msg = parse_request(invite().replace(b"Call-ID:", b"cALL-iD:"))
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert msg.headers.get("CALL-ID") == msg.headers.get("i")


def test_unknown_headers_kept_verbatim_in_order() -> None:
    msg = parse_request(invite(extra="X-B: 2\r\nX-A: ;;,\r\nX-B: 1\r\n"))
    names = [n for n, _ in msg.headers]
    assert names[-4:] == ["X-B", "X-A", "X-B", "Content-Length"]
    assert msg.headers.get_all("x-b") == ["2", "1"]
    assert msg.headers.get("x-a") == ";;,"


@pytest.mark.parametrize("lines", ["X: a\r \r\n", "X: a\r\n \r\r\n", "X:\ra \r\n", "X: a\r\r\n"])
def test_stray_cr_at_the_ends_of_a_value_is_trimmed(lines: str) -> None:
    msg = parse_request(invite(extra=lines))
    assert msg.headers.get("x") == "a"
    again = parse_request(msg.serialize())
    assert list(again.headers) == list(msg.headers)


def test_stray_cr_inside_a_value_is_kept() -> None:
    msg = parse_request(invite(extra="X: a\rb\r\n"))
    assert msg.headers.get("x") == "a\rb"
    assert parse_request(msg.serialize()).headers.get("x") == "a\rb"


# -- UDP framing by Content-Length ------------------------------------------------------


def test_udp_bytes_after_content_length_are_ignored() -> None:
    msg = parse_request(invite() + b"trailing garbage")
    assert msg.body == BODY


def test_udp_short_body_is_400() -> None:
    err = reject(invite(length=len(BODY) + 1))
    assert "Content-Length" in err.reason


def test_udp_without_content_length_takes_the_rest() -> None:
    data = (HEAD + "\r\n").encode() + BODY
    assert parse_request(data).body == BODY


def test_stream_without_content_length_has_empty_body() -> None:
    data = (HEAD + "\r\n").encode()
    assert parse_request(data, stream=True).body == b""


@pytest.mark.parametrize("value", ["-1", "1a", "", "12345678901", "+5"])
def test_malformed_content_length_is_400(value: str) -> None:
    reject(invite().replace(f"Content-Length: {len(BODY)}".encode(), f"l: {value}".encode()))


def test_conflicting_content_lengths_are_400() -> None:
    reject(invite(extra="l: 3\r\n"))


def test_too_large_message_is_513() -> None:
    big = invite(extra="X-Pad: " + "a" * MAX_MESSAGE_SIZE + "\r\n")
    err = reject(big, 513)
    assert err.answerable
    smaller = parse_message(invite(), max_size=len(invite()))
    assert isinstance(smaller, Request)
    with pytest.raises(RemoteSipError) as info:
        parse_message(invite(), max_size=len(invite()) - 1)
    assert info.value.status == 513


def test_too_large_response_is_not_answerable() -> None:
    data = b"SIP/2.0 200 OK\r\n" + b"X: " + b"a" * MAX_MESSAGE_SIZE
    with pytest.raises(RemoteSipError) as info:
        parse_message(data)
    assert info.value.status == 513
    assert not info.value.answerable


# -- what is rejected -------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_missing_required_header_is_400(missing: str) -> None:
    lines = [line for line in HEAD.split("\r\n") if not line.startswith(f"{missing}:")]
    err = reject(("\r\n".join(lines) + "Content-Length: 0\r\n\r\n").encode())
    assert f"missing {missing}" in err.reason


@pytest.mark.parametrize(
    ("start_line", "status"),
    [
        ("INVITE sip:bob@biloxi.example.com SIP/3.0", 505),
        ("INVITE sip:bob@biloxi.example.com SIP/2.0 extra", 400),
        ("INVITE  sip:bob@biloxi.example.com SIP/2.0", 400),
        ("INVITE sip:bob@biloxi.example.com", 400),
        ("INV@TE sip:bob@biloxi.example.com SIP/2.0", 400),
        ("INVITE sip:bob@biloxi.example.com HTTP/1.1", 400),
        ("INVITE <sip:bob@biloxi.example.com> SIP/2.0", 400),
        ("INVITE sip:bob@biloxi.example.com SIP/2.0\t", 400),
    ],
)
def test_bad_request_line(start_line: str, status: int) -> None:
    data = invite().replace(b"INVITE sip:bob@biloxi.example.com SIP/2.0", start_line.encode())
    err = reject(data, status)
    assert err.answerable
    response = error_response(err)
    assert response is not None and response.status == status


@pytest.mark.parametrize(
    ("status_line", "status"),
    [
        ("SIP/2.0 4294967301 Big", 400),
        ("SIP/2.0 99 Small", 400),
        ("SIP/2.0 700 Too big", 400),
        ("SIP/2.0 20x OK", 400),
        ("SIP/3.0 200 OK", 505),
    ],
)
def test_bad_status_line_is_dropped(status_line: str, status: int) -> None:
    data = invite().replace(b"INVITE sip:bob@biloxi.example.com SIP/2.0", status_line.encode())
    err = reject(data, status)
    assert err.answerable is False
    assert error_response(err) is None


def test_cseq_method_mismatch_is_400() -> None:
    reject(invite().replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"))


@pytest.mark.parametrize("value", ["256", "-1", "abc", "99999999999"])
def test_bad_max_forwards_is_400(value: str) -> None:
    reject(invite().replace(b"Max-Forwards: 70", f"Max-Forwards: {value}".encode()))


def test_two_different_from_headers_are_400() -> None:
    err = reject(invite(extra="From: <sip:eve@example.com>;tag=1\r\n"))
    assert "more than one From" in err.reason


def test_identical_duplicate_header_is_tolerated() -> None:
    parse_request(invite(extra="Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"))


def test_malformed_call_id_is_400() -> None:
    reject(invite().replace(b"Call-ID: a84b4c76e66710@", b"Call-ID: a84b 4c76e66710@"))


def test_header_line_without_colon_is_400_and_still_answered() -> None:
    err = reject(invite(extra="this line has no colon\r\n"))
    response = error_response(err)
    assert response is not None and response.status == 400
    assert response.headers.get_lines("via") == parse_request(invite()).headers.get_lines("via")
    assert response.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert response.to.tag is not None


def test_continuation_line_first_is_400() -> None:
    data = invite().replace(b"SIP/2.0\r\nVia", b"SIP/2.0\r\n folded\r\nVia", 1)
    reject(data)


def test_too_many_headers_is_400() -> None:
    reject(invite(extra="X: y\r\n" * MAX_HEADERS))


def test_message_without_empty_line_is_read_as_headers_only() -> None:
    msg = parse_request((HEAD + "Content-Length: 0\r\n").encode())
    assert msg.body == b""


def test_request_without_via_is_not_answerable() -> None:
    data = invite().replace(b"Via:", b"X-Via:")
    err = reject(data)
    assert error_response(err) is None


# ---------------------------------------------------------------------------------------
# Serialising


def test_serialize_writes_the_real_content_length() -> None:
    msg = parse_request(invite())
    msg.body = b"shorter"
    wire = msg.serialize()
    assert b"\r\nContent-Length: 7\r\n\r\nshorter" in wire
    assert wire.count(b"Content-Length") == 1


def test_serialize_adds_a_missing_content_length() -> None:
    msg = parse_request((HEAD + "\r\n").encode() + BODY)
    assert "content-length" not in msg.headers
    wire = msg.serialize()
    assert wire.endswith(f"Content-Length: {len(BODY)}\r\n\r\n".encode() + BODY)


def test_serialize_keeps_compact_content_length_name_and_place() -> None:
    data = invite().replace(f"Content-Length: {len(BODY)}".encode(), b"l: 9999")
    msg = parse_request(data + b"x" * 9999)
    msg.body = b"abc"
    assert b"\r\nl: 3\r\n\r\nabc" in msg.serialize()


def test_serialize_round_trip_is_byte_exact_for_canonical_input() -> None:
    data = invite()
    assert parse_request(data).serialize() == data


def test_serialize_built_request() -> None:
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds"),
            ("From", "<sip:a@example.com>;tag=1"),
            ("To", "<sip:b@example.com>"),
            ("Call-ID", "x@192.0.2.1"),
            ("CSeq", "1 OPTIONS"),
        ]
    )
    wire = Request("OPTIONS", SipUri(host="example.com", user="b"), headers).serialize()
    assert wire.startswith(b"OPTIONS sip:b@example.com SIP/2.0\r\nVia: ")
    assert wire.endswith(b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
    again = parse_request(wire)
    assert again.cseq == CSeq(1, "OPTIONS")


# ---------------------------------------------------------------------------------------
# Building responses


def test_make_response_copies_the_transaction_headers() -> None:
    request = parse_request(invite())
    response = make_response(request, 486, to_tag="abc")
    assert (response.status, response.reason) == (486, "Busy Here")
    assert response.headers.get_lines("via") == request.headers.get_lines("via")
    assert response.headers.get("from") == request.headers.get("from")
    assert response.headers.get("call-id") == request.headers.get("call-id")
    assert response.headers.get("cseq") == request.headers.get("cseq")
    assert response.to.tag == "abc"
    assert str(response.to.uri) == "sip:bob@biloxi.example.com"
    assert "record-route" not in response.headers
    assert "contact" not in response.headers
    assert response.body == b""
    again = parse_message(response.serialize())
    assert isinstance(again, Response) and again.status == 486


def test_make_response_uses_long_header_names() -> None:
    request = parse_request(
        invite()
        .replace(b"Via:", b"v:")
        .replace(b"From:", b"f:")
        .replace(b"To:", b"t:")
        .replace(b"Call-ID:", b"i:")
    )
    response = make_response(request, 200, to_tag="x")
    assert [n for n, _ in response.headers] == [
        "Via",
        "Via",
        "Record-Route",
        "Record-Route",
        "To",
        "From",
        "Call-ID",
        "CSeq",
    ]


def test_make_response_keeps_an_existing_to_tag() -> None:
    request = parse_request(
        invite().replace(
            b"To: Bob <sip:bob@biloxi.example.com>", b"To: <sip:bob@biloxi.example.com>;tag=old"
        )
    )
    assert make_response(request, 200, to_tag="new").to.tag == "old"


def test_make_response_tags_a_final_response_without_a_given_tag() -> None:
    request = parse_request(invite())
    first, second = make_response(request, 486), make_response(request, 486)
    assert first.to.tag and second.to.tag and first.to.tag != second.to.tag  # §8.2.6.2
    assert make_response(request, 100).to.tag is None


def test_make_response_puts_the_server_header_before_the_extra_headers() -> None:
    request = parse_request(invite())
    response = make_response(request, 200, to_tag="t", headers=[("X-A", "1")], server="ua/1")
    assert [n for n, _ in response.headers][-2:] == ["Server", "X-A"]
    assert response.headers.get("server") == "ua/1"
    assert "server" not in make_response(request, 200, to_tag="t").headers


def test_make_response_100_gets_no_to_tag() -> None:
    request = parse_request(invite())
    assert make_response(request, 100, to_tag="abc").to.tag is None


@pytest.mark.parametrize(
    ("status", "copied"),
    [(180, True), (183, True), (200, True), (302, False), (486, False), (603, False)],
)
def test_record_route_copied_on_1xx_and_2xx_only(status: int, copied: bool) -> None:
    request = parse_request(invite())
    response = make_response(request, status, to_tag="t")
    if copied:
        assert response.headers.get_lines("record-route") == [
            "<sip:p1.example.com;lr>",
            "<sip:p2.example.com;lr>",
        ]
    else:
        assert "record-route" not in response.headers


def test_make_response_extra_headers_and_body() -> None:
    request = parse_request(invite())
    response = make_response(
        request,
        200,
        "Fine",
        to_tag="t",
        headers=[("Contact", "<sip:b2bua@192.0.2.9>"), ("Content-Type", "application/sdp")],
        body=b"v=0\r\n",
    )
    assert response.reason == "Fine"
    assert response.contacts[0].uri == SipUri(host="192.0.2.9", user="b2bua")
    wire = response.serialize()
    assert wire.endswith(b"Content-Length: 5\r\n\r\nv=0\r\n")


def test_error_response_carries_extra_headers() -> None:
    request = parse_request(invite())
    err = RemoteSipError(420, "Bad Extension", extra_headers=(("Unsupported", "foo"),))
    response = error_response(err.with_request(request))
    assert response is not None
    assert response.status == 420
    assert response.headers.get("unsupported") == "foo"
    assert response.to.tag


def test_error_response_needs_a_request() -> None:
    assert error_response(RemoteSipError(400, "Bad Request")) is None
