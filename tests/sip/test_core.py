"""What ``SipCore`` does by itself: absorbing retransmissions, CANCEL, 2xx retransmission
and re-ACK, RFC 3581 ``rport``, and the answers the UAS core gives without asking the TU
(§8.2: 400/415/416/420/481/482/483/500/501).  The peer is a hand-written byte stream."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.sip.core import CoreSettings, Outgoing, SipCore
from proxy.sip.dialog import Dialog, DialogState, build_request
from proxy.sip.errors import LocalSipError
from proxy.sip.events import (
    AckReceived,
    AckTimedOut,
    MessageDropped,
    RequestCancelled,
    RequestReceived,
    ResponseReceived,
)
from proxy.sip.message import Request, Response, parse_message
from proxy.sip.transaction import TransactionState
from proxy.sip.uri import parse_uri
from tests.sip.sipcore_helpers import PEER_ADDR, answer, drain_events, raw_request

UAS_HOST = "127.0.0.2"


def uas(**settings: object) -> SipCore:
    return SipCore(CoreSettings(host=UAS_HOST, **settings))  # type: ignore[arg-type]


def feed(
    core: SipCore,
    data: bytes,
    now: float = 0.0,
    source: tuple[str, int] = PEER_ADDR,
    transport: str = "UDP",
) -> list[Outgoing]:
    core.receive_datagram(data, source, now, transport)
    return core.datagrams_to_send()


def response_of(out: Outgoing) -> Response:
    message = parse_message(out.data)
    assert isinstance(message, Response)
    return message


def only_response(outs: list[Outgoing]) -> Response:
    assert len(outs) == 1, outs
    return response_of(outs[0])


def invite_event(core: SipCore, data: bytes | None = None, now: float = 0.0) -> RequestReceived:
    out = feed(core, data or raw_request("INVITE"), now)
    assert [response_of(o).status for o in out] == [100]
    events = drain_events(core)
    assert len(events) == 1 and isinstance(events[0], RequestReceived)
    return events[0]


def ticks(core: SipCore, until: float = 1000.0) -> list[tuple[float, list[Outgoing], list[object]]]:
    record: list[tuple[float, list[Outgoing], list[object]]] = []
    while (deadline := core.get_timer()) is not None and deadline <= until:
        core.handle_timer(deadline)
        record.append((deadline, core.datagrams_to_send(), list(drain_events(core))))
    return record


# ---------------------------------------------------------------------------------------
# Retransmissions


def test_retransmitted_request_reaches_the_tu_once_and_gets_the_last_response() -> None:
    core = uas()
    invite = raw_request("INVITE")
    event = invite_event(core, invite)
    d = core.accept_dialog(event.transaction)
    core.respond(event.transaction, 180, now=0.1, dialog=d)
    (ringing,) = core.datagrams_to_send()
    for t in (0.5, 1.5):
        assert [o.data for o in feed(core, invite, t)] == [ringing.data]
    assert drain_events(core) == []
    assert core.stats["received_INVITE"] == 3
    assert core.stats["retransmissions_absorbed"] == 2


def test_uas_2xx_is_retransmitted_until_the_ack() -> None:
    core = uas()
    event = invite_event(core)
    dialog = core.accept_dialog(event.transaction)
    ok = core.respond(event.transaction, 200, now=0.0, dialog=dialog, body=b"v=0\r\n")
    (first,) = core.datagrams_to_send()
    assert dialog.state is DialogState.CONFIRMED  # a 2xx sent confirms the UAS dialog
    record = ticks(core, 4.0)
    assert [t for t, outs, _ in record for _ in outs] == [0.5, 1.5, 3.5]
    assert all(o.data == first.data for _, outs, _ in record for o in outs)
    ack = raw_request(
        "ACK",
        via="SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-ack-1",
        to=f"<sip:bob@127.0.0.2>;tag={ok.to.tag}",
    )
    assert feed(core, ack, 4.0) == []
    (acked,) = drain_events(core)
    assert isinstance(acked, AckReceived) and acked.dialog is dialog
    assert dialog.state is DialogState.CONFIRMED
    # No more 2xx retransmissions; a retransmitted ACK is absorbed.
    assert feed(core, ack, 4.5) == []
    assert drain_events(core) == []
    assert all(outs == [] for _, outs, _ in ticks(core))
    assert core.dialogs == [dialog]
    assert core.transaction_count == 0  # Timer L ended the INVITE transaction


def test_uas_2xx_gives_up_with_ack_timed_out_after_64_t1() -> None:
    core = uas()
    event = invite_event(core)
    dialog = core.accept_dialog(event.transaction)
    core.respond(event.transaction, 200, now=0.0, dialog=dialog)
    core.datagrams_to_send()
    record = ticks(core)
    sends = [t for t, outs, _ in record for _ in outs]
    # T1 doubling, capped at T2 (§13.3.1.4).
    assert sends == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    timeouts = [(t, e) for t, _, events in record for e in events]
    assert len(timeouts) == 1
    when, timeout = timeouts[0]
    assert when == 32.0
    assert isinstance(timeout, AckTimedOut)
    assert timeout.dialog is dialog and timeout.transaction is event.transaction
    assert core.stats["ack_timeouts"] == 1


def test_uas_2xx_over_tcp_is_still_retransmitted_until_the_ack() -> None:
    """§13.3.1.4: the 2xx retransmission by the UAS core 'is independent of whatever
    transport protocols are used' (a proxy may forward it over UDP)."""
    core = uas()
    via = "SIP/2.0/TCP 192.0.2.10:5070;branch=z9hG4bK-tcp"
    core.receive_datagram(raw_request("INVITE", via=via), PEER_ADDR, 0.0, "TCP")
    (event,) = drain_events(core)
    assert isinstance(event, RequestReceived)
    dialog = core.accept_dialog(event.transaction)
    core.respond(event.transaction, 200, now=0.0, dialog=dialog)
    core.datagrams_to_send()
    record = ticks(core, 2.0)
    assert [t for t, outs, _ in record for _ in outs] == [0.5, 1.5]
    assert all(o.transport == "TCP" for _, outs, _ in record for o in outs)


