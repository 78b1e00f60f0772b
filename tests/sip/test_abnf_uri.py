"""Grammar pieces (abnf) and URIs: parsing, serialising, comparing (RFC 3261 §19.1)."""

from __future__ import annotations

import time

import pytest

from proxy.sip import abnf
from proxy.sip.errors import RemoteSipError
from proxy.sip.uri import AbsoluteUri, SipUri, _parse_cached, parse_uri, pct_decode

# ---------------------------------------------------------------------------------------
# abnf


@pytest.mark.parametrize("text", ["INVITE", "a", "!interesting-Method0123456789_*+`.%indeed'~"])
def test_tokens(text: str) -> None:
    assert abnf.is_token(text)


@pytest.mark.parametrize("text", ["", "a b", "a:b", "a@b", "é", 'a"', "a/b", "a;b"])
def test_not_tokens(text: str) -> None:
    assert not abnf.is_token(text)


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "example.com.",
        "a",
        "a-b.c_d.example",
        "192.0.2.1",
        "2001:db8::10",
        "::1",
        "::ffff:192.0.2.10",
        "fe80:0:0:0:21a:a0ff:fe07:32e0",
        "fd17:625c:f037:2:a00:27ff:feb9:4222",
    ],
)
def test_valid_hosts(host: str) -> None:
    assert abnf.is_valid_host(host)


@pytest.mark.parametrize(
    "host",
    [
        "",
        "-example.com",
        "exa mple.com",
        "256.0.0.1",
        "2001:db8:::10",
        "2001::db8::10",
        "1:2:3:4:5:6:7:8:9",
        "12345::1",
        ":::",
        "g::1",
        "fe80::1%eth0",
        "example..com",
    ],
)
def test_invalid_hosts(host: str) -> None:
    assert not abnf.is_valid_host(host)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.com", ("example.com", None)),
        ("example.com:5060", ("example.com", 5060)),
        ("192.0.2.1:1", ("192.0.2.1", 1)),
        ("[2001:db8::10]", ("2001:db8::10", None)),
        ("[2001:db8::10]:5070", ("2001:db8::10", 5070)),
        ("[::ffff:192.0.2.10]:19823", ("::ffff:192.0.2.10", 19823)),
        # Unbracketed IPv6 only when unambiguous: eight groups, or eight and a port.
        ("fe80:0:0:0:21a:a0ff:fe07:32e0", ("fe80:0:0:0:21a:a0ff:fe07:32e0", None)),
        ("fe80:0:0:0:21a:a0ff:fe07:32e0:5060", ("fe80:0:0:0:21a:a0ff:fe07:32e0", 5060)),
    ],
)
def test_split_hostport(text: str, expected: tuple[str, int | None]) -> None:
    assert abnf.split_hostport(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2001:db8::10",  # RFC 5118 §4.2: brackets are mandatory
        "[2001:db8::10",
        "[example.com]",
        "[2001:db8::10]5070",
        "example.com:",
        "example.com:0",
        "example.com:65536",
        "example.com:50a",
        "[]",
        "",
    ],
)
def test_split_hostport_rejects(text: str) -> None:
    assert abnf.split_hostport(text) is None


def test_format_host_brackets_ipv6() -> None:
    assert abnf.format_host("2001:db8::1") == "[2001:db8::1]"
    assert abnf.format_host("example.com") == "example.com"


@pytest.mark.parametrize(
    ("quoted", "text"),
    [
        ('"plain"', "plain"),
        (r'"a \"quote\""', 'a "quote"'),
        (r'"back\\slash"', "back\\slash"),
        (r'"\a\b"', "ab"),
        ('""', ""),
    ],
)
def test_unquote(quoted: str, text: str) -> None:
    assert abnf.unquote(quoted) == text


@pytest.mark.parametrize("text", ["", "plain", 'a "b" c', "back\\slash", '\\"'])
def test_quote_then_unquote_is_identity(text: str) -> None:
    assert abnf.unquote(abnf.quote(text)) == text


