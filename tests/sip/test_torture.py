"""RFC 4475 and RFC 5118 torture messages, each against its verdict (see EXPECTED.md).

Every file of the two folders has a row in ``EXPECTED``: a new file without a verdict
fails ``test_every_file_has_a_verdict``.  The UAS-level answers (416 for unkscm and
novelsc, 420 for bext01, 415 for invut, 501 for intmeth) belong to the transaction and
UAS layers; the parser only has to read those messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy.sip.errors import RemoteSipError
from proxy.sip.headers import CSeq, NameAddr
from proxy.sip.message import Request, Response, error_response, parse_message
from proxy.sip.uri import AbsoluteUri, SipUri, parse_uri, pct_decode


@dataclass(frozen=True)
class Verdict:
    status: int | None  # None: parses; else the RemoteSipError status
    answerable: bool = True
    why: str = ""


PARSES = Verdict(None)

EXPECTED: dict[str, Verdict] = {
    # RFC 4475 §3.1.1: valid messages
    "rfc4475/wsinv.dat": PARSES,
    "rfc4475/intmeth.dat": PARSES,  # 501 at the UAS (unknown method)
    "rfc4475/esc01.dat": PARSES,
    "rfc4475/escnull.dat": PARSES,
    "rfc4475/lwsdisp.dat": PARSES,
    "rfc4475/longreq.dat": PARSES,
    "rfc4475/mpart01.dat": PARSES,
    "rfc4475/noreason.dat": PARSES,
    # §3.1.2: invalid messages
    "rfc4475/badinv01.dat": Verdict(400, why="empty element in header list"),
    "rfc4475/clerr.dat": Verdict(400, why="Content-Length larger than message"),
    "rfc4475/scalar02.dat": Verdict(400, why="bad CSeq"),
    "rfc4475/quotbal.dat": Verdict(400, why="display name without <uri>"),
    "rfc4475/lwsstart.dat": Verdict(400, why="malformed Request-Line"),
    "rfc4475/badaspec.dat": Verdict(400, why="malformed URI"),
    "rfc4475/badvers.dat": Verdict(505, why="Version Not Supported"),
    "rfc4475/mismatch01.dat": Verdict(400, why="CSeq method does not match"),
    "rfc4475/bigcode.dat": Verdict(400, answerable=False, why="status code"),
    # Our choice: the Date header does not matter to a B2BUA, so it is not checked.
    "rfc4475/baddate.dat": PARSES,
    # §3.2: a bare magic cookie falls back to RFC 2543 matching in the transaction layer.
    "rfc4475/badbranch.dat": PARSES,
    # §3.3: application-layer semantics
    "rfc4475/insuf.dat": Verdict(400, why="missing From"),
    "rfc4475/unkscm.dat": PARSES,  # 416 at the UAS
    "rfc4475/novelsc.dat": PARSES,  # 416 at the UAS
    "rfc4475/bext01.dat": PARSES,  # 420 at the UAS
    "rfc4475/invut.dat": PARSES,  # 415 at the UAS
    "rfc4475/cparam01.dat": PARSES,
    "rfc4475/cparam02.dat": PARSES,
    # §3.4
    "rfc4475/inv2543.dat": PARSES,
    # RFC 5118
    "rfc5118/ipv6-good.dat": PARSES,
    "rfc5118/ipv6-bad.dat": Verdict(400, why="bad host in URI"),
    "rfc5118/port-unambiguous.dat": PARSES,
    "rfc5118/via-received-param-no-delim.dat": PARSES,
    "rfc5118/ipv6-in-sdp.dat": PARSES,
    "rfc5118/ipv4-mapped-ipv6.dat": PARSES,
}

REJECTED = sorted(name for name, v in EXPECTED.items() if v.status is not None)
ACCEPTED = sorted(name for name, v in EXPECTED.items() if v.status is None)


def read(testdata: Path, name: str) -> bytes:
    return (testdata / "sip" / name).read_bytes()


def parse_request(testdata: Path, name: str) -> Request:
    message = parse_message(read(testdata, name))
    assert isinstance(message, Request)
    return message


def raw_header_lines(data: bytes, *names: str) -> list[str]:
    """Values of one-line headers, read straight from the bytes (independent of the parser)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "surrogateescape")
    pattern = re.compile(rf"^(?:{'|'.join(names)})[ \t]*:[ \t]*(.*?)[ \t]*$", re.I | re.M)
    return pattern.findall(head.replace("\r\n", "\n"))


