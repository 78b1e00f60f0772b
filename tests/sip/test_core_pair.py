"""Two cores, a UAC and a UAS, wired together without sockets (aioquic's ``transfer``).

Whole calls (INVITE/200/ACK/BYE, CANCEL, a busy callee, a re-INVITE) run on a fake
clock that only moves to the next timer when nothing is in flight, first without loss,
then with deterministic losses (the first INVITE, the 200, the ACK, the BYE …) and with
seeded random 30 % loss.  Each run ends with every timer spent and nothing left behind:
``core.dialogs == []`` and ``core.transaction_count == 0`` on both sides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from proxy.sip.core import CoreSettings, SipCore
from proxy.sip.dialog import Dialog, DialogState, build_request
from proxy.sip.events import (
    AckReceived,
    AckTimedOut,
    Event,
    RequestCancelled,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from proxy.sip.message import Request
from proxy.sip.transaction import ClientTransaction, TransactionState
from proxy.sip.uri import parse_uri
from tests.sip.sipcore_helpers import (
    UAC_ADDR,
    UAS_ADDR,
    DropFirst,
    DropRule,
    Network,
    RandomLoss,
    run,
)

OFFER = b"v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"
ANSWER = b"v=0\r\no=bob 1 1 IN IP4 127.0.0.2\r\ns=-\r\n"
REOFFER = b"v=0\r\no=alice 1 2 IN IP4 127.0.0.1\r\ns=hold\r\n"
REANSWER = b"v=0\r\no=bob 1 2 IN IP4 127.0.0.2\r\ns=hold\r\n"


@dataclass
class Uac:
    """A calling TU: ACKs every 2xx it is shown, cancels on the first 1xx if asked (any
    1xx: a lost 180 is never retransmitted, and waiting for it would ring forever)."""

    core: SipCore
    cancel_on_ringing: bool = False
    invite: ClientTransaction | None = None
    dialog: Dialog | None = None
    responses: list[tuple[str, int]] = field(default_factory=list)
    timeouts: list[TransactionTimedOut] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    cancelled: bool = False
    now: Callable[[], float] = lambda: 0.0

    def call(self) -> None:
        request = build_request(
            "INVITE",
            parse_uri("sip:bob@127.0.0.2"),
            from_='"Alice" <sip:alice@127.0.0.1>',
            to="<sip:bob@127.0.0.2>",
            contact=self.core.default_contact("alice"),
            local_host="127.0.0.1",
            body=OFFER,
        )
        self.invite = self.core.send_request(request, self.now())

    def send_in_dialog(self, method: str, body: bytes = b"") -> Request:
        assert self.dialog is not None
        request = self.dialog.create_request(method, body=body)
        self.core.send_request(request, self.now(), dialog=self.dialog)
        return request

    def __call__(self, event: Event) -> None:
        if isinstance(event, ResponseReceived):
            response = event.response
            self.responses.append((response.cseq.method, response.status))
            if response.cseq.method == "INVITE":
                if event.dialog is not None:
                    self.dialog = event.dialog
                if 200 <= response.status < 300:
                    assert event.dialog is not None
                    ack = event.dialog.create_ack(response.cseq.number)
                    self.core.send_ack(event.dialog, ack, self.now())
                elif (
                    response.status < 200
                    and self.cancel_on_ringing
                    and not self.cancelled
                    and self.invite is not None
                ):
                    self.cancelled = True
                    self.core.cancel(self.invite, self.now())
        elif isinstance(event, TransactionTimedOut):
            self.timeouts.append(event)
        elif isinstance(event, RequestReceived):
            self.requests.append(event.request)
            self.core.respond(event.transaction, 200, now=self.now(), dialog=event.dialog)
        else:
            raise AssertionError(f"UAC did not expect {event}")


@dataclass
class Uas:
    """A called TU: rings, then answers ``answer`` (None: keeps ringing)."""

    core: SipCore
    answer: int | None = 200
    dialog: Dialog | None = None
    requests: list[Request] = field(default_factory=list)
    acks: list[Request] = field(default_factory=list)
    cancelled: list[RequestCancelled] = field(default_factory=list)
    ack_timeouts: list[AckTimedOut] = field(default_factory=list)
    responses: list[tuple[str, int]] = field(default_factory=list)
    now: Callable[[], float] = lambda: 0.0

    def __call__(self, event: Event) -> None:
        now = self.now()
        if isinstance(event, RequestReceived):
            request = event.request
            self.requests.append(request)
            if request.method == "INVITE" and event.dialog is None:
                self.dialog = self.core.accept_dialog(event.transaction)
                self.core.respond(event.transaction, 180, now=now, dialog=self.dialog)
                if self.answer is not None:
                    body = ANSWER if self.answer < 300 else b""
                    self.core.respond(
                        event.transaction, self.answer, now=now, dialog=self.dialog, body=body
                    )
            elif request.method == "INVITE":
                assert event.dialog is self.dialog
                self.core.respond(
                    event.transaction, 200, now=now, dialog=event.dialog, body=REANSWER
                )
            else:
                assert event.dialog is self.dialog
                self.core.respond(event.transaction, 200, now=now, dialog=event.dialog)
        elif isinstance(event, AckReceived):
            assert event.dialog is self.dialog
            self.acks.append(event.request)
        elif isinstance(event, RequestCancelled):
            self.cancelled.append(event)
        elif isinstance(event, AckTimedOut):
            self.ack_timeouts.append(event)
        elif isinstance(event, ResponseReceived):
            assert event.dialog is self.dialog
            self.responses.append((event.response.cseq.method, event.response.status))
        else:
            raise AssertionError(f"UAS did not expect {event}")


@dataclass
class Call:
    net: Network
    uac: Uac
    uas: Uas

    def run(self, until: Callable[[], bool] | None = None) -> None:
        run(self.net, {self.uac.core: self.uac, self.uas.core: self.uas}, until=until)

    def assert_all_gone(self) -> None:
        """Every timer has run: no dialog and no transaction left on either side."""
        self.run()
        for core in (self.uac.core, self.uas.core):
            assert core.get_timer() is None
            assert core.dialogs == []
            assert core.transaction_count == 0


def make_call(
    drop: DropRule | None = None, *, answer: int | None = 200, cancel: bool = False
) -> Call:
    net = Network(drop=drop) if drop is not None else Network()
    uac_core = net.add(SipCore(CoreSettings(host="127.0.0.1")), UAC_ADDR)
    uas_core = net.add(SipCore(CoreSettings(host="127.0.0.2")), UAS_ADDR)
    uac = Uac(uac_core, cancel_on_ringing=cancel, now=lambda: net.now)
    uas = Uas(uas_core, answer=answer, now=lambda: net.now)
    return Call(net, uac, uas)


# ---------------------------------------------------------------------------------------
# Loss patterns


def request(method: str) -> DropRule:
    return lambda p: p.is_request(method)


def response(status: int, method: str) -> DropRule:
    return lambda p: p.is_response(status, method)


def a_call_is_up(call: Call) -> Callable[[], bool]:
    return lambda: bool(call.uas.acks) and ("INVITE", 200) in call.uac.responses


def hang_up(call: Call) -> None:
    call.uac.send_in_dialog("BYE")
    call.run(until=lambda: ("BYE", 200) in call.uac.responses or bool(call.uac.timeouts))


# ---------------------------------------------------------------------------------------
# INVITE / 200 / ACK / BYE


def test_basic_call_without_loss() -> None:
    call = make_call()
    call.uac.call()
    call.run(until=a_call_is_up(call))
    net = call.net
    assert net.now == 0.0  # nothing was lost: no timer had to fire
    lines = [p.first_line.split(" SIP/2.0")[0] for p in net.log]
    assert lines == [
        "INVITE sip:bob@127.0.0.2",
        "SIP/2.0 100 Trying",
        "SIP/2.0 180 Ringing",
        "SIP/2.0 200 OK",
        "ACK sip:127.0.0.2:5060",
    ]
    uac_dialog, uas_dialog = call.uac.dialog, call.uas.dialog
    assert uac_dialog is not None and uas_dialog is not None
    assert uac_dialog.state is uas_dialog.state is DialogState.CONFIRMED
    assert uac_dialog.id == (uas_dialog.call_id, uas_dialog.remote_tag, uas_dialog.local_tag)
    assert call.uas.requests[0].body == OFFER
    assert call.uac.responses == [("INVITE", 100), ("INVITE", 180), ("INVITE", 200)]
    hang_up(call)
    assert call.uac.responses[-1] == ("BYE", 200)
    assert uac_dialog.state is uas_dialog.state is DialogState.TERMINATED
    assert [r.method for r in call.uas.requests] == ["INVITE", "BYE"]
    assert call.uas.requests[1].cseq.number == 2
    call.assert_all_gone()
    assert call.uas.ack_timeouts == [] and call.uac.timeouts == []
    # The BYE transaction and the INVITE ones ended on their timers, not before.
    assert call.net.now == 32.0


@pytest.mark.parametrize(
    ("rule", "first_delivery"),
    [
        # what is lost                         when the retransmission gets through
        (request("INVITE"), 0.5),  # Timer A
        (response(100, "INVITE"), None),
        (response(180, "INVITE"), None),
        (response(200, "INVITE"), 0.5),  # the UAS core's 2xx retransmission
        (request("ACK"), 0.5),  # 2xx again, re-ACKed by the UAC core
        (request("BYE"), 0.5),  # Timer E
        (response(200, "BYE"), 0.5),  # BYE again, the 200 again
    ],
    ids=["INVITE", "100", "180", "200-INVITE", "ACK", "BYE", "200-BYE"],
)
def test_basic_call_survives_one_loss(rule: DropRule, first_delivery: float | None) -> None:
    dropper = DropFirst(rule)
    call = make_call(dropper)
    call.uac.call()
    call.run(until=a_call_is_up(call))
    hang_up(call)
    assert dropper.dropped == 1
    assert call.uac.responses.count(("INVITE", 200)) == 1  # never a 2xx twice to the TU
    assert call.uac.responses[-1] == ("BYE", 200)
    assert len(call.uas.acks) == 1
    assert [r.method for r in call.uas.requests] == ["INVITE", "BYE"]  # each seen once
    if first_delivery is not None:
        lost = next(p for p in call.net.log if p.dropped)
        again = [
            p
            for p in call.net.log
            if not p.dropped
            and p.first_line == lost.first_line
            and p.source == lost.source
            and p.message.cseq == lost.message.cseq
        ]
        assert again[0].time == lost.time + first_delivery
    call.assert_all_gone()
    assert call.uas.ack_timeouts == [] and call.uac.timeouts == []


def test_lost_acks_are_resent_on_each_2xx_retransmission() -> None:
    dropper = DropFirst(request("ACK"), count=3)
    call = make_call(dropper)
    call.uac.call()
    call.run(until=a_call_is_up(call))
    acks = [p for p in call.net.log if p.is_request("ACK")]
    oks = [p for p in call.net.log if p.is_response(200, "INVITE")]
    assert [p.time for p in oks] == [0.0, 0.5, 1.5, 3.5]
    assert [p.time for p in acks] == [0.0, 0.5, 1.5, 3.5]
    assert len({p.data for p in acks}) == 1  # the same ACK every time
    assert call.uac.responses.count(("INVITE", 200)) == 1
    hang_up(call)
    call.assert_all_gone()


def test_uas_gives_up_when_every_ack_is_lost() -> None:
    call = make_call(request("ACK"))
    call.uac.call()
    call.run(until=lambda: bool(call.uas.ack_timeouts))
    (timeout,) = call.uas.ack_timeouts
    assert call.net.now == 32.0
    assert timeout.dialog is call.uas.dialog
    # The TU ends the call with a BYE, as §13.3.1.4 says.
    uas_dialog = call.uas.dialog
    assert uas_dialog is not None
    bye = uas_dialog.create_request("BYE")
    call.uas.core.send_request(bye, call.net.now, dialog=uas_dialog)
    call.run(until=lambda: any(r.method == "BYE" for r in call.uac.requests))
    assert call.uac.dialog is not None and call.uac.dialog.state is DialogState.TERMINATED
    call.assert_all_gone()


def test_bye_that_times_out_still_ends_the_dialog() -> None:
    call = make_call()
    call.uac.call()
    call.run(until=a_call_is_up(call))
    call.net.drop = request("BYE")  # the callee is gone
    hang_up(call)
    (timeout,) = call.uac.timeouts
    assert timeout.transaction.method == "BYE"
    assert call.uac.dialog is not None and call.uac.dialog.state is DialogState.TERMINATED
    assert call.uac.core.dialogs == []
    # The UAS still believes in its dialog: its TU has to clean up.
    assert call.uas.dialog is not None
    call.uas.core.end_dialog(call.uas.dialog)
    call.assert_all_gone()


# ---------------------------------------------------------------------------------------
# INVITE / CANCEL / 487 / ACK


def cancelled_call(drop: DropRule | None = None) -> Call:
    call = make_call(drop, answer=None, cancel=True)
    call.uac.call()
    call.run(until=lambda: ("INVITE", 487) in call.uac.responses)
    return call


def test_cancel_without_loss() -> None:
    call = cancelled_call()
    lines = [p.first_line.split(" SIP/2.0")[0] for p in call.net.log]
    assert lines == [
        "INVITE sip:bob@127.0.0.2",
        "SIP/2.0 100 Trying",
        "CANCEL sip:bob@127.0.0.2",
        "SIP/2.0 180 Ringing",
        "SIP/2.0 200 OK",
        "SIP/2.0 487 Request Terminated",
        "ACK sip:bob@127.0.0.2",
    ]
    assert ("CANCEL", 200) in call.uac.responses
    assert len(call.uas.cancelled) == 1
    assert call.uas.dialog is not None and call.uas.dialog.state is DialogState.TERMINATED
    assert call.uac.dialog is not None and call.uac.dialog.state is DialogState.TERMINATED
    assert call.uac.invite is not None and call.uac.invite.state is TransactionState.COMPLETED
    call.assert_all_gone()
    assert call.uac.timeouts == [] and call.uas.ack_timeouts == []


@pytest.mark.parametrize(
    "rule",
    [
        request("INVITE"),
        response(100, "INVITE"),
        request("CANCEL"),
        response(200, "CANCEL"),
        response(487, "INVITE"),
        request("ACK"),
    ],
    ids=["INVITE", "100", "CANCEL", "200-CANCEL", "487", "ACK"],
)
def test_cancel_survives_one_loss(rule: DropRule) -> None:
    dropper = DropFirst(rule)
    call = cancelled_call(dropper)
    call.assert_all_gone()
    assert dropper.dropped == 1
    assert call.uac.responses.count(("INVITE", 487)) == 1
    assert call.uac.responses.count(("CANCEL", 200)) == 1
    assert len(call.uas.cancelled) == 1
    assert len([r for r in call.uas.requests if r.method == "INVITE"]) == 1
    assert call.uac.timeouts == [] and call.uas.ack_timeouts == []


def test_lost_ack_for_487_is_resent_on_the_487_retransmission() -> None:
    call = cancelled_call(DropFirst(request("ACK")))
    call.assert_all_gone()
    finals = [p.time for p in call.net.log if p.is_response(487, "INVITE")]
    acks = [p.time for p in call.net.log if p.is_request("ACK")]
    assert finals == acks == [0.0, 0.5]  # Timer G, and the ACK again from the client


# ---------------------------------------------------------------------------------------
# INVITE / 486 / ACK


def test_busy_without_loss() -> None:
    call = make_call(answer=486)
    call.uac.call()
    call.run(until=lambda: ("INVITE", 486) in call.uac.responses)
    assert [p.first_line.split(" SIP/2.0")[0] for p in call.net.log][-2:] == [
        "SIP/2.0 486 Busy Here",
        "ACK sip:bob@127.0.0.2",
    ]
    assert call.uas.acks == []  # the ACK for a non-2xx stays in the transaction
    assert call.uac.dialog is not None and call.uac.dialog.state is DialogState.TERMINATED
    call.assert_all_gone()
    assert call.net.now == 32.0  # Timer D (the UAS's Timer I ended at 5.0)


@pytest.mark.parametrize(
    "rule",
    [request("INVITE"), response(180, "INVITE"), response(486, "INVITE"), request("ACK")],
    ids=["INVITE", "180", "486", "ACK"],
)
def test_busy_survives_one_loss(rule: DropRule) -> None:
    dropper = DropFirst(rule)
    call = make_call(dropper, answer=486)
    call.uac.call()
    call.run(until=lambda: ("INVITE", 486) in call.uac.responses)
    assert dropper.dropped == 1
    call.assert_all_gone()
    assert call.uac.responses.count(("INVITE", 486)) == 1
    assert call.uas.ack_timeouts == []


def test_busy_with_every_ack_lost_ends_on_timer_h() -> None:
    call = make_call(request("ACK"), answer=486)
    call.uac.call()
    call.assert_all_gone()
    (timeout,) = call.uas.ack_timeouts
    assert timeout.dialog is None and timeout.transaction is not None
    busy = [p.time for p in call.net.log if p.is_response(486, "INVITE")]
    assert busy == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]


# ---------------------------------------------------------------------------------------
# re-INVITE


def reinvite(call: Call, new_contact: str | None = None) -> Request:
    dialog = call.uac.dialog
    assert dialog is not None
    if new_contact is not None:
        dialog.local_contact = new_contact
    sent = call.uac.send_in_dialog("INVITE", body=REOFFER)
    call.run(
        until=lambda: len(call.uas.acks) == 2 and call.uac.responses.count(("INVITE", 200)) == 2
    )
    return sent


def test_reinvite_refreshes_targets_and_counts_cseq() -> None:
    call = make_call()
    call.uac.call()
    call.run(until=a_call_is_up(call))
    uac_dialog, uas_dialog = call.uac.dialog, call.uas.dialog
    assert uac_dialog is not None and uas_dialog is not None
    assert str(uas_dialog.remote_target) == "sip:alice@127.0.0.1:5060"
    uas_dialog.local_contact = "<sip:bob@127.0.0.2:5060;transport=udp>"
    sent = reinvite(call, new_contact="<sip:alice@127.0.0.1:5060;ob>")
    assert sent.cseq.number == 2 and sent.cseq.method == "INVITE"
    (received,) = [r for r in call.uas.requests if r.method == "INVITE" and r.to.tag]
    assert received.body == REOFFER and received.cseq.number == 2
    # Remote target refresh on both sides (§12.2).
    assert str(uas_dialog.remote_target) == "sip:alice@127.0.0.1:5060;ob"
    assert str(uac_dialog.remote_target) == "sip:bob@127.0.0.2:5060;transport=udp"
    assert uas_dialog.remote_seq == 2
    assert uac_dialog.local_seq == 2
    assert set(uac_dialog.acks) == {1, 2}
    (ack2,) = [a for a in call.uas.acks if a.cseq.number == 2]
    assert str(ack2.uri) == "sip:bob@127.0.0.2:5060;transport=udp"
    assert uac_dialog.state is uas_dialog.state is DialogState.CONFIRMED
    hang_up(call)
    assert call.uas.requests[-1].method == "BYE" and call.uas.requests[-1].cseq.number == 3
    call.assert_all_gone()


@pytest.mark.parametrize(
    "rule",
    [
        lambda p: p.is_request("INVITE") and b";tag=" in p.data.split(b"\r\nTo:")[1][:80],
        lambda p: p.is_response(200, "INVITE") and p.message.cseq.number == 2,
        lambda p: p.is_request("ACK") and p.message.cseq.number == 2,
    ],
    ids=["re-INVITE", "200-re-INVITE", "ACK-re-INVITE"],
)
def test_reinvite_survives_one_loss(rule: DropRule) -> None:
    dropper = DropFirst(rule)
    call = make_call(dropper)
    call.uac.call()
    call.run(until=a_call_is_up(call))
    reinvite(call)
    assert dropper.dropped == 1
    assert call.uac.responses.count(("INVITE", 200)) == 2
    assert len([r for r in call.uas.requests if r.method == "INVITE"]) == 2
    hang_up(call)
    call.assert_all_gone()
    assert call.uac.timeouts == [] and call.uas.ack_timeouts == []


def test_in_dialog_requests_from_the_callee() -> None:
    call = make_call()
    call.uac.call()
    call.run(until=a_call_is_up(call))
    uas_dialog = call.uas.dialog
    assert uas_dialog is not None
    info = uas_dialog.create_request("INFO")
    assert info.cseq.number == 1  # the UAS's own CSeq space starts afresh
    assert call.uac.dialog is not None
    assert info.to.tag == call.uac.dialog.local_tag
    call.uas.core.send_request(info, call.net.now, dialog=uas_dialog)
    call.run(until=lambda: ("INFO", 200) in call.uas.responses)
    assert call.uac.requests[0].method == "INFO"
    bye = uas_dialog.create_request("BYE")
    call.uas.core.send_request(bye, call.net.now, dialog=uas_dialog)
    call.run(until=lambda: uas_dialog.state is DialogState.TERMINATED)
    assert call.uac.dialog is not None and call.uac.dialog.state is DialogState.TERMINATED
    call.assert_all_gone()


# ---------------------------------------------------------------------------------------
# Seeded random loss


def full_call(drop: DropRule) -> Call:
    call = make_call(drop)
    call.uac.call()
    call.run(until=a_call_is_up(call))
    reinvite(call)
    hang_up(call)
    call.assert_all_gone()
    return call


@pytest.mark.parametrize("seed", range(12))
def test_full_call_with_30_percent_random_loss(seed: int) -> None:
    loss = RandomLoss(seed, 0.3)
    call = full_call(loss)
    assert loss.dropped > 0
    assert call.uac.responses.count(("INVITE", 200)) == 2
    assert call.uac.responses.count(("BYE", 200)) == 1
    assert [r.method for r in call.uas.requests] == ["INVITE", "INVITE", "BYE"]
    assert len(call.uas.acks) == 2
    assert call.uac.timeouts == [] and call.uas.ack_timeouts == []
    for dialog in (call.uac.dialog, call.uas.dialog):
        assert dialog is not None and dialog.state is DialogState.TERMINATED


@pytest.mark.parametrize("seed", range(8))
def test_cancel_with_30_percent_random_loss(seed: int) -> None:
    loss = RandomLoss(100 + seed, 0.3)
    call = cancelled_call(loss)
    call.assert_all_gone()
    assert call.uac.responses.count(("INVITE", 487)) == 1
    assert len(call.uas.cancelled) == 1
    assert call.uac.timeouts == [] and call.uas.ack_timeouts == []


@pytest.mark.parametrize("seed", range(8))
def test_busy_with_30_percent_random_loss(seed: int) -> None:
    loss = RandomLoss(200 + seed, 0.3)
    call = make_call(loss, answer=486)
    call.uac.call()
    call.assert_all_gone()
    assert call.uac.responses.count(("INVITE", 486)) == 1
    assert call.uas.ack_timeouts == []


def test_nat_rport_routes_responses_to_the_mapped_address() -> None:
    """The UAC sits behind a NAT: its packets come from 192.0.2.99:40000, not the
    127.0.0.1:5060 of its Via.  rport/received bring the responses back (RFC 3581)."""
    net = Network()
    uac_core = net.add(SipCore(CoreSettings(host="127.0.0.1")), ("192.0.2.99", 40000))
    uas_core = net.add(SipCore(CoreSettings(host="127.0.0.2")), UAS_ADDR)
    uac = Uac(uac_core, now=lambda: net.now)
    uas = Uas(uas_core, answer=486, now=lambda: net.now)
    call = Call(net, uac, uas)
    uac.call()
    call.run(until=lambda: ("INVITE", 486) in uac.responses)
    responses = [p for p in net.log if p.source == UAS_ADDR]
    assert responses and all(p.destination == ("192.0.2.99", 40000) for p in responses)
    assert net.undeliverable == []
    call.assert_all_gone()