def test_responding_twice_with_2xx_keeps_one_retransmitter() -> None:
    core = uas()
    event = invite_event(core)
    dialog = core.accept_dialog(event.transaction)
    core.respond(event.transaction, 200, now=0.0, dialog=dialog)
    core.respond(event.transaction, 200, now=0.2, dialog=dialog)  # the TU resends it
    core.datagrams_to_send()
    timeouts = [e for _, _, events in ticks(core) for e in events]
    assert len(timeouts) == 1 and isinstance(timeouts[0], AckTimedOut)


# ---------------------------------------------------------------------------------------
# UAC side: 2xx retransmissions are re-ACKed, not reported


def uac_invite(core: SipCore) -> tuple[Request, bytes]:
    request = build_request(
        "INVITE",
        parse_uri("sip:bob@192.0.2.10:5070"),
        from_="<sip:alice@127.0.0.1>",
        to="<sip:bob@192.0.2.10>",
        contact=core.default_contact("alice"),
        local_host="127.0.0.1",
        body=b"v=0\r\n",
    )
    core.send_request(request, 0.0)
    (out,) = core.datagrams_to_send()
    return request, out.data


def test_uac_resends_its_ack_when_the_2xx_is_retransmitted() -> None:
    core = SipCore(CoreSettings(host="127.0.0.1"))
    _, invite = uac_invite(core)
    contact = [("Contact", "<sip:bob@192.0.2.10:5070>")]
    ok = answer(invite, 200, headers=contact)
    assert feed(core, ok, 0.1) == []
    (event,) = drain_events(core)
    assert isinstance(event, ResponseReceived) and event.dialog is not None
    dialog = event.dialog
    assert dialog.state is DialogState.CONFIRMED
    core.send_ack(dialog, dialog.create_ack(event.response.cseq.number), 0.1)
    (ack,) = core.datagrams_to_send()
    assert ack.destination == PEER_ADDR
    assert ack.data.startswith(b"ACK sip:bob@192.0.2.10:5070 SIP/2.0")
    # The 2xx again (our ACK was lost): the same ACK again, nothing for the TU.
    assert [o.data for o in feed(core, ok, 0.6)] == [ack.data]
    assert drain_events(core) == []
    # Also once Timer M has ended the transaction.
    ticks(core)
    assert core.transaction_count == 0
    assert [o.data for o in feed(core, ok, 40.0)] == [ack.data]
    assert drain_events(core) == []


