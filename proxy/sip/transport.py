"""The only I/O of the SIP stack: asyncio UDP, TCP and TLS feeding a ``SipCore``.

Each input (a datagram, a framed TCP message, a timer) goes to the core with
``loop.time()`` as ``now``; then the core's events are handed to the transaction user,
what the core wants sent is sent, and the one timer is re-armed.  When the TU calls the
core on its own initiative (not from an event), it calls ``flush()`` afterwards.

TCP connections others open to us are limited in number, in total and per source
address, apart from the ones we open ourselves (a flood of inbound connections must
not stop us reaching a call taker).  An inbound connection is closed when idle, or
when a message has been arriving for longer than the header timeout (slowloris); its
read buffer is bounded by the message size and its write buffer by ``max_write_buffer``.
One we opened is closed when nothing was sent or received on it for the idle time; its
connect (and TLS handshake) is bounded by ``connect_seconds``, after which what waited
for it fails (the core's ``transport_failed``), not at the OS's connect timeout.

TLS (``start(tls=...)``, contexts from ``tls.py``) runs over the same stream
connections.  An inbound TLS connection is accepted as plain TCP and checked against
those limits and against its source's token bucket (``flood.py``) *before* any crypto:
a handshake flood from one address costs an ``accept`` and a close, not a handshake.
Only then does its ``ServerTlsSession`` take the bytes, bounded by the handshake
timeout.  Outbound TLS is asyncio's (``create_connection(ssl=...)``), the peer's
certificate checked against the name the request was for (RFC 5922 §7.2: the URI's
domain when DNS gave the address, else the address).  Connections are keyed by
(transport, address, that name), so TCP and TLS to one peer never share one, nor do two
names served from one address; a request without a name, or a response, to a peer goes
over any connection already open to it (RFC 3261 §18), and a
peer that asks with a Via ``alias`` (RFC 5923) gets our requests for its Via address
over the connection it opened.  A double-CRLF ping on any stream connection is answered by one CRLF
(RFC 5626 §4.4.1) and keeps the connection from idling out.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from ..ratelog import RateLimitedLog
from .core import Outgoing, SipCore
from .errors import RemoteSipError
from .events import Address, Event, RequestReceived
from .framing import StreamFramer
from .tls import ServerTlsSession, TlsContexts

log = logging.getLogger(__name__)
_closing_log = RateLimitedLog(log)

EventHandler = Callable[[Event], None]
#: ("TCP" | "TLS", peer address, the name its TLS certificate was verified for): the name
#: is None for TCP, inbound connections, and TLS to an address no name was given for.
ConnectionKey = tuple[str, Address, str | None]

#: RFC 5626 §4.4.1: the pong to a double-CRLF ping.
PONG = b"\r\n"


@dataclass(frozen=True, slots=True)
class TlsSnapshot:
    """TLS connections open, and inbound handshakes failed or refused, for metrics."""

    open: int
    failed: int
    refused_limit: int
    refused_rate: int


@dataclass(frozen=True)
class TcpLimits:
    max_inbound: int = 512  # connections others opened to us, all sources together
    max_inbound_per_source: int = 32  # ... from one IP address
    idle_seconds: float = 300.0  # inbound: nothing received; outbound: nothing either way
    connect_seconds: float = 10.0  # an outbound connect, before any TLS handshake
    header_seconds: float = 10.0  # a message must be complete this long after it began
    max_write_buffer: int = 1 << 20  # bytes queued toward a peer that does not read


#: Tries at one port for UDP and TCP both when the kernel picks it (``port`` 0).
_SHARED_PORT_ATTEMPTS = 20


class SipTransport:
    """UDP endpoint + TCP and TLS listeners/connectors for one core, on one event loop."""

    def __init__(
        self,
        core: SipCore,
        on_event: EventHandler,
        *,
        tcp_limits: TcpLimits | None = None,
        max_message_size: int = 65_535,
    ) -> None:
        self.core = core
        self.on_event = on_event
        self.tcp_limits = tcp_limits or TcpLimits()
        self.max_message_size = max_message_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.base_events.Server | None = None
        self._tls_server: asyncio.base_events.Server | None = None
        self._tls: TlsContexts | None = None
        self._connections: dict[ConnectionKey, _StreamConnection] = {}
        self._connecting: dict[ConnectionKey, list[bytes]] = {}
        self._aliases: dict[ConnectionKey, _StreamConnection] = {}  # RFC 5923
        self._inbound_per_source: Counter[str] = Counter()
        self._sweeper: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False
        self.udp_address: Address | None = None
        self.tcp_address: Address | None = None
        self.tls_address: Address | None = None

    # -- life cycle ----------------------------------------------------------------------

    async def start(
        self,
        host: str,
        port: int,
        *,
        udp: bool = True,
        tcp: bool = True,
        tls: TlsContexts | None = None,
        tls_listen: Address | None = None,
    ) -> None:
        """Listen on ``host:port`` (port 0: any free port; UDP and TCP then share it).
        With ``tls``, connect over TLS when asked to, and listen on ``tls_listen`` if
        given (port 0: any free port)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._tls = tls
        if tls is not None and tls_listen is not None:
            self._tls_server = await loop.create_server(
                lambda: _StreamConnection(self, "TLS", inbound=True),
                *tls_listen,
                reuse_address=True,
            )
            self.tls_address = _address(self._tls_server.sockets[0].getsockname())
        # A UDP port the kernel picked may be taken for TCP (another program's outgoing
        # connection, say): then pick again, a bounded number of times.
        attempts = _SHARED_PORT_ATTEMPTS if port == 0 and udp and tcp else 1
        for attempt in range(1, attempts + 1):
            try:
                await self._listen(loop, host, port, udp=udp, tcp=tcp)
                break
            except OSError:
                if self._udp is not None:
                    self._udp.close()
                    self._udp, self.udp_address = None, None
                if attempt == attempts:
                    raise
        if self._sweeper is None:  # our own connections idle out even with no listener
            self._sweep()

    async def _listen(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int, *, udp: bool, tcp: bool
    ) -> None:
        if udp:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, port)
            )
            self._udp = transport
            self.udp_address = _address(transport.get_extra_info("sockname"))
            port = self.udp_address[1]
        if tcp:
            self._tcp_server = await loop.create_server(
                lambda: _StreamConnection(self, "TCP", inbound=True),
                host,
                port,
                reuse_address=True,
            )
            self.tcp_address = _address(self._tcp_server.sockets[0].getsockname())

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._udp is not None:
            self._udp.close()
        for conn in list(self._connections.values()):
            conn.close()
        for server in (self._tcp_server, self._tls_server):
            if server is not None:
                server.close()
                await server.wait_closed()

    def now(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    # -- driving the core ----------------------------------------------------------------

    def datagram_received(self, data: bytes, source: Address, transport: str) -> None:
        self.core.receive_datagram(data, source, self.now(), transport)
        self.flush()

    def flush(self) -> None:
        """Hand events to the TU, send what the core queued, re-arm the timer."""
        if self._closed:
            return
        core = self.core
        while True:
            event = core.next_event()
            if event is None:
                break
            if isinstance(event, RequestReceived) and event.transport != "UDP":
                self._note_alias(event)
            try:
                self.on_event(event)
            except Exception:  # a TU bug must not take the SIP stack down
                log.exception("SIP event handler failed on %r", event)
        for out in core.datagrams_to_send():
            self._send(out)
        self._rearm()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.core.handle_timer(self.now())
        self.flush()

    def _rearm(self) -> None:
        deadline = self.core.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    # -- sending -------------------------------------------------------------------------

    def _send(self, out: Outgoing) -> None:
        if out.transport == "UDP":
            if self._udp is not None:
                self._udp.sendto(out.data, out.destination)
            return
        name = out.server_name if out.transport == "TLS" else None
        key = (out.transport, out.destination, name)
        conn = self._connections.get(key) or self._aliases.get(key)
        if conn is not None:
            conn.write(out.data)
            return
        pending = self._connecting.get(key)
        if pending is not None:
            pending.append(out.data)
            return
        if self._loop is None:
            return
        if out.transport == "TLS" and self._tls is None:
            # a sips: target is never downgraded (RFC 5630 §3.1.3): fail the transaction
            log.warning("SIP over TLS to %s:%s: TLS is not configured", *out.destination)
            self._transport_failed(key, "tls_unavailable")
            return
        self._connecting[key] = [out.data]
        self._loop.create_task(self._connect(key))

    async def _connect(self, key: ConnectionKey) -> None:
        loop = asyncio.get_running_loop()
        transport, (host, port), name = key
        tls = self._tls if transport == "TLS" else None
        limit = self.tcp_limits.connect_seconds
        try:
            if tls is None:
                connecting = loop.create_connection(
                    lambda: _StreamConnection(self, "TCP"), host, port
                )
            else:
                # the certificate must name the host we were asked to reach: the URI's
                # domain when DNS gave the address (RFC 5922 §7.2), else the address
                limit += tls.handshake_seconds
                connecting = loop.create_connection(
                    lambda: _StreamConnection(self, "TLS", server_name=name),
                    host,
                    port,
                    ssl=tls.client,
                    server_hostname=name or host,
                    ssl_handshake_timeout=tls.handshake_seconds,
                )
            await asyncio.wait_for(connecting, limit)
        except OSError as exc:  # ssl.SSLError and TimeoutError are OSErrors too
            why = exc if str(exc) else f"no connection within {limit:g} s"
            log.warning("SIP %s connect to %s:%s failed: %s", transport, host, port, why)
            self._transport_failed(key, f"{transport.lower()}_connect_failed")

    def _transport_failed(self, key: ConnectionKey, counter: str) -> None:
        """No connection to ``key`` could be made: what waited for it is dropped, and the
        transactions sending there fail now rather than at Timer B/F (§17.1.4)."""
        self.core.count(counter)
        self._connecting.pop(key, None)
        self.core.transport_failed(key[1], key[0], self.now(), key[2])
        self.flush()

    @property
    def inbound_connections(self) -> int:
        return self._inbound_per_source.total()

    @property
    def tls_connections(self) -> int:
        """TLS connections open (handshake done), both directions."""
        return sum(1 for transport, _, _ in self._connections if transport == "TLS")

    def tls_snapshot(self) -> TlsSnapshot:
        stats = self.core.stats
        return TlsSnapshot(
            self.tls_connections,
            stats["tls_handshakes_failed"],
            stats["tls_connections_refused"],
            stats["tls_handshakes_refused"],
        )

    def _admit_inbound(self, conn: _StreamConnection) -> bool:
        """May a connection a peer opened to us stay?  Counted against the limits
        (handshaking TLS ones too: half-open connections hold a slot); a TLS one also
        takes a token from its source's request bucket, so that a handshake flood is
        refused before any crypto."""
        limits = self.tcp_limits
        host = conn.peer[0]
        if (
            self.inbound_connections >= limits.max_inbound
            or self._inbound_per_source[host] >= limits.max_inbound_per_source
        ):
            self.core.count(f"{conn.kind.lower()}_connections_refused")
            return False
        if conn.kind == "TLS" and not self.core.limiter.take_request(host, self.now()):
            self.core.count("tls_handshakes_refused")
            return False
        self._inbound_per_source[host] += 1
        conn.counted = True
        if conn.kind == "TLS":
            assert self._tls is not None and self._loop is not None
            conn.start_tls(self._tls.server)
            self._loop.call_later(self._tls.handshake_seconds, conn.check_handshake)
        else:
            self._connected(conn)
        return True

    def _connected(self, conn: _StreamConnection) -> None:
        """A connection ready for SIP (TLS: after its handshake): reachable by its key, and
        one verified for a name also by sends that name none (in-dialog requests to its
        address, responses), unless another connection to the address has that place."""
        key = (conn.kind, conn.peer, conn.server_name)
        self._connections[key] = conn
        if conn.server_name is not None:
            unnamed = (conn.kind, conn.peer, None)
            if unnamed not in self._connections and unnamed not in self._aliases:
                self._aliases[unnamed] = conn
                conn.aliases.append(unnamed)
        for data in self._connecting.pop(key, []):
            conn.write(data)

    def _note_alias(self, event: RequestReceived) -> None:
        """RFC 5923: a request whose top Via has ``alias``, over a connection the peer
        opened from the Via's host, lets us send our own requests for the Via's sent-by
        address over that connection (a phone behind NAT is reachable no other way).
        Over TLS only when the peer's certificate was verified (§5: the connection must
        be authenticated as the host the alias names)."""
        conn = self._connections.get((event.transport, event.source, None))
        if conn is None or conn.aliases:
            return
        try:
            via = event.request.top_via
        except RemoteSipError:
            return
        if via.param("alias") is None or via.host != event.source[0]:
            return
        if conn.kind == "TLS" and (conn.tls is None or not conn.tls.peer_verified):
            return
        port = via.port or (5061 if conn.kind == "TLS" else 5060)
        key: ConnectionKey = (conn.kind, (via.host, port), None)
        if key not in self._connections and key not in self._aliases:
            self._aliases[key] = conn
            conn.aliases.append(key)

    def _stream_lost(self, conn: _StreamConnection) -> None:
        """Idempotent: a connection gone, or refused, or whose handshake failed."""
        key = (conn.kind, conn.peer, conn.server_name)
        if self._connections.get(key) is conn:
            del self._connections[key]
        for alias in conn.aliases:
            if self._aliases.get(alias) is conn:
                del self._aliases[alias]
        conn.aliases.clear()
        if conn.counted:
            conn.counted = False
            host = conn.peer[0]
            self._inbound_per_source[host] -= 1
            if self._inbound_per_source[host] <= 0:
                del self._inbound_per_source[host]

    def _sweep(self) -> None:
        """Close idle and slowloris inbound connections, and our own when nothing went
        either way for the idle time; runs a few times per timeout."""
        limits = self.tcp_limits
        now = self.now()
        for conn in list(self._connections.values()):
            kind = conn.kind.lower()
            if not conn.inbound:
                if now - max(conn.last_received, conn.last_sent) > limits.idle_seconds:
                    self.core.count(f"{kind}_outbound_idle_closed")
                    conn.close()
                continue
            if conn.partial_since is not None and now - conn.partial_since > limits.header_seconds:
                self.core.count(f"{kind}_header_timeouts")
                conn.close()
            elif now - conn.last_received > limits.idle_seconds:
                self.core.count(f"{kind}_idle_timeouts")
                conn.close()
        if self._loop is not None and not self._closed:
            interval = min(limits.idle_seconds, limits.header_seconds) / 4
            self._sweeper = self._loop.call_later(max(interval, 0.05), self._sweep)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.owner.datagram_received(data, _address(addr), "UDP")

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: the transaction's timers deal with it.
        self.owner.core.count("udp_errors")


class _StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection, either direction: frames messages, answers pings."""

    def __init__(
        self,
        owner: SipTransport,
        kind: str,
        *,
        inbound: bool = False,
        server_name: str | None = None,
    ) -> None:
        self.owner = owner
        self.kind = kind  # "TCP" | "TLS": what the core is told it came over
        self.inbound = inbound
        self.server_name = server_name  # outbound TLS: the name its certificate matched
        self.counted = False  # holds a slot of the inbound limits
        self.tls: ServerTlsSession | None = None  # inbound TLS: we run its records
        self.aliases: list[ConnectionKey] = []  # RFC 5923: other keys it is reached by
        self.framer = StreamFramer(owner.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer: Address = ("", 0)
        self.last_received = owner.now()
        self.last_sent = self.last_received  # outbound connections idle out both ways
        self.partial_since: float | None = None  # when the message being read began

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, so no isinstance check here
        self.transport = cast(asyncio.Transport, transport)
        self.peer = _address(self.transport.get_extra_info("peername"))
        # bound what a slow reader can make us buffer
        self.transport.set_write_buffer_limits(high=4 * self.owner.max_message_size)
        if not self.inbound:
            self.owner._connected(self)  # outbound TLS: called after the handshake
        elif not self.owner._admit_inbound(self):
            self.transport.abort()  # refused: no lingering close, no TLS alert

    def start_tls(self, context: ssl.SSLContext) -> None:
        """Inbound TLS: from now on the bytes received are TLS records."""
        self.tls = ServerTlsSession(context)

    def check_handshake(self) -> None:
        """The handshake timeout: a handshake not done by now is abandoned."""
        if self.tls is not None and not self.tls.established and self.transport is not None:
            self._handshake_failed("timed out")

    def _handshake_failed(self, why: object) -> None:
        self.owner.core.count("tls_handshakes_failed")
        _closing_log.info(
            "tls-handshake", "SIP TLS handshake from %s:%s failed: %s", *self.peer, why
        )
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self.last_received = self.owner.now()
        tls = self.tls
        if tls is None:
            self._frame(data)
            return
        was_established = tls.established
        try:
            plaintext = tls.receive(data)
        except ssl.SSLError as exc:
            if was_established:
                self.abort_stream(f"broken TLS record: {exc.reason or exc}")
            else:
                self._handshake_failed(exc.reason or exc)
            return
        self._write_raw(tls.outgoing())
        if tls.established and not was_established:
            self.owner._connected(self)
        if plaintext:
            self._frame(plaintext)
        if tls.closed:
            self.close()

    def abort_stream(self, why: str) -> None:
        _closing_log.info(
            "tls-record", "closing SIP TLS connection from %s:%s: %s", *self.peer, why
        )
        if self.transport is not None:
            self.transport.abort()

    def _frame(self, data: bytes) -> None:
        owner = self.owner
        now = self.last_received
        keepalives = self.framer.keepalives
        try:
            messages = self.framer.feed(data)
        except RemoteSipError as exc:
            _closing_log.info(
                "tcp-framing",
                "closing SIP %s connection from %s:%s: %s",
                self.kind,
                *self.peer,
                exc.reason,
            )
            # answered as the same error over UDP is, then closed: the stream cannot
            # be resynchronised (§18.3)
            owner.core.reject_stream(exc, self.framer.pending, self.peer, now, self.kind)
            owner.flush()
            self.close()
            return
        for _ in range(self.framer.keepalives - keepalives):
            owner.core.count("keepalives")
            self.write(PONG)
        if not self.framer.buffered:
            self.partial_since = None
        elif self.partial_since is None or messages:
            self.partial_since = now
        for message in messages:
            owner.datagram_received(message, self.peer, self.kind)

    def write(self, data: bytes) -> None:
        if self.tls is not None:
            if not self.tls.established:
                return  # nothing is sent to a peer before its handshake is done
            try:
                self.tls.send(data)
            except ssl.SSLError as exc:  # the peer closed its side, or broke the session
                self.abort_stream(f"cannot send: {exc.reason or exc}")
                return
            data = self.tls.outgoing()
        self._write_raw(data)

    def _write_raw(self, data: bytes) -> None:
        transport = self.transport
        if not data or transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() + len(data) > self.owner.tcp_limits.max_write_buffer:
            self.owner.core.count("tcp_write_overflows")
            transport.abort()  # a peer that does not read gets no unbounded queue
            return
        self.last_sent = self.owner.now()
        transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None  # a pending handshake check finds nothing to abort
        self.owner._stream_lost(self)


def _address(sockaddr: Any) -> Address:
    return str(sockaddr[0]), int(sockaddr[1])
