"""StreamFramer: cutting a TCP byte stream into SIP messages by Content-Length."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.sip.errors import RemoteSipError
from proxy.sip.framing import StreamFramer
from proxy.sip.message import Request, Response, parse_message

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP client.example.com:5060;branch=z9hG4bK74bf9\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 10\r\n"
    b"From: Alice <sip:alice@example.com>;tag=9fxced76sl\r\n"
    b"To: Bob <sip:bob@example.com>\r\n"
    b"Call-ID: 3848276298220188511@client.example.com\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Content-Type: application/sdp\r\n"
    b"\r\n"
    b"0123456789"
)
OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/TCP client.example.com:5060;branch=z9hG4bK74bf9\r\n"
    b"From: Alice <sip:alice@example.com>;tag=9fxced76sl\r\n"
    b"To: Bob <sip:bob@example.com>;tag=8321234356\r\n"
    b"Call-ID: 3848276298220188511@client.example.com\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"l: 3\r\n"
    b"\r\n"
    b"abc"
)


def test_whole_message_in_one_chunk() -> None:
    framer = StreamFramer()
    assert framer.feed(INVITE) == [INVITE]
    assert framer.buffered == 0


def test_content_length_before_other_headers_is_honoured() -> None:
    # Content-Length is neither the last header nor at the end of the head: the body
    # must still be cut at 10 bytes, not at the empty line.
    (message,) = StreamFramer().feed(INVITE)
    assert message.endswith(b"\r\n\r\n0123456789")


def test_byte_by_byte() -> None:
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(len(INVITE)):
        out += framer.feed(INVITE[i : i + 1])
        if i < len(INVITE) - 1:
            assert out == []
    assert out == [INVITE]


def test_two_messages_in_one_chunk() -> None:
    assert StreamFramer().feed(INVITE + OK) == [INVITE, OK]


def test_message_split_across_the_body() -> None:
    framer = StreamFramer()
    cut = INVITE.index(b"01234") + 5
    assert framer.feed(INVITE[:cut]) == []
    assert framer.buffered == cut
    assert framer.feed(INVITE[cut:] + OK[:20]) == [INVITE]
    assert framer.feed(OK[20:]) == [OK]
    assert framer.buffered == 0


def test_message_split_inside_the_empty_line() -> None:
    framer = StreamFramer()
    cut = INVITE.index(b"\r\n\r\n") + 2
    assert framer.feed(INVITE[:cut]) == []
    assert framer.feed(INVITE[cut:]) == [INVITE]


def test_keepalive_crlfs_are_skipped_and_counted() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.keepalives == 1
    assert framer.buffered == 0
    assert framer.feed(b"\r\n\r\n" + INVITE + b"\r\n\r\n" + OK + b"\r\n") == [INVITE, OK]
    assert framer.keepalives == 3
    assert framer.buffered == 0


def test_framed_messages_parse_as_stream_messages() -> None:
    first, second = StreamFramer().feed(INVITE + OK)
    request = parse_message(first, stream=True)
    response = parse_message(second, stream=True)
    assert isinstance(request, Request) and request.body == b"0123456789"
    assert isinstance(response, Response) and response.body == b"abc"


def test_missing_content_length_means_empty_body() -> None:
    no_length = INVITE.replace(b"Content-Length: 10\r\n", b"")
    head = no_length[: no_length.index(b"\r\n\r\n") + 4]
    framer = StreamFramer()
    # Without Content-Length the message ends with its headers; what follows is the
    # next message (here garbage, which the parser then rejects).
    assert framer.feed(no_length) == [head]
    assert framer.buffered == len(b"0123456789")
    message = parse_message(head, stream=True)
    assert message.body == b""


def test_folded_content_length_is_found() -> None:
    folded = INVITE.replace(b"Content-Length: 10", b"Content-Length:\r\n 10")
    assert StreamFramer().feed(folded) == [folded]
    assert parse_message(folded, stream=True).body == b"0123456789"


def test_lf_only_message() -> None:
    lf = INVITE.replace(b"\r\n", b"\n")
    assert StreamFramer().feed(lf + OK) == [lf, OK]


def test_header_section_over_the_limit_is_513() -> None:
    framer = StreamFramer(max_message_size=1000)
    assert framer.feed(INVITE[:200]) == []
    with pytest.raises(RemoteSipError) as info:
        framer.feed(b"X-Padding: " + b"a" * 1000)
    assert info.value.status == 513


def test_body_over_the_limit_is_513() -> None:
    big = INVITE.replace(b"Content-Length: 10", b"Content-Length: 999999")
    with pytest.raises(RemoteSipError) as info:
        StreamFramer().feed(big)
    assert info.value.status == 513


def test_message_at_the_limit_is_accepted() -> None:
    assert StreamFramer(max_message_size=len(INVITE)).feed(INVITE) == [INVITE]
    with pytest.raises(RemoteSipError):
        StreamFramer(max_message_size=len(INVITE) - 1).feed(INVITE)


def test_conflicting_content_lengths_are_400() -> None:
    twice = INVITE.replace(b"Max-Forwards: 70\r\n", b"l: 11\r\n")
    with pytest.raises(RemoteSipError) as info:
        StreamFramer().feed(twice)
    assert info.value.status == 400


def test_overlong_content_length_is_400() -> None:
    huge = INVITE.replace(b"Content-Length: 10", b"Content-Length: 00000000000010")
    with pytest.raises(RemoteSipError) as info:
        StreamFramer().feed(huge)
    assert info.value.status == 400


def test_clerr_on_a_stream_waits_for_more_data(testdata: Path) -> None:
    data = (testdata / "sip" / "rfc4475" / "clerr.dat").read_bytes()
    framer = StreamFramer()
    assert framer.feed(data) == []
    assert framer.buffered == len(data)


@pytest.mark.parametrize("name", ["wsinv.dat", "mpart01.dat", "esc01.dat", "longreq.dat"])
def test_torture_messages_are_framed_whole(testdata: Path, name: str) -> None:
    data = (testdata / "sip" / "rfc4475" / name).read_bytes()
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(0, len(data), 7):
        out += framer.feed(data[i : i + 7])
    assert out == [data]
    assert parse_message(out[0], stream=True).serialize() == parse_message(data).serialize()


def test_a_double_crlf_ping_split_across_reads_is_one_ping_and_a_lone_crlf_none() -> None:
    """RFC 5626 §4.4.1: each double CRLF is a ping to answer, however TCP or TLS cut
    it; a lone CRLF (a pong, or a stray line end after a message) is not."""
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == [] and framer.keepalives == 0
    assert framer.feed(b"\r") == [] and framer.keepalives == 0
    assert framer.feed(b"\n") == [] and framer.keepalives == 1
    assert framer.feed(OK + b"\r\n") == [OK] and framer.keepalives == 1
    assert framer.feed(INVITE) == [INVITE] and framer.keepalives == 1  # the CRLF ran out
    assert framer.feed(b"\r\n\r\n\r\n\r\n") == [] and framer.keepalives == 3
