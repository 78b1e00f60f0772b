"""RFC 3261 §17 transactions (and the RFC 6026 Accepted state) on a fake clock.

Every test drives a lone ``SipCore`` through its public API and a peer that writes bytes
by hand; the clock only moves to ``core.get_timer()``, so each retransmission and
timeout is asserted at its exact RFC time (T1 = 0.5 s, T2 = 4 s, T4 = 5 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from proxy.sip.core import CoreSettings, Outgoing, SipCore
from proxy.sip.dialog import build_request
from proxy.sip.errors import LocalSipError
from proxy.sip.events import (
    AckTimedOut,
    Event,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from proxy.sip.message import Request, Response, parse_message
from proxy.sip.transaction import (
    ClientTransaction,
    ServerTransaction,
    TimerSettings,
    TransactionState,
    TransactionStateError,
    build_cancel,
    build_non_2xx_ack,
)
from proxy.sip.uri import parse_uri
from tests.sip.sipcore_helpers import PEER_ADDR, answer, drain_events, raw_request

S = TransactionState
PEER_URI = "sip:bob@192.0.2.10:5070"


@dataclass
class Tick:
    time: float
    sent: list[Outgoing]
    events: list[Event]


def tick_until(core: SipCore, until: float = 1000.0) -> list[Tick]:
    """Fire every timer up to ``until`` in order; what each firing sent and emitted."""
    ticks: list[Tick] = []
    while (deadline := core.get_timer()) is not None and deadline <= until:
        core.handle_timer(deadline)
        ticks.append(Tick(deadline, core.datagrams_to_send(), drain_events(core)))
    return ticks


def sent_times(ticks: list[Tick]) -> list[float]:
    return [t.time for t in ticks for _ in t.sent]


def uac_core(**timers: float) -> SipCore:
    return SipCore(CoreSettings(host="127.0.0.1", port=5060, timers=TimerSettings(**timers)))


def start_client(
    core: SipCore, method: str = "INVITE", *, transport: str = "UDP", now: float = 0.0
) -> tuple[ClientTransaction, bytes]:
    request = build_request(
        method,
        parse_uri(PEER_URI),
        from_="<sip:alice@127.0.0.1>",
        to=f"<{PEER_URI}>",
        contact=core.default_contact("alice"),
        local_host="127.0.0.1",
        headers=[("Route", "<sip:192.0.2.10:5070;lr>")],
    )
    txn = core.send_request(request, now, transport=transport)
    sent = core.datagrams_to_send()
    assert len(sent) == 1
    assert sent[0].destination == PEER_ADDR
    assert sent[0].transport == transport
    return txn, sent[0].data


def feed(core: SipCore, data: bytes, now: float, transport: str = "UDP") -> list[Outgoing]:
    core.receive_datagram(data, PEER_ADDR, now, transport)
    return core.datagrams_to_send()


# ---------------------------------------------------------------------------------------
# INVITE client (§17.1.1)


def test_invite_client_retransmits_on_timer_a_until_timer_b() -> None:
    core = uac_core()
    txn, first = start_client(core)
    assert txn.state is S.CALLING
    ticks = tick_until(core)
    # Timer A doubles without the T2 cap: 0.5, 1, 2, 4, 8, 16 after each send.
    assert sent_times(ticks) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(out.data == first for t in ticks for out in t.sent)
    timeouts = [(t.time, e) for t in ticks for e in t.events]
    assert len(timeouts) == 1
    when, event = timeouts[0]
    assert when == 32.0  # Timer B = 64·T1
    assert isinstance(event, TransactionTimedOut) and event.transaction is txn
    assert txn.state is S.TERMINATED
    assert core.transaction_count == 0
    assert core.get_timer() is None
    assert core.stats["retransmissions"] == 6
    assert core.stats["transaction_timeouts"] == 1


def test_invite_client_timers_scale_with_t1() -> None:
    core = uac_core(t1=0.25, t2=2.0)
    txn, _ = start_client(core)
    ticks = tick_until(core)
    assert sent_times(ticks) == [0.25, 0.75, 1.75, 3.75, 7.75, 15.75]
    assert ticks[-1].time == 16.0
    assert isinstance(ticks[-1].events[0], TransactionTimedOut)
    assert txn.state is S.TERMINATED


def test_invite_client_over_tcp_never_retransmits_and_times_out_at_timer_b() -> None:
    core = uac_core()
    txn, _ = start_client(core, transport="TCP")
    ticks = tick_until(core)
    assert sent_times(ticks) == []
    assert [t.time for t in ticks] == [32.0]
    assert isinstance(ticks[0].events[0], TransactionTimedOut)
    assert txn.state is S.TERMINATED


def test_invite_client_provisional_stops_retransmissions_and_timer_b() -> None:
    core = uac_core()
    txn, invite = start_client(core)
    assert sent_times(tick_until(core, 0.5)) == [0.5]
    assert feed(core, answer(invite, 180), 0.7) == []
    assert txn.state is S.PROCEEDING
    (event,) = drain_events(core)
    assert isinstance(event, ResponseReceived) and event.response.status == 180
    # A phone may ring for minutes: no retransmission and no Timer B in Proceeding.
    assert tick_until(core, 600.0) == []
    assert txn.state is S.PROCEEDING
    assert feed(core, answer(invite, 180), 601.0) == []
    assert [type(e) for e in drain_events(core)] == [ResponseReceived]  # 1xx go up
    out = feed(core, answer(invite, 486), 602.0)
    assert txn.state is S.COMPLETED
    assert [parse_message(o.data).start_line() for o in out] == [f"ACK {PEER_URI} SIP/2.0"]


def test_invite_client_non_2xx_acks_and_absorbs_retransmissions_until_timer_d() -> None:
    core = uac_core()
    txn, invite = start_client(core)
    out = feed(core, answer(invite, 486), 1.0)
    assert txn.state is S.COMPLETED
    assert len(out) == 1 and out[0].destination == PEER_ADDR
    ack = out[0].data
    (event,) = drain_events(core)
    assert isinstance(event, ResponseReceived) and event.response.status == 486
    # The final response again: the same ACK again, the TU sees nothing.
    again = feed(core, answer(invite, 486), 5.0)
    assert [o.data for o in again] == [ack]
    assert drain_events(core) == []
    assert core.stats["retransmissions_absorbed"] == 1
    ticks = tick_until(core)
    assert [t.time for t in ticks] == [33.0]  # Timer D = 32 s after the 486
    assert sent_times(ticks) == []
    assert txn.state is S.TERMINATED
    assert core.transaction_count == 0


def test_invite_client_over_tcp_terminates_at_once_after_non_2xx() -> None:
    core = uac_core()
    txn, invite = start_client(core, transport="TCP")
    out = feed(core, answer(invite, 603), 1.0, transport="TCP")
    assert len(out) == 1 and out[0].data.startswith(b"ACK ")
    assert txn.state is S.TERMINATED  # Timer D = 0 over TCP
    assert core.transaction_count == 0
    assert core.get_timer() is None


def test_ack_for_non_2xx_is_built_from_the_invite_and_the_response() -> None:
    core = uac_core()
    txn, invite_bytes = start_client(core)
    response_bytes = answer(invite_bytes, 404, to_tag="their-tag")
    (out,) = feed(core, response_bytes, 1.0)
    ack = parse_message(out.data)
    invite = parse_message(invite_bytes)
    assert isinstance(ack, Request) and isinstance(invite, Request)
    assert ack.method == "ACK"
    assert str(ack.uri) == str(invite.uri) == PEER_URI
    assert ack.headers.get_all("via") == invite.headers.get_all("via")[:1]
    assert ack.top_via.branch == invite.top_via.branch == txn.branch
    assert ack.cseq.number == invite.cseq.number and ack.cseq.method == "ACK"
    assert ack.to.tag == "their-tag"
    assert ack.to.uri == invite.to.uri
    assert ack.headers.get("from") == invite.headers.get("from")
    assert ack.call_id == invite.call_id
    assert ack.headers.get_all("route") == invite.headers.get_all("route")
    assert ack.body == b""


def test_build_non_2xx_ack_and_cancel_directly() -> None:
    invite = parse_message(raw_request("INVITE", headers=[("Route", "<sip:p1.example.com;lr>")]))
    assert isinstance(invite, Request)
    response = parse_message(answer(raw_request("INVITE"), 486, to_tag="x9"))
    assert isinstance(response, Response)
    ack = build_non_2xx_ack(invite, response)
    assert ack.to.tag == "x9" and ack.cseq.method == "ACK"
    cancel = build_cancel(invite)
    assert cancel.method == "CANCEL" and str(cancel.uri) == str(invite.uri)
    assert cancel.cseq.number == invite.cseq.number and cancel.cseq.method == "CANCEL"
    assert cancel.top_via.branch == invite.top_via.branch
    assert cancel.to.tag is None
    assert cancel.headers.get_all("route") == ["<sip:p1.example.com;lr>"]


def test_invite_client_2xx_enters_accepted_and_timer_m_ends_it() -> None:
    core = uac_core()
    txn, invite = start_client(core)
    assert feed(core, answer(invite, 200), 1.0) == []  # the 2xx ACK is the TU's
    assert txn.state is S.ACCEPTED
    (event,) = drain_events(core)
    assert isinstance(event, ResponseReceived) and event.dialog is not None
    ticks = tick_until(core)
    assert [t.time for t in ticks] == [33.0]  # Timer M = 64·T1
    assert sent_times(ticks) == []
    assert txn.state is S.TERMINATED


def test_invite_client_ignores_a_late_final_response_after_the_non_2xx() -> None:
    core = uac_core()
    txn, invite = start_client(core)
    feed(core, answer(invite, 486), 1.0)
    drain_events(core)
    assert feed(core, answer(invite, 200), 2.0) == []
    assert drain_events(core) == []
    assert txn.state is S.COMPLETED


# ---------------------------------------------------------------------------------------
# Non-INVITE client (§17.1.2)


def test_non_invite_client_timer_e_doubles_to_t2_until_timer_f() -> None:
    core = uac_core()
    txn, request = start_client(core, "OPTIONS")
    assert txn.state is S.TRYING
    ticks = tick_until(core)
    assert sent_times(ticks) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(o.data == request for t in ticks for o in t.sent)
    assert ticks[-1].time == 32.0  # Timer F
    assert isinstance(ticks[-1].events[0], TransactionTimedOut)
    assert txn.state is S.TERMINATED
    assert core.transaction_count == 0


def test_non_invite_client_retransmits_every_t2_after_a_provisional() -> None:
    core = uac_core()
    txn, request = start_client(core, "OPTIONS")
    assert sent_times(tick_until(core, 0.5)) == [0.5]
    feed(core, answer(request, 100, to_tag=None), 1.0)
    assert txn.state is S.PROCEEDING
    (event,) = drain_events(core)
    assert isinstance(event, ResponseReceived) and event.response.status == 100
    ticks = tick_until(core)
    # Timer E was due at 1.5; from then on it is T2.
    assert sent_times(ticks) == [1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    assert ticks[-1].time == 32.0
    assert isinstance(ticks[-1].events[0], TransactionTimedOut)


def test_non_invite_client_final_response_then_timer_k_absorbs_retransmissions() -> None:
    core = uac_core()
    txn, request = start_client(core, "OPTIONS")
    feed(core, answer(request, 200), 1.0)
    assert txn.state is S.COMPLETED
    assert len(drain_events(core)) == 1
    assert feed(core, answer(request, 200), 2.0) == []
    assert drain_events(core) == []  # the retransmitted final response is absorbed
    ticks = tick_until(core)
    assert [t.time for t in ticks] == [6.0]  # Timer K = T4
    assert sent_times(ticks) == []
    assert txn.state is S.TERMINATED
    assert core.transaction_count == 0


def test_non_invite_client_over_tcp_no_timer_e_and_timer_k_zero() -> None:
    core = uac_core()
    txn, request = start_client(core, "OPTIONS", transport="TCP")
    assert core.get_timer() == 32.0  # only Timer F
    feed(core, answer(request, 200), 1.0, transport="TCP")
    assert txn.state is S.TERMINATED
    assert core.get_timer() is None
    assert core.transaction_count == 0


def test_non_invite_client_over_tcp_times_out_on_timer_f() -> None:
    core = uac_core()
    txn, _ = start_client(core, "BYE", transport="TCP")
    ticks = tick_until(core)
    assert [t.time for t in ticks] == [32.0] and sent_times(ticks) == []
    assert isinstance(ticks[0].events[0], TransactionTimedOut)
    assert txn.state is S.TERMINATED


def test_stray_response_is_counted_and_dropped() -> None:
    core = uac_core()
    stray = answer(raw_request("OPTIONS", via="SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKnone"), 200)
    assert feed(core, stray, 0.0) == []
    assert drain_events(core) == []
    assert core.stats["dropped_stray_response"] == 1


# ---------------------------------------------------------------------------------------
# INVITE server (§17.2.1, RFC 6026)


def server_with(request: bytes, transport: str = "UDP") -> tuple[SipCore, RequestReceived]:
    core = SipCore(CoreSettings(host="127.0.0.2"))
    core.receive_datagram(request, PEER_ADDR, 0.0, transport)
    events = drain_events(core)
    assert len(events) == 1 and isinstance(events[0], RequestReceived)
    return core, events[0]


def test_invite_server_sends_100_at_once_and_resends_it_on_retransmission() -> None:
    invite = raw_request("INVITE")
    core, event = server_with(invite)
    txn = event.transaction
    assert txn.state is S.PROCEEDING
    (trying,) = core.datagrams_to_send()
    assert trying.data.startswith(b"SIP/2.0 100 ")
    assert parse_message(trying.data).to.tag is None  # no To tag on a 100
    out = feed(core, invite, 0.2)
    assert [o.data for o in out] == [trying.data]
    assert drain_events(core) == []  # the TU saw the INVITE once
    core.respond(txn, 180, now=0.3)
    ringing = core.datagrams_to_send()[0].data
    assert [o.data for o in feed(core, invite, 0.4)] == [ringing]


def test_invite_server_non_2xx_retransmits_on_timer_g_until_timer_h() -> None:
    core, event = server_with(raw_request("INVITE"))
    txn = event.transaction
    core.datagrams_to_send()
    core.respond(txn, 486, now=0.0)
    (busy,) = core.datagrams_to_send()
    assert txn.state is S.COMPLETED
    ticks = tick_until(core)
    assert sent_times(ticks) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(o.data == busy.data and o.destination == PEER_ADDR for t in ticks for o in t.sent)
    assert ticks[-1].time == 32.0  # Timer H
    (timeout,) = ticks[-1].events
    assert isinstance(timeout, AckTimedOut)
    assert timeout.transaction is txn and timeout.dialog is None
    assert txn.state is S.TERMINATED
    assert core.transaction_count == 0


def test_invite_server_ack_confirms_and_timer_i_ends_it() -> None:
    invite = raw_request("INVITE")
    core, event = server_with(invite)
    txn = event.transaction
    core.datagrams_to_send()
    response = core.respond(txn, 486, now=0.0)
    core.datagrams_to_send()
    assert sent_times(tick_until(core, 2.0)) == [0.5, 1.5]
    ack = raw_request("ACK", to=f"<sip:bob@127.0.0.2>;tag={response.to.tag}", contact=None)
    assert feed(core, ack, 2.0) == []
    assert txn.state is S.CONFIRMED
    assert drain_events(core) == []  # the ACK for a non-2xx is the transaction's
    assert feed(core, ack, 3.0) == []  # a retransmitted ACK is absorbed
    assert feed(core, invite, 3.5) == []  # and so is the INVITE, in Confirmed
    ticks = tick_until(core)
    assert [t.time for t in ticks] == [7.0]  # Timer I = T4 after the ACK
    assert sent_times(ticks) == []
    assert txn.state is S.TERMINATED
    assert core.transaction_count == 0


def test_invite_server_over_tcp_no_timer_g_and_timer_i_zero() -> None:
    core, event = server_with(
        raw_request("INVITE", via="SIP/2.0/TCP 192.0.2.10:5070;branch=z9hG4bKt"), "TCP"
    )
    txn = event.transaction
    core.datagrams_to_send()
    response = core.respond(txn, 480, now=0.0)
    assert core.get_timer() == 32.0  # Timer H only
    ack = raw_request(
        "ACK",
        via="SIP/2.0/TCP 192.0.2.10:5070;branch=z9hG4bKt",
        to=f"<sip:bob@127.0.0.2>;tag={response.to.tag}",
    )
    feed(core, ack, 1.0, transport="TCP")
    assert txn.state is S.TERMINATED
    assert core.transaction_count == 0


def test_invite_server_over_tcp_timer_h_without_retransmissions() -> None:
    core, event = server_with(
        raw_request("INVITE", via="SIP/2.0/TCP 192.0.2.10:5070;branch=z9hG4bKt"), "TCP"
    )
    core.respond(event.transaction, 480, now=0.0)
    core.datagrams_to_send()
    ticks = tick_until(core)
    assert sent_times(ticks) == []
    assert [t.time for t in ticks] == [32.0]
    assert isinstance(ticks[0].events[0], AckTimedOut)


def test_invite_server_2xx_enters_accepted_until_timer_l() -> None:
    invite = raw_request("INVITE")
    core, event = server_with(invite)
    txn = event.transaction
    core.respond(txn, 200, now=0.0)  # no dialog: the TU retransmits a 2xx itself
    core.datagrams_to_send()
    assert txn.state is S.ACCEPTED
    assert feed(core, invite, 1.0) == []  # INVITE retransmission absorbed (RFC 6026)
    assert drain_events(core) == []
    ticks = tick_until(core)
    assert [t.time for t in ticks] == [32.0]  # Timer L = 64·T1
    assert txn.state is S.TERMINATED


def test_server_transaction_refuses_a_second_final_response() -> None:
    core, event = server_with(raw_request("INVITE"))
    core.respond(event.transaction, 486, now=0.0)
    with pytest.raises(TransactionStateError):
        core.respond(event.transaction, 200, now=0.1)
    assert issubclass(TransactionStateError, LocalSipError)  # our bug, not the peer's


# ---------------------------------------------------------------------------------------
# Non-INVITE server (§17.2.2)


def test_non_invite_server_absorbs_retransmissions_and_timer_j() -> None:
    options = raw_request("OPTIONS")
    core, event = server_with(options)
    txn = event.transaction
    assert txn.state is S.TRYING
    assert core.datagrams_to_send() == []  # no automatic 100 for non-INVITE
    assert feed(core, options, 0.2) == []  # Trying: nothing to resend yet
    core.respond(txn, 100, now=0.3)
    trying = core.datagrams_to_send()[0].data
    assert txn.state is S.PROCEEDING
    assert [o.data for o in feed(core, options, 0.4)] == [trying]
    core.respond(txn, 200, now=1.0)
    ok = core.datagrams_to_send()[0].data
    assert txn.state is S.COMPLETED
    assert [o.data for o in feed(core, options, 10.0)] == [ok]
    assert drain_events(core) == []  # the TU saw one request
    ticks = tick_until(core)
    assert [t.time for t in ticks] == [33.0]  # Timer J = 64·T1 after the final response
    assert sent_times(ticks) == []
    assert txn.state is S.TERMINATED
    assert core.transaction_count == 0


def test_non_invite_server_over_tcp_timer_j_zero() -> None:
    core, event = server_with(
        raw_request("OPTIONS", via="SIP/2.0/TCP 192.0.2.10:5070;branch=z9hG4bKo"), "TCP"
    )
    core.respond(event.transaction, 200, now=0.0)
    (out,) = core.datagrams_to_send()
    assert out.transport == "TCP" and out.destination == PEER_ADDR
    assert event.transaction.state is S.TERMINATED
    assert core.transaction_count == 0
    assert core.get_timer() is None


def test_server_transactions_are_keyed_by_branch_sent_by_and_method() -> None:
    core, first = server_with(raw_request("OPTIONS"))
    # The same branch from another sent-by is another transaction (§17.2.3).
    core.receive_datagram(
        raw_request(
            "OPTIONS", via="SIP/2.0/UDP 192.0.2.11:5070;branch=z9hG4bK-peer-1", call_id="other@x"
        ),
        ("192.0.2.11", 5070),
        0.1,
    )
    (second,) = drain_events(core)
    assert isinstance(second, RequestReceived)
    assert second.transaction is not first.transaction
    assert core.transaction_count == 2


def test_rfc2543_requests_match_without_a_branch() -> None:
    """No magic cookie (RFC 4475 §3.4.1, inv2543): matching falls back to §17.2.3's
    R-URI/tags/Call-ID/CSeq/Via rule, so the ACK for a non-2xx still matches."""
    via = "SIP/2.0/UDP 192.0.2.10:5070"
    invite = raw_request("INVITE", via=via, from_="<sip:alice@192.0.2.10>")
    core, event = server_with(invite)
    core.datagrams_to_send()
    assert feed(core, invite, 0.1) != []  # retransmission: the 100 again
    assert drain_events(core) == []
    response = core.respond(event.transaction, 486, now=0.2)
    core.datagrams_to_send()
    ack = raw_request(
        "ACK",
        via=via,
        from_="<sip:alice@192.0.2.10>",
        to=f"<sip:bob@127.0.0.2>;tag={response.to.tag}",
    )
    feed(core, ack, 0.3)
    assert event.transaction.state is S.CONFIRMED


def test_rfc2543_ack_matches_a_reinvite_that_had_a_to_tag() -> None:
    via = "SIP/2.0/UDP 192.0.2.10:5070"
    to = "<sip:bob@127.0.0.2>;tag=known"
    reinvite = raw_request("INVITE", via=via, to=to, cseq=2)
    core = SipCore(CoreSettings(host="127.0.0.2"))
    # No such dialog: the core answers 481 itself, and that non-2xx wants an ACK.
    (out,) = feed(core, reinvite, 0.0)
    assert out.data.startswith(b"SIP/2.0 481 ")
    feed(core, raw_request("ACK", via=via, to=to, cseq=2), 0.1)
    assert tick_until(core, 0.6) == []  # matched: no Timer G retransmission at 0.5


def test_timer_settings_reject_t1_above_t2() -> None:
    with pytest.raises(ValueError):
        TimerSettings(t1=5.0, t2=4.0)


def test_transactions_are_the_documented_classes() -> None:
    _, event = server_with(raw_request("INVITE"))
    assert isinstance(event.transaction, ServerTransaction)
    assert event.transaction.is_invite and event.transaction.method == "INVITE"