def test_every_file_has_a_verdict(testdata: Path) -> None:
    sip = testdata / "sip"
    on_disk = {
        p.relative_to(sip).as_posix()
        for d in ("rfc4475", "rfc5118")
        for p in (sip / d).glob("*.dat")
    }
    assert on_disk == set(EXPECTED)


# ---------------------------------------------------------------------------------------
# Verdicts


@pytest.mark.parametrize("name", ACCEPTED)
def test_valid_message_parses_and_round_trips(testdata: Path, name: str) -> None:
    message = parse_message(read(testdata, name))
    again = parse_message(message.serialize())
    assert type(again) is type(message)
    assert again.start_line() == message.start_line()
    assert [h for h in again.headers if h[0].lower() not in ("content-length", "l")] == [
        h for h in message.headers if h[0].lower() not in ("content-length", "l")
    ]
    assert again.body == message.body


@pytest.mark.parametrize("name", REJECTED)
def test_invalid_message_is_rejected_with_its_status(testdata: Path, name: str) -> None:
    verdict = EXPECTED[name]
    data = read(testdata, name)
    with pytest.raises(RemoteSipError) as info:
        parse_message(data)
    err = info.value
    assert err.status == verdict.status
    assert verdict.why in err.reason
    assert err.answerable is verdict.answerable
    response = error_response(err)
    if not verdict.answerable:
        assert response is None
        return
    assert response is not None
    assert response.status == verdict.status
    # The answer carries the request's Via, Call-ID and CSeq where it had them.
    assert response.headers.get_lines("via") == raw_header_lines(data, "via", "v")
    assert response.headers.get_lines("call-id") == raw_header_lines(data, "call-id", "i")
    assert response.headers.get_lines("cseq") == raw_header_lines(data, "cseq")
    assert response.headers.get_lines("from") == raw_header_lines(data, "from", "f")
    for to in response.headers.get_lines("to"):
        assert ";tag=" in to


# Rejected requests whose Via, From, To, Call-ID and CSeq are well formed: their answer
# is a well-formed response.  (The others' answers copy the malformed lines as they are.)
CLEAN_HEADERS_REJECTED = [
    "rfc4475/clerr.dat",
    "rfc4475/lwsstart.dat",
    "rfc4475/mismatch01.dat",
    "rfc5118/ipv6-bad.dat",
]


@pytest.mark.parametrize("name", CLEAN_HEADERS_REJECTED)
def test_error_response_is_itself_a_valid_message(testdata: Path, name: str) -> None:
    with pytest.raises(RemoteSipError) as info:
        parse_message(read(testdata, name))
    response = error_response(info.value)
    assert response is not None
    again = parse_message(response.serialize())
    assert isinstance(again, Response)
    assert again.status == EXPECTED[name].status
    assert again.to.tag is not None


def test_insufficient_headers_answer_copies_what_is_there(testdata: Path) -> None:
    with pytest.raises(RemoteSipError) as info:
        parse_message(read(testdata, "rfc4475/insuf.dat"))
    response = error_response(info.value)
    assert response is not None
    assert response.headers.get("call-id") is None
    assert response.headers.get("cseq") == "193942 INVITE"
    assert response.top_via.branch == "z9hG4bKkdj.insuf"


# ---------------------------------------------------------------------------------------
# What the valid ones contain


