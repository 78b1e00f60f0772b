"""The TU's map from SIP transactions and dialogs to calls."""

from __future__ import annotations

from proxy.calls.routes import CallRoutes
from proxy.sip.core import CoreSettings, SipCore
from proxy.sip.dialog import Dialog
from proxy.sip.events import RequestReceived
from proxy.sip.transaction import ServerTransaction

from .call_harness import CALLER, Peer, sdp


def incoming(core: SipCore, call_id: str) -> tuple[ServerTransaction, Dialog]:
    peer = Peer(CALLER, "caller", call_id)
    core.receive_datagram(
        peer.request("INVITE", to="<sip:x@127.0.0.1>", body=sdp(4000)), CALLER, 0.0
    )
    event = core.next_event()
    assert isinstance(event, RequestReceived)
    return event.transaction, core.accept_dialog(event.transaction)


def test_a_bound_transaction_and_dialog_route_to_their_call() -> None:
    core = SipCore(CoreSettings(host="127.0.0.1", port=5060))
    routes: CallRoutes[str] = CallRoutes()
    txn, dialog = incoming(core, "r-1")
    other_txn, other_dialog = incoming(core, "r-2")
    routes.bind(txn, "call 1")
    routes.bind(dialog, "call 1")
    assert routes.for_transaction(txn) == "call 1"
    assert routes.for_dialog(dialog) == "call 1"
    assert routes.for_transaction(other_txn) is None
    assert routes.for_dialog(other_dialog) is None
    assert routes.for_dialog(None) is None and routes.for_transaction(None) is None


def test_forgetting_a_call_removes_its_entries_and_no_other() -> None:
    core = SipCore(CoreSettings(host="127.0.0.1", port=5060))
    routes: CallRoutes[str] = CallRoutes()
    txn, dialog = incoming(core, "r-3")
    other_txn, other_dialog = incoming(core, "r-4")
    for what in (txn, dialog):
        routes.bind(what, "call 1")
    for what in (other_txn, other_dialog):
        routes.bind(what, "call 2")
    assert len(routes) == 4
    routes.forget("call 1")
    assert len(routes) == 2
    assert routes.for_dialog(dialog) is None and routes.for_transaction(txn) is None
    assert routes.for_dialog(other_dialog) == "call 2"
    routes.forget("call 2")
    routes.forget("call 2")  # twice: nothing left, no error
    assert len(routes) == 0


def test_a_dialog_taken_over_by_another_call_stays_with_it() -> None:
    core = SipCore(CoreSettings(host="127.0.0.1", port=5060))
    routes: CallRoutes[str] = CallRoutes()
    _, dialog = incoming(core, "r-5")
    routes.bind(dialog, "old call")
    routes.bind(dialog, "new call")
    routes.forget("old call")
    assert routes.for_dialog(dialog) == "new call"


def test_the_sip_cores_objects_carry_no_pointer_back_to_a_call() -> None:
    """The TU keeps its own map: transactions and dialogs have no ``user_data``."""
    core = SipCore(CoreSettings(host="127.0.0.1", port=5060))
    txn, dialog = incoming(core, "r-6")
    assert not hasattr(txn, "user_data") and not hasattr(dialog, "user_data")
