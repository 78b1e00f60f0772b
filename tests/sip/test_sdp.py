"""SDP parsing/serialising and offer/answer, fed with captured bodies and made-up ones."""

from __future__ import annotations

import ast
import ipaddress
import os
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.sip import sdp
from proxy.sip.errors import LocalSipError, RemoteSipError
from proxy.sip.sdp import (
    Attribute,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    Role,
    RtpMap,
    SdpLine,
    SessionDescription,
    Timing,
    answer_offer,
    create_offer,
    is_hold,
    media_address,
    negotiated,
)


def _testdata() -> Path:
    beside = Path(__file__).resolve().parents[3] / "shared" / "testdata"
    if beside.is_dir():
        return beside
    return Path(os.environ.get("RECPROXY_TESTDATA", beside))


TESTDATA = _testdata() / "sip"

XLITE_OFFER = "real/xlite_call_g711_rtp/xlite_f0001_INVITE.sip"  # 8 18 4 0, a=SendRecv
XLITE_OFFER_NO_PCMU = "real/xlite_call_g711_rtp/xlite_f2964_INVITE.sip"  # 8 18 4
XLITE_ANSWER = "real/xlite_call_g711_rtp/xlite_f0498_200-INVITE.sip"  # lower-case pcmu/pcma
ASTERISK_OFFER = "real/pjsip_asterisk_invite/asterisk_chan_sip_invite.sip"
IPV6_OFFER = "rfc5118/ipv6-in-sdp.dat"  # G726-32 audio + H263 video over IP6
IPV6_PCMU_OFFER = "real/ipv6_udp_call/v6_f0001_INVITE.sip"
PRECONDITION_OFFER = "real/ipv6_prack_update_fragmented/pr_f0002_INVITE.sip"
NERO_OFFER = "real/nerosipps_cancel_auth/nero_f0617_INVITE.sip"  # pcmu pcma, lower case
HOSTILE_OFFER = "real/polycom_register_ipip/poly_f0001_INVITE.sip"  # SQL in c=
CISCO_OFFER = "real/kamailio_test_misc_sip/invite1.sip"  # bare LF, blank first line


def body_of(relative: str) -> bytes:
    """The body of a stored SIP message: everything after the first blank line.

    Missing test data fails the test (never a skip: an unfed parser test proves nothing).
    """
    if not TESTDATA.is_dir():
        pytest.fail(f"SIP test data not found at {TESTDATA}; set RECPROXY_TESTDATA", pytrace=False)
    message = (TESTDATA / relative).read_bytes()
    ends = [i for i in (message.find(b"\r\n\r\n"), message.find(b"\n\n")) if i >= 0]
    end = min(ends)
    return message[end + (4 if message[end : end + 4] == b"\r\n\r\n" else 2) :]


def sdp_files() -> list[str]:
    if not TESTDATA.is_dir():
        return ["(test data missing)"]  # collected, then failed by body_of()
    return sorted(
        str(path.relative_to(TESTDATA))
        for folder in ("real", "rfc5118")
        for path in (TESTDATA / folder).rglob("*")
        if path.suffix in (".sip", ".dat") and b"application/sdp" in path.read_bytes().lower()
    )


def parse(text: str) -> SessionDescription:
    return SessionDescription.parse(text.replace("\n", "\r\n").encode())


HEADER = """v=0
o=alice 2890844526 2890844527 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
"""


def offer_with(media: str, header: str = HEADER) -> SessionDescription:
    return parse(header + media)


def answer(offer: SessionDescription, **kwargs: object) -> SessionDescription:
    options: dict[str, object] = {
        "local_address": "203.0.113.5",
        "ports": lambda index, media: 40000 + 2 * index,
        "session_id": 7,
        "session_version": 1,
    }
    options.update(kwargs)
    return answer_offer(offer, **options)  # type: ignore[arg-type]


# --- Parsing ---------------------------------------------------------------------------


def test_parses_the_xlite_offer_fields() -> None:
    description = SessionDescription.parse(body_of(XLITE_OFFER))
    assert description.origin == Origin("Clarent", "120386", 120387, "IN", "IP4", "200.57.7.196")
    assert description.session_name == "Clarent C5CM"
    assert description.connection == Connection("IN", "IP4", "200.57.7.196")
    assert description.times == (Timing(0, 0),)
    (audio,) = description.media
    assert (audio.media, audio.port, audio.proto) == ("audio", 40376, "RTP/AVP")
    assert audio.formats == ("8", "18", "4", "0")
    assert audio.rtpmap("18") == RtpMap(18, "G729", 8000)
    # "a=SendRecv": the attribute is kept as written, and read whatever its case.
    assert audio.attributes[-1] == Attribute("SendRecv")
    assert audio.direction is Direction.SENDRECV


def test_lower_case_encoding_names_are_read_case_insensitively() -> None:
    (audio,) = SessionDescription.parse(body_of(XLITE_ANSWER)).media
    pcmu = audio.rtpmap("0")
    assert pcmu is not None
    assert (pcmu.encoding, pcmu.name) == ("pcmu", "PCMU")
    assert audio.find_format("PCMA", 8000) == "8"
    assert audio.find_format("telephone-event", 8000) == "101"
    assert audio.fmtp("101") == "0-15"
    assert audio.direction is None


def test_asterisk_offer_keeps_silencesupp_verbatim() -> None:
    description = SessionDescription.parse(body_of(ASTERISK_OFFER))
    (audio,) = description.media
    assert Attribute("silenceSupp", "off - - - -") in audio.attributes
    assert audio.ptime == 20
    assert audio.fmtp("101") == "0-16"
    assert b"\r\na=silenceSupp:off - - - -\r\na=ptime:20\r\n" in description.serialize()


