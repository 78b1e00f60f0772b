"""What the SIP core tells its user (the transaction user: the B2BUA, a test UAS).

Events are frozen dataclasses named in the past tense; the core hands them out one by
one from ``SipCore.next_event()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .message import Request, Response

if TYPE_CHECKING:
    from .dialog import Dialog
    from .transaction import ClientTransaction, ServerTransaction

Address = tuple[str, int]


@dataclass(frozen=True, eq=False)
class Event:
    pass


@dataclass(frozen=True, eq=False)
class RequestReceived(Event):
    """A new request (not a retransmission, not an ACK, not a CANCEL).

    ``dialog`` is set for an in-dialog request that matched one of ours.  Answer it with
    ``SipCore.respond(transaction, ...)``.
    """

    request: Request
    transaction: ServerTransaction
    dialog: Dialog | None
    source: Address
    transport: str


@dataclass(frozen=True, eq=False)
class AckReceived(Event):
    """The ACK for a 2xx we sent: the dialog is confirmed by the other side."""

    request: Request
    dialog: Dialog


@dataclass(frozen=True, eq=False)
class RequestCancelled(Event):
    """A CANCEL matched a pending INVITE; the core answered 200 to the CANCEL and 487
    to the INVITE."""

    request: Request
    transaction: ServerTransaction


@dataclass(frozen=True, eq=False)
class ResponseReceived(Event):
    """A response to a request we sent (retransmissions of final responses are absorbed;
    2xx retransmissions to INVITE are re-ACKed by the core, not reported)."""

    response: Response
    transaction: ClientTransaction
    dialog: Dialog | None


@dataclass(frozen=True, eq=False)
class TransactionTimedOut(Event):
    """Timer B or F fired (no final response), or a transport error: treat as 408."""

    transaction: ClientTransaction


@dataclass(frozen=True, eq=False)
class AckTimedOut(Event):
    """Our 2xx to an INVITE was never ACKed within 64·T1 (RFC 3261 §13.3.1.4): the TU
    should end the dialog with BYE.  Also raised when Timer H fires for a non-2xx."""

    dialog: Dialog | None
    transaction: ServerTransaction | None


@dataclass(frozen=True, eq=False)
class PrackTimedOut(AckTimedOut):
    """Our reliable 1xx was never PRACKed within 64·T1 (RFC 3262 §3): the core rejected
    the INVITE with a 500; to the TU it is an answer never acknowledged."""


@dataclass(frozen=True, eq=False)
class MessageDropped(Event):
    """Bytes we could not use and did not (or could not) answer; counted, never raised."""

    reason: str
    source: Address
