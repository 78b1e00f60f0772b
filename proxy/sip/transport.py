"""The only I/O of the SIP stack: asyncio UDP and TCP feeding a ``SipCore``.

Each input (a datagram, a framed TCP message, a timer) goes to the core with
``loop.time()`` as ``now``; then the core's events are handed to the transaction user,
what the core wants sent is sent, and the one timer is re-armed.  When the TU calls the
core on its own initiative (not from an event), it calls ``flush()`` afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

from .core import Outgoing, SipCore
from .errors import RemoteSipError
from .events import Address, Event
from .framing import StreamFramer

log = logging.getLogger(__name__)

EventHandler = Callable[[Event], None]


class SipTransport:
    """UDP endpoint + TCP listener/connector for one core, on one event loop."""

    def __init__(
        self,
        core: SipCore,
        on_event: EventHandler,
        *,
        max_tcp_connections: int = 1024,
        max_message_size: int = 65_535,
    ) -> None:
        self.core = core
        self.on_event = on_event
        self.max_tcp_connections = max_tcp_connections
        self.max_message_size = max_message_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.base_events.Server | None = None
        self._connections: dict[Address, _TcpConnection] = {}
        self._connecting: dict[Address, list[bytes]] = {}
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
        if udp:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, port)
            )
            self._udp = transport
            self.udp_address = _address(transport.get_extra_info("sockname"))
            port = self.udp_address[1]
        if tcp:
            self._tcp_server = await loop.create_server(
                lambda: _TcpConnection(self), host, port, reuse_address=True
            )
            self.tcp_address = _address(self._tcp_server.sockets[0].getsockname())

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
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

    def _tcp_connected(self, conn: _TcpConnection) -> bool:
        if len(self._connections) >= self.max_tcp_connections:
            self.core.count("tcp_connections_refused")
            return False
        self._connections[conn.peer] = conn
        for data in self._connecting.pop(conn.peer, []):
            conn.write(data)
        return True

    def _tcp_lost(self, conn: _TcpConnection) -> None:
        if self._connections.get(conn.peer) is conn:
            del self._connections[conn.peer]


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.owner.datagram_received(data, _address(addr), "UDP")

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: the transaction's timers deal with it.
        self.owner.core.count("udp_errors")


class _TcpConnection(asyncio.Protocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner
        self.framer = StreamFramer(owner.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer: Address = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, so no isinstance check here
        self.transport = cast(asyncio.Transport, transport)
        self.peer = _address(self.transport.get_extra_info("peername"))
        # bound what a slow reader can make us buffer
        self.transport.set_write_buffer_limits(high=4 * self.owner.max_message_size)
        if not self.owner._tcp_connected(self):
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.framer.feed(data)
        except RemoteSipError as exc:
            log.info("closing SIP TCP connection from %s:%s: %s", *self.peer, exc.reason)
            self.owner.core.count(f"parse_error_{exc.status}")
            self.close()
            return
        for message in messages:
            self.owner.datagram_received(message, self.peer, "TCP")

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._tcp_lost(self)


def _address(sockaddr: Any) -> Address:
    return str(sockaddr[0]), int(sockaddr[1])
