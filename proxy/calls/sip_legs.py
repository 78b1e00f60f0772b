"""The SIP side of one call's two legs: transactions, dialogs and the messages that end
them.

Leg A is the caller's INVITE, answered by us (UAS); leg B is our INVITE to the call
taker (UAC).  This keeps their transactions and dialogs, our in-call offers awaiting an
answer, and the final response leg A gets if the call fails, and knows how to CANCEL,
ACK and BYE.  It binds every transaction and dialog it makes to the call through
``bind`` (the TU's :class:`~proxy.calls.routes.CallRoutes`), so their events come back
to the call; it reads the transaction states so the call flow does not have to.
"""

from __future__ import annotations

from collections.abc import Callable

from ..sip.core import SipCore
from ..sip.dialog import Dialog, DialogState
from ..sip.events import ResponseReceived
from ..sip.message import Request
from ..sip.resolve import Target
from ..sip.transaction import ClientTransaction, ServerTransaction, Transaction, TransactionState
from .offer_answer import LegSdp

Bind = Callable[[Transaction | Dialog], None]
#: The headers of our 2xx to a party's INVITE or UPDATE (a session timer's interval)
Answering = Callable[[Request, Dialog], list[tuple[str, str]]]


class SipLegs:
    """Leg A's and leg B's transactions and dialogs, for one call."""

    def __init__(
        self,
        core: SipCore,
        invite: ServerTransaction,
        *,
        now: Callable[[], float],
        flush: Callable[[], None],
        bind: Bind,
    ) -> None:
        self.core = core
        self.now = now
        self.flush = flush
        self.bind = bind
        self.a_txn = invite
        self.a_dialog: Dialog | None = None
        self.a_answered = False
        self.b_txn: ClientTransaction | None = None
        self.ringing: set[ClientTransaction] = set()  # leg B's forks to an AOR's contacts
        self.abandoned: set[ClientTransaction] = set()  # leg B INVITEs a hunt moved on from
        self.b_dialog: Dialog | None = None
        self.offers: dict[ClientTransaction, LegSdp] = {}  # our re-offers awaiting answers
        self.failure_status = 500  # leg A's final response if the call fails unanswered
        self.failure_headers: tuple[tuple[str, str], ...] = ()  # e.g. a Warning with a 488
        self.failure_reason: str | None = None  # its reason phrase, if not the standard one
        self.answering: Answering = lambda request, dialog: []
        bind(invite)

    def accept_a(self) -> Dialog:
        """Leg A's dialog, made when we answer the caller's INVITE."""
        self.a_dialog = self.core.accept_dialog(self.a_txn)
        self.bind(self.a_dialog)
        return self.a_dialog

    def adopt(self, dialog: Dialog) -> None:
        """A dialog of leg B (early from a 1xx, or confirmed by the 2xx) is this call's."""
        self.bind(dialog)

    def fail(
        self, status: int, headers: tuple[tuple[str, str], ...] = (), reason: str | None = None
    ) -> None:
        """What leg A is told if the call ends before it is answered."""
        self.failure_status = status
        self.failure_headers = headers
        self.failure_reason = reason

    def respond(
        self,
        txn: ServerTransaction,
        status: int,
        *,
        dialog: Dialog | None = None,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
        reliable: bool = False,
    ) -> None:
        """Answer ``txn`` unless it is already answered (e.g. the core sent 487 after a
        CANCEL); an INVITE's responses say what we allow, its and an UPDATE's 2xx the
        session interval (``answering``); ``reliable``: a 1xx sent with PRACK."""
        if txn.state not in (TransactionState.TRYING, TransactionState.PROCEEDING) and not (
            txn.state is TransactionState.ACCEPTED and 200 <= status < 300
        ):
            return
        extra = [
            *(headers or []),
            *([("Allow", self.core.allow)] if txn.method == "INVITE" else []),
        ]
        if dialog is not None and 200 <= status < 300 and txn.method in ("INVITE", "UPDATE"):
            extra += self.answering(txn.request, dialog)
        self.core.respond(
            txn, status, now=self.now(), dialog=dialog, body=body, headers=extra, reliable=reliable
        )
        self.flush()

    def send(
        self,
        request: Request,
        *,
        dialog: Dialog | None = None,
        destination: tuple[str, int] | None = None,
        transport: str | None = None,
        server_name: str | None = None,
    ) -> ClientTransaction:
        """Send a request whose responses the call waits for (to ``destination`` over
        ``transport`` when DNS chose them; over TLS the peer's certificate must match
        ``server_name``, the domain resolved, when given)."""
        txn = self.core.send_request(
            request,
            self.now(),
            dialog=dialog,
            destination=destination,
            transport=transport,
            server_name=server_name,
        )
        self.bind(txn)
        self.flush()
        return txn

    def invite_b(
        self,
        invite: Request,
        *,
        target: Target | None = None,
    ) -> ClientTransaction:
        """Leg B's INVITE, to ``target`` when DNS chose it (over TLS, its certificate
        must match the name resolved, RFC 5922 §7.2), else to its Request-URI."""
        self.b_txn = self._invite(invite, target)
        return self.b_txn

    def fork_b(self, invite: Request, *, target: Target) -> ClientTransaction:
        """One of leg B's parallel INVITEs (to an AOR's registered contacts): it rings
        beside the others until :meth:`won_b`, :meth:`dropped_b` or :meth:`abandon_b`;
        ``b_txn`` stays None meanwhile."""
        txn = self._invite(invite, target)
        self.ringing.add(txn)
        return txn

    def won_b(self, txn: ClientTransaction) -> None:
        """``txn``, one of the forks, got the 2xx: it is leg B's INVITE (``b_txn``); the
        others are CANCELled, and a 2xx that crosses the CANCEL is ACKed and ended."""
        self.ringing.discard(txn)
        self.abandon_b()
        self.b_txn = txn

    def dropped_b(self, txn: ClientTransaction) -> None:
        """A fork ended unanswered (a final refusal, or Timer B): known, no longer ringing."""
        self.ringing.discard(txn)
        self.abandoned.add(txn)

    def _invite(self, invite: Request, target: Target | None) -> ClientTransaction:
        if target is None:
            return self.send(invite)
        return self.send(
            invite,
            destination=(target.host, target.port),
            transport=target.transport,
            server_name=target.server_name,
        )

    def abandon_b(self) -> None:
        """The hunt moves on from leg B's INVITE (or all its forks): CANCEL it; a late
        2xx is ACKed and ended (``is_b_invite`` still knows it)."""
        self.cancel_b()
        if self.b_txn is not None:
            self.abandoned.add(self.b_txn)
            self.b_txn = None
        self.abandoned |= self.ringing
        self.ringing.clear()

    def is_b_invite(self, transaction: Transaction) -> bool:
        return (
            transaction is self.b_txn
            or transaction in self.ringing
            or transaction in self.abandoned
        )

    def ack(self, event: ResponseReceived) -> None:
        """ACK a 2xx to one of our INVITEs."""
        dialog = event.dialog
        assert dialog is not None
        self.core.send_ack(dialog, dialog.create_ack(event.response.cseq.number), self.now())
        self.flush()

    def cancel_b(self) -> None:
        """CANCEL our INVITE to the call taker (every fork still ringing) while it can
        still be cancelled."""
        for txn in (self.b_txn, *self.ringing):
            if txn is not None:
                self.cancel(txn)

    def cancel(self, invite: ClientTransaction) -> None:
        """CANCEL one of our INVITEs (the call taker's, a transfer target's) while it
        can still be cancelled."""
        if invite.state in (TransactionState.CALLING, TransactionState.PROCEEDING):
            self.core.cancel(invite, self.now())
            self.flush()

    def ack_and_bye(self, event: ResponseReceived) -> None:
        """A second 2xx to leg B's INVITE (forked, or after we gave up): ACK and end it."""
        dialog = event.dialog
        assert dialog is not None
        self.bind(dialog)
        self.ack(event)
        self._bye(dialog)
        self.flush()

    def end_b(self) -> None:
        """End leg B: BYE once confirmed, else CANCEL."""
        if self.b_dialog is not None and self.b_dialog.state is DialogState.CONFIRMED:
            self._bye(self.b_dialog)
        elif self.b_txn is not None or self.ringing:
            self.cancel_b()

    def end_a(self) -> None:
        """End leg A: BYE once answered, else its final failure response."""
        if self.a_answered:
            if self.a_dialog is not None and self.a_dialog.state is DialogState.CONFIRMED:
                self._bye(self.a_dialog)
            return
        if self.a_txn.state is TransactionState.PROCEEDING:
            status = self.failure_status if self.failure_status >= 300 else 500
            self.core.respond(
                self.a_txn,
                status,
                self.failure_reason if status == self.failure_status else None,
                now=self.now(),
                dialog=self.a_dialog,
                headers=self.failure_headers,
            )

    def hung_up(self, dialog: Dialog | None) -> None:
        """The party of ``dialog`` sent BYE: that dialog is over."""
        if dialog is not None:
            dialog.state = DialogState.TERMINATED

    def bye(self, dialog: Dialog) -> None:
        """End one dialog (the first call taker's after a transfer)."""
        self._bye(dialog)
        self.flush()

    def _bye(self, dialog: Dialog) -> None:
        """A BYE whose answer nobody waits for: the call is over (not bound)."""
        self.core.send_request(dialog.create_request("BYE"), self.now(), dialog=dialog)

    def notify(self, request: Request, dialog: Dialog) -> None:
        """A NOTIFY of a transfer's progress; its answer changes nothing (not bound)."""
        self.core.send_request(request, self.now(), dialog=dialog)
        self.flush()
