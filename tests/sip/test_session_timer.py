"""RFC 4028 session timers, the pure parts: Session-Expires and Min-SE parsing, the
UAS's and UAC's negotiation, 422 from the core, and refresh and expiry deadlines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.sip.core import SipCore
from proxy.sip.dialog import DialogState
from proxy.sip.errors import RemoteSipError
from proxy.sip.events import RequestReceived
from proxy.sip.message import Request, Response, parse_message
from proxy.sip.session_timer import (
    Interval,
    SessionExpires,
    TimerPolicy,
    as_uac,
    as_uas,
    parse_min_se,
    uac_headers,
    uas_headers,
)
from tests.sip.sipcore_helpers import answer, drain_events, raw_request
from tests.sip.test_core import feed, response_of, uas

POLICY = TimerPolicy(session_expires=1800, min_se=90)


def request(*headers: tuple[str, str]) -> Request:
    message = parse_message(raw_request("INVITE", headers=headers))
    assert isinstance(message, Request)
    return message


def response(*headers: tuple[str, str]) -> Response:
    message = parse_message(answer(raw_request("INVITE"), 200, headers=headers))
    assert isinstance(message, Response)
    return message


def test_session_expires_parses_with_and_without_refresher() -> None:
    assert SessionExpires.parse("4000;refresher=UAS") == SessionExpires(4000, "uas")
    assert SessionExpires.parse(" 1800 ") == SessionExpires(1800, None)
    assert str(SessionExpires(90, "uac")) == "90;refresher=uac"
    assert parse_min_se("120;x=y") == 120


@pytest.mark.parametrize("text", ["", "abc", "-5", "1800;refresher=me", "99999999999"])
def test_bad_session_expires_is_400(text: str) -> None:
    with pytest.raises(RemoteSipError) as info:
        SessionExpires.parse(text)
    assert info.value.status == 400


def test_uas_grants_what_was_asked_up_to_its_own_interval() -> None:
    asked = request(("Supported", "timer"), ("Session-Expires", "600"))
    interval = as_uas(asked, POLICY)
    assert interval == Interval(600, "uac", we_refresh=False)
    assert uas_headers(asked, interval) == [
        ("Session-Expires", "600;refresher=uac"),
        ("Require", "timer"),
    ]
    assert as_uas(request(("Session-Expires", "7200")), POLICY).seconds == 1800


def test_uas_refreshes_itself_when_the_uac_does_not_support_timers() -> None:
    plain = request()
    interval = as_uas(plain, POLICY)
    assert interval == Interval(1800, "uas", we_refresh=True)
    assert uas_headers(plain, interval) == [("Session-Expires", "1800;refresher=uas")]


def test_uas_honours_the_named_refresher_and_the_requests_min_se() -> None:
    asked = request(
        ("Supported", "timer"), ("Session-Expires", "100;refresher=uas"), ("Min-SE", "300")
    )
    assert as_uas(asked, POLICY) == Interval(300, "uas", we_refresh=True)


def test_uac_learns_the_interval_and_refresher_from_the_2xx() -> None:
    assert as_uac(response(("Session-Expires", "900;refresher=uac")), 90) == Interval(
        900, "uac", we_refresh=True
    )
    assert as_uac(response(("Session-Expires", "900;refresher=uas")), 90) == Interval(
        900, "uas", we_refresh=False
    )
    assert as_uac(response(), 90) is None  # no session timer on this leg
    assert uac_headers(POLICY) == [
        ("Supported", "timer"),
        ("Session-Expires", "1800"),
        ("Min-SE", "90"),
    ]


def test_refresh_at_half_and_expiry_before_the_end() -> None:
    ours = Interval(90, "uas", we_refresh=True)
    theirs = Interval(90, "uac", we_refresh=False)
    assert ours.next_deadline(10.0) == 55.0
    assert theirs.next_deadline(10.0) == 70.0  # 90 - min(32, 30)
    assert Interval(1800, "uac", False).expiry_due(0.0) == 1768.0  # 1800 - 32


def test_core_answers_422_with_min_se_to_a_too_small_interval() -> None:
    core = uas(min_se=90)
    out = feed(core, raw_request("INVITE", headers=[("Session-Expires", "60")]))
    (rejected,) = [response_of(o) for o in out]
    assert rejected.status == 422
    assert rejected.headers.get("min-se") == "90"
    assert drain_events(core) == []


def test_core_answers_400_to_a_malformed_min_se() -> None:
    core = uas(min_se=90)
    out = feed(core, raw_request("UPDATE", headers=[("Min-SE", "soon")]))
    assert [response_of(o).status for o in out] == [400]


def test_core_without_min_se_does_not_look_at_session_expires() -> None:
    core = uas()
    out = feed(core, raw_request("INVITE", headers=[("Session-Expires", "1")]))
    assert [response_of(o).status for o in out] == [100]


@given(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
)
def test_fuzzed_timer_headers_get_only_the_protocol_error(se: str, min_se: str) -> None:
    core = uas(min_se=90)
    headers = [("Session-Expires", se), ("Min-SE", min_se)]
    out = feed(core, raw_request("INVITE", headers=headers))
    statuses = [response_of(o).status for o in out]
    assert statuses in ([100], [400], [422])
    if statuses == [100]:  # accepted: the negotiation raises nothing either
        (event,) = drain_events(core)
        assert as_uas(event.request, POLICY).seconds >= 90  # type: ignore[attr-defined]


def confirmed_uas_dialog() -> tuple[SipCore, str]:
    """A core with a confirmed dialog (INVITE, 200, ACK): the dialog's To tag."""
    core = uas(min_se=90)
    feed(core, raw_request("INVITE"))
    (event,) = drain_events(core)
    assert isinstance(event, RequestReceived)
    dialog = core.accept_dialog(event.transaction)
    core.respond(event.transaction, 200, now=0.0, dialog=dialog)
    core.datagrams_to_send()
    ack = raw_request("ACK", to=f"<sip:bob@127.0.0.2>;tag={dialog.local_tag}", cseq_method="ACK")
    feed(core, ack)
    drain_events(core)
    assert dialog.state is DialogState.CONFIRMED
    return core, dialog.local_tag