def test_uac_reports_a_2xx_once_even_before_the_tu_acked() -> None:
    core = SipCore(CoreSettings(host="127.0.0.1"))
    _, invite = uac_invite(core)
    ok = answer(invite, 200, headers=[("Contact", "<sip:bob@192.0.2.10:5070>")])
    feed(core, ok, 0.1)
    feed(core, ok, 0.6)  # retransmitted before the TU got to send its ACK
    events = drain_events(core)
    assert [type(e) for e in events] == [ResponseReceived]


def test_uac_reports_a_forked_2xx_as_a_second_dialog() -> None:
    core = SipCore(CoreSettings(host="127.0.0.1"))
    _, invite = uac_invite(core)
    contact = [("Contact", "<sip:bob@192.0.2.10:5070>")]
    feed(core, answer(invite, 200, to_tag="fork-a", headers=contact), 0.1)
    feed(core, answer(invite, 200, to_tag="fork-b", headers=contact), 0.2)
    events = drain_events(core)
    assert len(events) == 2
    assert all(isinstance(e, ResponseReceived) for e in events)
    tags = {e.dialog.remote_tag for e in events if isinstance(e, ResponseReceived) and e.dialog}
    assert tags == {"fork-a", "fork-b"}
    assert len(core.dialogs) == 2


def test_non_2xx_final_ends_every_early_dialog_of_the_invite() -> None:
    core = SipCore(CoreSettings(host="127.0.0.1"))
    _, invite = uac_invite(core)
    contact = [("Contact", "<sip:bob@192.0.2.10:5070>")]
    feed(core, answer(invite, 180, to_tag="fork-a", headers=contact), 0.1)
    feed(core, answer(invite, 183, to_tag="fork-b", headers=contact), 0.2)
    assert {d.state for d in core.dialogs} == {DialogState.EARLY}
    assert len(core.dialogs) == 2
    early = list(core.dialogs)
    feed(core, answer(invite, 486, to_tag="fork-c"), 0.3)
    assert core.dialogs == []
    assert all(d.state is DialogState.TERMINATED for d in early)


def test_uac_cancel_waits_for_a_provisional_then_gives_up_after_64_t1() -> None:
    core = SipCore(CoreSettings(host="127.0.0.1"))
    request = build_request(
        "INVITE",
        parse_uri("sip:bob@192.0.2.10:5070"),
        from_="<sip:alice@127.0.0.1>",
        to="<sip:bob@192.0.2.10>",
        contact=core.default_contact("alice"),
        local_host="127.0.0.1",
    )
    client = core.send_request(request, 0.0)
    (sent,) = core.datagrams_to_send()
    core.cancel(client, 0.1)
    assert core.datagrams_to_send() == []  # §9.1: not before a provisional response
    contact = [("Contact", "<sip:bob@192.0.2.10:5070>")]
    (cancel,) = feed(core, answer(sent.data, 180, headers=contact), 0.2)
    cancel_msg = parse_message(cancel.data)
    assert isinstance(cancel_msg, Request) and cancel_msg.method == "CANCEL"
    assert cancel_msg.top_via.branch == client.branch
    assert cancel.destination == PEER_ADDR
    assert len(core.dialogs) == 1  # the early dialog of the 180
    drain_events(core)
    # The CANCEL is answered 200 but the INVITE never gets its 487: it is given up
    # 64·T1 after the CANCEL (§9.1), and its early dialog with it.
    assert feed(core, answer(cancel.data, 200), 0.3) == []
    drain_events(core)
    record = ticks(core)
    timeouts = [(t, e) for t, _, events in record for e in events]
    assert [t for t, _ in timeouts] == [0.2 + 32.0]
    assert client.state is TransactionState.TERMINATED
    assert core.dialogs == []
    assert core.transaction_count == 0


