"""The sans-IO SIP core: messages in, messages and events out, time passed in.

Driven like aioquic's ``QuicConnection``::

    core.receive_datagram(data, source, now, transport)   # bytes from the network
    core.handle_timer(now)                                # when get_timer() is due
    for out in core.datagrams_to_send(): ...              # bytes for the network
    while (event := core.next_event()) is not None: ...   # for the transaction user

and by the TU's calls: ``respond``, ``send_request``, ``send_ack``, ``cancel``,
``accept_dialog``.  It runs the transaction layer (§17), matches in-dialog requests and
responses to dialogs (§12), retransmits our 2xx until ACKed (§13.3.1.4), re-ACKs
retransmitted 2xx (§13.2.2.4), and answers what the UAS core must reject by itself
(400/416/420/481/482/483/500/501/505/513).

Before it keeps any state for a request from outside a dialog it asks, in this order,
the TU's admission hook (policy: a trusted peer?), the per-source token buckets
(``flood.py``) and its own caps on transactions and dialogs.  A request refused there
is answered without a transaction (no 100, no retransmission: one reply at most, never
larger than the request) or, past the source's refusal rate, not at all.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .dialog import TARGET_REFRESH, Dialog, DialogId, DialogState, Role, uri_destination
from .errors import LocalSipError, RemoteSipError
from .events import (
    AckReceived,
    AckTimedOut,
    Address,
    Event,
    MessageDropped,
    PrackTimedOut,
    RequestCancelled,
    RequestReceived,
    ResponseReceived,
)
from .flood import FloodSettings, SourceLimiter
from .headers import Via, option_tags, split_list
from .lingering import ClientLingering, Lingering, ServerLingering
from .message import (
    Message,
    Request,
    Response,
    attach_head,
    error_response,
    make_response,
    new_branch,
    new_tag,
    parse_message,
)
from .prack import (
    OPTION_TAG,
    RAck,
    ReceivedRseqs,
    ReliableResponse,
    ReliableSender,
    allows_reliable,
    requires_reliable,
)
from .resend import Resender
from .session_timer import check_request as check_session_timer
from .transaction import (
    ClientTransaction,
    ServerKey,
    ServerTransaction,
    TimerSettings,
    Transaction,
    TransactionState,
    build_cancel,
    client_key,
    server_key,
)
from .uri import SipUri

#: The fewest timer heap pushes between two compactions (see ``_compact_timers``)
_TIMER_HEAP_FLOOR = 256

KNOWN_METHODS = frozenset(
    {
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "INFO",
        "REFER",
        "MESSAGE",
        "UPDATE",
    }
)
#: What recproxy's user agent does: the one ``Allow`` list of every response and request
#: (and of the core's own 405 and 501).  REFER for a call taker's blind transfer (RFC
#: 3515, whose NOTIFYs we send); not SUBSCRIBE or NOTIFY, which the TU refuses itself
#: (``CoreSettings.refused_by_tu``).
ALLOWED_METHODS = (
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE", "REFER", "PRACK",
)  # fmt: skip
ACCEPTED_SCHEMES = frozenset({"sip", "sips", "tel"})


@dataclass(frozen=True)
class Outgoing:
    """Bytes for the transport to send: over UDP to ``destination``, over TCP on the
    connection to (or from) ``destination``."""

    data: bytes
    destination: Address
    transport: str
    # TLS: the name the peer's certificate must match (RFC 5922 §7.2: the URI's domain,
    # not the address DNS gave); None: the address, or any connection open to it
    server_name: str | None = None


@dataclass(frozen=True)
class CoreSettings:
    host: str  # the address we put in Via and Contact
    port: int = 5060
    tls_port: int | None = None  # our TLS listener's, in Via and Contact over TLS
    timers: TimerSettings = field(default_factory=TimerSettings)
    allowed_methods: tuple[str, ...] = ALLOWED_METHODS  # also the Allow of 405 and 501
    # methods outside Allow that the TU still sees, to refuse them with its own reason
    # (recproxy: SUBSCRIBE, NOTIFY)
    refused_by_tu: tuple[str, ...] = ()
    # option tags the TU supports (Require check, §8.2.2.3); 100rel is the core's own
    supported: tuple[str, ...] = ()
    accepted_content_types: tuple[str, ...] = ("application/sdp",)
    user_agent: str = "recproxy"
    auto_trying: bool = True  # answer INVITE with 100 at once (§17.2.1)
    max_message_size: int = 65_535
    flood: FloodSettings = field(default_factory=FloodSettings)
    max_server_transactions: int = 10_000  # past it: 503 without state
    max_dialogs: int = 5_000  # past it a new INVITE gets 503 without state
    # RFC 4028: with a Min-SE, an INVITE or UPDATE asking a shorter Session-Expires gets
    # 422, a malformed Session-Expires or Min-SE 400 (None: no session timer checks)
    min_se: int | None = None


@dataclass(frozen=True)
class Refusal:
    """The admission hook's answer to a request it will not take; sent without state."""

    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


# Asked before any state is kept for a request from outside a dialog: None admits it.
AdmissionHook = Callable[[Request, Address], Refusal | None]


class _Timed(Protocol):
    def fire(self, name: str, deadline: float, now: float) -> None: ...


