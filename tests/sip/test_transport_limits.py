"""The SIP transport's TCP limits, over real loopback sockets: inbound connections are
limited per source and in total apart from our own outbound ones, idle and slowloris
connections are closed, and a stream that cannot be framed is answered before closing."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from proxy.sip.core import CoreSettings, SipCore
from proxy.sip.dialog import build_request
from proxy.sip.events import Event, RequestReceived, ResponseReceived, TransactionTimedOut
from proxy.sip.flood import FloodSettings
from proxy.sip.transport import SipTransport, TcpLimits
from proxy.sip.uri import parse_uri
from proxy.tools.uas import AnsweringUas

OPTIONS = (
    "OPTIONS sip:uas@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-{n}\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:test@127.0.0.1>;tag=t1\r\n"
    "To: <sip:uas@127.0.0.1>\r\n"
    "Call-ID: limits-{n}@127.0.0.1\r\n"
    "CSeq: 1 OPTIONS\r\n"
)


class Proxy:
    def __init__(self, limits: TcpLimits, flood: FloodSettings | None = None) -> None:
        self.core = SipCore(CoreSettings(host="127.0.0.1", flood=flood or FloodSettings()))
        self.events: list[Event] = []
        self.transport = SipTransport(self.core, self.on_event, tcp_limits=limits)

    def on_event(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, RequestReceived):
            self.core.respond(event.transaction, 200, now=self.transport.now())

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport.tcp_address is not None
        return self.transport.tcp_address


@contextlib.asynccontextmanager
async def proxy(limits: TcpLimits) -> AsyncIterator[Proxy]:
    p = Proxy(limits)
    await p.transport.start("127.0.0.1", 0, udp=False, tcp=True)
    try:
        yield p
    finally:
        await p.transport.close()


async def connect(
    address: tuple[str, int], source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*address, local_addr=(source, 0))


async def closed_by_peer(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(65536), within)
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return data == b""


async def options_answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    writer.write((OPTIONS.format(n=id(writer)) + "Content-Length: 0\r\n\r\n").encode())
    await writer.drain()
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionResetError):
        return False
    return head.startswith(b"SIP/2.0 200 ")


def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()


async def test_the_connection_past_the_per_source_limit_is_refused() -> None:
    async with proxy(TcpLimits(max_inbound_per_source=3)) as p:
        held = [await connect(p.address) for _ in range(3)]
        reader, writer = await connect(p.address)
        assert await closed_by_peer(reader, 2), "the 4th connection from one source was kept"
        # another source address still gets in, and the held ones still work
        other_reader, other_writer = await connect(p.address, source="127.0.0.2")
        assert await options_answered(other_reader, other_writer)
        assert await options_answered(*held[0])
        assert p.core.stats["tcp_connections_refused"] == 1
        close_all([writer, other_writer, *(w for _, w in held)])


async def test_idle_connections_are_closed_after_the_idle_timeout() -> None:
    async with proxy(TcpLimits(idle_seconds=0.5, max_inbound_per_source=100)) as p:
        idle = [await connect(p.address) for _ in range(50)]
        await asyncio.sleep(0.2)
        assert p.transport.inbound_connections == 50
        results = await asyncio.gather(*(closed_by_peer(r, 3) for r, _ in idle))
        assert all(results), f"{results.count(False)} idle connections still open"
        assert p.transport.inbound_connections == 0
        assert p.core.stats["tcp_idle_timeouts"] == 50
        close_all([w for _, w in idle])


async def dribble(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, message: bytes
) -> float | None:
    """Send ``message`` 4 bytes every 0.1 s (never idle, never complete): the seconds
    until the peer closed the connection, or None if it never did."""
    started = asyncio.get_running_loop().time()
    for i in range(0, len(message), 4):
        writer.write(message[i : i + 4])
        if await closed_by_peer(reader, 0.1):
            return asyncio.get_running_loop().time() - started
    return None


async def test_a_slowloris_connection_is_closed_after_the_header_timeout() -> None:
    async with proxy(TcpLimits(idle_seconds=30, header_seconds=0.6)) as p:
        reader, writer = await connect(p.address)
        elapsed = await dribble(reader, writer, OPTIONS.format(n="slow").encode())
        assert elapsed is not None, "the slowloris connection was kept"
        assert 0.6 <= elapsed < 2.0, elapsed
        assert p.core.stats["tcp_header_timeouts"] == 1
        writer.close()


@pytest.mark.parametrize(
    ("garbage", "status"),
    [
        ("Content-Length: 0\r\nContent-Length: 10\r\n\r\n", 400),
        ("X-Padding: " + "a" * 70_000 + "\r\n", 513),
    ],
    ids=["conflicting-content-length", "oversized-header"],
)
async def test_an_unframable_stream_is_answered_like_udp_before_closing(
    garbage: str, status: int
) -> None:
    async with proxy(TcpLimits()) as p:
        reader, writer = await connect(p.address)
        writer.write((OPTIONS.format(n=status) + garbage).encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert head.startswith(f"SIP/2.0 {status} ".encode()), head[:80]
        assert b"Call-ID: limits-" in head
        assert await closed_by_peer(reader, 2)
        writer.close()

    # the same message in a datagram gets the same status
    core = SipCore(CoreSettings(host="127.0.0.1"))
    datagram = (OPTIONS.format(n="udp") + garbage).replace("TCP", "UDP").encode()
    if status == 400:
        datagram += b"0123456789"
    core.receive_datagram(datagram, ("127.0.0.1", 5999), 0.0, "UDP")
    (out,) = core.datagrams_to_send()
    assert out.data.startswith(f"SIP/2.0 {status} ".encode())


async def test_an_outbound_call_over_tcp_works_while_inbound_connections_are_full() -> None:
    uas = AnsweringUas()
    await uas.start()
    try:
        async with proxy(TcpLimits(max_inbound=2, max_inbound_per_source=2)) as p:
            held = [await connect(p.address) for _ in range(2)]
            reader, writer = await connect(p.address)
            assert await closed_by_peer(reader, 2), "inbound is not full"
            assert uas.transport.tcp_address is not None
            host, port = uas.transport.tcp_address
            target = parse_uri(f"sip:taker@{host}:{port};transport=tcp")
            request = build_request(
                "OPTIONS", target, from_="<sip:rec@127.0.0.1>", to=f"<{target}>"
            )
            p.core.send_request(request, p.transport.now())
            p.transport.flush()
            for _ in range(40):
                await asyncio.sleep(0.05)
                if any(isinstance(e, ResponseReceived) for e in p.events):
                    break
            answers = [e.response.status for e in p.events if isinstance(e, ResponseReceived)]
            assert answers == [200], p.core.stats
            close_all([writer, *(w for _, w in held)])
    finally:
        await uas.close()


async def test_a_picked_udp_port_taken_for_tcp_is_picked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Port 0: the kernel picks a free UDP port, which another program may hold for TCP;
    the transport then picks again, and UDP and TCP still share the port it keeps."""
    loop = asyncio.get_running_loop()
    real = loop.create_server
    taken: list[int] = []

    async def busy_once(*args: object, **kwargs: object) -> asyncio.Server:
        if not taken:
            taken.append(int(args[2]))  # type: ignore[call-overload]
            raise OSError(98, "address already in use")
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "create_server", busy_once)
    transport = SipTransport(SipCore(CoreSettings(host="127.0.0.1")), lambda event: None)
    await transport.start("127.0.0.1", 0)
    try:
        assert transport.udp_address is not None and transport.tcp_address is not None
        assert transport.udp_address[1] == transport.tcp_address[1]
        assert taken and taken[0] != transport.udp_address[1]  # the first pick was let go
    finally:
        await transport.close()