def test_cancel_of_an_answered_invite_sends_nothing() -> None:
    core = SipCore(CoreSettings(host="127.0.0.1"))
    request = build_request(
        "INVITE",
        parse_uri("sip:bob@192.0.2.10:5070"),
        from_="<sip:alice@127.0.0.1>",
        to="<sip:bob@192.0.2.10>",
        contact=core.default_contact("alice"),
    )
    client = core.send_request(request, 0.0)
    (sent,) = core.datagrams_to_send()
    feed(core, answer(sent.data, 486), 0.1)
    core.cancel(client, 0.2)
    assert core.datagrams_to_send() == []


def test_only_an_invite_can_be_cancelled() -> None:
    core = SipCore(CoreSettings(host="127.0.0.1"))
    options = build_request(
        "OPTIONS", parse_uri("sip:bob@192.0.2.10"), from_="<sip:a@x>", to="<sip:b@y>"
    )
    client = core.send_request(options, 0.0)
    with pytest.raises(LocalSipError):
        core.cancel(client, 0.1)


def test_send_request_refuses_an_ack() -> None:
    core = SipCore(CoreSettings(host="127.0.0.1"))
    ack = build_request("ACK", parse_uri("sip:bob@192.0.2.10"), from_="<sip:a@x>", to="<sip:b@y>")
    with pytest.raises(LocalSipError):
        core.send_request(ack, 0.0)


# ---------------------------------------------------------------------------------------
# CANCEL (§9.2)


def test_cancel_matches_its_invite_200_and_487_and_an_event() -> None:
    core = uas()
    invite = raw_request("INVITE")
    event = invite_event(core, invite)
    dialog = core.accept_dialog(event.transaction)
    ringing = core.respond(event.transaction, 180, now=0.1, dialog=dialog)
    core.datagrams_to_send()
    outs = feed(core, raw_request("CANCEL", contact=None), 1.0)
    responses = [response_of(o) for o in outs]
    assert [(r.status, r.cseq.method) for r in responses] == [(200, "CANCEL"), (487, "INVITE")]
    assert all(o.destination == PEER_ADDR for o in outs)
    # One To tag for the 180, the 200 to the CANCEL and the 487 (§9.2).
    assert {r.to.tag for r in responses} == {ringing.to.tag}
    (cancelled,) = drain_events(core)
    assert isinstance(cancelled, RequestCancelled)
    assert cancelled.transaction is event.transaction
    assert event.transaction.state is TransactionState.COMPLETED
    # The early dialog made for the 180 went with the 487.
    assert dialog.state is DialogState.TERMINATED
    assert core.dialogs == []
    # A CANCEL retransmission gets the 200 again, no second 487.
    again = feed(core, raw_request("CANCEL", contact=None), 1.5)
    assert [(response_of(o).status, response_of(o).cseq.method) for o in again] == [(200, "CANCEL")]


def test_cancel_after_the_final_response_is_200_without_487() -> None:
    core = uas()
    event = invite_event(core)
    core.respond(event.transaction, 486, now=0.1)
    core.datagrams_to_send()
    outs = feed(core, raw_request("CANCEL", contact=None), 0.2)
    assert [(response_of(o).status, response_of(o).cseq.method) for o in outs] == [(200, "CANCEL")]
    assert drain_events(core) == []


def test_cancel_for_an_unknown_invite_is_481() -> None:
    core = uas()
    cancel = raw_request("CANCEL", via="SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKnope")
    response = only_response(feed(core, cancel))
    assert response.status == 481 and response.cseq.method == "CANCEL"
    assert drain_events(core) == []


def test_core_rejection_and_the_200_to_cancel_share_one_to_tag() -> None:
    core = uas()
    rejected = only_response(feed(core, raw_request("INVITE", headers=[("Require", "foo")])))
    assert rejected.status == 420
    outs = feed(core, raw_request("CANCEL", contact=None), 0.1)
    (ok,) = [response_of(o) for o in outs]
    assert ok.status == 200 and ok.cseq.method == "CANCEL"
    assert ok.to.tag == rejected.to.tag  # §9.2: the same To tag as the INVITE's response


def test_final_response_without_the_dialog_still_ends_the_early_dialog() -> None:
    core = uas()
    event = invite_event(core)
    dialog = core.accept_dialog(event.transaction)
    core.respond(event.transaction, 180, now=0.0, dialog=dialog)
    core.respond(event.transaction, 603, now=0.5)  # the TU forgot to pass the dialog
    assert core.dialogs == []
    assert dialog.state is DialogState.TERMINATED