def test_host_checks_are_linear() -> None:
    # A run of colons made the old IPv6 regex backtrack quadratically (seconds).
    for host in (":" * 60_000 + "g", "a" * 60_000 + "-!", "a." * 30_000 + "!"):
        start = time.perf_counter()
        assert not abnf.is_valid_host(host)
        assert time.perf_counter() - start < 0.1


# ---------------------------------------------------------------------------------------
# Parsing URIs


def test_full_sip_uri() -> None:
    uri = parse_uri(
        "sips:alice:secret@atlanta.example.com:5061;transport=tcp;lr?subject=project%20x&priority=urgent"
    )
    assert uri == SipUri(
        scheme="sips",
        user="alice",
        password="secret",
        host="atlanta.example.com",
        port=5061,
        params=(("transport", "tcp"), ("lr", None)),
        headers="subject=project%20x&priority=urgent",
    )
    assert isinstance(uri, SipUri)
    assert uri.transport == "TCP"
    assert uri.has_param("LR")
    assert uri.param("lr") == ""
    assert uri.param("maddr") is None
    assert uri.hostport == "atlanta.example.com:5061"


def test_scheme_is_case_insensitive() -> None:
    uri = parse_uri("SIP:bob@Example.COM")
    assert isinstance(uri, SipUri)
    assert uri.scheme == "sip"
    assert uri.host == "Example.COM"


def test_default_transports() -> None:
    assert SipUri(host="h").transport == "UDP"
    assert SipUri(host="h", scheme="sips").transport == "TLS"


def test_telephone_user_with_visual_separators() -> None:
    uri = parse_uri("sip:+1-212-555-1212:1234@gateway.com;user=phone")
    assert isinstance(uri, SipUri)
    assert (uri.user, uri.password) == ("+1-212-555-1212", "1234")
    assert uri.param("user") == "phone"


def test_escaped_chars_are_kept_as_sent() -> None:
    text = "sip:sips%3Auser%40example.com@example.net;n%61me=v%61lue%25%34%31"
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    assert uri.user == "sips%3Auser%40example.com"
    assert uri.params == (("n%61me", "v%61lue%25%34%31"),)
    assert str(uri) == text


def test_pct_decode_once() -> None:
    assert pct_decode("v%61lue%25%34%31") == "value%41"
    assert pct_decode("%00") == "\x00"
    assert pct_decode("plain") == "plain"
    assert pct_decode("%C3%A9") == "é"
    assert pct_decode("%FF") == "\udcff"  # not UTF-8: kept as a surrogate escape


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("sip:[2001:db8::10]", "2001:db8::10", None),
        ("sip:[2001:db8::10]:5070", "2001:db8::10", 5070),
        ("sip:user@[::ffff:192.0.2.2];transport=udp", "::ffff:192.0.2.2", None),
        ("sip:4321@fec0:0:0:0:216:d3ff:fe0d:22c:5060", "fec0:0:0:0:216:d3ff:fe0d:22c", 5060),
    ],
)
def test_ipv6_references(text: str, host: str, port: int | None) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    assert (uri.host, uri.port) == (host, port)
    assert f"[{host}]" in str(uri)
    assert parse_uri(str(uri)) == uri


@pytest.mark.parametrize(
    "text",
    [
        "sip:user@example.com",
        "sips:example.com:5061",
        "sip:a:@example.com",
        "sip:a@example.com;lr;x=y?h=v",
        "sip:[2001:db8::1]:5060;maddr=[2001:db8::2]",
    ],
)
def test_str_round_trips(text: str) -> None:
    assert str(parse_uri(text)) == text