def test_wsinv_short_tortuous_invite(testdata: Path) -> None:
    msg = parse_request(testdata, "rfc4475/wsinv.dat")
    assert msg.method == "INVITE"
    assert isinstance(msg.uri, SipUri)
    assert msg.uri.user == "vivekg"
    assert msg.uri.host == "chair-dnrc.example.com"
    assert msg.uri.params == (("unknownparam", None),)
    assert msg.max_forwards == 68
    assert msg.cseq == CSeq(9, "INVITE")
    assert msg.call_id == "wsinv.ndaksdj@192.0.2.1"
    # Header names as received, in order (folded lines joined).
    assert [name for name, _ in msg.headers] == [
        "TO",
        "from",
        "MaX-fOrWaRdS",
        "Call-ID",
        "Content-Length",
        "cseq",
        "Via",
        "s",
        "NewFangledHeader",
        "UnknownHeaderWithUnusualValue",
        "Content-Type",
        "Route",
        "v",
        "m",
    ]
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert msg.headers.get("newfangledheader") == "newfangled value continued newfangled value"
    assert msg.headers.get("subject") == ""
    # Three Vias: one on the Via line, two on the compact ``v:`` line.
    vias = msg.vias
    assert len(msg.headers.get_lines("via")) == 2
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert not vias[0].is_rfc3261_branch
    assert vias[1].is_rfc3261_branch
    # Display names with escaped quotes and backslashes.
    assert msg.from_.display_text == 'J Rosenberg \\"'
    assert msg.from_.tag == "98asjd8"
    assert msg.to.display is None
    assert msg.to.tag == "1918181833n"
    (contact,) = msg.contacts
    assert contact.display_text == 'Quoted string ""'
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    (route,) = msg.headers.get_all("route")
    route_uri = NameAddr.parse(route).uri
    assert isinstance(route_uri, SipUri)
    assert route_uri.params == (("lr", None), ("unknownwith", "value"), ("unknown-no-value", None))
    assert msg.content_type == "application/sdp"
    assert len(msg.body) == 150
    assert msg.body.startswith(b"v=0\r\n") and msg.body.endswith(b"a=rtpmap:31 LPC\r\n")


def test_intmeth_wide_range_of_valid_characters(testdata: Path) -> None:
    msg = parse_request(testdata, "rfc4475/intmeth.dat")
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert msg.method == method
    assert msg.cseq == CSeq(139122385, method)
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert isinstance(msg.uri, SipUri)
    assert msg.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert msg.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert msg.uri.host == "example.com"
    assert msg.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert msg.to.display_text == "BEL:\x07 NUL:\x00 DEL:\x7f"
    to_uri = msg.to.uri
    assert isinstance(to_uri, SipUri)
    assert to_uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert msg.from_.display == "token1~` token2'+_ token3*%!.-"
    assert msg.from_.tag == "_token~1'+`*%!-."
    assert (
        msg.from_.param("fromParam''~+*_!.-%")
        == '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"'
    )
    assert msg.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"
    assert msg.max_forwards == 255
    assert msg.body == b""


def test_esc01_escapes_are_kept_and_resolved_once(testdata: Path) -> None:
    msg = parse_request(testdata, "rfc4475/esc01.dat")
    uri = msg.uri
    assert isinstance(uri, SipUri)
    assert uri.user == "sips%3Auser%40example.com"
    assert pct_decode(uri.user) == "sips:user@example.com"
    assert uri.host == "example.net"
    assert str(uri) == "sip:sips%3Auser%40example.com@example.net"
    to_uri, from_uri = msg.to.uri, msg.from_.uri
    assert isinstance(to_uri, SipUri) and isinstance(from_uri, SipUri)
    assert pct_decode(to_uri.user or "") == "user"
    assert pct_decode(from_uri.user or "") == "I have spaces"
    assert msg.call_id == "esc01.239409asdfakjkn23onasd0-3234"  # from ``i:``
    assert msg.content_type == "application/sdp"  # from ``C:``
    (contact,) = msg.contacts
    curi = contact.uri
    assert isinstance(curi, SipUri)
    assert curi.user == "cal%6Cer"
    assert curi.params == (("%6C%72", None), ("n%61me", "v%61lue%25%34%31"))
    # Decoded once: value%41, never valueA.
    assert pct_decode("v%61lue%25%34%31") == "value%41"
    assert curi.matches(parse_uri("sip:caller@host5.example.net;lr;name=value%2541"))
    assert not curi.matches(parse_uri("sip:caller@host5.example.net;lr;name=valueA"))