# ---------------------------------------------------------------------------------------
# Via, rport and where responses go (§18.2.2, RFC 3581)


def test_rport_fills_received_and_rport_and_replies_to_the_source() -> None:
    core = uas()
    via = "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-nat;rport"
    nat = ("198.51.100.7", 40123)
    core.receive_datagram(raw_request("OPTIONS", via=via), nat, 0.0)
    (event,) = drain_events(core)
    assert isinstance(event, RequestReceived)
    assert event.source == nat
    top = event.request.top_via
    assert top.param("received") == "198.51.100.7"
    assert top.param("rport") == "40123"
    core.respond(event.transaction, 200, now=0.0)
    (out,) = core.datagrams_to_send()
    assert out.destination == nat
    via_back = response_of(out).top_via
    assert via_back.param("received") == "198.51.100.7" and via_back.param("rport") == "40123"
    assert via_back.branch == "z9hG4bK-nat"


def test_without_rport_received_is_added_and_the_via_port_used() -> None:
    core = uas()
    via = "SIP/2.0/UDP 10.0.0.5:5080;branch=z9hG4bK-norport"
    core.receive_datagram(raw_request("OPTIONS", via=via), ("198.51.100.7", 40123), 0.0)
    (event,) = drain_events(core)
    assert isinstance(event, RequestReceived)
    assert event.request.top_via.param("received") == "198.51.100.7"
    assert event.request.top_via.param("rport") is None
    core.respond(event.transaction, 200, now=0.0)
    (out,) = core.datagrams_to_send()
    assert out.destination == ("198.51.100.7", 5080)


def test_over_tcp_responses_go_back_on_the_connection() -> None:
    core = uas()
    via = "SIP/2.0/TCP 10.0.0.5:5080;branch=z9hG4bK-tcp"
    conn = ("198.51.100.7", 51000)
    core.receive_datagram(raw_request("OPTIONS", via=via), conn, 0.0, "TCP")
    (event,) = drain_events(core)
    assert isinstance(event, RequestReceived)
    core.respond(event.transaction, 200, now=0.0)
    (out,) = core.datagrams_to_send()
    assert out.destination == conn and out.transport == "TCP"


def test_error_answer_to_a_bad_request_goes_where_the_request_came_from() -> None:
    core = uas()
    bad = raw_request("OPTIONS", via="SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-bad;rport").replace(
        b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE"
    )
    outs = feed(core, bad, source=("198.51.100.7", 40123))
    response = only_response(outs)
    assert response.status == 400
    assert outs[0].destination == ("198.51.100.7", 40123)
    assert response.top_via.param("received") == "198.51.100.7"
    assert core.stats["parse_error_400"] == 1


# ---------------------------------------------------------------------------------------
# What the UAS core answers by itself (§8.2)


def test_merged_request_is_482() -> None:
    core = uas()
    invite_event(core, raw_request("INVITE"))
    other_path = raw_request("INVITE", via="SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-path2")
    response = only_response(feed(core, other_path, 0.1))
    assert response.status == 482
    assert drain_events(core) == []


def test_in_dialog_request_for_an_unknown_dialog_is_481() -> None:
    core = uas()
    bye = raw_request("BYE", to="<sip:bob@127.0.0.2>;tag=nosuch", cseq=2)
    response = only_response(feed(core, bye))
    assert response.status == 481
    assert response.to.tag == "nosuch"
    assert drain_events(core) == []


def established(core: SipCore) -> tuple[str, Dialog]:
    event = invite_event(core, raw_request("INVITE", cseq=5))
    dialog = core.accept_dialog(event.transaction)
    ok = core.respond(event.transaction, 200, now=0.0, dialog=dialog)
    core.datagrams_to_send()
    ack = raw_request(
        "ACK",
        via="SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-a",
        cseq=5,
        to=f"<sip:bob@127.0.0.2>;tag={ok.to.tag}",
    )
    feed(core, ack)
    assert isinstance(drain_events(core)[0], AckReceived)
    return f"<sip:bob@127.0.0.2>;tag={ok.to.tag}", dialog


