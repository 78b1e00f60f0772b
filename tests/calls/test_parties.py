"""Who is on a call, read from its SIP messages; and the digit in a DTMF INFO."""

from __future__ import annotations

import pytest

from proxy.calls.parties import accepts_sdp, identify, identity_matches
from proxy.calls.recording_switch import info_digit
from proxy.config import OperatorSettings
from proxy.sip.message import Request, parse_message
from proxy.sip.uri import parse_uri

from .call_harness import CALLER, Peer


@pytest.mark.parametrize(
    ("identity", "uri", "matches"),
    [
        ("2001", "sip:2001@10.0.0.21", True),
        ("2001", "sip:2002@10.0.0.21", False),
        ("sip:2001@10.0.0.21", "sip:2001@10.0.0.21:5060", True),
        ("sip:2001@10.0.0.21", "sip:2001@10.0.0.22", False),
        ("2001@10.0.0.21:5070", "sip:2001@10.0.0.21", False),
        ("sip:10.0.0.21", "sip:anyone@10.0.0.21", True),
    ],
)
def test_an_identity_matches_a_user_or_a_user_at_a_host(
    identity: str, uri: str, matches: bool
) -> None:
    assert identity_matches(identity, parse_uri(uri)) is matches


def request(*headers: tuple[str, str]) -> Request:
    data = Peer(CALLER, "2001", "p-1").request("INVITE", to="<sip:x@127.0.0.1>", headers=headers)
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def test_the_operator_is_found_by_contact_asserted_identity_or_from() -> None:
    ann = OperatorSettings("ann", "0" * 64, identities=("sip:2001@127.0.0.1",))
    bob = OperatorSettings("bob", "1" * 64, identities=("3001",))
    assert identify([bob, ann], request()) is ann  # the Contact's user at its host
    asserted = request(("P-Asserted-Identity", "<sip:3001@10.0.0.5>"))
    assert identify([bob], asserted) is bob
    assert identify([bob], request()) is None


@pytest.mark.parametrize(
    ("accept", "ok"),
    [
        (None, True),
        ("application/sdp", True),
        ("application/*;q=0.5", True),
        ("application/sdp;q=0", False),
        ("text/plain", False),
    ],
)
def test_an_invite_accepts_sdp_unless_its_accept_rules_it_out(accept: str | None, ok: bool) -> None:
    headers = () if accept is None else (("Accept", accept),)
    assert accepts_sdp(request(*headers)) is ok


@pytest.mark.parametrize(
    ("content_type", "body", "digit"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", "5"),
        ("application/dtmf-relay", b"signal = *\r\n", "*"),
        ("application/dtmf-relay", b"Signal=55\r\n", None),
        ("application/dtmf-relay", b"Duration=160\r\n", None),
        ("application/dtmf", b"#", "#"),
        ("application/dtmf", b"X", None),
        ("text/plain", b"5", None),
    ],
)
def test_the_digit_of_a_dtmf_info(content_type: str, body: bytes, digit: str | None) -> None:
    assert info_digit(content_type, body) == digit
