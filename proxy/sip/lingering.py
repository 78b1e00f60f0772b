"""A finished transaction's wait, kept as wire bytes and keys.

Once a transaction has its final response it only waits: for the peer's retransmissions,
to answer or absorb them, until Timer D, I, J, K, L or M (RFC 3261 §17, RFC 6026) ends it
— up to 32 s over UDP.  Kept whole for that time, at 20 calls/s every call's parsed
INVITE, BYE and their responses (and, through the TU, the call's objects) stayed alive for
32 s after the call: ~250 objects per call that every full collection walked.  The core
therefore swaps a waiting transaction, in its tables and its timer heap, for one of these
records, which hold only what the wait needs: the matching key, the bytes to send again
(our last response, or our ACK to a non-2xx), and the keys to clean up at the end.  The
TU may still hold the transaction itself; it is reached through a weak reference, only to
mark it terminated at the end and, for an INVITE client in Accepted, to pass a forked 2xx
up while its call lives.  Pure: no clock, no socket.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from .events import Address
from .transaction import (
    ClientTransaction,
    ServerKey,
    ServerTransaction,
    Transaction,
    TransactionState,
)

MergeKey = tuple[str, str, int, str]


class Lingering:
    """The part both sides share: the state waited in, the one timer, the weak link to
    the transaction and the end.  ``ended`` is the core's clean-up, called once."""

    __slots__ = ("_ended", "_transaction", "deadline", "method", "state", "timer")

    def __init__(
        self,
        transaction: Transaction,
        timer: str,
        deadline: float,
        ended: Callable[[Lingering], None],
    ) -> None:
        self.state = transaction.state
        self.method = transaction.method
        self.timer = timer
        self.deadline = deadline
        self._transaction = weakref.ref(transaction)
        self._ended = ended

    def is_live(self, name: str, deadline: float) -> bool:
        return self.timer == name and self.deadline == deadline

    def fire(self, name: str, deadline: float, now: float) -> None:
        """The wait's timer: the transaction ends (stale firings are ignored)."""
        if not self.is_live(name, deadline):
            return
        self.deadline = -1.0
        self.state = TransactionState.TERMINATED
        transaction = self._transaction()
        if transaction is not None:
            transaction.state = TransactionState.TERMINATED
        self._ended(self)


class ServerLingering(Lingering):
    """A server transaction in Completed (non-INVITE: Timer J), Confirmed (Timer I) or
    Accepted (Timer L): a retransmitted request gets ``reply`` again, if any."""

    __slots__ = ("destination", "key", "merge_key", "reply", "reply_kind", "transport")

    def __init__(
        self,
        transaction: ServerTransaction,
        timer: str,
        deadline: float,
        ended: Callable[[Lingering], None],
    ) -> None:
        super().__init__(transaction, timer, deadline, ended)
        self.key: ServerKey = transaction.key
        request = transaction.request
        self.merge_key: MergeKey = (
            request.from_.tag or "",
            request.call_id,
            request.cseq.number,
            request.method,
        )
        self.destination: Address = transaction.response_destination
        self.transport = transaction.transport
        last = transaction.last_response
        # Only a non-INVITE transaction resends its final response to a retransmitted
        # request here (§17.2.2); Accepted and Confirmed absorb it (RFC 6026 §7.1, §17.2.1).
        resend = last is not None and self.state is TransactionState.COMPLETED
        self.reply: bytes | None = last.serialize() if resend and last is not None else None
        self.reply_kind = f"{last.status // 100}xx" if last is not None else ""


class ClientLingering(Lingering):
    """A client transaction in Completed (INVITE: Timer D, non-INVITE: Timer K) or
    Accepted (Timer M).  ``ack``: our ACK to the non-2xx, sent again for each copy of it.
    ``invite_ids``: the INVITE's Call-ID and From tag, whose early dialogs end with it."""

    __slots__ = ("ack", "destination", "invite_ids", "key", "server_name", "transport")

    def __init__(
        self,
        transaction: ClientTransaction,
        timer: str,
        deadline: float,
        ended: Callable[[Lingering], None],
    ) -> None:
        super().__init__(transaction, timer, deadline, ended)
        self.key = transaction.key
        self.destination: Address = transaction.destination
        self.transport = transaction.transport
        self.server_name = transaction.server_name
        ack = transaction.ack
        self.ack: bytes | None = ack.serialize() if ack is not None else None
        request = transaction.request
        self.invite_ids: tuple[str, str] | None = (
            (request.call_id, request.from_.tag or "") if transaction.is_invite else None
        )

    def accepted(self) -> ClientTransaction | None:
        """The INVITE transaction, in Accepted, while its TU still holds it: a 2xx goes to
        it as before (a fork's 2xx makes a new dialog for the TU)."""
        transaction = self._transaction()
        if self.state is TransactionState.ACCEPTED and isinstance(transaction, ClientTransaction):
            return transaction
        return None
