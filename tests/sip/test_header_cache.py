"""What a message keeps of its parsed headers, and the quick ways headers are read.

A message parses its Via, From, To, CSeq and Contact once and keeps them until the
header changes; header names are looked up in a fixed table of usual spellings; values
without quotes or ``<`` are split with ``str`` methods.  Each of these must give exactly
what the slower way gives, and never a stale value.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.sip.core import CoreSettings, SipCore
from proxy.sip.errors import LocalSipError, RemoteSipError
from proxy.sip.headers import (
    COMPACT_FORMS,
    Headers,
    _split_quoted,
    canonical_name,
    pretty_name,
    split_top_level,
)
from proxy.sip.message import Request, parse_message
from proxy.sip.uri import SipUri, parse_uri

VIA = "SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds"
INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: " + VIA.encode() + b"\r\n"
    b"Max-Forwards: 70\r\n"
    b'To: "Bob" <sip:bob@example.com>\r\n'
    b"From: Alice <sip:alice@example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.example.com>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def invite() -> Request:
    message = parse_message(INVITE)
    assert isinstance(message, Request)
    return message


# ---------------------------------------------------------------------------------------
# Parsed once, kept until the header changes


def test_a_parsed_header_is_kept() -> None:
    request = invite()
    assert request.from_ is request.from_
    assert request.to is request.to
    assert request.top_via is request.top_via
    assert request.cseq is request.cseq
    assert request.contacts == request.contacts


def test_lists_handed_out_are_copies() -> None:
    request = invite()
    request.vias.clear()
    request.contacts.clear()
    request.headers.get_lines("via").clear()
    request.headers.get_all("via").clear()
    assert len(request.vias) == 1
    assert len(request.contacts) == 1
    assert request.headers.get_lines("v") == [VIA]


def test_setting_a_header_drops_what_was_parsed_from_it_only() -> None:
    request = invite()
    to = request.to
    assert request.from_.tag == "1928301774"
    request.headers.set("f", "<sip:carol@example.com>;tag=99")
    assert request.from_.tag == "99"
    assert str(request.from_.uri) == "sip:carol@example.com"
    assert request.to is to  # another header's value is still the one parsed


def test_prepending_a_via_changes_the_top_via() -> None:
    request = invite()
    assert request.top_via.host == "pc33.example.com"
    request.headers.prepend("Via", "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp1")
    assert request.top_via.host == "proxy.example.com"
    assert [v.host for v in request.vias] == ["proxy.example.com", "pc33.example.com"]
    request.headers.remove_first_value("via")
    assert request.top_via.host == "pc33.example.com"


def test_replacing_the_first_value_is_seen() -> None:
    request = invite()
    assert request.top_via.param("received") is None
    request.headers.replace_first_value(
        "via", str(request.top_via.with_params(received="192.0.2.1"))
    )
    assert request.top_via.param("received") == "192.0.2.1"


def test_adding_and_removing_headers_is_seen() -> None:
    request = invite()
    assert len(request.contacts) == 1
    request.headers.add("m", "<sip:alice@192.0.2.7>")
    assert [c.uri.host for c in request.contacts] == ["pc33.example.com", "192.0.2.7"]
    assert request.headers.get_all("contact")[-1] == "<sip:alice@192.0.2.7>"
    request.headers.remove("Contact")
    assert request.contacts == []
    request.headers.remove("cseq")
    with pytest.raises(LocalSipError):
        request.cseq  # noqa: B018


def test_a_parse_error_is_raised_each_time_not_kept() -> None:
    headers = Headers([("From", "<sip:a@example.com")])
    request = Request("OPTIONS", SipUri(host="example.com"), headers)
    for _ in range(2):
        with pytest.raises(RemoteSipError):
            request.from_  # noqa: B018
    headers.set("From", "<sip:a@example.com>;tag=x")
    assert request.from_.tag == "x"


def test_every_change_moves_the_version_on() -> None:
    headers = Headers([("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b")])
    seen = {headers.version}
    changes = [
        lambda: headers.add("X", "1"),
        lambda: headers.prepend("X", "0"),
        lambda: headers.set("X", "2"),
        lambda: headers.replace_first_value("via", "SIP/2.0/UDP c"),
        lambda: headers.remove_first_value("via"),
        lambda: headers.remove("x"),
    ]
    for change in changes:
        change()
        assert headers.version not in seen
        seen.add(headers.version)


def test_the_index_follows_additions_after_a_lookup() -> None:
    headers = Headers([("Via", "SIP/2.0/UDP a")])
    assert headers.get("max-forwards") is None
    headers.add("Max-Forwards", "70")
    headers.prepend("v", "SIP/2.0/UDP top")
    assert headers.get("max-forwards") == "70"
    assert headers.get_lines("via") == ["SIP/2.0/UDP top", "SIP/2.0/UDP a"]


# ---------------------------------------------------------------------------------------
# Header names from a fixed table


def _reference_name(name: str) -> str:
    return COMPACT_FORMS.get(name.lower(), name.lower())


@pytest.mark.parametrize(
    "name",
    ["Via", "VIA", "via", "v", "V", "Call-ID", "Call-Id", "CALL-ID", "i", "CSeq", "Cseq",
     "WWW-Authenticate", "Www-Authenticate", "Record-Route", "RECORD-ROUTE", "Max-Forwards",
     "X-Unknown", "x-UNKNOWN", "z", "Z", "Content-Length", "l", "L"],
)  # fmt: skip
def test_known_spellings_give_the_long_lower_case_name(name: str) -> None:
    assert canonical_name(name) == _reference_name(name)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-.!%*_+`'~0"))
def test_any_name_gives_the_long_lower_case_name(name: str) -> None:
    assert canonical_name(name) == _reference_name(name)
    assert canonical_name(pretty_name(name)) == canonical_name(name)


# ---------------------------------------------------------------------------------------
# Splitting: the quick ways give what the character-by-character way gives


SPLIT_ALPHABET = st.sampled_from(list('ab ;,<>"\\=@:'))


def _outcome(split: object, value: str, sep: str) -> object:
    try:
        return split(value, sep)  # type: ignore[operator]
    except RemoteSipError as exc:
        return ("error", exc.status)


@settings(max_examples=2000)
@given(st.lists(SPLIT_ALPHABET, max_size=30).map("".join), st.sampled_from([",", ";"]))
def test_split_top_level_equals_the_character_scan(value: str, sep: str) -> None:
    assert _outcome(split_top_level, value, sep) == _outcome(_split_quoted, value, sep)


@pytest.mark.parametrize(
    "value",
    ["<sip:a;x=1,2>;tag=3, <sip:b>", "a,b", "<a>,<b>,", "x > y, <z", "<<a>,b>,c", "", ","],
)
def test_split_top_level_without_quotes(value: str) -> None:
    for sep in ",;":
        assert _outcome(split_top_level, value, sep) == _outcome(_split_quoted, value, sep)


# ---------------------------------------------------------------------------------------
# URIs: the latest ones kept


def test_a_uri_parsed_again_is_the_same_value() -> None:
    first = parse_uri("sip:alice@example.com;transport=tcp")
    assert parse_uri("sip:alice@example.com;transport=tcp") == first
    assert parse_uri("sip:alice@example.com;transport=udp") != first


def test_a_bad_uri_is_an_error_every_time() -> None:
    for _ in range(2):
        with pytest.raises(RemoteSipError):
            parse_uri("sip:alice@exa mple.com")


def test_the_top_via_is_read_without_the_ones_below() -> None:
    """A request refused for a bad lower Via is still answered where its top Via says
    (RFC 3581 rport), as before the Vias were kept parsed."""
    headers = Headers([("Via", "SIP/2.0/UDP a.example.com;rport;branch=z9hG4bK1"), ("Via", "x")])
    request = Request("OPTIONS", SipUri(host="example.com"), headers)
    assert request.top_via.host == "a.example.com"
    with pytest.raises(RemoteSipError):
        request.vias  # noqa: B018
    refused = INVITE.replace(b"Max-Forwards: 70\r\n", b"Via: SIP/2.0/UDP\r\n")
    with pytest.raises(RemoteSipError) as caught:
        parse_message(refused)
    assert caught.value.request is not None
    assert caught.value.request.top_via.host == "pc33.example.com"


def test_a_request_with_a_bad_lower_via_is_answered_at_its_source() -> None:
    core = SipCore(CoreSettings(host="127.0.0.1"))
    request = INVITE.replace(
        b"Via: " + VIA.encode(), b"Via: SIP/2.0/UDP pc33.example.com:5062;rport;branch=z9hG4bK1"
    ).replace(b"Max-Forwards: 70\r\n", b"Via: SIP/2.0/UDP\r\n")
    core.receive_datagram(request, ("192.0.2.5", 40000), 0.0)
    [answer] = core.datagrams_to_send()
    assert answer.data.startswith(b"SIP/2.0 400 ")
    assert answer.destination == ("192.0.2.5", 40000)
