"""Header names, the header list, Via, name-addr / addr-spec, CSeq and parameters."""

from __future__ import annotations

import pytest

from proxy.sip.errors import RemoteSipError
from proxy.sip.headers import (
    CSeq,
    Headers,
    NameAddr,
    Via,
    canonical_name,
    parse_params,
    pretty_name,
    split_list,
    split_top_level,
)
from proxy.sip.uri import AbsoluteUri, SipUri

# ---------------------------------------------------------------------------------------
# Names


@pytest.mark.parametrize(
    ("compact", "long"),
    [
        ("v", "Via"),
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("l", "Content-Length"),
        ("f", "From"),
        ("t", "To"),
        ("c", "Content-Type"),
        ("k", "Supported"),
        ("s", "Subject"),
        ("e", "Content-Encoding"),
        ("o", "Event"),
        ("r", "Refer-To"),
        ("u", "Allow-Events"),
        ("x", "Session-Expires"),
    ],
)
def test_compact_and_long_names_are_the_same_header(compact: str, long: str) -> None:
    assert canonical_name(compact) == long.lower()
    assert canonical_name(compact.upper()) == long.lower()
    assert canonical_name(long) == long.lower()
    assert pretty_name(compact) == long
    headers = Headers([(compact, "value")])
    assert headers.get(long) == "value"
    assert headers.get(long.upper()) == "value"
    assert long.lower() in headers


@pytest.mark.parametrize(
    ("name", "pretty"),
    [
        ("cseq", "CSeq"),
        ("WWW-AUTHENTICATE", "WWW-Authenticate"),
        ("rseq", "RSeq"),
        ("x-foo-bar", "X-Foo-Bar"),
    ],
)
def test_pretty_names(name: str, pretty: str) -> None:
    assert pretty_name(name) == pretty


def test_unknown_single_letter_is_not_expanded() -> None:
    assert canonical_name("z") == "z"


# ---------------------------------------------------------------------------------------
# The header list


def vias() -> Headers:
    return Headers(
        [
            ("Via", "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com"),
            ("From", "<sip:x@example.com>;tag=1"),
            ("v", "SIP/2.0/UDP c.example.com;branch=z9hG4bK3"),
        ]
    )


def test_get_all_splits_list_headers_across_lines() -> None:
    assert vias().get_all("via") == [
        "SIP/2.0/UDP a.example.com;branch=z9hG4bK1",
        "SIP/2.0/TCP b.example.com",
        "SIP/2.0/UDP c.example.com;branch=z9hG4bK3",
    ]
    assert vias().get_lines("V") == [
        "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com",
        "SIP/2.0/UDP c.example.com;branch=z9hG4bK3",
    ]


def test_get_all_keeps_commas_of_non_list_headers() -> None:
    headers = Headers(
        [
            ("Subject", "a, b"),
            ("Proxy-Authorization", 'Digest username="a", realm="b"'),
            ("X-Unknown", "1,2"),
        ]
    )
    assert headers.get_all("subject") == ["a, b"]
    assert headers.get_all("proxy-authorization") == ['Digest username="a", realm="b"']
    assert headers.get_all("x-unknown") == ["1,2"]


def test_get_all_ignores_commas_in_quotes_and_angle_brackets() -> None:
    headers = Headers([("Contact", '"Doe, John" <sip:j@example.com;x=a,b>, <sip:k@example.com>')])
    assert headers.get_all("m") == [
        '"Doe, John" <sip:j@example.com;x=a,b>',
        "<sip:k@example.com>",
    ]


def test_empty_list_element_is_an_error() -> None:
    with pytest.raises(RemoteSipError):
        Headers([("Via", "SIP/2.0/UDP a,,SIP/2.0/UDP b")]).get_all("via")


def test_set_replaces_every_line_at_the_first_position() -> None:
    headers = vias()
    headers.set("VIA", "SIP/2.0/UDP new.example.com")
    assert list(headers) == [
        ("Via", "SIP/2.0/UDP new.example.com"),
        ("From", "<sip:x@example.com>;tag=1"),
    ]
    headers.set("Max-Forwards", "70")
    assert list(headers)[-1] == ("Max-Forwards", "70")


def test_remove_prepend_and_first_value_edits() -> None:
    headers = vias()
    headers.remove_first_value("via")
    assert headers.get_all("via")[0] == "SIP/2.0/TCP b.example.com"
    headers.replace_first_value("via", "SIP/2.0/UDP z.example.com")
    assert headers.get_lines("via")[0] == "SIP/2.0/UDP z.example.com"
    headers.remove_first_value("via")
    assert headers.get_all("via") == ["SIP/2.0/UDP c.example.com;branch=z9hG4bK3"]
    headers.prepend("Via", "SIP/2.0/UDP top.example.com")
    assert headers.get("v") == "SIP/2.0/UDP top.example.com"
    headers.remove("v")
    assert "via" not in headers
    with pytest.raises(KeyError):
        headers.remove_first_value("via")