def test_escnull_binds_two_distinct_contacts(testdata: Path) -> None:
    msg = parse_request(testdata, "rfc4475/escnull.dat")
    first, second = (c.uri for c in msg.contacts)
    assert isinstance(first, SipUri) and isinstance(second, SipUri)
    assert (first.user, second.user) == ("%00", "%00%00")
    assert pct_decode(first.user or "") == "\x00"
    assert pct_decode(second.user or "") == "\x00\x00"
    assert not first.matches(second)
    to_uri = msg.to.uri
    assert isinstance(to_uri, SipUri)
    assert pct_decode(to_uri.user or "") == "null-\x00-null"  # not truncated at %00
    assert msg.headers.get("content-length") == "0"  # from ``L:0``


def test_lwsdisp_display_name_without_space(testdata: Path) -> None:
    msg = parse_request(testdata, "rfc4475/lwsdisp.dat")
    assert msg.from_.display == "caller"
    assert str(msg.from_.uri) == "sip:caller@example.com"
    assert msg.from_.tag == "323"


def test_longreq_long_values(testdata: Path) -> None:
    msg = parse_request(testdata, "rfc4475/longreq.dat")
    assert msg.call_id.startswith("longreq.onereally")
    assert msg.from_.tag is not None and len(msg.from_.tag) > 100
    assert len(msg.vias) == 34
    to_uri = msg.to.uri
    assert isinstance(to_uri, SipUri) and to_uri.port == 6000
    assert len(msg.body) == int(msg.headers.get("content-length") or "")


def test_mpart01_body_framed_by_length_with_nul_bytes(testdata: Path) -> None:
    msg = parse_request(testdata, "rfc4475/mpart01.dat")
    assert msg.method == "MESSAGE"
    assert len(msg.body) == int(msg.headers.get("content-length") or "") == 553
    assert b"\x00" in msg.body
    assert msg.body.endswith(b"--7a9cbec02ceef655--\r\n")
    assert msg.top_via.param("rport") == ""
    assert msg.content_type == "multipart/mixed"


def test_noreason_empty_reason_phrase(testdata: Path) -> None:
    msg = parse_message(read(testdata, "rfc4475/noreason.dat"))
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (100, "")
    assert msg.start_line() == "SIP/2.0 100 "


def test_cparam01_contact_param_outside_angle_brackets(testdata: Path) -> None:
    (contact,) = parse_request(testdata, "rfc4475/cparam01.dat").contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.params == ()
    assert contact.params == (("unknownparam", None),)
    assert contact.uri.user == "+19725552222"


def test_cparam02_url_param_inside_angle_brackets(testdata: Path) -> None:
    (contact,) = parse_request(testdata, "rfc4475/cparam02.dat").contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.params == (("unknownparam", None),)
    assert contact.params == ()


def test_unkscm_unknown_scheme_is_an_absolute_uri(testdata: Path) -> None:
    msg = parse_request(testdata, "rfc4475/unkscm.dat")
    assert msg.uri == AbsoluteUri("nobodyknowsthisscheme", "totallyopaquecontent")
    assert msg.method == "OPTIONS"


def test_novelsc_atypical_scheme_is_an_absolute_uri(testdata: Path) -> None:
    msg = parse_request(testdata, "rfc4475/novelsc.dat")
    assert msg.uri == AbsoluteUri("soap.beep", "//192.0.2.103:3002")


