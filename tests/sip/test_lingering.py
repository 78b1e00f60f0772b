"""Finished transactions wait as bytes and keys (lingering.py), not as parsed messages.

Each test lets the TU drop its transaction once the final response is out and checks
that the RFC 3261 wait still answers the peer's retransmissions exactly as before:
byte-identical replies, absorbed copies, the timer at its RFC time, nothing left after
it.  Where no disarmed timer of the transaction is left in the heap, its weak reference
dies at once; the stale entries of disarmed timers (A, B, E, F, G, H) go at the heap's
next compaction, shown at scale in the last test.
"""

from __future__ import annotations

import gc
import weakref

from proxy.sip.core import CoreSettings, SipCore
from proxy.sip.dialog import build_request
from proxy.sip.events import RequestReceived, ResponseReceived
from proxy.sip.message import Request, parse_message
from proxy.sip.transaction import ClientTransaction, TransactionState
from proxy.sip.uri import parse_uri
from tests.sip.sipcore_helpers import PEER_ADDR, answer, drain_events, raw_request
from tests.sip.test_transaction import feed, sent_times, server_with, start_client, tick_until

S = TransactionState


def released(ref: weakref.ref[object]) -> bool:
    gc.collect()
    return ref() is None


def test_non_invite_server_answers_retransmissions_from_bytes_until_timer_j() -> None:
    bye = raw_request("BYE")
    core, event = server_with(bye)
    core.respond(event.transaction, 200, now=1.0)
    (ok,) = core.datagrams_to_send()
    ref = weakref.ref(event.transaction)
    del event
    assert released(ref)  # the wait keeps no parsed request or response
    assert [o.data for o in feed(core, bye, 10.0)] == [ok.data]  # §17.2.2, byte-identical
    assert [o.destination for o in feed(core, bye, 20.0)] == [PEER_ADDR]
    assert core.stats["retransmissions_absorbed"] == 2
    assert core.stats["sent_2xx"] == 3
    assert drain_events(core) == []
    assert core.transaction_count == 1
    ticks = tick_until(core)
    assert [t.time for t in ticks] == [33.0]  # Timer J = 64·T1 after the final response
    assert core.transaction_count == 0
    # after Timer J the same request is a new transaction for the TU
    feed(core, bye, 40.0)
    (again,) = drain_events(core)
    assert isinstance(again, RequestReceived)


def test_invite_server_non_2xx_resends_until_ack_then_absorbs_acks_until_timer_i() -> None:
    invite = raw_request("INVITE")
    core, event = server_with(invite)
    txn = event.transaction
    core.datagrams_to_send()
    response = core.respond(txn, 486, now=0.0)
    (busy,) = core.datagrams_to_send()
    # §17.2.1: the 486 goes again for each INVITE copy and on Timer G, until the ACK
    assert [o.data for o in feed(core, invite, 0.2)] == [busy.data]
    assert sent_times(tick_until(core, 0.5)) == [0.5]
    ack = raw_request("ACK", to=f"<sip:bob@127.0.0.2>;tag={response.to.tag}", contact=None)
    assert feed(core, ack, 1.0) == []
    assert txn.state is S.CONFIRMED
    del event, txn
    assert feed(core, ack, 2.0) == []  # ACK copies and the INVITE absorbed in Confirmed
    assert feed(core, invite, 2.5) == []
    assert drain_events(core) == []
    assert [t.time for t in tick_until(core)] == [6.0]  # Timer I = T4 after the ACK
    assert core.transaction_count == 0


def test_invite_server_accepted_absorbs_the_invite_and_answers_a_late_cancel() -> None:
    invite = raw_request("INVITE")
    core, event = server_with(invite)
    response = core.respond(event.transaction, 200, now=0.0)
    core.datagrams_to_send()
    ref = weakref.ref(event.transaction)
    del event
    assert released(ref)
    assert feed(core, invite, 1.0) == []  # RFC 6026 §7.1: absorbed, the 2xx is the TU's
    (ok,) = feed(core, raw_request("CANCEL"), 2.0)
    cancel_ok = parse_message(ok.data)
    assert not isinstance(cancel_ok, Request) and cancel_ok.status == 200
    assert cancel_ok.to.tag == response.to.tag  # the INVITE's To tag, kept by key
    assert drain_events(core) == []  # a CANCEL after the final response ends nothing
    ticks = tick_until(core)
    assert 32.0 in [t.time for t in ticks]  # Timer L = 64·T1
    assert core.transaction_count == 0