class _Retransmit2xx(Resender):
    """Our 2xx to an INVITE, resent at T1, 2·T1 … capped at T2 until ACKed; given up
    after 64·T1 (§13.3.1.4).  Over every transport: "independent of whatever transport
    protocols are used to send the response" (a proxy on the way may use UDP)."""

    def __init__(
        self,
        core: SipCore,
        dialog: Dialog,
        transaction: ServerTransaction,
        response: Response,
        now: float,
    ) -> None:
        t = core.settings.timers
        super().__init__(core.arm, t.t1, cap=t.t2)
        self.core = core
        self.dialog = dialog
        self.transaction = transaction
        self.response = response
        self.cseq = transaction.request.cseq.number
        self.start(now)

    def resend(self, now: float) -> None:
        self.core.transmit(
            self.response, self.transaction.response_destination, self.transaction.transport
        )
        self.core.count("retransmissions")

    def expired(self, now: float) -> None:
        self.core.count("ack_timeouts")
        self.core.emit(AckTimedOut(dialog=self.dialog, transaction=self.transaction))

    def stop(self) -> None:
        super().stop()
        key = (self.dialog.id, self.cseq)
        if self.core._pending_2xx.get(key) is self:
            del self.core._pending_2xx[key]


@dataclass(frozen=True, slots=True)
class CoreSnapshot:
    """What the core has counted (``stats``: received_/sent_ by method or status class,
    parse errors, drops, refusals, timeouts) and the transactions and dialogs alive."""

    stats: Mapping[str, int]
    transactions: int
    dialogs: int