def test_ipv6_addresses_in_sdp_without_brackets() -> None:
    description = SessionDescription.parse(body_of(IPV6_OFFER))
    assert description.origin.addrtype == "IP6"
    assert description.origin.address == "2001:db8::20"
    assert description.origin.session_id == "971731711378798081"
    assert description.connection == Connection("IN", "IP6", "2001:db8::20")
    assert description.times == (Timing(3338481189, 3370017201),)
    audio, video = description.media
    assert audio.rtpmap("2") == RtpMap(2, "G726-32", 8000)
    assert (video.media, video.port, video.formats) == ("video", 6024, ("107",))


@pytest.mark.parametrize(
    "relative",
    [XLITE_OFFER, XLITE_ANSWER, ASTERISK_OFFER, IPV6_OFFER, PRECONDITION_OFFER, NERO_OFFER],
)
def test_serialize_gives_back_captured_crlf_bodies_byte_for_byte(relative: str) -> None:
    body = body_of(relative)
    assert SessionDescription.parse(body).serialize() == body


@pytest.mark.parametrize("relative", sdp_files())
def test_every_captured_body_round_trips(relative: str) -> None:
    body = body_of(relative)
    if relative == HOSTILE_OFFER:
        with pytest.raises(RemoteSipError) as caught:
            SessionDescription.parse(body)
        assert caught.value.reason == "Bad Request: bad address in c= line"
        return
    description = SessionDescription.parse(body)
    again = SessionDescription.parse(description.serialize())
    assert again == description
    assert again.serialize() == description.serialize()


def test_bare_lf_body_with_blank_first_line_and_trailing_spaces() -> None:
    body = body_of(CISCO_OFFER)
    assert body.startswith(b"\nv=0\n") and b"a=fmtp:101 0-11 \n" in body
    description = SessionDescription.parse(body)
    assert description.media[0].fmtp("101") == "0-11"
    assert description.serialize() == body[1:].replace(b" \n", b"\n").replace(b"\n", b"\r\n")


def test_line_ends_trailing_whitespace_and_missing_final_newline() -> None:
    crlf = (HEADER + "m=audio 4000 RTP/AVP 0\na=ptime:20\n").replace("\n", "\r\n").encode()
    expected = SessionDescription.parse(crlf)
    variants = [
        crlf.replace(b"\r\n", b"\n"),
        crlf.rstrip(b"\r\n"),
        crlf.replace(b"\r\n", b" \t\r\n"),
        crlf.replace(b"\r\n", b"\n").rstrip(b"\n"),
        crlf + b"\r\n\r\n",
    ]
    for variant in variants:
        assert SessionDescription.parse(variant) == expected
        assert SessionDescription.parse(variant).serialize() == crlf


def test_static_payload_types_are_known_without_rtpmap() -> None:
    (audio,) = offer_with("m=audio 4000 RTP/AVP 0 8 96\n").media
    assert audio.rtpmap("0") == RtpMap(0, "PCMU", 8000)
    assert audio.rtpmap("8") == RtpMap(8, "PCMA", 8000)
    assert audio.rtpmap("96") is None
    assert audio.attributes == ()


def test_an_rtpmap_overrides_the_static_mapping() -> None:
    (audio,) = offer_with("m=audio 4000 RTP/AVP 0\na=rtpmap:0 G729/8000\n").media
    assert audio.rtpmap("0") == RtpMap(0, "G729", 8000)


def test_unreadable_known_attributes_are_kept_but_ignored() -> None:
    # RFC 4475 bodies carry "a=rtpmap:31 LPC" (no clock rate); the call must not fail.
    media = "m=audio 4000 RTP/AVP 0 31\na=rtpmap:31 LPC\na=ptime:abc\na=fmtp:\n"
    description = offer_with(media)
    (audio,) = description.media
    assert audio.rtpmap("31") is None
    assert audio.ptime is None
    assert audio.fmtp("31") is None
    assert audio.attributes == (
        Attribute("rtpmap", "31 LPC"),
        Attribute("ptime", "abc"),
        Attribute("fmtp", ""),
    )
    assert SessionDescription.parse(description.serialize()) == description


def test_rtpmap_with_space_after_colon_is_read() -> None:
    # As in kamailio's invite0x.sip ("a=rtpmap: 3 GSM/8000"), on a dynamic type here
    # so that the static table cannot stand in.
    (audio,) = offer_with("m=audio 4000 RTP/AVP 97\na=rtpmap: 97 iLBC/8000 \n").media
    assert audio.rtpmap("97") == RtpMap(97, "iLBC", 8000)
    assert audio.attributes == (Attribute("rtpmap", " 97 iLBC/8000"),)


def test_session_level_direction_is_inherited_by_media() -> None:
    description = offer_with(
        "a=sendonly\nm=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 0\na=inactive\n"
    )
    first, second = description.media
    assert description.direction is Direction.SENDONLY
    assert first.direction is None
    assert description.effective_direction(first) is Direction.SENDONLY
    assert description.effective_direction(second) is Direction.INACTIVE


def test_direction_defaults_to_sendrecv() -> None:
    description = offer_with("m=audio 4000 RTP/AVP 0\n")
    assert description.effective_direction(description.media[0]) is Direction.SENDRECV