def test_invite_client_resends_the_same_ack_for_each_non_2xx_copy_until_timer_d() -> None:
    core = SipCore(CoreSettings(host="127.0.0.1", port=5060))
    txn, invite = start_client(core)
    (ack,) = feed(core, answer(invite, 486), 1.0)
    drain_events(core)
    del txn
    assert [o.data for o in feed(core, answer(invite, 486), 2.0)] == [ack.data]  # §17.1.1.2
    assert [o.data for o in feed(core, answer(invite, 486), 3.0)] == [ack.data]
    assert core.stats["retransmissions_absorbed"] == 2
    assert core.stats["sent_ACK"] == 3
    assert drain_events(core) == []
    assert [t.time for t in tick_until(core)] == [33.0]  # Timer D = 32 s
    assert core.transaction_count == 0


def test_non_invite_client_absorbs_response_copies_until_timer_k() -> None:
    core = SipCore(CoreSettings(host="127.0.0.1", port=5060))
    txn, bye = start_client(core, "BYE")
    assert feed(core, answer(bye, 200), 1.0) == []
    (event,) = drain_events(core)
    assert isinstance(event, ResponseReceived)
    del txn, event
    assert feed(core, answer(bye, 200), 2.0) == []
    assert drain_events(core) == []
    assert core.stats["retransmissions_absorbed"] == 1
    assert [t.time for t in tick_until(core)] == [6.0]  # Timer K = T4
    assert core.transaction_count == 0


def test_invite_client_accepted_passes_a_fork_to_the_transaction_the_tu_holds() -> None:
    core = SipCore(CoreSettings(host="127.0.0.1", port=5060))
    txn, invite = start_client(core)
    feed(core, answer(invite, 200, to_tag="first"), 1.0)
    (first,) = drain_events(core)
    assert isinstance(first, ResponseReceived) and first.dialog is not None
    feed(core, answer(invite, 200, to_tag="fork"), 2.0)
    (fork,) = drain_events(core)
    assert isinstance(fork, ResponseReceived)
    assert fork.transaction is txn  # the TU finds its call by the transaction
    assert fork.dialog is not None and fork.dialog.remote_tag == "fork"
    assert txn.state is S.ACCEPTED
    tick_until(core)
    assert txn.state is S.TERMINATED  # Timer M ends the transaction the TU holds


def test_invite_client_accepted_re_acks_a_2xx_copy_after_the_tu_let_go() -> None:
    core = SipCore(CoreSettings(host="127.0.0.1", port=5060))
    txn, invite = start_client(core)
    feed(core, answer(invite, 200), 1.0)
    (event,) = drain_events(core)
    assert isinstance(event, ResponseReceived) and event.dialog is not None
    dialog = event.dialog
    ack = dialog.create_ack(event.response.cseq.number)
    core.send_ack(dialog, ack, 1.0)
    (sent_ack,) = core.datagrams_to_send()
    del txn, event
    # RFC 6026 §7.2 / §13.2.2.4: a copy of the 2xx gets the same ACK again
    assert [o.data for o in feed(core, answer(invite, 200), 2.0)] == [sent_ack.data]
    assert drain_events(core) == []
    assert [t.time for t in tick_until(core)] == [33.0]  # Timer M = 64·T1
    assert core.transaction_count == 0


def test_timer_heap_lets_go_of_transactions_whose_timers_were_disarmed() -> None:
    """Timer F (32 s) is disarmed by a final response; its heap entry must not keep the
    transaction for 32 s (the stale entries are compacted away)."""
    core = SipCore(CoreSettings(host="127.0.0.1", port=5060))
    refs: list[weakref.ref[ClientTransaction]] = []
    for n in range(2000):
        request = build_request(
            "OPTIONS",
            parse_uri("sip:bob@192.0.2.10:5070"),
            from_="<sip:alice@127.0.0.1>",
            to="<sip:bob@192.0.2.10:5070>",
            contact=core.default_contact("alice"),
            local_host="127.0.0.1",
        )
        txn = core.send_request(request, n * 0.001)
        (sent,) = core.datagrams_to_send()
        feed(core, answer(sent.data, 200), n * 0.001)
        drain_events(core)
        refs.append(weakref.ref(txn))
    del txn
    gc.collect()
    assert sum(ref() is not None for ref in refs) < 1000
    assert core.transaction_count == 2000  # all still waiting out Timer K
    assert [t.time for t in tick_until(core, 100.0)][-1] < 7.0
    assert core.transaction_count == 0
