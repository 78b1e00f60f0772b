"""Which call a SIP transaction or dialog belongs to: the transaction user's own map.

The SIP core knows nothing of calls (it is a sans-IO protocol core), so the B2BUA keeps
this map instead of hanging back-pointers on the core's objects.  A call binds its
transactions and dialogs as it makes or accepts them, and the whole call is forgotten
when it ends, so the map holds exactly the calls in progress (no leak after N calls).
"""

from __future__ import annotations

from typing import Generic, TypeVar

from ..sip.dialog import Dialog, DialogId
from ..sip.transaction import Transaction

C = TypeVar("C")


class CallRoutes(Generic[C]):
    """Transaction → call and dialog id → call, with what each call bound."""

    def __init__(self) -> None:
        self._transactions: dict[Transaction, C] = {}
        self._dialogs: dict[DialogId, C] = {}
        self._bound: dict[C, tuple[set[Transaction], set[DialogId]]] = {}

    def bind(self, what: Transaction | Dialog, call: C) -> None:
        """Route ``what``'s events to ``call`` from now on."""
        transactions, dialogs = self._bound.setdefault(call, (set(), set()))
        if isinstance(what, Dialog):
            self._dialogs[what.id] = call
            dialogs.add(what.id)
        else:
            self._transactions[what] = call
            transactions.add(what)

    def for_transaction(self, transaction: Transaction | None) -> C | None:
        return self._transactions.get(transaction) if transaction is not None else None

    def for_dialog(self, dialog: Dialog | None) -> C | None:
        return self._dialogs.get(dialog.id) if dialog is not None else None

    def forget(self, call: C) -> None:
        """The call ended: nothing routes to it any more."""
        transactions, dialogs = self._bound.pop(call, (set(), set()))
        for transaction in transactions:
            if self._transactions.get(transaction) is call:
                del self._transactions[transaction]
        for dialog_id in dialogs:
            if self._dialogs.get(dialog_id) is call:
                del self._dialogs[dialog_id]

    def __len__(self) -> int:
        """Entries held: transactions plus dialogs (0 when no call is in progress)."""
        return len(self._transactions) + len(self._dialogs)
