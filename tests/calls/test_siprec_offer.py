"""What a SIPREC client offers, read without I/O: which INVITEs are recording sessions,
which stream goes on which channel (through the metadata, else in SDP order), what we
answer, and what we refuse with which status."""

from __future__ import annotations

import pytest

from proxy.calls.siprec_offer import (
    SiprecOffer,
    answer,
    is_siprec,
    label_of,
    number_of,
    operator_of,
    read_offer,
    recorded_streams,
)
from proxy.config import OperatorSettings
from proxy.sip import sdp
from proxy.sip.errors import RemoteSipError
from proxy.sip.message import Request, parse_message
from proxy.sip.rs_metadata import Participant
from proxy.sip.sdes import CryptoAttribute
from tests.sip.siprec_examples import (
    ALICE,
    BOB,
    CONTENT_TYPE,
    metadata,
    multipart_body,
    sdp_offer,
)


def invite(body: str = "", content_type: str = CONTENT_TYPE, *headers: str) -> Request:
    lines = [
        "INVITE sip:srs@192.0.2.10 SIP/2.0",
        "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKdf6b622b648d9",
        "From: <sip:2000@example.com>;tag=35e195d2",
        "To: <sip:recorder@example.com>",
        "Call-ID: d253c800-b0d1ea39-4a7dd-3f0e0@example.com",
        "CSeq: 101 INVITE",
        "Max-Forwards: 70",
        *headers,
    ]
    if body:
        lines.append(f"Content-Type: {content_type}")
    raw = "\r\n".join([*lines, f"Content-Length: {len(body.encode())}", "", body])
    message = parse_message(raw.encode())
    assert isinstance(message, Request)
    return message


RFC_8068 = multipart_body(sdp_offer(), metadata())


def test_a_recording_session_is_told_by_its_option_tag_contact_or_metadata() -> None:
    plain = invite(sdp_offer(), "application/sdp", "Contact: <sip:2000@198.51.100.1>")
    assert not is_siprec(plain)
    assert is_siprec(invite(sdp_offer(), "application/sdp", "Require: timer, siprec"))
    assert is_siprec(invite(sdp_offer(), "application/sdp", "Contact: <sip:2000@src>;+sip.src"))
    assert is_siprec(invite(RFC_8068))
    # multipart without metadata, or not multipart at all, is not one
    only_sdp = f"--foobar\r\nContent-Type: application/sdp\r\n\r\n{sdp_offer()}--foobar--\r\n"
    assert not is_siprec(invite(only_sdp))
    assert not is_siprec(invite("--foobar never closed", CONTENT_TYPE))


def test_rfc_8068s_streams_go_left_to_alice_and_right_to_bob() -> None:
    offer = read_offer(invite(RFC_8068))
    streams = recorded_streams(offer, "192.0.2.10")
    # Alice is listed first and sends stream 97 (the second m= line)
    assert [(s.index, s.label, s.channel) for s in streams] == [
        (1, "97", "left"),
        (0, "96", "right"),
    ]
    assert [s.sender.participant_id if s.sender else None for s in streams] == [ALICE, BOB]
    assert offer.metadata_xml == metadata().removesuffix("\n")


def test_without_metadata_the_streams_go_left_and_right_in_sdp_order() -> None:
    offer = read_offer(invite(sdp_offer(), "application/sdp", "Require: siprec"))
    assert offer.metadata is None
    streams = recorded_streams(offer, "192.0.2.10")
    assert [(s.index, s.channel, s.sender) for s in streams] == [
        (0, "left", None),
        (1, "right", None),
    ]


def test_our_answer_receives_each_stream_with_its_label() -> None:
    offer = read_offer(invite(RFC_8068))
    ours, keys = answer(offer, [30000, 30002], "192.0.2.10", 7, 0)
    assert [(m.port, m.direction, label_of(m)) for m in ours.media] == [
        (30000, sdp.Direction.RECVONLY, "96"),
        (30002, sdp.Direction.RECVONLY, "97"),
    ]
    assert ours.media[0].formats == ("0",)
    assert keys == {0: None, 1: None}  # plain RTP


SUITE = "AES_CM_128_HMAC_SHA1_80"
SAVP_KEY = "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"  # RFC 4568's example


def savp_offer(second: str = "RTP/SAVP") -> SiprecOffer:
    """The RFC 8068 offer with stream 96 over SRTP (one a=crypto line), stream 97 over
    ``second`` (a=crypto too when it is RTP/SAVP)."""
    crypto = f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 {SAVP_KEY}\r\n"
    text = sdp_offer().replace(
        "m=audio 49170 RTP/AVP 0\r\n", f"m=audio 49170 RTP/SAVP 0\r\n{crypto}"
    )
    if second == "RTP/SAVP":
        text = text.replace("m=audio 51372 RTP/AVP 0\r\n", f"m=audio 51372 RTP/SAVP 0\r\n{crypto}")
    return read_offer(invite(multipart_body(text, metadata())))