def test_in_dialog_request_with_lower_cseq_is_500_and_in_order_ones_pass() -> None:
    core = uas()
    to, dialog = established(core)
    late = raw_request("INFO", to=to, cseq=4, via="SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-i4")
    response = only_response(feed(core, late, 1.0))
    assert response.status == 500
    assert drain_events(core) == []
    info = raw_request("INFO", to=to, cseq=6, via="SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-i6")
    assert feed(core, info, 1.1) == []
    (event,) = drain_events(core)
    assert isinstance(event, RequestReceived) and event.dialog is dialog
    older = raw_request("INFO", to=to, cseq=5, via="SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-i5")
    assert only_response(feed(core, older, 1.2)).status == 500


def test_in_dialog_target_refresh_updates_the_remote_target() -> None:
    core = uas()
    to, dialog = established(core)
    reinvite = raw_request(
        "INVITE",
        to=to,
        cseq=6,
        via="SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-re",
        contact="<sip:alice@192.0.2.99:6000>",
    )
    feed(core, reinvite, 1.0)
    (event,) = drain_events(core)
    assert isinstance(event, RequestReceived) and event.dialog is dialog
    assert str(dialog.remote_target) == "sip:alice@192.0.2.99:6000"


def test_max_forwards_zero_is_483() -> None:
    core = uas()
    response = only_response(feed(core, raw_request("INVITE", max_forwards=0)))
    assert response.status == 483
    assert drain_events(core) == []