def test_unknown_lines_and_attributes_keep_their_order() -> None:
    text = (
        "v=0\n"
        "o=- 1 2 IN IP4 192.0.2.1\n"
        "s=call\n"
        "i=about\n"
        "u=http://example.com/\n"
        "c=IN IP4 192.0.2.1\n"
        "b=AS:64\n"
        "t=0 0\n"
        "r=7d 1h 0 25h\n"
        "z=2882844526 -1h\n"
        "x=unknown type\n"
        "a=group:BUNDLE a\n"
        "a=tool:foo\n"
        "m=audio 4000/2 RTP/AVP 0\n"
        "i=voice\n"
        "c=IN IP4 192.0.2.2/127\n"
        "c=IN IP4 192.0.2.3/127\n"
        "b=TIAS:64000\n"
        "a=zeta\n"
        "a=rtpmap:0 PCMU/8000\n"
        "a=alpha:1\n"
        "m=image 5000 udptl t38\n"
        "a=T38FaxVersion:0\n"
    )
    description = parse(text)
    assert description.other_lines == (
        SdpLine("i", "about"),
        SdpLine("u", "http://example.com/"),
        SdpLine("b", "AS:64"),
        SdpLine("z", "2882844526 -1h"),
        SdpLine("x", "unknown type"),
    )
    assert description.times == (Timing(0, 0, ("7d 1h 0 25h",)),)
    audio, image = description.media
    assert audio.port_count == 2
    assert audio.connection == Connection("IN", "IP4", "192.0.2.2/127")
    assert audio.connection.host == "192.0.2.2"
    assert [a.name for a in audio.attributes] == ["zeta", "rtpmap", "alpha"]
    assert (image.proto, image.formats, image.is_rtp) == ("udptl", ("t38",), False)
    assert description.serialize() == text.replace("\n", "\r\n").encode()


def test_lines_out_of_rfc_order_are_put_in_order_once() -> None:
    description = parse(HEADER.replace("s=-\n", "s=-\nb=AS:1\ni=x\n") + "m=audio 1 RTP/AVP 0\n")
    assert description.other_lines == (SdpLine("i", "x"), SdpLine("b", "AS:1"))
    assert SessionDescription.parse(description.serialize()) == description


def test_tolerated_real_world_slips() -> None:
    # From kamailio's sg.sip: junk after the c= address, empty s=, no t= line.
    description = parse(
        "v=0\no=User 1 2 IN IP4 137.132.31.151\ns=\n"
        "c=IN IP4 137.132.31.151 UNHOLD UNHOLD\nm=audio 58074 RTP/AVP 0 \n"
    )
    assert description.connection == Connection("IN", "IP4", "137.132.31.151")
    assert description.session_name == ""
    assert description.times == ()
    # A username with a space (against the grammar, seen in the wild).
    origin = parse("v=0\no=Sip Phone 1 2 IN IP4 192.0.2.1\ns=-\n").origin
    assert (origin.username, origin.session_version) == ("Sip Phone", 2)


def test_latin1_bytes_survive_a_round_trip() -> None:
    body = (HEADER.replace("s=-", "s=Gr\xfc\xdfe").replace("\n", "\r\n")).encode("latin-1")
    assert SessionDescription.parse(body).serialize() == body