def test_headers_copy_is_independent() -> None:
    headers = vias()
    copy = headers.copy()
    copy.add("X", "y")
    assert copy != headers
    assert len(copy) == len(headers) + 1


# ---------------------------------------------------------------------------------------
# Quoted strings and top-level splitting


def test_split_top_level_honours_escaped_quotes() -> None:
    assert split_top_level(r'"a\",b", c', ",") == [r'"a\",b"', " c"]
    assert split_top_level(r'"a\\", c', ",") == [r'"a\\"', " c"]


@pytest.mark.parametrize("text", ['"unterminated, x', "<sip:a@b, c"])
def test_split_top_level_unbalanced_is_an_error(text: str) -> None:
    with pytest.raises(RemoteSipError):
        split_top_level(text, ",")


def test_split_list_strips_whitespace() -> None:
    assert split_list(" a ,\tb ") == ["a", "b"]


# ---------------------------------------------------------------------------------------
# Parameters


def test_parse_params_with_lws_and_flags() -> None:
    assert parse_params(" ; tag = 12 ;lr; q=0.5") == (("tag", "12"), ("lr", None), ("q", "0.5"))


def test_parse_params_quoted_value_with_semicolon() -> None:
    assert parse_params(';x="a;b";y=1') == (("x", '"a;b"'), ("y", "1"))


def test_empty_param_value_is_kept_as_empty_string() -> None:
    assert parse_params(";tag=") == (("tag", ""),)


@pytest.mark.parametrize("text", [";", ";;", "junk;x=1", ";a b=1", ";x=a b", ';x="open'])
def test_bad_params(text: str) -> None:
    with pytest.raises(RemoteSipError):
        parse_params(text)


# ---------------------------------------------------------------------------------------
# Via


def test_via_parse() -> None:
    via = Via.parse(
        "SIP/2.0/udp pc33.example.com:5066;branch=z9hG4bK776asdhds;rport;received=192.0.2.1"
    )
    assert via.transport == "UDP"
    assert (via.host, via.port) == ("pc33.example.com", 5066)
    assert via.branch == "z9hG4bK776asdhds"
    assert via.is_rfc3261_branch
    assert via.param("rport") == ""
    assert via.param("RECEIVED") == "192.0.2.1"
    assert via.sent_by == ("pc33.example.com", 5066)


def test_via_with_lws_everywhere() -> None:
    via = Via.parse("SIP / 2.0 / TCP   host.example.com : 5070  ;  branch = z9hG4bKx")
    assert (via.transport, via.host, via.port, via.branch) == (
        "TCP",
        "host.example.com",
        5070,
        "z9hG4bKx",
    )


def test_via_ipv6_sent_by() -> None:
    via = Via.parse("SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas3-111")
    assert (via.host, via.port) == ("2001:db8::9:1", 5070)
    assert str(via) == "SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas3-111"


def test_via_default_ports() -> None:
    assert Via.parse("SIP/2.0/UDP h").sent_by == ("h", 5060)
    assert Via.parse("SIP/2.0/TLS h").sent_by == ("h", 5061)


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0/UDP",
        "SIP/2.0 host",
        "SIP/3.0/UDP host",
        "HTTP/2.0/UDP host",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP host;rport=abc",
        "SIP/2.0/UDP 2001:db8::1",
        "SIP/2.0/U@P host",
        "SIP/2.0/UDP ho st",
    ],
)
def test_bad_via(text: str) -> None:
    with pytest.raises(RemoteSipError):
        Via.parse(text)


def test_magic_cookie_alone_is_not_an_rfc3261_branch() -> None:
    assert not Via.parse("SIP/2.0/UDP h;branch=z9hG4bK").is_rfc3261_branch
    assert not Via.parse("SIP/2.0/UDP h;branch=1234").is_rfc3261_branch
    assert Via.parse("SIP/2.0/UDP h;branch=").branch is None


@pytest.mark.parametrize(
    ("via", "address"),
    [
        # RFC 3261 §18.2.2: sent-by, default port
        ("SIP/2.0/UDP client.example.com", ("client.example.com", 5060)),
        ("SIP/2.0/UDP client.example.com:5080", ("client.example.com", 5080)),
        # received overrides the host, the port stays the sent-by port
        ("SIP/2.0/UDP client.example.com:5080;received=192.0.2.4", ("192.0.2.4", 5080)),
        # RFC 3581 §4: rport with a value sends to received:rport
        (
            "SIP/2.0/UDP 10.0.0.1:5060;rport=9988;received=192.0.2.4",
            ("192.0.2.4", 9988),
        ),
        # rport without a value (not filled in yet): sent-by port
        ("SIP/2.0/UDP 10.0.0.1:5062;rport;received=192.0.2.4", ("192.0.2.4", 5062)),
        # maddr wins, with the sent-by port (rport applies only without maddr)
        (
            "SIP/2.0/UDP 10.0.0.1:5062;maddr=224.0.1.75;rport=9988;received=192.0.2.4",
            ("224.0.1.75", 5062),
        ),
        # IPv6 received, bracketed or not
        ("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255", ("2001:db8::9:255", 5060)),
        ("SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];rport=7", ("2001:db8::9:255", 7)),
        ("SIP/2.0/UDP [2001:db8::9:1]:5070", ("2001:db8::9:1", 5070)),
    ],
)
def test_via_response_address(via: str, address: tuple[str, int]) -> None:
    assert Via.parse(via).response_address() == address