@pytest.mark.parametrize("policy", ["offer", "require"])
def test_an_srtp_stream_is_answered_with_our_key_and_its_keys_go_to_its_leg(policy: str) -> None:
    ours, keys = answer(savp_offer(), [30000, 30002], "192.0.2.10", 7, 0, srtp=policy)
    assert [(m.proto, m.port) for m in ours.media] == [("RTP/SAVP", 30000), ("RTP/SAVP", 30002)]
    for index, media in enumerate(ours.media):
        (line,) = [CryptoAttribute.parse(a.value) for a in media.attributes if a.key == "crypto"]
        assert (line.tag, line.suite) == (1, "AES_CM_128_HMAC_SHA1_80")
        stream = keys[index]
        assert stream is not None and stream.suite == "AES_CM_128_HMAC_SHA1_80"
        assert stream.send_key == line.key  # ours, as answered
        assert stream.receive_key == CryptoAttribute.parse(f"1 {SUITE} {SAVP_KEY}").key
    assert [s.index for s in recorded_streams(savp_offer(), "192.0.2.10", policy)] == [1, 0]


def test_with_srtp_off_an_srtp_offer_is_refused_never_recorded_as_audio() -> None:
    """Before the fix the answer said RTP/SAVP without a=crypto, and the leg recorded
    the ciphertext as G.711."""
    with pytest.raises(RemoteSipError) as caught:
        answer(savp_offer(), [30000, 30002], "192.0.2.10", 7, 0, srtp="off")
    assert caught.value.status == 488
    assert "SRTP is off here" in dict(caught.value.extra_headers)["Warning"]
    with pytest.raises(RemoteSipError):
        recorded_streams(savp_offer(), "192.0.2.10", "off")


def test_a_plain_stream_beside_an_srtp_one_is_declined_when_srtp_is_required() -> None:
    ours, keys = answer(savp_offer("RTP/AVP"), [30000, 30002], "192.0.2.10", 7, 0, srtp="require")
    assert [m.port for m in ours.media] == [30000, 0]
    assert keys[0] is not None and 1 not in keys
    mixed, keys = answer(savp_offer("RTP/AVP"), [30000, 30002], "192.0.2.10", 7, 0, srtp="offer")
    assert [m.port for m in mixed.media] == [30000, 30002]
    assert keys[0] is not None and keys[1] is None


def test_a_third_audio_stream_is_refused_with_488() -> None:
    three = sdp_offer() + "m=audio 49180 RTP/AVP 0\r\na=label:98\r\na=sendonly\r\n"
    with pytest.raises(RemoteSipError) as caught:
        recorded_streams(read_offer(invite(three, "application/sdp")), "192.0.2.10")
    assert caught.value.status == 488
    assert "two audio streams" in dict(caught.value.extra_headers)["Warning"]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("", CONTENT_TYPE, 488),  # no offer
        (multipart_body(sdp_offer(), "<recording>"), CONTENT_TYPE, 400),  # malformed XML
        (multipart_body("v=0\r\n", metadata()), CONTENT_TYPE, 400),  # malformed SDP
        (
            "--foobar\r\nContent-Type: application/rs-metadata+xml\r\n\r\n<x/>\r\n--foobar--",
            CONTENT_TYPE,
            400,  # no SDP part
        ),
    ],
)
def test_a_bad_offer_is_refused_with_its_status(body: str, content_type: str, status: int) -> None:
    with pytest.raises(RemoteSipError) as caught:
        read_offer(invite(body, content_type))
    assert caught.value.status == status


@pytest.mark.parametrize(
    ("aor", "number"),
    [
        ("sip:+441632960001@sbc.example.com", "+441632960001"),
        ("tel:+441632960002;phone-context=x", "+441632960002"),
        ("sip:sbc.example.com", None),
        ("urn:service:sos", None),
        ("not a uri", None),
        (None, None),
    ],
)
def test_a_participants_number_comes_from_its_aor(aor: str | None, number: str | None) -> None:
    assert number_of(Participant("p", aor)) == number


def test_the_recording_is_the_operator_s_whose_phone_is_a_participant() -> None:
    agent = OperatorSettings("ann", "0" * 64, identities=("sip:bob@example.com",), team="t1")
    other = OperatorSettings("ben", "1" * 64, identities=("2001",))
    streams = recorded_streams(read_offer(invite(RFC_8068)), "192.0.2.10")
    assert operator_of((other, agent), streams) is agent  # Bob is on the right channel
    assert operator_of((other,), streams) is None
    unnamed = recorded_streams(read_offer(invite(sdp_offer(), "application/sdp")), "192.0.2.10")
    assert operator_of((other, agent), unnamed) is None  # no metadata, no AOR