MALFORMED = {
    "empty body": (b"", "missing v= line"),
    "no v= line": (b"o=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n", "missing v= line"),
    "v=1": (b"v=1\r\no=- 1 1 IN IP4 192.0.2.1\r\n", "unsupported SDP version"),
    "no o= line": (b"v=0\r\ns=-\r\nt=0 0\r\n", "missing o= line"),
    "two o= lines": (
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\no=- 1 1 IN IP4 192.0.2.1\r\n",
        "duplicate o= line",
    ),
    "short o= line": (b"v=0\r\no=- 1 IN IP4 192.0.2.1\r\n", "bad o= line"),
    "non-numeric version": (b"v=0\r\no=- 1 x IN IP4 192.0.2.1\r\n", "bad o= line"),
    "short c= line": (HEADER.replace("c=IN IP4", "c=IN").encode(), "bad c= line"),
    "garbage address": (
        HEADER.replace("192.0.2.10\nt", "'/**/OR/**/'1'--\nt").encode(),
        "bad address in c= line",
    ),
    "no c= line": (
        HEADER.replace("c=IN IP4 192.0.2.10\n", "").encode() + b"m=audio 4000 RTP/AVP 0\r\n",
        "missing c= line",
    ),
    "bad t= line": (HEADER.replace("t=0 0", "t=0").encode(), "bad t= line"),
    "r= before t=": (HEADER.replace("t=0 0", "r=1 2 3").encode(), "r= line without t= line"),
    "short m= line": (HEADER.encode() + b"m=audio 4000\r\n", "bad m= line"),
    "non-numeric port": (HEADER.encode() + b"m=audio abc RTP/AVP 0\r\n", "bad port in m= line"),
    "port too big": (HEADER.encode() + b"m=audio 65536 RTP/AVP 0\r\n", "bad port in m= line"),
    "port count 0": (HEADER.encode() + b"m=audio 4000/0 RTP/AVP 0\r\n", "bad port in m= line"),
    "named payload type": (
        HEADER.encode() + b"m=audio 4000 RTP/AVP PCMU\r\n",
        "bad payload type in m= line",
    ),
    "payload type 128": (
        HEADER.encode() + b"m=audio 4000 RTP/AVP 128\r\n",
        "bad payload type in m= line",
    ),
    "t= inside media": (
        HEADER.encode() + b"m=audio 4000 RTP/AVP 0\r\nt=0 0\r\n",
        "t= line inside a media section",
    ),
    "line without =": (HEADER.encode() + b"hello\r\n", "malformed SDP line"),
    "upper-case type": (HEADER.encode() + b"A=sendrecv\r\n", "malformed SDP line"),
    "empty attribute": (HEADER.encode() + b"a=\r\n", "bad a= line"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_sdp_is_a_400(case: str) -> None:
    data, what = MALFORMED[case]
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    with pytest.raises(RemoteSipError) as caught:
        SessionDescription.parse(data)
    assert caught.value.status == 400
    assert caught.value.reason == f"Bad Request: {what}"


def test_module_is_sans_io() -> None:
    tree = ast.parse(Path(sdp.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert imported.isdisjoint({"asyncio", "socket", "time"})


# --- Answering an offer ----------------------------------------------------------------


def test_answer_to_asterisk_offer_keeps_telephone_event_and_ptime() -> None:
    offer = SessionDescription.parse(body_of(ASTERISK_OFFER))
    assert answer(offer, ports=[40000]).serialize() == (
        b"v=0\r\n"
        b"o=recproxy 7 1 IN IP4 203.0.113.5\r\n"
        b"s=recproxy\r\n"
        b"c=IN IP4 203.0.113.5\r\n"
        b"t=0 0\r\n"
        b"m=audio 40000 RTP/AVP 0 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-16\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )


@pytest.mark.parametrize(
    ("relative", "chosen", "encoding"),
    [
        (XLITE_OFFER, "8", "PCMA"),  # PCMA first, PCMU last: the offerer's order wins
        (XLITE_OFFER_NO_PCMU, "8", "PCMA"),
        (NERO_OFFER, "0", "PCMU"),  # lower-case pcmu
        (IPV6_PCMU_OFFER, "0", "PCMU"),  # pcmu/8000/1
    ],
)
def test_answer_picks_the_first_offered_g711_codec(
    relative: str, chosen: str, encoding: str
) -> None:
    offer = SessionDescription.parse(body_of(relative))
    (audio,) = answer(offer).media
    assert audio.formats == (chosen,)
    assert audio.attributes == (
        Attribute("rtpmap", f"{chosen} {encoding}/8000"),
        Attribute("sendrecv"),
    )
    assert audio.port == 40000


def test_our_codec_list_restricts_but_does_not_reorder() -> None:
    offer = offer_with("m=audio 4000 RTP/AVP 8 0\n")
    assert answer(offer, codecs=("PCMU", "PCMA")).media[0].formats == ("8",)
    assert answer(offer, codecs=("PCMU",)).media[0].formats == ("0",)
    with pytest.raises(LocalSipError):
        answer(offer, codecs=("G729",))


def test_answer_keeps_a_dynamic_payload_type_for_g711() -> None:
    offer = offer_with("m=audio 4000 RTP/AVP 96 97\na=rtpmap:96 PCMA/8000\na=rtpmap:97 x/8000\n")
    (audio,) = answer(offer).media
    assert audio.formats == ("96",)
    assert audio.rtpmap("96") == RtpMap(96, "PCMA", 8000)


def test_answer_takes_the_telephone_event_of_the_codec_clock_rate() -> None:
    # AMR-WB first (unsupported), PCMU, telephone-event at 8000 (120) and 16000 (121).
    offer = SessionDescription.parse(body_of(PRECONDITION_OFFER))
    (audio,) = answer(offer).media
    assert audio.formats == ("0", "120")
    assert Attribute("rtpmap", "120 telephone-event/8000") in audio.attributes
    assert not any(a.name == "fmtp" for a in audio.attributes)


def test_answer_without_telephone_event_when_not_wanted() -> None:
    offer = offer_with(
        "m=audio 4000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\n"
    )
    assert answer(offer).media[0].formats == ("0", "101")
    assert answer(offer, telephone_event=False).media[0].formats == ("0",)


def test_answer_declines_video_with_port_zero_and_keeps_m_line_count() -> None:
    offer = SessionDescription.parse(
        body_of(IPV6_PCMU_OFFER)
        + b"m=video 5010 RTP/AVP 34\r\na=rtpmap:34 H263/90000\r\n"
        + b"m=audio 5020 RTP/AVP 0\r\n"
    )
    asked: list[int] = []

    def ports(index: int, media: MediaDescription) -> int:
        asked.append(index)
        return 41000 + 2 * index

    audio, video, second_audio = answer(offer, ports=ports).media
    assert asked == [0, 2]  # no port taken for the declined stream
    assert (audio.port, second_audio.port) == (41000, 41004)
    assert video == MediaDescription("video", 0, "RTP/AVP", ("34",))


T38_OFFER = (
    "m=audio 4000 RTP/AVP 0\n"
    "m=image 4002 udptl t38\n"
    "a=T38FaxVersion:0\n"
    "a=T38MaxBitRate:14400\n"
    "a=T38FaxRateManagement:transferredTCF\n"
    "a=rtcp:4003\n"
)


def test_t38_image_stream_is_declined() -> None:
    (audio, image) = answer(offer_with(T38_OFFER)).media
    assert audio.port == 40000
    assert image == MediaDescription("image", 0, "udptl", ("t38",))
    assert b"m=image 0 udptl t38\r\n" in answer(offer_with(T38_OFFER)).serialize()


def test_t38_image_stream_is_mirrored_when_relaying() -> None:
    (_, image) = answer(offer_with(T38_OFFER), relay_other_media=True).media
    assert (image.port, image.proto, image.formats) == (40002, "udptl", ("t38",))
    assert image.attributes == (
        Attribute("T38FaxVersion", "0"),
        Attribute("T38MaxBitRate", "14400"),
        Attribute("T38FaxRateManagement", "transferredTCF"),
        Attribute("sendrecv"),
    )


@pytest.mark.parametrize(
    "offer",
    [
        pytest.param("m=audio 4000 RTP/AVP 18 4\n", id="g729-g723"),
        # RTP/SAVP is answered here (its keys are the leg's SRTP policy's business:
        # tests/calls/test_srtp_policy.py); feedback and DTLS-SRTP profiles are not
        pytest.param("m=audio 4000 RTP/SAVPF 0\n", id="srtp-feedback"),
        pytest.param("m=audio 4000 UDP/TLS/RTP/SAVP 0\n", id="dtls-srtp"),
        pytest.param("m=audio 4000 RTP/AVP 96\na=rtpmap:96 PCMU/16000\n", id="pcmu-16k"),
        pytest.param("m=audio 0 RTP/AVP 0\n", id="audio-port-0"),
        pytest.param("m=video 4000 RTP/AVP 31\n", id="video-only"),
        pytest.param("", id="no-media"),
    ],
)
def test_no_acceptable_audio_is_a_488(offer: str) -> None:
    with pytest.raises(RemoteSipError) as caught:
        answer(offer_with(offer))
    assert (caught.value.status, caught.value.reason) == (488, "Not Acceptable Here")


def test_ipv6_offer_with_only_g726_is_a_488() -> None:
    with pytest.raises(RemoteSipError) as caught:
        answer(SessionDescription.parse(body_of(IPV6_OFFER)))
    assert caught.value.status == 488


def test_audio_stream_with_port_zero_stays_declined() -> None:
    offer = offer_with("m=audio 0 RTP/AVP 0\nm=audio 4002 RTP/AVP 8\n")
    first, second = answer(offer).media
    assert (first.port, first.formats) == (0, ("0",))
    assert (second.port, second.formats) == (40002, ("8",))


def test_ports_as_a_sequence() -> None:
    offer = offer_with("m=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 8\n")
    first, second = answer(offer, ports=[None, 30000]).media
    assert (first.port, second.port) == (0, 30000)
    with pytest.raises(LocalSipError):
        answer(offer, ports=[30000])
    with pytest.raises(LocalSipError):
        answer(offer, ports=[70000, 30000])
    with pytest.raises(RemoteSipError):
        answer(offer, ports=[None, 0])


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        ("a=sendrecv\n", Direction.SENDRECV),
        ("", Direction.SENDRECV),
        ("a=sendonly\n", Direction.RECVONLY),
        ("a=recvonly\n", Direction.SENDONLY),
        ("a=inactive\n", Direction.INACTIVE),
    ],
)
def test_answer_direction_mirrors_the_offer(offered: str, answered: Direction) -> None:
    (audio,) = answer(offer_with("m=audio 4000 RTP/AVP 0\n" + offered)).media
    assert audio.direction is answered
    assert audio.attributes[-1] == Attribute(answered.value)


def test_answer_to_session_level_hold() -> None:
    offer = offer_with("a=sendonly\nm=audio 4000 RTP/AVP 0\n")
    assert answer(offer).media[0].direction is Direction.RECVONLY


@pytest.mark.parametrize(
    ("offered", "local", "answered"),
    [
        (Direction.SENDRECV, Direction.SENDONLY, Direction.SENDONLY),
        (Direction.SENDONLY, Direction.SENDONLY, Direction.INACTIVE),
        (Direction.SENDRECV, Direction.INACTIVE, Direction.INACTIVE),
        (Direction.RECVONLY, Direction.RECVONLY, Direction.INACTIVE),
    ],
)
def test_our_own_direction_limits_the_answer(
    offered: Direction, local: Direction, answered: Direction
) -> None:
    offer = offer_with(f"m=audio 4000 RTP/AVP 0\na={offered.value}\n")
    assert answer(offer, direction=local).media[0].direction is answered


def test_answer_ptime_is_the_offered_one() -> None:
    offer = offer_with("m=audio 4000 RTP/AVP 0\na=ptime:30\na=maxptime:60\n")
    (audio,) = answer(offer).media
    assert (audio.ptime, audio.maxptime) == (30, None)
    assert answer(offer_with("m=audio 4000 RTP/AVP 0\n")).media[0].ptime is None


@pytest.mark.parametrize("local", ["2001:db8::1", "[2001:db8::1]"])
def test_answer_from_an_ipv6_address(local: str) -> None:
    description = answer(offer_with("m=audio 4000 RTP/AVP 0\n"), local_address=local)
    assert description.connection == Connection("IN", "IP6", "2001:db8::1")
    assert description.origin.addrtype == "IP6"
    assert b"\r\nc=IN IP6 2001:db8::1\r\n" in description.serialize()


def test_answer_copies_the_offered_times() -> None:
    offer = offer_with("m=audio 4000 RTP/AVP 0\n", HEADER.replace("t=0 0", "t=3338481189 0"))
    assert answer(offer).times == (Timing(3338481189, 0),)


# --- Our offer and the outcome --------------------------------------------------------


def our_offer(**kwargs: object) -> SessionDescription:
    return create_offer("198.51.100.7", 30000, session_id=42, session_version=3, **kwargs)  # type: ignore[arg-type]


def test_create_offer() -> None:
    assert our_offer().serialize() == (
        b"v=0\r\n"
        b"o=recproxy 42 3 IN IP4 198.51.100.7\r\n"
        b"s=recproxy\r\n"
        b"c=IN IP4 198.51.100.7\r\n"
        b"t=0 0\r\n"
        b"m=audio 30000 RTP/AVP 0 8 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-16\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )


def test_create_offer_options() -> None:
    offer = our_offer(
        codecs=("pcma",), telephone_event=None, ptime=None, direction=Direction.SENDONLY
    )
    (audio,) = offer.media
    assert audio.formats == ("8",)
    assert audio.attributes == (Attribute("rtpmap", "8 PCMA/8000"), Attribute("sendonly"))
    with pytest.raises(LocalSipError):
        our_offer(telephone_event=8)
    with pytest.raises(LocalSipError):
        create_offer("198.51.100.7", 0, session_id=1, session_version=1)


def test_negotiated_as_offerer_with_the_xlite_answer() -> None:
    remote = SessionDescription.parse(body_of(XLITE_ANSWER))  # 8 0 3 98 97 101
    outcome = negotiated(our_offer(), remote, local_role=Role.OFFERER)
    assert outcome == sdp.NegotiatedAudio(
        media_index=0,
        encoding="PCMA",
        clock_rate=8000,
        send_payload_type=8,
        receive_payload_type=8,
        send_telephone_event=101,
        receive_telephone_event=101,
        ptime=None,
        remote_address="200.57.7.204",
        remote_port=8000,
        direction=Direction.SENDRECV,
        remote_direction=Direction.SENDRECV,
        remote_hold=False,
    )


def test_negotiated_as_answerer() -> None:
    offer = SessionDescription.parse(body_of(ASTERISK_OFFER))
    outcome = negotiated(offer, answer(offer), local_role=Role.ANSWERER)
    assert (outcome.encoding, outcome.send_payload_type, outcome.receive_payload_type) == (
        "PCMU",
        0,
        0,
    )
    assert (outcome.send_telephone_event, outcome.receive_telephone_event) == (101, 101)
    assert outcome.ptime == 20
    assert (outcome.remote_address, outcome.remote_port) == ("192.168.1.11", 14390)


def test_negotiated_ipv6_remote_address() -> None:
    offer = SessionDescription.parse(body_of(IPV6_PCMU_OFFER))
    outcome = negotiated(offer, answer(offer), local_role=Role.ANSWERER)
    assert outcome.remote_address == "fe80:0:0:0:21a:a0ff:fe07:32e0"
    assert outcome.send_telephone_event is None


def test_payload_type_numbers_are_per_direction_as_offerer() -> None:
    remote = offer_with(
        "m=audio 5000 RTP/AVP 97 96\na=rtpmap:97 pcmu/8000\na=rtpmap:96 telephone-event/8000\n"
        "a=ptime:30\na=sendonly\n"
    )
    outcome = negotiated(our_offer(), remote, local_role=Role.OFFERER)
    assert (outcome.encoding, outcome.send_payload_type, outcome.receive_payload_type) == (
        "PCMU",
        97,
        0,
    )
    assert (outcome.send_telephone_event, outcome.receive_telephone_event) == (96, 101)
    assert outcome.ptime == 30
    assert outcome.remote_direction is Direction.SENDONLY
    assert outcome.remote_hold


def test_payload_type_numbers_per_direction_as_answerer() -> None:
    offer = offer_with("m=audio 5000 RTP/AVP 96\na=rtpmap:96 PCMU/8000\n")
    ours = offer_with("m=audio 6000 RTP/AVP 0\n")
    outcome = negotiated(offer, ours, local_role=Role.ANSWERER)
    assert (outcome.send_payload_type, outcome.receive_payload_type) == (96, 0)
    assert (outcome.remote_port, outcome.remote_address) == (5000, "192.0.2.10")


def test_telephone_event_needs_both_sides() -> None:
    remote = offer_with("m=audio 5000 RTP/AVP 8\n")
    outcome = negotiated(our_offer(), remote, local_role=Role.OFFERER)
    assert (outcome.encoding, outcome.send_telephone_event) == ("PCMA", None)
    assert outcome.receive_telephone_event is None


def test_negotiated_skips_declined_streams() -> None:
    offer = offer_with("m=video 4000 RTP/AVP 31\nm=audio 4002 RTP/AVP 0\n")
    outcome = negotiated(offer, answer(offer), local_role=Role.ANSWERER)
    assert (outcome.media_index, outcome.remote_port) == (1, 4002)


def test_negotiated_rejects_a_bad_answer() -> None:
    with pytest.raises(RemoteSipError) as caught:
        negotiated(our_offer(), offer_with(""), local_role=Role.OFFERER)
    assert caught.value.status == 400
    with pytest.raises(RemoteSipError) as caught:
        negotiated(our_offer(), offer_with("m=audio 5000 RTP/AVP 18\n"), local_role=Role.OFFERER)
    assert caught.value.status == 488
    with pytest.raises(RemoteSipError) as caught:
        negotiated(our_offer(), offer_with("m=audio 0 RTP/AVP 0\n"), local_role=Role.OFFERER)
    assert caught.value.status == 488
    # Built, not parsed: parse() refuses an active stream without a c= line.
    no_address = replace(offer_with("m=audio 5000 RTP/AVP 0\n"), connection=None)
    with pytest.raises(RemoteSipError) as caught:
        negotiated(our_offer(), no_address, local_role=Role.OFFERER)
    assert caught.value.reason == "Bad Request: no c= line for the audio stream"


@pytest.mark.parametrize(
    ("text", "held"),
    [
        (HEADER + "m=audio 4000 RTP/AVP 0\na=sendonly\n", True),
        (HEADER + "m=audio 4000 RTP/AVP 0\na=inactive\n", True),
        (HEADER + "a=inactive\nm=audio 4000 RTP/AVP 0\n", True),
        (HEADER.replace("192.0.2.10\nt", "0.0.0.0\nt") + "m=audio 4000 RTP/AVP 0\n", True),
        (HEADER + "m=audio 4000 RTP/AVP 0\nc=IN IP6 ::\n", True),
        (HEADER + "m=audio 4000 RTP/AVP 0\na=recvonly\n", False),
        (HEADER + "m=audio 4000 RTP/AVP 0\na=sendrecv\n", False),
        (HEADER + "m=audio 0 RTP/AVP 0\na=inactive\n", False),
        (HEADER + "m=video 4000 RTP/AVP 31\na=inactive\n", False),
    ],
)
def test_is_hold(text: str, held: bool) -> None:
    assert is_hold(parse(text)) is held


# --- Anchoring -------------------------------------------------------------------------


# --- Whatever the bytes: a description or a 400 -----------------------------------------

SAMPLE = (
    (
        HEADER
        + "a=tool:x\nm=audio 4000 RTP/AVP 0 8 101\na=rtpmap:101 telephone-event/8000\n"
        + "a=fmtp:101 0-16\na=ptime:20\na=sendonly\nm=video 4002 RTP/AVP 31\n"
    )
    .replace("\n", "\r\n")
    .encode()
)


def _seeds() -> list[bytes]:
    if not TESTDATA.is_dir():
        return [SAMPLE]  # the tests above report the missing data
    return [SAMPLE] + [body_of(relative) for relative in sdp_files()]


SEEDS = _seeds()
VOCABULARY = [
    b"\r\n",
    b"\n",
    b" ",
    b"=",
    b":",
    b"/",
    b"0",
    b"65536",
    b"v=0",
    b"m=audio 1 RTP/AVP 0",
    b"a=rtpmap:",
    b"c=IN IP6 ::",
    b"o=",
    b"t=",
    b"r=",
    b"\x00",
    b"\xff",
    b"\xc3\xa9",
    b"99999",
]


@st.composite
def mutated_bodies(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "drop", "copy", "swap"]))
        lines = bytes(data).split(b"\n")
        first, second = (draw(st.integers(0, len(lines) - 1)) for _ in range(2))
        if kind == "insert":
            data[position:position] = draw(st.sampled_from(VOCABULARY) | st.binary(max_size=8))
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 12))]
        elif kind == "replace" and position < len(data):
            data[position] = draw(st.integers(0, 255))
        elif kind == "drop":
            del lines[first]
        elif kind == "copy":
            lines.insert(second, lines[first])
        elif kind == "swap":
            lines[first], lines[second] = lines[second], lines[first]
        if kind in ("drop", "copy", "swap"):
            data = bytearray(b"\n".join(lines))
    return bytes(data)


