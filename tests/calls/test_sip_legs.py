"""The SIP side of a call's two legs against a real sans-IO SIP core: what goes out,
what is bound to the call, and what a leg is told when the call ends."""

from __future__ import annotations

from proxy.calls.sip_legs import SipLegs
from proxy.sip.core import CoreSettings, SipCore
from proxy.sip.dialog import Dialog, build_request
from proxy.sip.events import RequestReceived
from proxy.sip.message import Request, Response, parse_message
from proxy.sip.transaction import Transaction
from proxy.sip.uri import parse_uri

from .call_harness import CALLER, TAKER, Peer, sdp


class Legs:
    def __init__(self) -> None:
        self.core = SipCore(CoreSettings(host="127.0.0.1", port=5060))
        self.caller = Peer(CALLER, "caller", "legs-1")
        invite = self.caller.request("INVITE", to="<sip:x@127.0.0.1>", body=sdp(4000))
        self.core.receive_datagram(invite, CALLER, 0.0)
        event = self.core.next_event()
        assert isinstance(event, RequestReceived)
        self.bound: list[Transaction | Dialog] = []
        self.sip = SipLegs(
            self.core, event.transaction, now=lambda: 0.0, flush=lambda: None,
            bind=self.bound.append,
        )  # fmt: skip

    def out(self) -> list[Request | Response]:
        return [parse_message(o.data) for o in self.core.datagrams_to_send()]


def statuses(messages: list[Request | Response]) -> list[int]:
    return [m.status for m in messages if isinstance(m, Response)]


def test_the_callers_invite_and_dialog_are_bound_to_the_call() -> None:
    legs = Legs()
    assert legs.bound == [legs.sip.a_txn]
    dialog = legs.sip.accept_a()
    assert legs.bound[-1] is dialog and legs.sip.a_dialog is dialog


def test_an_unanswered_caller_gets_the_failure_status_with_its_headers() -> None:
    legs = Legs()
    legs.out()
    legs.sip.fail(488, (("Warning", '305 recproxy "bad address"'),))
    legs.sip.end_a()
    (final,) = legs.out()
    assert isinstance(final, Response) and final.status == 488
    assert final.headers.get("warning") == '305 recproxy "bad address"'


def test_a_transaction_already_answered_is_not_answered_again() -> None:
    legs = Legs()
    legs.out()
    legs.sip.respond(legs.sip.a_txn, 486)
    legs.sip.respond(legs.sip.a_txn, 500)
    assert statuses(legs.out()) == [486]
    legs.sip.end_a()  # the call is over: nothing more to say
    assert legs.out() == []


def test_an_answer_to_an_invite_says_what_we_allow() -> None:
    legs = Legs()
    legs.out()
    legs.sip.respond(legs.sip.a_txn, 180, dialog=legs.sip.accept_a())
    (ringing,) = legs.out()
    assert isinstance(ringing, Response) and ringing.headers.get("allow") == legs.core.allow


def test_leg_b_is_cancelled_before_an_answer_and_its_invite_bound() -> None:
    legs = Legs()
    legs.out()
    target = parse_uri(f"sip:taker@{TAKER[0]}:{TAKER[1]}")
    invite = build_request(
        "INVITE", target, from_="<sip:caller@127.0.0.1>", to=f"<{target}>",
        contact=legs.core.default_contact(), local_host="127.0.0.1", body=sdp(5000),
    )  # fmt: skip
    txn = legs.sip.invite_b(invite)
    assert legs.bound[-1] is txn and legs.sip.is_b_invite(txn)
    (sent,) = legs.out()
    assert isinstance(sent, Request) and sent.method == "INVITE"
    taker = Peer(TAKER, "taker", sent.call_id)
    legs.core.receive_datagram(taker.answer(sent, 180), TAKER, 0.1)
    legs.sip.end_b()
    assert [m.method for m in legs.out() if isinstance(m, Request)] == ["CANCEL"]