def test_bext01_requires_are_read_as_lists(testdata: Path) -> None:
    msg = parse_request(testdata, "rfc4475/bext01.dat")
    assert msg.headers.get_all("require") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert msg.headers.get_all("proxy-require") == [
        "noProxiesSupportThis",
        "norDoAnyProxiesSupportThis",
    ]
    assert msg.top_via.transport == "TLS"


def test_invut_unknown_content_type(testdata: Path) -> None:
    msg = parse_request(testdata, "rfc4475/invut.dat")
    assert msg.content_type == "application/unknownformat"
    assert len(msg.body) == 40


def test_inv2543_body_is_rest_of_datagram(testdata: Path) -> None:
    data = read(testdata, "rfc4475/inv2543.dat")
    msg = parse_request(testdata, "rfc4475/inv2543.dat")
    assert "content-length" not in msg.headers
    assert msg.body == data.split(b"\r\n\r\n", 1)[1]
    assert msg.body.startswith(b"v=0") and msg.body.endswith(b"RTP/AVP 0\r\n")
    assert msg.top_via.branch is None
    assert not msg.top_via.is_rfc3261_branch
    assert msg.from_.tag is None
    assert msg.max_forwards is None
    assert msg.record_route == ["<sip:UserB@example.com;maddr=ss1.example.com>"]


def test_badbranch_parses_as_rfc2543_branch(testdata: Path) -> None:
    via = parse_request(testdata, "rfc4475/badbranch.dat").top_via
    assert via.branch == "z9hG4bK"
    assert not via.is_rfc3261_branch


def test_baddate_date_is_kept_verbatim(testdata: Path) -> None:
    msg = parse_request(testdata, "rfc4475/baddate.dat")
    assert msg.headers.get("date") == "Fri, 01 Jan 2010 16:00:00 EST"


# ---------------------------------------------------------------------------------------
# RFC 5118


def test_ipv6_reference_in_request_uri_via_and_contact(testdata: Path) -> None:
    msg = parse_request(testdata, "rfc5118/ipv6-good.dat")
    assert isinstance(msg.uri, SipUri)
    assert (msg.uri.host, msg.uri.port) == ("2001:db8::10", None)
    assert str(msg.uri) == "sip:[2001:db8::10]"
    assert (msg.top_via.host, msg.top_via.port) == ("2001:db8::9:1", None)
    (contact,) = msg.contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.host == "2001:db8::1"


def test_ipv6_port_unambiguous(testdata: Path) -> None:
    msg = parse_request(testdata, "rfc5118/port-unambiguous.dat")
    assert isinstance(msg.uri, SipUri)
    assert (msg.uri.host, msg.uri.port) == ("2001:db8::10", 5070)
    assert msg.uri.hostport == "[2001:db8::10]:5070"


def test_ipv6_received_without_brackets(testdata: Path) -> None:
    via = parse_request(testdata, "rfc5118/via-received-param-no-delim.dat").top_via
    assert via.param("received") == "2001:db8::9:255"
    assert via.response_address() == ("2001:db8::9:255", 5060)


def test_ipv6_in_sdp(testdata: Path) -> None:
    msg = parse_request(testdata, "rfc5118/ipv6-in-sdp.dat")
    assert isinstance(msg.uri, SipUri) and msg.uri.host == "2001:db8::10"
    assert len(msg.body) == int(msg.headers.get("content-length") or "")
    assert b"c=IN IP6 2001:db8::20" in msg.body


def test_ipv4_mapped_ipv6(testdata: Path) -> None:
    msg = parse_request(testdata, "rfc5118/ipv4-mapped-ipv6.dat")
    assert [(v.host, v.port) for v in msg.vias] == [
        ("::ffff:192.0.2.10", 19823),
        ("::ffff:192.0.2.2", None),
    ]
    (contact,) = msg.contacts
    assert isinstance(contact.uri, SipUri) and contact.uri.host == "::ffff:192.0.2.2"
    assert contact.display_text == "T. desk phone"
