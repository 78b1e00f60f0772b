"""RFC 3261 §17 transactions (with the RFC 6026 "Accepted" states), driven by ``now``.

Four machines: INVITE client, non-INVITE client, INVITE server, non-INVITE server.  Each
reads messages and timer firings from the core and answers through the small
``TransactionOwner`` interface (transmit, arm a timer, emit an event, forget me).  Nothing
here reads a clock or touches a socket.

Timers (RFC 3261 Table 4), with T1 = 0.5 s, T2 = 4 s, T4 = 5 s by default:

=====  ==========================  ==============================================
timer  value                       meaning
=====  ==========================  ==============================================
A      T1, doubling (UDP only)     INVITE request retransmit
B      64·T1                       INVITE transaction timeout (in Calling only; re-armed
                                   when a CANCEL is sent, §9.1)
D      32 s UDP, 0 TCP             wait for response retransmits (INVITE client)
E      T1, doubling to T2 (UDP)    non-INVITE request retransmit
F      64·T1                       non-INVITE transaction timeout
G      T1, doubling to T2 (UDP)    INVITE final response retransmit
H      64·T1                       wait for ACK receipt
I      T4 UDP, 0 TCP               wait for ACK retransmits
J      64·T1 UDP, 0 TCP            wait for non-INVITE request retransmits
K      T4 UDP, 0 TCP               wait for non-INVITE response retransmits
L, M   64·T1                       RFC 6026: absorb INVITE / 2xx retransmits
=====  ==========================  ==============================================
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Protocol

from .errors import LocalSipError
from .events import AckTimedOut, Address, Event, TransactionTimedOut
from .headers import Headers, canonical_name
from .message import Message, Request, Response


@dataclass(frozen=True)
class TimerSettings:
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_d: float = 32.0

    def __post_init__(self) -> None:
        if not 0 < self.t1 <= self.t2:
            raise ValueError("SIP timers need 0 < T1 <= T2")


class TransactionState(enum.Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"  # RFC 6026
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class TransactionOwner(Protocol):
    """What a transaction needs from the core that owns it."""

    def transmit(
        self,
        message: Message,
        destination: Address,
        transport: str,
        server_name: str | None = None,
    ) -> None: ...

    def arm(self, transaction: Transaction, name: str, deadline: float) -> None: ...

    def emit(self, event: Event) -> None: ...

    def forget(self, transaction: Transaction) -> None: ...

    def linger(self, transaction: Transaction, timer: str, deadline: float) -> None: ...

    def count(self, what: str) -> None: ...


def is_reliable(transport: str) -> bool:
    return transport.upper() != "UDP"


class Transaction:
    """Shared parts: state, timers, owner, the last response and the retransmission
    interval (it starts at T1).  A non-INVITE transaction starts Trying, an INVITE one
    in ``invite_starts``."""

    kind = "transaction"
    invite_starts: ClassVar[TransactionState]

    def __init__(
        self,
        owner: TransactionOwner,
        request: Request,
        destination: Address,
        transport: str,
        timers: TimerSettings,
        *,
        server_name: str | None = None,
    ) -> None:
        self.owner = owner
        self.request = request
        self.destination = destination
        self.transport = transport.upper()
        # TLS: the name the peer's certificate must match (RFC 5922 §7.2); None: the
        # destination's address, or any connection already open to it
        self.server_name = server_name
        self.reliable = is_reliable(transport)
        self.settings = timers
        self.method = request.method
        self.state = self.invite_starts if self.is_invite else TransactionState.TRYING
        self.timers: dict[str, float] = {}
        self.branch = request.top_via.branch or ""
        self.last_response: Response | None = None
        self._interval = timers.t1

    @property
    def is_invite(self) -> bool:
        return self.method == "INVITE"

    def _arm(self, name: str, deadline: float) -> None:
        self.timers[name] = deadline
        self.owner.arm(self, name, deadline)

    def _disarm(self, *names: str) -> None:
        for name in names:
            self.timers.pop(name, None)

    def _terminate(self) -> None:
        self.state = TransactionState.TERMINATED
        self.timers.clear()
        self.owner.forget(self)

    def _linger(self, state: TransactionState, timer: str, deadline: float) -> None:
        """Enter ``state``, which absorbs the peer's retransmissions until ``timer``
        fires.  A reliable transport has none to absorb: timers D, I, J and K are zero
        there (§17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2), so the transaction ends now."""
        self.state = state
        if self.reliable:
            self._terminate()
        else:
            self._wait(timer, deadline)

    def _wait(self, timer: str, deadline: float) -> None:
        """Only waiting now, until ``timer``: the owner keeps the wait (as bytes and keys,
        see lingering.py), so this object is not kept alive by it."""
        self.timers.clear()
        self.owner.linger(self, timer, deadline)

    def fire(self, name: str, deadline: float, now: float) -> None:
        """Called by the core when a timer is due; stale firings are ignored."""
        if self.timers.get(name) != deadline:
            return
        del self.timers[name]
        self.on_timer(name, now)

    def on_timer(self, name: str, now: float) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.method} {self.branch} {self.state.value}>"


# ---------------------------------------------------------------------------------------
# Client transactions


class ClientTransaction(Transaction):
    """INVITE client (§17.1.1, RFC 6026 §7.2) and non-INVITE client (§17.1.2)."""

    invite_starts = TransactionState.CALLING
    ack: Request | None = None  # sent for a non-2xx final response, resent for its copies

    @property
    def key(self) -> tuple[str, str]:
        return client_key(self.branch, self.method)

    def start(self, now: float) -> None:
        self.owner.transmit(self.request, self.destination, self.transport, self.server_name)
        s = self.settings
        if self.is_invite:
            if not self.reliable:
                self._arm("A", now + s.t1)
            self._arm("B", now + 64 * s.t1)
        else:
            if not self.reliable:
                self._arm("E", now + s.t1)
            self._arm("F", now + 64 * s.t1)

    def on_timer(self, name: str, now: float) -> None:
        s = self.settings
        if name in ("A", "E"):
            self.owner.transmit(self.request, self.destination, self.transport, self.server_name)
            self.owner.count("retransmissions")
            if name == "A":
                self._interval *= 2  # Timer A doubles without the T2 cap (§17.1.1.2)
            elif self.state is TransactionState.PROCEEDING:
                self._interval = s.t2
            else:
                self._interval = min(2 * self._interval, s.t2)
            self._arm(name, now + self._interval)
        elif name in ("B", "F"):
            self.owner.count("transaction_timeouts")
            self._terminate()
            self.owner.emit(TransactionTimedOut(self))

    def on_response(self, response: Response, now: float) -> bool:
        """Feed a matching response; True if the TU should see it."""
        if self.is_invite:
            return self._invite_response(response, now)
        return self._non_invite_response(response, now)

    def _invite_response(self, response: Response, now: float) -> bool:
        state = self.state
        status = response.status
        if state in (TransactionState.CALLING, TransactionState.PROCEEDING):
            self._disarm("A")
            self.last_response = response
            if status < 200:
                if state is TransactionState.CALLING:
                    # Timer B only bounds the Calling state (§17.1.1.2): a phone may ring
                    # for minutes.  (A CANCEL re-arms it, see ``cancel_sent``.)
                    self._disarm("B")
                self.state = TransactionState.PROCEEDING
                return True
            self._disarm("B")
            if status < 300:
                # RFC 6026: stay to pass 2xx retransmissions up (the dialog re-ACKs).
                self.state = TransactionState.ACCEPTED
                self._wait("M", now + 64 * self.settings.t1)
                return True
            self.ack = build_non_2xx_ack(self.request, response)
            self.owner.transmit(self.ack, self.destination, self.transport, self.server_name)
            self._linger(TransactionState.COMPLETED, "D", now + self.settings.timer_d)
            return True
        if state is TransactionState.ACCEPTED and 200 <= status < 300:
            return True  # a 2xx retransmission or a forked 2xx: the dialog layer decides
        if state is TransactionState.COMPLETED and status >= 300 and self.ack is not None:
            self.owner.transmit(self.ack, self.destination, self.transport, self.server_name)
            self.owner.count("retransmissions_absorbed")
        return False

    def _non_invite_response(self, response: Response, now: float) -> bool:
        state = self.state
        if state in (TransactionState.TRYING, TransactionState.PROCEEDING):
            self.last_response = response
            if response.status < 200:
                self.state = TransactionState.PROCEEDING
                return True
            self._disarm("E", "F")
            self._linger(TransactionState.COMPLETED, "K", now + self.settings.t4)
            return True
        self.owner.count("retransmissions_absorbed")
        return False

    def cancel_sent(self, now: float) -> None:
        """A CANCEL went out for this INVITE: without a final response within 64·T1 the
        transaction is given up (§9.1), reported as a timeout."""
        if self.is_invite and self.state in (
            TransactionState.CALLING,
            TransactionState.PROCEEDING,
        ):
            self._arm("B", now + 64 * self.settings.t1)

    def transport_failed(self) -> None:
        """The transport could not send the request (§17.1.4): report a timeout."""
        if self.state is TransactionState.TERMINATED:
            return
        self._terminate()
        self.owner.emit(TransactionTimedOut(self))


def build_non_2xx_ack(request: Request, response: Response) -> Request:
    """The ACK a client INVITE transaction sends for a 300-699 (§17.1.1.3)."""
    headers = Headers()
    headers.add("Via", request.headers.get_all("via")[0])
    for name, value in request.headers:
        key = canonical_name(name)
        if key in ("from", "call-id", "route", "max-forwards"):
            headers.add(name, value)
    headers.add("To", response.headers.get("to") or request.headers.get("to") or "")
    headers.add("CSeq", f"{request.cseq.number} ACK")
    return Request("ACK", request.uri, headers)


def build_cancel(request: Request) -> Request:
    """CANCEL for a pending INVITE (§9.1): same R-URI, top Via, Call-ID, To, From, Route
    and CSeq number."""
    headers = Headers()
    headers.add("Via", request.headers.get_all("via")[0])
    for name, value in request.headers:
        key = canonical_name(name)
        if key in ("from", "to", "call-id", "route", "max-forwards"):
            headers.add(name, value)
    headers.add("CSeq", f"{request.cseq.number} CANCEL")
    return Request("CANCEL", request.uri, headers)


def client_key(branch: str, method: str) -> tuple[str, str]:
    """§17.1.3: branch plus CSeq method (ACK/CANCEL have their own transactions)."""
    return branch, method


# ---------------------------------------------------------------------------------------
# Server transactions


class ServerTransaction(Transaction):
    """INVITE server (§17.2.1, RFC 6026 §7.1) and non-INVITE server (§17.2.2)."""

    invite_starts = TransactionState.PROCEEDING

    def __init__(
        self,
        owner: TransactionOwner,
        request: Request,
        source: Address,
        transport: str,
        timers: TimerSettings,
        key: ServerKey,
    ) -> None:
        super().__init__(owner, request, source, transport, timers)
        self.key = key
        self.source = source
        self.response_destination: Address = source
        self.cancelled = False

    def on_request_retransmission(self, now: float) -> None:
        """The same request again: resend our last response, if any (§17.2.1, §17.2.2)."""
        self.owner.count("retransmissions_absorbed")
        if self.last_response is None:
            return
        if self.state in (
            TransactionState.PROCEEDING,
            TransactionState.COMPLETED,
        ):
            self._send(self.last_response)

    def respond(self, response: Response, now: float) -> None:
        state = self.state
        if state not in (TransactionState.TRYING, TransactionState.PROCEEDING):
            if state is TransactionState.ACCEPTED and 200 <= response.status < 300:
                # the dialog layer retransmits a 2xx through here (RFC 6026 §7.1)
                self._send(response)
                return
            raise TransactionStateError(f"cannot send {response.status} in state {state.value}")
        self.last_response = response
        self._send(response)
        s = self.settings
        if response.status < 200:
            self.state = TransactionState.PROCEEDING
            return
        if self.is_invite:
            if response.status < 300:
                self.state = TransactionState.ACCEPTED
                self._wait("L", now + 64 * s.t1)
                return
            self.state = TransactionState.COMPLETED
            if not self.reliable:
                self._arm("G", now + s.t1)
            self._arm("H", now + 64 * s.t1)
            return
        self._linger(TransactionState.COMPLETED, "J", now + 64 * s.t1)

    def on_ack(self, now: float) -> bool:
        """ACK for our non-2xx final response; True if it was the first one."""
        if self.state is TransactionState.COMPLETED:
            self._disarm("G", "H")
            self._linger(TransactionState.CONFIRMED, "I", now + self.settings.t4)
            return True
        self.owner.count("retransmissions_absorbed")
        return False

    def on_timer(self, name: str, now: float) -> None:
        if name == "G" and self.last_response is not None:
            self._send(self.last_response)
            self.owner.count("retransmissions")
            self._interval = min(2 * self._interval, self.settings.t2)
            self._arm("G", now + self._interval)
        elif name == "H":
            self.owner.count("transaction_timeouts")
            self._terminate()
            self.owner.emit(AckTimedOut(dialog=None, transaction=self))

    def _send(self, response: Response) -> None:
        self.owner.transmit(response, self.response_destination, self.transport)


class TransactionStateError(LocalSipError):
    """The TU tried something the transaction's state does not allow (our bug)."""


ServerKey = tuple[str, ...]


def server_key(request: Request) -> ServerKey:
    """§17.2.3 matching key.  ACK matches its INVITE's transaction; CANCEL has its own.

    RFC 3261 branches (magic cookie): branch + sent-by + method.  Older requests
    (RFC 2543, or a bare ``z9hG4bK``): Request-URI, tags, Call-ID, CSeq number, top Via.
    """
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    host, port = via.sent_by
    if via.is_rfc3261_branch:
        return ("3261", via.branch or "", host.lower(), str(port), method)
    # The ACK carries the To tag of our response, not the INVITE's, and a CANCEL is
    # matched to its INVITE by swapping the method: for these three the To tag is left
    # out (Call-ID, From tag, CSeq and Via already single the INVITE out).
    to_tag = "" if method in ("INVITE", "CANCEL") else request.to.tag or ""
    return (
        "2543",
        str(request.uri),
        request.from_.tag or "",
        to_tag,
        request.call_id,
        str(request.cseq.number),
        str(via),
        method,
    )
