"""When a SIPREC recording session ends without a BYE (``proxy.calls.siprec_timer``),
on a fake clock: the SRC's refreshes keep it, their absence expires it at RFC 4028's
exact time, our own refreshes when we are the refresher, and the media timeout."""

from __future__ import annotations

from proxy.calls.siprec_timer import Due, RecordingTimer
from proxy.sip.message import Request, Response, parse_message
from proxy.sip.session_timer import TimerPolicy
from tests.sip.sipcore_helpers import answer, raw_request

POLICY = TimerPolicy(session_expires=1800, min_se=90)
WITH_TIMER = (("Supported", "timer"), ("Session-Expires", "600"))


def request(*headers: tuple[str, str]) -> Request:
    message = parse_message(raw_request("INVITE", headers=headers))
    assert isinstance(message, Request)
    return message


def response(*headers: tuple[str, str]) -> Response:
    message = parse_message(answer(raw_request("UPDATE"), 200, headers=headers))
    assert isinstance(message, Response)
    return message


def test_nothing_is_ever_due_without_a_session_timer_or_media_timeout() -> None:
    timer = RecordingTimer(None, 0, now=0.0)
    assert timer.granted(request(*WITH_TIMER), now=0.0) == []
    assert timer.deadline() is None and timer.due(1e9, 0) is None


def test_an_src_that_refreshes_keeps_the_session_and_one_that_stops_expires_it() -> None:
    timer = RecordingTimer(POLICY, 0, now=0.0)
    headers = timer.granted(request(*WITH_TIMER), now=10.0)
    assert headers == [("Session-Expires", "600;refresher=uac"), ("Require", "timer")]
    assert timer.deadline() == 10.0 + 600 - 32  # RFC 4028 §10
    assert timer.due(577.9, 0) is None
    timer.granted(request(*WITH_TIMER), now=300.0)  # the SRC's refresh (UPDATE or re-INVITE)
    assert timer.deadline() == 868.0
    assert timer.due(867.9, 0) is None
    assert timer.due(868.0, 0) is Due.EXPIRED


def test_when_we_are_the_refresher_a_refresh_is_due_at_half_and_its_2xx_keeps_the_session() -> None:
    timer = RecordingTimer(POLICY, 0, now=0.0)
    headers = timer.granted(request(("Session-Expires", "600")), now=0.0)  # no timer support
    assert headers == [("Session-Expires", "600;refresher=uas")]
    assert timer.deadline() == 300.0
    assert timer.due(300.0, 0) is Due.REFRESH
    timer.refresh_sent(300.0)
    assert timer.deadline() == 600.0  # its 2xx by the end of the interval
    assert timer.due(599.0, 0) is None
    timer.refreshed(response(("Session-Expires", "600;refresher=uac")), now=301.0)
    assert timer.deadline() == 601.0 and timer.due(601.0, 0) is Due.REFRESH
    timer.refresh_sent(601.0)
    assert timer.due(901.0, 0) is Due.EXPIRED  # no 2xx to that one


def test_a_2xx_without_session_expires_keeps_our_interval_and_our_refreshes() -> None:
    """An SRC that knows nothing of timers still answers; if it ever stops, the
    session ends (RFC 4028 alone would turn the timer off, and keep a dead SRC's)."""
    timer = RecordingTimer(POLICY, 0, now=0.0)
    timer.granted(request(("Session-Expires", "600")), now=0.0)
    timer.refresh_sent(300.0)
    timer.refreshed(response(), now=301.0)
    assert timer.deadline() == 601.0 and timer.due(601.0, 0) is Due.REFRESH
    timer.refresh_sent(601.0)
    assert timer.due(901.0, 0) is Due.EXPIRED


def test_the_media_timeout_counts_from_the_last_packet_on_any_stream() -> None:
    timer = RecordingTimer(None, 30, now=0.0)
    assert timer.deadline() == 30.0
    assert timer.due(30.0, activity=50) is None  # packets came meanwhile
    assert timer.deadline() == 60.0
    assert timer.due(60.0, activity=80) is None
    assert timer.due(89.9, activity=80) is None
    assert timer.due(90.0, activity=80) is Due.MEDIA_TIMEOUT


def test_the_earlier_deadline_is_waited_for() -> None:
    timer = RecordingTimer(POLICY, 30, now=0.0)
    timer.granted(request(*WITH_TIMER), now=0.0)
    assert timer.deadline() == 30.0
    assert timer.due(30.0, activity=1) is None
    assert timer.deadline() == 60.0