@pytest.mark.parametrize(
    ("text", "scheme", "opaque"),
    [
        ("tel:+1-201-555-0123", "tel", "+1-201-555-0123"),
        (
            "nobodyKnowsThisScheme:totallyopaquecontent",
            "nobodyknowsthisscheme",
            "totallyopaquecontent",
        ),
        ("soap.beep://192.0.2.103:3002", "soap.beep", "//192.0.2.103:3002"),
        ("urn:service:sos", "urn", "service:sos"),
    ],
)
def test_other_schemes_are_absolute_uris(text: str, scheme: str, opaque: str) -> None:
    uri = parse_uri(text)
    assert uri == AbsoluteUri(scheme, opaque)
    assert str(uri) == f"{scheme}:{opaque}"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "example.com",
        "bob@example.com",
        "sip:",
        "tel:",
        "1sip:bob@example.com",
        "sip:bob@example.com ",
        " sip:bob@example.com",
        "sip:bob smith@example.com",
        "sip:<bob>@example.com",
        'sip:"bob"@example.com',
        "sip:bob@exa%mple.com",
        "sip:bob%4@example.com",
        "sip:bob%zz@example.com",
        "sip:@example.com",
        "sip:bob@",
        "sip:bob@example.com;",
        "sip:bob@example.com;=x",
        "sip:bob@example.com;x=",
        "sip:bob@2001:db8::10",
        "sip:bob@[2001:db8::10",
        "sip:bob@example.com:99999",
        "sip:bob@exämple.com",
    ],
)
def test_malformed_uris_are_400(text: str) -> None:
    with pytest.raises(RemoteSipError) as info:
        parse_uri(text)
    assert info.value.status == 400


def test_with_and_without_params() -> None:
    uri = parse_uri("sip:a@example.com;transport=udp;lr")
    assert isinstance(uri, SipUri)
    changed = uri.with_params(transport="tcp", maddr="192.0.2.1")
    assert str(changed) == "sip:a@example.com;lr;transport=tcp;maddr=192.0.2.1"
    assert str(changed.without_params("LR", "maddr")) == "sip:a@example.com;transport=tcp"
    assert str(uri) == "sip:a@example.com;transport=udp;lr"  # frozen


# ---------------------------------------------------------------------------------------
# Comparison (RFC 3261 §19.1.4, with its examples)

EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
    ("sip:alice@atlanta.com;%6C%72", "sip:alice@atlanta.com;lr"),
    ("sip:[2001:db8::1]:5060", "sip:[2001:DB8::1]:5060"),
]

DIFFERENT = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:bob@biloxi.com", "sips:bob@biloxi.com"),
    ("sip:bob:pw@biloxi.com", "sip:bob@biloxi.com"),
    ("sip:bob@biloxi.com;maddr=192.0.2.1", "sip:bob@biloxi.com"),
    ("sip:bob@biloxi.com;x=1", "sip:bob@biloxi.com;x=2"),
    ("sip:bob@biloxi.com?a=1", "sip:bob@biloxi.com?a=2"),
    ("sip:bob@biloxi.com", "tel:bob"),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_equivalent_uris_match(a: str, b: str) -> None:
    assert parse_uri(a).matches(parse_uri(b))
    assert parse_uri(b).matches(parse_uri(a))


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_different_uris_do_not_match(a: str, b: str) -> None:
    assert not parse_uri(a).matches(parse_uri(b))
    assert not parse_uri(b).matches(parse_uri(a))


def test_absolute_uri_matching() -> None:
    assert parse_uri("tel:+1%2D201").matches(parse_uri("TEL:+1-201"))
    assert not parse_uri("tel:+1-201").matches(parse_uri("tel:+1-202"))


def test_a_long_uri_is_parsed_but_not_kept() -> None:
    """Unique long Request-URIs from the network must not pin memory in the parse cache."""
    _parse_cached.cache_clear()  # an empty cache: a full one would not grow either
    before = _parse_cached.cache_info().currsize
    long_user = "u" * 300
    uri = parse_uri(f"sip:{long_user}@example.com")
    assert isinstance(uri, SipUri) and uri.user == long_user
    assert _parse_cached.cache_info().currsize == before
    parse_uri("sip:short-one-for-the-cache@example.com")
    assert _parse_cached.cache_info().currsize == before + 1