def _check_total(data: bytes) -> None:
    try:
        description = SessionDescription.parse(data)
    except RemoteSipError as error:
        assert error.status == 400
        assert error.reason.startswith("Bad Request: ")
        return
    assert SessionDescription.parse(description.serialize()) == description
    try:
        answered = answer(description)
    except RemoteSipError as error:
        assert error.status == 488
        return
    assert len(answered.media) == len(description.media)
    outcome = negotiated(description, answered, local_role=Role.ANSWERER)
    assert outcome.encoding in ("PCMU", "PCMA")
    assert SessionDescription.parse(answered.serialize()) == answered


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_parse_or_raise_400(data: bytes) -> None:
    _check_total(data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_bodies())
def test_mutated_bodies_parse_or_raise_400(data: bytes) -> None:
    _check_total(data)


LINE = st.tuples(
    st.sampled_from("vosictbamrzkxe"),
    st.lists(
        st.sampled_from(
            [
                "IN",
                "IP4",
                "IP6",
                "0",
                "8",
                "101",
                "RTP/AVP",
                "audio",
                "x",
                "::",
                "rtpmap:0",
                "PCMU/8000",
                "sendonly",
                "1/2",
                "-",
                "192.0.2.1",
            ]
        ),
        max_size=7,
    ),
).map(lambda line: f"{line[0]}={' '.join(line[1])}")