def test_unknown_method_is_501_with_allow() -> None:
    core = uas()
    response = only_response(feed(core, raw_request("FROBNICATE")))
    assert response.status == 501
    allow = {m.strip() for m in (response.headers.get("allow") or "").split(",")}
    assert {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"} <= allow
    assert drain_events(core) == []


def test_known_but_disallowed_method_is_405_with_allow() -> None:
    core = uas()
    response = only_response(feed(core, raw_request("SUBSCRIBE")))
    assert response.status == 405
    assert "INVITE" in (response.headers.get("allow") or "")


@pytest.mark.parametrize("method", ["MESSAGE", "SUBSCRIBE", "NOTIFY"])
def test_default_allow_is_the_one_list_recproxy_answers_with(method: str) -> None:
    # One list for the core and the TU: a NOTIFY the TU does not refuse itself is 405,
    # and the Allow never offers what nothing here handles (issue 13); REFER is the
    # call's (blind transfer, issue 15).
    core = uas()
    response = only_response(feed(core, raw_request(method)))
    assert response.status == 405
    allow = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, REFER, PRACK"
    assert response.headers.get("allow") == allow
    assert core.allow == response.headers.get("allow")
    assert drain_events(core) == []


def test_require_with_unknown_option_is_420_with_unsupported() -> None:
    core = uas()
    request = raw_request("INVITE", headers=[("Require", "100rel, frobs")])
    response = only_response(feed(core, request))
    assert response.status == 420
    assert response.headers.get_all("unsupported") == ["frobs"]  # 100rel is the core's


def test_require_with_supported_option_passes() -> None:
    core = uas(supported=("timer",))
    out = feed(core, raw_request("INVITE", headers=[("Require", "100rel, timer")]))
    assert [response_of(o).status for o in out] == [100]
    assert isinstance(drain_events(core)[0], RequestReceived)


def test_rfc2543_invite_without_contact_gets_a_dialog_aimed_at_the_from_uri() -> None:
    """RFC 2543 allowed no Contact (RFC 4475 §3.4.1): the From URI is the remote target."""
    core = uas()
    event = invite_event(core, raw_request("INVITE", contact=None))
    dialog = core.accept_dialog(event.transaction)
    assert str(dialog.remote_target) == str(event.request.from_.uri)


def test_unsupported_body_is_415_with_accept() -> None:
    core = uas()
    request = raw_request("INVITE", body=b"<x/>", content_type="application/xml")
    response = only_response(feed(core, request))
    assert response.status == 415
    assert response.headers.get("accept") == "application/sdp"


# ---------------------------------------------------------------------------------------
# RFC 4475 messages at the UAS


def rfc4475(testdata: Path, name: str) -> bytes:
    return (testdata / "sip" / "rfc4475" / name).read_bytes()


@pytest.mark.parametrize(
    ("name", "status", "header", "value"),
    [
        ("unkscm.dat", 416, None, None),
        ("novelsc.dat", 416, None, None),
        ("bext01.dat", 420, "unsupported", "nothingSupportsThis, nothingSupportsThisEither"),
        ("invut.dat", 415, "accept", "application/sdp"),
        ("intmeth.dat", 501, "allow", None),
    ],
)
def test_rfc4475_messages_get_their_uas_answer(
    testdata: Path, name: str, status: int, header: str | None, value: str | None
) -> None:
    core = uas()
    data = rfc4475(testdata, name)
    request = parse_message(data)
    assert isinstance(request, Request)
    source = ("192.0.2.50", 5060)
    transport = request.top_via.transport  # UDP, TCP or TLS, as the Via says
    outs = feed(core, data, source=source, transport=transport)
    response = only_response(outs)
    assert response.status == status
    assert response.call_id == request.call_id
    assert response.cseq == request.cseq
    assert response.to.tag  # a final response gets a To tag
    assert outs[0].destination == source
    assert outs[0].transport == transport
    if header is not None:
        got = response.headers.get(header)
        assert got is not None
        if value is not None:
            assert got == value
    assert drain_events(core) == []
    # A retransmission gets the same answer (over UDP, the very same bytes; over a
    # stream Timer J is zero, so it is answered afresh).
    again = feed(core, data, 0.2, source=source, transport=transport)
    if transport == "UDP":
        assert [o.data for o in again] == [outs[0].data]
    else:
        assert only_response(again).status == status
    assert drain_events(core) == []


def test_garbled_response_is_dropped_and_counted(testdata: Path) -> None:
    core = uas()
    outs = feed(core, rfc4475(testdata, "bigcode.dat"))
    assert outs == []
    (event,) = drain_events(core)
    assert isinstance(event, MessageDropped)
    assert event.source == PEER_ADDR and event.reason
    assert core.stats["dropped"] == 1


def test_request_without_via_cannot_be_answered_and_is_dropped() -> None:
    core = uas()
    data = b"\r\n".join(
        line for line in raw_request("OPTIONS").split(b"\r\n") if not line.startswith(b"Via:")
    )
    assert feed(core, data) == []
    (event,) = drain_events(core)
    assert isinstance(event, MessageDropped)
    assert core.stats["dropped"] == 1 and core.stats["parse_error_400"] == 1


def test_keepalive_is_counted_not_answered() -> None:
    core = uas()
    assert feed(core, b"\r\n\r\n") == []
    assert drain_events(core) == []
    assert core.stats["keepalives"] == 1


def test_stray_ack_is_dropped() -> None:
    core = uas()
    ack = raw_request("ACK", to="<sip:bob@127.0.0.2>;tag=zz")
    assert feed(core, ack) == []
    assert drain_events(core) == []
    assert core.stats["dropped_stray_ack"] == 1


def test_lower_case_transport_is_treated_as_udp() -> None:
    # No Content-Length: over UDP the body is the rest of the datagram (§18.3); over a
    # stream it would be empty.
    data = raw_request("MESSAGE", body=b"hello", content_type="text/plain")
    data = data.replace(b"Content-Length: 5\r\n", b"")
    core = uas(allowed_methods=("MESSAGE",))
    core.receive_datagram(data, PEER_ADDR, 0.0, "udp")
    (event,) = drain_events(core)
    assert isinstance(event, RequestReceived)
    assert event.request.body == b"hello"
    assert event.transport == "UDP"


def test_the_snapshot_copies_counters_transactions_and_dialogs() -> None:
    core = uas()
    event = invite_event(core, raw_request("INVITE"))
    core.accept_dialog(event.transaction)
    snap = core.snapshot()
    assert snap.stats["received_INVITE"] == 1
    assert (snap.transactions, snap.dialogs) == (core.transaction_count, len(core.dialogs))
    assert (snap.transactions, snap.dialogs) == (1, 1)
    core.stats["received_INVITE"] += 1
    assert snap.stats["received_INVITE"] == 1  # a copy, not a view