def test_via_with_params_replaces_and_adds() -> None:
    via = Via.parse("SIP/2.0/UDP h;branch=z9hG4bK1;rport").with_params(
        rport="5062", received="192.0.2.1"
    )
    assert str(via) == "SIP/2.0/UDP h;branch=z9hG4bK1;rport=5062;received=192.0.2.1"


# ---------------------------------------------------------------------------------------
# name-addr / addr-spec


def test_name_addr_with_quoted_display_name() -> None:
    na = NameAddr.parse(r'"Mr. \"Bob\" \\ Smith" <sip:bob@example.com;transport=tcp>;tag=abc')
    assert na.display == r'"Mr. \"Bob\" \\ Smith"'
    assert na.display_text == r'Mr. "Bob" \ Smith'
    assert na.uri == SipUri(host="example.com", user="bob", params=(("transport", "tcp"),))
    assert na.tag == "abc"
    assert str(na) == r'"Mr. \"Bob\" \\ Smith" <sip:bob@example.com;transport=tcp>;tag=abc'


def test_name_addr_with_token_display_name() -> None:
    na = NameAddr.parse("Bob  Smith<sip:bob@example.com>")
    assert na.display == "Bob  Smith"
    assert na.display_text == "Bob  Smith"


def test_name_addr_quoted_angle_bracket_in_display() -> None:
    na = NameAddr.parse('"a <b> c" <sip:x@example.com>')
    assert na.display_text == "a <b> c"
    assert str(na.uri) == "sip:x@example.com"


def test_addr_spec_params_belong_to_the_header() -> None:
    na = NameAddr.parse("sip:bob@example.com;tag=xyz;user=phone")
    assert na.uri == SipUri(host="example.com", user="bob")
    assert na.params == (("tag", "xyz"), ("user", "phone"))
    assert na.tag == "xyz"
    assert str(na) == "<sip:bob@example.com>;tag=xyz;user=phone"


def test_name_addr_uri_params_stay_in_the_uri() -> None:
    na = NameAddr.parse("<sip:bob@example.com;user=phone>;tag=xyz")
    assert isinstance(na.uri, SipUri)
    assert na.uri.param("user") == "phone"
    assert na.params == (("tag", "xyz"),)


def test_name_addr_with_other_scheme() -> None:
    na = NameAddr.parse("<tel:+1-201-555-0123>;tag=1")
    assert na.uri == AbsoluteUri("tel", "+1-201-555-0123")


def test_star_contact() -> None:
    assert str(NameAddr.parse(" * ", allow_star=True)) == "*"
    with pytest.raises(RemoteSipError):
        NameAddr.parse("*")


def test_with_params_sets_a_tag() -> None:
    na = NameAddr.parse("<sip:b@example.com>").with_params(tag="t1")
    assert str(na) == "<sip:b@example.com>;tag=t1"


@pytest.mark.parametrize(
    "text",
    [
        '"unterminated <sip:a@example.com>',
        '"Bob" sip:bob@example.com',
        "<sip:a@example.com",
        "< sip:a@example.com >",
        "<sip:a@example.com> junk",
        "Bob Sm!th@ <sip:a@example.com>",
        "sip:a b@example.com",
        "",
        "<>",
        "<bob@example.com>",
    ],
)
def test_bad_name_addr(text: str) -> None:
    with pytest.raises(RemoteSipError):
        NameAddr.parse(text)


# ---------------------------------------------------------------------------------------
# CSeq


def test_cseq() -> None:
    assert CSeq.parse("0009  INVITE") == CSeq(9, "INVITE")
    assert str(CSeq(9, "INVITE")) == "9 INVITE"
    assert CSeq.parse(f"{2**31 - 1} BYE").number == 2**31 - 1


@pytest.mark.parametrize(
    "text", ["", "1", "INVITE", "1 INVITE x", "-1 INVITE", f"{2**31} INVITE", "1 INV@TE", "1.0 BYE"]
)
def test_bad_cseq(text: str) -> None:
    with pytest.raises(RemoteSipError):
        CSeq.parse(text)