@settings(max_examples=300, deadline=None)
@given(st.lists(LINE, max_size=20), st.sampled_from(["\n", "\r\n"]))
def test_made_up_line_sequences_parse_or_raise_400(lines: list[str], end: str) -> None:
    _check_total(end.join(["v=0", "o=- 1 1 IN IP4 192.0.2.1", *lines]).encode())


# ---------------------------------------------------------------------------------------
# Codec policy helpers (issue 11): the codec in use preferred, RFC 2543 holds, what a
# party lists of the recordable codecs


def test_answer_prefers_the_codec_in_use_over_the_offerers_order() -> None:
    offer = offer_with("m=audio 4000 RTP/AVP 0 8\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000")
    ours = answer_offer(
        offer, local_address="192.0.2.1", ports=[5000], session_id=1, session_version=1,
        prefer_codec="PCMA",
    )  # fmt: skip
    assert ours.media[0].formats == ("8",)
    plain = answer_offer(
        offer, local_address="192.0.2.1", ports=[5000], session_id=1, session_version=1,
        prefer_codec="G722",
    )  # fmt: skip
    assert plain.media[0].formats == ("0",)


def test_a_hold_address_is_a_party_that_does_not_receive() -> None:
    held = parse(
        HEADER.replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0") + "m=audio 4000 RTP/AVP 0\n"
    )
    assert sdp.holds_by_address(held)
    assert sdp.party_direction(held, 0) is Direction.SENDONLY
    inactive = parse(HEADER + "m=audio 4000 RTP/AVP 0\na=recvonly\n")
    assert not sdp.holds_by_address(inactive)
    assert sdp.party_direction(inactive, 0) is Direction.RECVONLY