def send_options(p: Proxy, address: tuple[str, int]) -> None:
    """An OPTIONS of ours to ``address`` over TCP (a connection we open)."""
    target = parse_uri(f"sip:uas@{address[0]}:{address[1]};transport=tcp")
    request = build_request("OPTIONS", target, from_="<sip:rec@127.0.0.1>", to=f"<{target}>")
    p.core.send_request(request, p.transport.now())
    p.transport.flush()


async def until(condition: Callable[[], bool], within: float) -> bool:
    for _ in range(int(within / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


async def test_our_own_idle_connections_are_closed_after_the_idle_timeout() -> None:
    async with (
        proxy(TcpLimits()) as server,
        proxy(TcpLimits(idle_seconds=0.3, header_seconds=0.3)) as client,
    ):
        send_options(client, server.address)
        assert await until(lambda: any(isinstance(e, ResponseReceived) for e in client.events), 3)
        assert server.transport.inbound_connections == 1
        # nothing either way for the idle time: we close it, the server sees it go
        assert await until(lambda: server.transport.inbound_connections == 0, 3)
        assert client.core.stats["tcp_outbound_idle_closed"] == 1
        # the next request opens a new one
        send_options(client, server.address)
        assert await until(lambda: server.transport.inbound_connections == 1, 3)


async def test_a_connect_that_hangs_fails_its_transaction_at_the_connect_timeout() -> None:
    """A listener whose backlog is full drops our SYNs: the kernel would retry for about
    two minutes; the transaction fails at ``connect_seconds`` instead, not at Timer F."""
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    filler = socket.create_connection(full.getsockname())  # takes the only slot
    try:
        async with proxy(TcpLimits(connect_seconds=0.3)) as client:
            started = client.transport.now()
            send_options(client, full.getsockname())
            events = client.events
            assert await until(lambda: any(isinstance(e, TransactionTimedOut) for e in events), 3)
            assert client.transport.now() - started < 2.0  # not Timer F's 32 s
            assert client.core.stats["tcp_connect_failed"] == 1
    finally:
        filler.close()
        full.close()