@given(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
)
def test_fuzzed_timer_headers_in_an_update_leave_the_call_as_it_was(se: str, min_se: str) -> None:
    core, tag = confirmed_uas_dialog()
    update = raw_request(
        "UPDATE",
        via="SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-update",
        to=f"<sip:bob@127.0.0.2>;tag={tag}",
        cseq=2,
        headers=[("Session-Expires", se), ("Min-SE", min_se)],
    )
    statuses = [response_of(o).status for o in feed(core, update, 1.0)]
    events = drain_events(core)
    assert statuses in ([400], [422]) or (statuses == [] and len(events) == 1)
    (dialog,) = core.dialogs
    assert dialog.state is DialogState.CONFIRMED  # the call is untouched


def test_a_garbled_session_expires_in_a_2xx_sets_no_timer() -> None:
    assert as_uac(response(("Session-Expires", "soon;refresher=uac")), 90) is None


@pytest.mark.parametrize(
    ("value", "min_se", "expected"),
    [
        ("0", 90, Interval(90, "uac", we_refresh=True)),
        ("1;refresher=uas", 90, Interval(90, "uas", we_refresh=False)),
        ("1;refresher=uas", 1800, Interval(90, "uas", we_refresh=False)),  # the RFC floor
        ("1;refresher=uas", 2, Interval(2, "uas", we_refresh=False)),  # a test's low Min-SE
        ("120;refresher=uas", 90, Interval(120, "uas", we_refresh=False)),  # above: as is
    ],
)
def test_a_2xx_interval_below_our_min_se_is_raised_to_it(
    value: str, min_se: int, expected: Interval
) -> None:
    interval = as_uac(response(("Session-Expires", value)), min_se)
    assert interval == expected


def test_a_2xx_with_a_one_second_interval_arms_no_expiry_within_the_first_minute() -> None:
    """On a fake clock: the answer at t=1000 with ``Session-Expires: 1;refresher=uas``
    would have expired at 1000.67; raised to 90 s it expires at 1000 + 90 - 30."""
    interval = as_uac(response(("Session-Expires", "1;refresher=uas")), 90)
    assert interval is not None
    assert interval.next_deadline(1000.0) == 1060.0


def test_a_uas_request_interval_below_our_min_se_is_raised_to_it() -> None:
    asked = request(("Supported", "timer"), ("Session-Expires", "0;refresher=uas"))
    assert as_uas(asked, POLICY) == Interval(90, "uas", we_refresh=True)