def test_recordable_codecs_lists_pcmu_and_pcma_in_our_order() -> None:
    offer = offer_with(
        "m=audio 4000 RTP/AVP 96 8 0\na=rtpmap:96 opus/48000/2\na=rtpmap:8 PCMA/8000\n"
    )
    assert sdp.recordable_codecs(offer) == ("PCMU", "PCMA")
    opus = offer_with("m=audio 4000 RTP/AVP 96\na=rtpmap:96 opus/48000/2\n")
    assert sdp.recordable_codecs(opus) == ()


# Media addresses: what we can send RTP to


def offer_at(connection: str, direction: str = "") -> SessionDescription:
    attribute = f"a={direction}\r\n" if direction else ""
    return SessionDescription.parse(
        f"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc={connection}\r\nt=0 0\r\n"
        f"m=audio 4000 RTP/AVP 0\r\n{attribute}".encode()
    )


@pytest.mark.parametrize(
    ("connection", "host", "family"),
    [
        ("IN IP4 192.0.2.10", "192.0.2.10", 4),
        ("IN IP6 ::1", "::1", 6),
        ("IN IP6 0:0:0::1", "::1", 6),  # the kernel's form, so latching compares equal
        ("IN IP6 [2001:DB8::1]", "2001:db8::1", 6),
        ("in ip4 10.0.0.1", "10.0.0.1", 4),
    ],
)
def test_usable_media_addresses_are_normalised(connection: str, host: str, family: int) -> None:
    address = media_address(offer_at(connection))
    assert (address.host, address.family, address.hold) == (host, family, False)