class SipCore:
    def __init__(self, settings: CoreSettings, *, admission: AdmissionHook | None = None) -> None:
        self.settings = settings
        #: The ``Allow`` header value, for the TU's responses and requests too
        self.allow = ", ".join(settings.allowed_methods)
        self.admission = admission
        self.limiter = SourceLimiter(settings.flood)
        self.stats: Counter[str] = Counter()
        self._out: list[Outgoing] = []
        self._events: deque[Event] = deque()
        self._timers: list[tuple[float, int, _Timed, str]] = []
        self._timers_compact_at = _TIMER_HEAP_FLOOR
        self._seq = itertools.count()
        self._server: dict[ServerKey, ServerTransaction | ServerLingering] = {}
        self._client: dict[tuple[str, str], ClientTransaction | ClientLingering] = {}
        self._merge: dict[tuple[str, str, int, str], ServerKey] = {}
        self._dialogs: dict[DialogId, Dialog] = {}
        self._pending_2xx: dict[tuple[DialogId, int], _Retransmit2xx] = {}
        self._pending_cancel: set[ClientTransaction] = set()
        self._uas_tags: dict[ServerKey, str] = {}  # To tag per server transaction
        # RFC 3262: our reliable 1xx per early dialog (UAS), the RSeqs we PRACKed (UAC)
        self._reliable: dict[DialogId, ReliableSender] = {}
        self._received_rseqs = ReceivedRseqs()

    # ==================================================================================
    # Outputs

    def datagrams_to_send(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest deadline of a live timer (stale heap entries are dropped)."""
        while self._timers:
            deadline, _, owner, name = self._timers[0]
            if _is_live(owner, name, deadline):
                return deadline
            heapq.heappop(self._timers)
        return None

    def handle_timer(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            deadline, _, owner, name = heapq.heappop(self._timers)
            owner.fire(name, deadline, now)

    @property
    def dialogs(self) -> list[Dialog]:
        return list(self._dialogs.values())

    @property
    def transaction_count(self) -> int:
        return len(self._server) + len(self._client)

    def snapshot(self) -> CoreSnapshot:
        """The counters and live state at this moment, copied: for metrics at scrape."""
        return CoreSnapshot(dict(self.stats), self.transaction_count, len(self._dialogs))

    # ==================================================================================
    # The TransactionOwner interface (used by transactions and retransmitters)

    def transmit(
        self,
        message: Message,
        destination: Address,
        transport: str,
        server_name: str | None = None,
    ) -> None:
        self._out.append(Outgoing(message.serialize(), destination, transport, server_name))
        if isinstance(message, Response):
            kind = f"{message.status // 100}xx"
        else:
            kind = message.method if isinstance(message, Request) else "other"
        self.stats[f"sent_{kind}"] += 1

    def arm(self, owner: _Timed | Transaction, name: str, deadline: float) -> None:
        if len(self._timers) >= self._timers_compact_at:
            self._compact_timers()
        heapq.heappush(self._timers, (deadline, next(self._seq), owner, name))

    def _compact_timers(self) -> None:
        """Drop the heap's stale entries (timers disarmed since, e.g. Timer B or F once
        the final response came): each holds its owner, and a disarmed 32 s timer would
        keep a finished transaction alive as long as a lingering one.  The next pass
        comes after a quarter of the heap (at least ``_TIMER_HEAP_FLOOR``) more pushes:
        at most that many stale entries, about four liveness checks per push.  (Waiting
        for the heap to double held ~15 s of calls' transactions in a 70 s run.)"""
        self._timers = [t for t in self._timers if _is_live(t[2], t[3], t[0])]
        heapq.heapify(self._timers)
        live = len(self._timers)
        self._timers_compact_at = live + max(_TIMER_HEAP_FLOOR, live // 4)

    def linger(self, transaction: Transaction, timer: str, deadline: float) -> None:
        """The transaction has its final response and only waits until ``timer``: a
        record of its bytes and keys takes its place here, so that what it parsed, and
        the call that holds it, are freed when the TU lets go, not 32 s later."""
        record: ServerLingering | ClientLingering
        if isinstance(transaction, ServerTransaction):
            record = ServerLingering(transaction, timer, deadline, self._lingered)
            if self._server.get(transaction.key) is transaction:
                self._server[transaction.key] = record
        elif isinstance(transaction, ClientTransaction):
            record = ClientLingering(transaction, timer, deadline, self._lingered)
            if self._client.get(transaction.key) is transaction:
                self._client[transaction.key] = record
            self._pending_cancel.discard(transaction)
        else:
            raise TypeError(f"not a transaction: {transaction!r}")
        self.arm(record, timer, deadline)

    def _lingered(self, record: Lingering) -> None:
        """A waiting transaction's timer fired: what ``forget`` does, from the keys."""
        if isinstance(record, ServerLingering):
            if self._server.get(record.key) is record:
                del self._server[record.key]
            self._uas_tags.pop(record.key, None)
            if self._merge.get(record.merge_key) == record.key:
                del self._merge[record.merge_key]
        elif isinstance(record, ClientLingering):
            if self._client.get(record.key) is record:
                del self._client[record.key]
            if record.invite_ids is not None:
                self._end_early_dialogs(*record.invite_ids)

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def forget(self, transaction: Transaction) -> None:
        if isinstance(transaction, ServerTransaction):
            if self._server.get(transaction.key) is transaction:
                del self._server[transaction.key]
            self._uas_tags.pop(transaction.key, None)
            req = transaction.request
            merge_key = (req.from_.tag or "", req.call_id, req.cseq.number, req.method)
            if self._merge.get(merge_key) == transaction.key:
                del self._merge[merge_key]
        elif isinstance(transaction, ClientTransaction):
            if self._client.get(transaction.key) is transaction:
                del self._client[transaction.key]
            self._pending_cancel.discard(transaction)
            last = transaction.last_response
            if transaction.is_invite:
                # Timer B, a CANCEL given up, a transport error (and Timer D or M, in
                # ``_lingered``): early dialogs that no 2xx confirmed by now never will be
                # (§13.2.2.4, RFC 6026).
                request = transaction.request
                self._end_early_dialogs(request.call_id, request.from_.tag or "")
            elif transaction.method == "BYE" and (last is None or last.status < 200):
                # A BYE that timed out ends the dialog all the same (§15).
                dialog = self._dialogs.get(_sent_request_dialog_id(transaction.request))
                if dialog is not None:
                    self._end_dialog(dialog)

    def count(self, what: str) -> None:
        self.stats[what] += 1

    # ==================================================================================
    # Input

    def receive_datagram(
        self, data: bytes, source: Address, now: float, transport: str = "UDP"
    ) -> None:
        """One datagram (UDP) or one framed message (TCP)."""
        transport = transport.upper()
        if not data.strip(b"\r\n"):
            self.stats["keepalives"] += 1
            return
        try:
            message = parse_message(
                data, stream=transport != "UDP", max_size=self.settings.max_message_size
            )
        except RemoteSipError as exc:
            self._reject_unparsable(exc, source, now, transport)
            return
        if isinstance(message, Request):
            self.stats[
                f"received_{message.method if message.method in KNOWN_METHODS else 'other'}"
            ] += 1
            self._receive_request(message, source, now, transport, len(data))
        else:
            self.stats[f"received_{message.status // 100}xx"] += 1
            self._receive_response(message, now)

    def reject_stream(
        self,
        error: RemoteSipError,
        buffered: bytes,
        source: Address,
        now: float,
        transport: str = "TCP",
    ) -> None:
        """A TCP or TLS stream that cannot be framed (header section too large,
        conflicting Content-Length): answer the message it began with as the same error
        in a datagram is answered, before the transport closes the connection."""
        self._reject_unparsable(attach_head(error, buffered), source, now, transport)

    def transport_failed(
        self,
        destination: Address,
        transport: str,
        now: float,
        server_name: str | None = None,
    ) -> None:
        """No connection to ``destination`` (verified as ``server_name``) could be made
        (refused, timed out, a certificate that does not verify, TLS not configured): the
        client transactions that sent there and heard nothing fail now, as timeouts
        (§17.1.4), not 32 s later."""
        for txn in list(self._client.values()):
            if (
                isinstance(txn, ClientTransaction)
                and txn.destination == destination
                and txn.transport == transport
                and txn.server_name == server_name
                and txn.state in (TransactionState.CALLING, TransactionState.TRYING)
            ):
                txn.transport_failed()

    def _reject_unparsable(
        self, exc: RemoteSipError, source: Address, now: float, transport: str
    ) -> None:
        self.stats[f"parse_error_{exc.status}"] += 1
        if exc.request is not None:
            _stamp_via(exc.request, source)  # so that the answer goes where it came from
        response = error_response(exc)
        if response is None:
            self.stats["dropped"] += 1
            self.emit(MessageDropped(exc.reason, source))
            return
        self._send_stateless(response, source, now, transport)

    def _send_stateless(
        self,
        response: Response,
        source: Address,
        now: float,
        transport: str,
        max_size: int | None = None,
    ) -> None:
        """A reply kept in no transaction (a refusal, an unparsable request's error):
        at most the source's refusal rate, and (refusals) never more bytes than came
        in, so that a flood with a forged source address is not amplified toward its
        victim.  An unparsable request's error is still answered however short the
        request (a peer needs to learn what it got wrong); the rate bounds it."""
        if not self.limiter.take_refusal(source[0], now):
            self.stats["dropped_flood"] += 1
            return
        data = response.serialize()
        if max_size is not None and len(data) > max_size:
            self.stats["dropped_amplification"] += 1
            return
        self._out.append(Outgoing(data, _reply_address(response, source, transport), transport))
        self.stats[f"sent_{response.status // 100}xx"] += 1

    # -- requests ------------------------------------------------------------------------

    def _receive_request(
        self, request: Request, source: Address, now: float, transport: str, size: int
    ) -> None:
        key = server_key(request)
        _stamp_via(request, source)
        if request.method == "ACK":
            self._receive_ack(request, key, now)
            return
        existing = self._server.get(key)
        if isinstance(existing, ServerLingering):
            self.count("retransmissions_absorbed")
            if existing.reply is not None:
                self._transmit_wire(
                    existing.reply, existing.destination, existing.transport, existing.reply_kind
                )
            return
        if existing is not None:
            existing.on_request_retransmission(now)
            return
        if not self._in_known_dialog(request) and not self._admit(
            request, source, now, transport, size
        ):
            return
        txn = ServerTransaction(self, request, source, transport, self.settings.timers, key)
        txn.response_destination = _reply_address(request, source, transport)
        if request.method == "CANCEL":
            self._receive_cancel(request, txn, key, now)
            return
        rejection = self._check_request(request, key, transport)
        self._server[key] = txn
        self._merge.setdefault(
            (request.from_.tag or "", request.call_id, request.cseq.number, request.method), key
        )
        if rejection is not None:
            status, reason, extra = rejection
            response = make_response(
                request,
                status,
                reason,
                to_tag=self._tag_for(txn),
                headers=extra,
                server=self.settings.user_agent,
            )
            txn.respond(response, now)
            return
        dialog: Dialog | None = None
        if request.to.tag:
            dialog = self._dialogs.get((request.call_id, request.to.tag, request.from_.tag or ""))
            if dialog is None:
                txn.respond(self._response(request, 481), now)
                return
            if not dialog.check_remote_cseq(request):
                txn.respond(
                    self._response(request, 500, "Server Internal Error (CSeq out of order)"), now
                )
                return
            if request.method in TARGET_REFRESH:
                dialog.refresh_target(request)
        if request.method == "PRACK":
            self._receive_prack(request, txn, dialog, now)
            return
        if request.method == "INVITE" and self.settings.auto_trying:
            txn.respond(self._response(request, 100), now)
        self.emit(RequestReceived(request, txn, dialog, source, transport))

    def _in_known_dialog(self, request: Request) -> bool:
        tag = request.to.tag
        return bool(tag) and (request.call_id, tag, request.from_.tag or "") in self._dialogs

    def _admit(
        self, request: Request, source: Address, now: float, transport: str, size: int
    ) -> bool:
        """May a request from outside a dialog open a server transaction?  If not, it
        is answered here without state, or past the source's refusal rate dropped."""
        host = source[0]
        refusal = self.admission(request, source) if self.admission is not None else None
        if refusal is not None:
            self.stats["refused_admission"] += 1
        elif not self.limiter.take_request(host, now):
            self.stats["refused_rate"] += 1
            refusal = self._busy("too many requests")
        elif len(self._server) >= self.settings.max_server_transactions or (
            request.method == "INVITE" and len(self._dialogs) >= self.settings.max_dialogs
        ):
            self.stats["refused_capacity"] += 1
            refusal = self._busy("too many transactions")
        else:
            return True
        response = make_response(
            request, refusal.status, refusal.reason, headers=[*refusal.headers]
        )
        self._send_stateless(response, source, now, transport, max_size=size)
        return False

    def _busy(self, why: str) -> Refusal:
        retry_after = str(self.settings.flood.retry_after_seconds)
        return Refusal(503, f"Service Unavailable ({why})", (("Retry-After", retry_after),))

    def _check_request(
        self, request: Request, key: ServerKey, transport: str
    ) -> tuple[int, str | None, list[tuple[str, str]]] | None:
        """What the UAS core rejects before the TU sees a request (§8.2)."""
        merge_key = (request.from_.tag or "", request.call_id, request.cseq.number, request.method)
        allow = [("Allow", self.allow)]
        if not request.to.tag and self._merge.get(merge_key, key) != key:
            return 482, None, []  # merged request (§8.2.2.2)
        mf = request.max_forwards
        if mf is not None and mf == 0 and request.method != "OPTIONS":
            return 483, None, []
        if request.uri.scheme not in ACCEPTED_SCHEMES:
            return 416, None, []
        if request.uri.scheme == "sips" and transport != "TLS":
            # RFC 5630 §3.1.3: a sips: request that reached us over a hop not secured
            # by TLS has lost what the scheme promised; refused as a scheme we cannot
            # serve on this hop (§8.2.2.1)
            return 416, "Unsupported URI Scheme (sips: needs TLS)", []
        if isinstance(request.uri, SipUri) and request.uri.headers is not None:
            # §19.1.5: headers in a URI are for building a request, never in a
            # Request-URI; honouring an escaped ?Route= would let a caller steer us
            return 400, "Bad Request (headers in the Request-URI)", []
        if request.method not in KNOWN_METHODS:
            return 501, None, allow
        if request.method not in (*self.settings.allowed_methods, *self.settings.refused_by_tu):
            return 405, None, allow
        supported = (*self.settings.supported, OPTION_TAG)
        try:
            required = [t for t in option_tags(request.headers, "require") if t not in supported]
        except RemoteSipError as exc:
            return 400, exc.reason, []
        if required and request.method not in ("CANCEL", "ACK"):
            return 420, None, [("Unsupported", ", ".join(required))]
        if (
            request.method in ("INVITE", "UPDATE")
            and request.body
            and request.content_type not in self.settings.accepted_content_types
        ):
            return 415, None, [("Accept", ", ".join(self.settings.accepted_content_types))]
        if self.settings.min_se is not None and request.method in ("INVITE", "UPDATE"):
            try:
                check_session_timer(request, self.settings.min_se)
            except RemoteSipError as exc:
                return exc.status, exc.reason, list(exc.extra_headers)
        return None

    def _receive_prack(
        self, prack: Request, txn: ServerTransaction, dialog: Dialog | None, now: float
    ) -> None:
        """RFC 3262 §3: a PRACK that acknowledges our outstanding reliable 1xx gets 200
        (and lets the next one, or a held 2xx, go); one that matches nothing gets 481."""
        value = prack.headers.get("rack")
        try:
            rack = RAck.parse(value if value is not None else "")
        except RemoteSipError as exc:
            txn.respond(self._response(prack, 400, exc.reason), now)
            return
        pending = self._reliable.get(dialog.id) if dialog is not None else None
        if dialog is None or pending is None or not pending.acknowledge(rack, now):
            self.stats["prack_unmatched"] += 1
            txn.respond(self._response(prack, 481, to_tag=prack.to.tag), now)
            return
        txn.respond(self._response(prack, 200, to_tag=dialog.local_tag), now)

    def _reliable_gave_up(
        self, transaction: ServerTransaction, dialog: Dialog
    ) -> Callable[[float], None]:
        """No PRACK for a reliable 1xx within 64·T1: the INVITE is rejected (§3)."""

        def gave_up(now: float) -> None:
            if transaction.state is TransactionState.PROCEEDING:
                reason = "Server Internal Error (reliable provisional response unacknowledged)"
                response = self._response(transaction.request, 500, reason, to_tag=dialog.local_tag)
                self._send_response(transaction, dialog, response, now)
            self.emit(PrackTimedOut(dialog=dialog, transaction=transaction))

        return gave_up

    def _receive_ack(self, request: Request, key: ServerKey, now: float) -> None:
        txn = self._server.get(key)
        if txn is not None and txn.state in (
            TransactionState.COMPLETED,
            TransactionState.CONFIRMED,
        ):
            if isinstance(txn, ServerLingering):
                self.count("retransmissions_absorbed")  # a copy of the ACK, in Confirmed
            else:
                txn.on_ack(now)  # ACK for our non-2xx: absorbed by the transaction
            return
        dialog = self._dialogs.get((request.call_id, request.to.tag or "", request.from_.tag or ""))
        if dialog is None:
            self.stats["dropped_stray_ack"] += 1
            return
        pending = self._pending_2xx.get((dialog.id, request.cseq.number))
        if pending is None:
            self.stats["retransmissions_absorbed"] += 1
            return
        pending.stop()
        dialog.state = DialogState.CONFIRMED
        self.emit(AckReceived(request, dialog))

    def _receive_cancel(
        self, cancel: Request, txn: ServerTransaction, key: ServerKey, now: float
    ) -> None:
        self._server[key] = txn
        invite_key = (*key[:-1], "INVITE")
        invite = self._server.get(invite_key)
        if invite is None:
            txn.respond(self._response(cancel, 481), now)
            return
        txn.respond(self._response(cancel, 200, to_tag=self._tag_for(invite)), now)
        # no final response yet (a transaction that only waits has one)
        if isinstance(invite, ServerTransaction) and invite.state is TransactionState.PROCEEDING:
            invite.cancelled = True
            invite.respond(self._response(invite.request, 487, to_tag=self._tag_for(invite)), now)
            self._end_early_uas_dialog(invite)
            self.emit(RequestCancelled(invite.request, invite))

    # -- responses -----------------------------------------------------------------------

    def _receive_response(self, response: Response, now: float) -> None:
        via = response.top_via
        found = self._client.get(client_key(via.branch or "", response.cseq.method))
        if found is None:
            if response.cseq.method == "INVITE" and 200 <= response.status < 300:
                self._reack(response)
            else:
                self.stats["dropped_stray_response"] += 1
            return
        if isinstance(found, ClientLingering):
            live = found.accepted() if 200 <= response.status < 300 else None
            if live is None:
                self._absorb_response(found, response)
                return
            found = live
        txn = found
        state_before = txn.state
        if not txn.on_response(response, now):
            return
        if state_before is TransactionState.ACCEPTED:
            # Another 2xx to our INVITE.  The one that already confirmed its dialog is
            # a retransmission: re-ACK it, do not report it (§13.2.2.4).  A 2xx with a
            # new To tag is a fork's, and a new dialog for the TU.
            known = self._dialogs.get(_response_dialog_id(response))
            if known is not None and known.state is DialogState.CONFIRMED:
                self._reack(response)
                return
        if txn in self._pending_cancel and response.status < 200:
            self._pending_cancel.discard(txn)
            self._send_cancel(txn, now)
        dialog = self._dialog_for_response(txn, response)
        if (
            txn.method == "INVITE"
            and 100 < response.status < 200
            and dialog is not None
            and requires_reliable(response)
            and not self._prack(dialog, response, now)
        ):
            return
        if txn.method == "BYE" and response.status >= 200 and dialog is not None:
            self._end_dialog(dialog)
        self.emit(ResponseReceived(response, txn, dialog))

    def _absorb_response(self, record: ClientLingering, response: Response) -> None:
        """A response to a transaction that only waits: what the transaction did with it
        (§17.1.1.2 resend the ACK to a non-2xx, §17.1.2.2 absorb, RFC 6026 re-ACK a 2xx
        whose dialog is confirmed).  A fork's 2xx after its call let go of the INVITE is
        dropped as stray (the TU had no call to give it to)."""
        status = response.status
        if record.state is TransactionState.ACCEPTED:
            if 200 <= status < 300:
                self._reack(response)
        elif record.method != "INVITE":
            self.count("retransmissions_absorbed")
        elif status >= 300 and record.ack is not None:
            self._transmit_wire(
                record.ack, record.destination, record.transport, "ACK", record.server_name
            )
            self.count("retransmissions_absorbed")

    def _transmit_wire(
        self,
        data: bytes,
        destination: Address,
        transport: str,
        kind: str,
        server_name: str | None = None,
    ) -> None:
        """Send bytes serialised before (a waiting transaction's), counted as ``transmit``
        counts a message of that ``kind``."""
        self._out.append(Outgoing(data, destination, transport, server_name))
        self.stats[f"sent_{kind}"] += 1

    def _dialog_for_response(self, txn: ClientTransaction, response: Response) -> Dialog | None:
        dialog = self._dialogs.get(_response_dialog_id(response))
        if txn.method != "INVITE":
            return dialog
        if response.status >= 300:
            # A non-2xx final response ends every early dialog of the INVITE, whatever
            # its To tag (§12.3).
            self._end_early_dialogs(txn.request.call_id, txn.request.from_.tag or "")
            return dialog
        if dialog is None:
            if not response.to.tag or response.status == 100:
                return None
            dialog = Dialog.from_response(txn.request, response, txn.transport)
            self._dialogs[dialog.id] = dialog
            return dialog
        if response.status >= 200 or dialog.state is DialogState.EARLY:
            dialog.update_from_response(response)
        return dialog

    def _prack(self, dialog: Dialog, response: Response, now: float) -> bool:
        """PRACK a reliable 1xx in its early dialog (RFC 3262 §4); False (not passed on)
        for a retransmission, an RSeq out of order or a bad RSeq."""
        try:
            rseq = self._received_rseqs.accept(dialog.id, response)
        except RemoteSipError:
            self.stats["dropped_bad_rseq"] += 1
            return False
        if rseq is None:
            self.stats["reliable_1xx_ignored"] += 1
            return False
        rack = RAck(rseq, response.cseq.number, response.cseq.method)
        prack = dialog.create_request("PRACK", headers=[("RAck", str(rack))])
        self.send_request(prack, now, dialog=dialog)
        return True

    def _reack(self, response: Response) -> None:
        """A 2xx to our INVITE again: resend our ACK (if the TU has sent it yet)."""
        dialog = self._dialogs.get(_response_dialog_id(response))
        if dialog is None:
            self.stats["dropped_stray_response"] += 1
            return
        self.stats["retransmissions_absorbed"] += 1
        ack = dialog.acks.get(response.cseq.number)
        if ack is None:
            return  # the TU has the first copy and will ACK it
        host, port, transport = dialog.next_hop()
        self.transmit(ack, (host, port), transport)

    # ==================================================================================
    # The TU's API

    def accept_dialog(
        self, transaction: ServerTransaction, *, contact: str | None = None
    ) -> Dialog:
        """Make the UAS dialog for a dialog-creating request (INVITE) we will answer."""
        request = transaction.request
        secure = request.uri.scheme == "sips"
        dialog = Dialog.from_request(
            request,
            local_tag=self._tag_for(transaction),
            local_contact=contact
            or self.default_contact(transport=transaction.transport, secure=secure),
            transport=transaction.transport,
        )
        self._dialogs[dialog.id] = dialog
        return dialog

    def default_contact(
        self, user: str | None = None, *, transport: str = "UDP", secure: bool = False
    ) -> str:
        """Our Contact; with ``;transport=tcp`` for what goes over TCP, so that the peer
        sends its requests to us over TCP too (§18.1.1 leaves UDP the default).  Over
        TLS: ``sips:`` at our TLS port when the dialog is secure (a sips: Request-URI,
        §8.1.1.8, RFC 5630 §3.1.3), else ``;transport=tls``."""
        s = self.settings
        transport = transport.upper()
        port = s.tls_port if transport == "TLS" and s.tls_port is not None else s.port
        if secure:
            return f"<{SipUri(host=s.host, port=port, user=user, scheme='sips')}>"
        params = () if transport == "UDP" else (("transport", transport.lower()),)
        uri = SipUri(host=s.host, port=port, user=user, params=params)
        return f"<{uri}>"

    def respond(
        self,
        transaction: ServerTransaction,
        status: int,
        reason: str | None = None,
        *,
        now: float,
        dialog: Dialog | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        reliable: bool = False,
    ) -> Response:
        """Answer a request.  With ``dialog``, the To tag is the dialog's and a Contact is
        added to 1xx/2xx of dialog-creating INVITEs; a 2xx to an INVITE is retransmitted
        until ACKed.  ``reliable``: a 1xx to an INVITE that allows it (RFC 3262), sent
        with an RSeq until PRACKed; a 2xx waits for the PRACK of one with a body."""
        request = transaction.request
        extra = list(headers)
        reliable = reliable and request.method == "INVITE" and 100 < status < 200
        if reliable:
            if dialog is None or not allows_reliable(request):
                raise LocalSipError("a reliable 1xx needs a dialog and an INVITE allowing it")
            sender = self._reliable.setdefault(dialog.id, ReliableSender())
            extra += [("Require", OPTION_TAG), ("RSeq", str(sender.take_rseq()))]
        to_tag = dialog.local_tag if dialog is not None else self._tag_for(transaction)
        if (
            dialog is not None
            and request.method in TARGET_REFRESH
            and 100 < status < 300
            and not any(n.lower() in ("contact", "m") for n, _ in extra)
        ):
            extra.append(("Contact", dialog.local_contact))
        if body:
            extra.append(("Content-Type", content_type or "application/sdp"))
        response = make_response(
            request,
            status,
            reason,
            to_tag=to_tag,
            headers=extra,
            body=body,
            server=self.settings.user_agent,
        )
        if reliable:
            assert dialog is not None
            reliable_1xx = ReliableResponse(
                self,
                response,
                cseq=request.cseq.number,
                send=lambda r, when: self._provisional(transaction, r, when),
                gave_up=self._reliable_gave_up(transaction, dialog),
                t1=self.settings.timers.t1,
            )
            self._reliable[dialog.id].send(reliable_1xx, now)
            return response
        pending = self._reliable.get(dialog.id) if dialog is not None else None
        # a 2xx waits until the reliable 1xx with a session description is PRACKed (§3)
        if (
            request.method == "INVITE"
            and 200 <= status < 300
            and pending is not None
            and pending.holds_2xx()
        ):
            pending.held_final = lambda when: self._send_response(
                transaction, dialog, response, when
            )
            return response
        self._send_response(transaction, dialog, response, now)
        return response

    def _provisional(self, transaction: ServerTransaction, response: Response, now: float) -> None:
        """Send (or resend) a reliable 1xx while its INVITE is unanswered."""
        if transaction.state is TransactionState.PROCEEDING:
            transaction.respond(response, now)

    def _send_response(
        self,
        transaction: ServerTransaction,
        dialog: Dialog | None,
        response: Response,
        now: float,
    ) -> None:
        """Send a response (a held 2xx once its reliable 1xx is PRACKed) and keep what
        follows it: the 2xx's retransmission, the end of an early dialog or a BYE's."""
        request = transaction.request
        status = response.status
        if request.method == "INVITE" and status >= 200 and dialog is not None:
            pending = self._reliable.pop(dialog.id, None)
            if pending is not None:
                pending.finish()
        transaction.respond(response, now)
        if request.method == "INVITE":
            if dialog is not None and 200 <= status < 300:
                if dialog.state is DialogState.EARLY:
                    dialog.state = DialogState.CONFIRMED  # a 2xx sent confirms it (§12.1.1)
                key = (dialog.id, request.cseq.number)
                previous = self._pending_2xx.get(key)
                if previous is not None:
                    previous.stop()
                self._pending_2xx[key] = _Retransmit2xx(self, dialog, transaction, response, now)
            elif status >= 300:
                self._end_early_uas_dialog(transaction)
        elif request.method == "BYE" and status >= 200 and dialog is not None:
            self._end_dialog(dialog)

    def send_request(
        self,
        request: Request,
        now: float,
        *,
        destination: Address | None = None,
        transport: str | None = None,
        dialog: Dialog | None = None,
        server_name: str | None = None,
    ) -> ClientTransaction:
        """Send a request in a new client transaction.  A Via with a fresh branch and
        ``rport`` is put on top, and Max-Forwards: 70 added if missing.  The destination
        defaults to the dialog's next hop, else the Request-URI's host.  ``server_name``:
        over TLS, the name the peer's certificate must match when ``destination`` is an
        address DNS gave for it (RFC 5922 §7.2)."""
        if request.method == "ACK":
            raise LocalSipError("send an ACK for a 2xx with send_ack")
        if dialog is not None:
            host, port, dtransport = dialog.next_hop()
        else:
            host, port, dtransport = uri_destination(request.uri)
        transport = (transport or dtransport).upper()
        self._stamp_outgoing(request, transport)
        txn = ClientTransaction(
            self,
            request,
            destination or (host, port),
            transport,
            self.settings.timers,
            server_name=server_name,
        )
        self._client[txn.key] = txn
        txn.start(now)
        return txn

    def send_ack(self, dialog: Dialog, ack: Request, now: float) -> None:
        """Send (and remember, for 2xx retransmissions) the ACK to a 2xx."""
        host, port, transport = dialog.next_hop()
        self._stamp_outgoing(ack, transport)
        dialog.acks[ack.cseq.number] = ack
        self.transmit(ack, (host, port), transport)

    def cancel(self, transaction: ClientTransaction, now: float) -> None:
        """CANCEL a pending INVITE (§9.1): at once if a provisional response came, else as
        soon as one does.  Nothing if it already has a final response."""
        if transaction.method != "INVITE":
            raise LocalSipError("only an INVITE can be cancelled")
        if transaction.state is TransactionState.PROCEEDING:
            self._send_cancel(transaction, now)
        elif transaction.state is TransactionState.CALLING:
            self._pending_cancel.add(transaction)

    def _send_cancel(self, transaction: ClientTransaction, now: float) -> None:
        cancel = build_cancel(transaction.request)
        txn = ClientTransaction(
            self,
            cancel,
            transaction.destination,
            transaction.transport,
            self.settings.timers,
            server_name=transaction.server_name,
        )
        self._client[txn.key] = txn
        txn.start(now)
        transaction.cancel_sent(now)

    def end_dialog(self, dialog: Dialog) -> None:
        """Forget a dialog (after BYE, or when the TU gives up on it)."""
        self._end_dialog(dialog)

    # ==================================================================================
    # Helpers

    def _end_dialog(self, dialog: Dialog) -> None:
        dialog.state = DialogState.TERMINATED
        self._dialogs.pop(dialog.id, None)
        self._received_rseqs.forget(dialog.id)
        reliable = self._reliable.pop(dialog.id, None)
        if reliable is not None:
            reliable.finish()
        for key in [k for k in self._pending_2xx if k[0] == dialog.id]:
            self._pending_2xx[key].stop()

    def _end_early_dialogs(self, call_id: str, local_tag: str) -> None:
        """End the early dialogs our INVITE (its Call-ID and From tag) made (all forks)."""
        for dialog in [
            d
            for d in self._dialogs.values()
            if d.role is Role.UAC
            and d.state is DialogState.EARLY
            and d.call_id == call_id
            and d.local_tag == local_tag
        ]:
            self._end_dialog(dialog)

    def _end_early_uas_dialog(self, transaction: ServerTransaction) -> None:
        """Our non-2xx final response to an INVITE ends the early dialog we made for it."""
        request = transaction.request
        local_tag = request.to.tag or self._uas_tags.get(transaction.key)
        if local_tag is None:
            return
        dialog = self._dialogs.get((request.call_id, local_tag, request.from_.tag or ""))
        if dialog is not None and dialog.state is DialogState.EARLY:
            self._end_dialog(dialog)

    def _tag_for(self, transaction: ServerTransaction | ServerLingering) -> str:
        """The To tag for a response outside a dialog: stable per transaction."""
        return self._uas_tags.setdefault(transaction.key, new_tag())

    def _response(
        self, request: Request, status: int, reason: str | None = None, *, to_tag: str | None = None
    ) -> Response:
        """One of the core's own answers (no body), with our Server header."""
        return make_response(
            request, status, reason, to_tag=to_tag, server=self.settings.user_agent
        )

    def _stamp_outgoing(self, request: Request, transport: str) -> None:
        s = self.settings
        port = s.tls_port if transport == "TLS" and s.tls_port is not None else s.port
        via = Via(transport, s.host, port, (("branch", new_branch()), ("rport", None)))
        request.headers.prepend("Via", str(via))
        if transport != "UDP" and request.headers.get("contact") == self.default_contact():
            secure = request.uri.scheme == "sips"
            request.headers.replace_first_value(
                "contact", self.default_contact(transport=transport, secure=secure)
            )
        if request.headers.get("max-forwards") is None:
            request.headers.add("Max-Forwards", "70")
        if request.headers.get("user-agent") is None:
            request.headers.add("User-Agent", s.user_agent)


def _response_dialog_id(response: Response) -> DialogId:
    """The dialog of a response to a request we sent: our tag is in From."""
    return response.call_id, response.from_.tag or "", response.to.tag or ""


def _sent_request_dialog_id(request: Request) -> DialogId:
    return request.call_id, request.from_.tag or "", request.to.tag or ""


def _is_live(owner: _Timed, name: str, deadline: float) -> bool:
    if isinstance(owner, Transaction):
        return owner.timers.get(name) == deadline
    if isinstance(owner, Resender | Lingering):
        return owner.is_live(name, deadline)
    return True


def _stamp_via(request: Request, source: Address) -> None:
    """§18.2.1 and RFC 3581: record where the request really came from in its top Via."""
    try:
        via = request.top_via
    except RemoteSipError:
        return
    params: dict[str, str | None] = {}
    if via.host != source[0]:
        params["received"] = source[0]
    if via.param("rport") == "":
        params["rport"] = str(source[1])
        params["received"] = source[0]
    if params:
        request.headers.replace_first_value("via", str(via.with_params(**params)))


def _reply_address(message: Message, source: Address, transport: str) -> Address:
    """Where responses go: over TCP back on the connection; over UDP to the top Via's
    received/rport, or the packet's source when the Via is unusable."""
    if transport != "UDP":
        return source
    try:
        vias = message.headers.get_lines("via")
        via = Via.parse(split_list(vias[0])[0])
    except (RemoteSipError, IndexError):
        return source
    return via.response_address()
