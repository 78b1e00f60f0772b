"""The only I/O of the SIP stack: asyncio UDP and TCP feeding a ``SipCore``.

Each input (a datagram, a framed TCP message, a timer) goes to the core with
``loop.time()`` as ``now``; then the core's events are handed to the transaction user,
what the core wants sent is sent, and the one timer is re-armed.  When the TU calls the
core on its own initiative (not from an event), it calls ``flush()`` afterwards.

TCP connections others open to us are limited in number, in total and per source
address, apart from the ones we open ourselves (a flood of inbound connections must
not stop us reaching a call taker).  An inbound connection is closed when idle, or
when a message has been arriving for longer than the header timeout (slowloris); its
read buffer is bounded by the message size and its write buffer by ``max_write_buffer``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from ..ratelog import RateLimitedLog
from .core import Outgoing, SipCore
from .errors import RemoteSipError
from .events import Address, Event
from .framing import StreamFramer

log = logging.getLogger(__name__)
_closing_log = RateLimitedLog(log)

EventHandler = Callable[[Event], None]


@dataclass(frozen=True)
class TcpLimits:
    max_inbound: int = 512  # connections others opened to us, all sources together
    max_inbound_per_source: int = 32  # ... from one IP address
    idle_seconds: float = 300.0  # an inbound connection with nothing received is closed
    header_seconds: float = 10.0  # a message must be complete this long after it began
    max_write_buffer: int = 1 << 20  # bytes queued toward a peer that does not read


#: Tries at one port for UDP and TCP both when the kernel picks it (``port`` 0).
_SHARED_PORT_ATTEMPTS = 20


class SipTransport:
    """UDP endpoint + TCP listener/connector for one core, on one event loop."""

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
        self._connections: dict[Address, _TcpConnection] = {}
        self._connecting: dict[Address, list[bytes]] = {}
        self._inbound_per_source: Counter[str] = Counter()
        self._sweeper: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False
        self.udp_address: Address | None = None
        self.tcp_address: Address | None = None

    # -- life cycle ----------------------------------------------------------------------

    async def start(self, host: str, port: int, *, udp: bool = True, tcp: bool = True) -> None:
        """Listen on ``host:port`` (port 0: any free port; UDP and TCP then share it)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        # A UDP port the kernel picked may be taken for TCP (another program's outgoing
        # connection, say): then pick again, a bounded number of times.
        attempts = _SHARED_PORT_ATTEMPTS if port == 0 and udp and tcp else 1
        for attempt in range(1, attempts + 1):
            try:
                await self._listen(loop, host, port, udp=udp, tcp=tcp)
                return
            except OSError:
                if self._udp is not None:
                    self._udp.close()
                    self._udp, self.udp_address = None, None
                if attempt == attempts:
                    raise

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
                lambda: _TcpConnection(self, inbound=True), host, port, reuse_address=True
            )
            self.tcp_address = _address(self._tcp_server.sockets[0].getsockname())
            self._sweep()

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
        if self._tcp_server is not None:
            self._tcp_server.close()
            await self._tcp_server.wait_closed()

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
        conn = self._connections.get(out.destination)
        if conn is not None:
            conn.write(out.data)
            return
        pending = self._connecting.get(out.destination)
        if pending is not None:
            pending.append(out.data)
            return
        if self._loop is None:
            return
        self._connecting[out.destination] = [out.data]
        self._loop.create_task(self._connect(out.destination))

    async def _connect(self, destination: Address) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: _TcpConnection(self), *destination)
        except OSError as exc:
            log.warning("SIP TCP connect to %s:%s failed: %s", *destination, exc)
            self.core.count("tcp_connect_failed")
            self._connecting.pop(destination, None)

    @property
    def inbound_connections(self) -> int:
        return self._inbound_per_source.total()

    def _tcp_connected(self, conn: _TcpConnection) -> bool:
        if conn.inbound:
            limits = self.tcp_limits
            host = conn.peer[0]
            if (
                self.inbound_connections >= limits.max_inbound
                or self._inbound_per_source[host] >= limits.max_inbound_per_source
            ):
                self.core.count("tcp_connections_refused")
                return False
            self._inbound_per_source[host] += 1
        self._connections[conn.peer] = conn
        for data in self._connecting.pop(conn.peer, []):
            conn.write(data)
        return True

    def _tcp_lost(self, conn: _TcpConnection) -> None:
        if self._connections.get(conn.peer) is conn:
            del self._connections[conn.peer]
            if conn.inbound:
                host = conn.peer[0]
                self._inbound_per_source[host] -= 1
                if self._inbound_per_source[host] <= 0:
                    del self._inbound_per_source[host]

    def _sweep(self) -> None:
        """Close idle and slowloris inbound connections; runs a few times per timeout."""
        limits = self.tcp_limits
        now = self.now()
        for conn in list(self._connections.values()):
            if not conn.inbound:
                continue
            if conn.partial_since is not None and now - conn.partial_since > limits.header_seconds:
                self.core.count("tcp_header_timeouts")
                conn.close()
            elif now - conn.last_received > limits.idle_seconds:
                self.core.count("tcp_idle_timeouts")
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


class _TcpConnection(asyncio.Protocol):
    def __init__(self, owner: SipTransport, *, inbound: bool = False) -> None:
        self.owner = owner
        self.inbound = inbound
        self.framer = StreamFramer(owner.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer: Address = ("", 0)
        self.last_received = owner.now()
        self.partial_since: float | None = None  # when the message being read began

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, so no isinstance check here
        self.transport = cast(asyncio.Transport, transport)
        self.peer = _address(self.transport.get_extra_info("peername"))
        # bound what a slow reader can make us buffer
        self.transport.set_write_buffer_limits(high=4 * self.owner.max_message_size)
        if not self.owner._tcp_connected(self):
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        owner = self.owner
        now = owner.now()
        self.last_received = now
        try:
            messages = self.framer.feed(data)
        except RemoteSipError as exc:
            _closing_log.info(
                "tcp-framing", "closing SIP TCP connection from %s:%s: %s", *self.peer, exc.reason
            )
            # answered as the same error over UDP is, then closed: the stream cannot
            # be resynchronised (§18.3)
            owner.core.reject_stream(exc, self.framer.pending, self.peer, now)
            owner.flush()
            self.close()
            return
        if not self.framer.buffered:
            self.partial_since = None
        elif self.partial_since is None or messages:
            self.partial_since = now
        for message in messages:
            owner.datagram_received(message, self.peer, "TCP")

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() + len(data) > self.owner.tcp_limits.max_write_buffer:
            self.owner.core.count("tcp_write_overflows")
            transport.abort()  # a peer that does not read gets no unbounded queue
            return
        transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._tcp_lost(self)


def _address(sockaddr: Any) -> Address:
    return str(sockaddr[0]), int(sockaddr[1])