@pytest.mark.parametrize(
    ("connection", "why"),
    [
        ("IN IP4 pbx.example.net", "host names"),  # RFC 4566 allows it: no DNS here
        ("IN IP6 pbx.example.net", "host names"),
        ("IN IP4 999.1.1.1", "not a valid IP"),
        ("IN IP4 1.2.3", "not a valid IP"),
        ("IN IP4 ::1", "not an IP4 address"),
        ("IN IP6 192.0.2.1", "not an IP6 address"),
        ("IN IP4 0.0.0.0", "not a destination"),
        ("IN IP6 ::", "not a destination"),
        ("IN IP4 224.2.1.1/127", "multicast"),
        ("IN IP6 ff02::1", "multicast"),
        ("IN IP4 255.255.255.255", "broadcast"),
        ("IN IP6 ::ffff:192.0.2.1", "IPv4-mapped"),
        ("IN IPX 192.0.2.1", "IP4 or IP6"),
        ("ATM NSAP 47.0091.8100.0000", "IN IP4 or IN IP6"),
        ("IN IP4 -.-", "not a valid IP"),
    ],
)
def test_unusable_media_addresses_get_488_with_a_warning(connection: str, why: str) -> None:
    with pytest.raises(RemoteSipError) as caught:
        media_address(offer_at(connection))
    assert caught.value.status == 488
    ((name, value),) = caught.value.extra_headers
    assert name == "Warning" and value.startswith('301 recproxy "') and why in value
    assert "example" not in value  # the peer's bytes never go back into a header


def test_zero_address_is_a_hold_only_in_a_re_offer() -> None:
    assert media_address(offer_at("IN IP4 0.0.0.0"), in_call=True).hold
    assert media_address(offer_at("IN IP6 ::", "sendonly"), in_call=True).hold
    with pytest.raises(RemoteSipError):
        media_address(offer_at("IN IP4 0.0.0.0", "sendonly"))


def test_a_real_ipv6_offer_is_usable() -> None:
    address = media_address(SessionDescription.parse(body_of(IPV6_PCMU_OFFER)))
    assert address.family == 6


@given(st.text(alphabet="0123456789abcdefABCDEF:.[]%-/xyz", min_size=1, max_size=40))
@settings(max_examples=300, deadline=None)
def test_any_connection_address_is_usable_or_refused_with_488(text: str) -> None:
    try:
        description = offer_at(f"IN IP{'6' if ':' in text else '4'} {text}")
    except RemoteSipError as exc:
        assert exc.status == 400
        return
    try:
        address = media_address(description)
    except RemoteSipError as exc:
        assert exc.status == 488 and exc.extra_headers[0][0] == "Warning"
        return
    assert str(ipaddress.ip_address(address.host)) == address.host


def test_rtpmaps_are_read_once_per_section_first_readable_one_wins() -> None:
    """The section keeps its parsed ``a=rtpmap`` lines: a payload type's first readable
    mapping counts, an unreadable one is skipped, a static type without one falls back
    to RFC 3551, and a section changed with ``replace`` reads its own lines."""
    section = MediaDescription(
        "audio", 4000, "RTP/AVP", ("0", "8", "96", "97"),
        attributes=(
            Attribute("rtpmap", "96 opus"),  # unreadable: skipped
            Attribute("rtpmap", "96 telephone-event/8000"),
            Attribute("rtpmap", "96 PCMU/8000"),  # a second mapping of 96: ignored
            Attribute("rtpmap", "0 PCMA/8000"),  # the line wins over the static type
        ),
    )  # fmt: skip
    assert section.rtpmap("96") == RtpMap(96, "telephone-event", 8000)
    assert section.rtpmap("96") is section.rtpmap("96")
    assert section.rtpmap("0") == RtpMap(0, "PCMA", 8000)
    assert section.rtpmap("8") == RtpMap(8, "PCMA", 8000)
    assert section.rtpmap("97") is None
    changed = replace(section, attributes=(Attribute("rtpmap", "97 G722/8000"),))
    assert changed.rtpmap("96") is None
    assert changed.rtpmap("97") == RtpMap(97, "G722", 8000)
    assert changed.rtpmap("0") == RtpMap(0, "PCMU", 8000)
