"""SIP over TLS with real sockets on loopback and the test CA (``tls_ca.py``): the
handshake both ways, reuse of one connection, CRLF ping/pong, 64 KB messages, the
handshake and idle timeouts, the per-source limits and token bucket, and the
certificates that must be refused."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.sip.dialog import build_request
from proxy.sip.events import Event, RequestReceived, ResponseReceived, TransactionTimedOut
from proxy.sip.flood import FloodSettings
from proxy.sip.tls import (
    ServerTlsSession,
    TlsContexts,
    TlsSettings,
    TlsSetupError,
    load_contexts,
)
from proxy.sip.transport import TcpLimits
from proxy.sip.uri import parse_uri

from .test_transport_limits import Proxy, dribble
from .tls_ca import CertAuthority, Pair

OPTIONS = (
    "OPTIONS sips:uas@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-{n}\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sips:test@127.0.0.1>;tag=t1\r\n"
    "To: <sips:uas@127.0.0.1>\r\n"
    "Call-ID: tls-{n}@127.0.0.1\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "{extra}"
    "Content-Length: 0\r\n\r\n"
)


def contexts(ca: CertAuthority, pair: Pair | None = None, **kw: object) -> TlsContexts:
    own = pair or ca.server
    return load_contexts(TlsSettings(cert=own.cert, key=own.key, ca=ca.ca, **kw))  # type: ignore[arg-type]


class Peer(Proxy):
    """A core + transport listening for TLS (and TCP) on loopback, answering 200."""

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport.tls_address is not None
        return self.transport.tls_address

    def answers(self) -> list[int]:
        return [e.response.status for e in self.events if isinstance(e, ResponseReceived)]

    async def send_options(self, uri: str) -> None:
        target = parse_uri(uri)
        request = build_request("OPTIONS", target, from_="<sips:rec@127.0.0.1>", to=f"<{target}>")
        self.core.send_request(request, self.transport.now())
        self.transport.flush()

    async def wait_for(self, what: type[Event], count: int = 1, within: float = 3.0) -> None:
        for _ in range(int(within / 0.02)):
            if sum(isinstance(e, what) for e in self.events) >= count:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {what.__name__} in {within} s: {self.events} {self.core.stats}")


@contextlib.asynccontextmanager
async def peer(
    tls: TlsContexts | None,
    limits: TcpLimits | None = None,
    flood: FloodSettings | None = None,
    *,
    listen: bool = True,
) -> AsyncIterator[Peer]:
    p = Peer(limits or TcpLimits(), flood)
    await p.transport.start(
        "127.0.0.1",
        0,
        udp=False,
        tcp=True,
        tls=tls,
        tls_listen=("127.0.0.1", 0) if listen and tls is not None else None,
    )
    try:
        yield p
    finally:
        await p.transport.close()


def client_context(ca: CertAuthority, pair: Pair | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca.ca)
    if pair is not None:
        context.load_cert_chain(pair.cert, pair.key)
    return context


async def open_tls(
    address: tuple[str, int], context: ssl.SSLContext, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(
        asyncio.open_connection(
            *address, ssl=context, server_hostname="127.0.0.1", local_addr=(source, 0)
        ),
        3,
    )


async def closed_by_peer(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(65536), within)
    except TimeoutError:
        return False
    except (ConnectionResetError, ssl.SSLError):
        return True
    return data == b""


async def response_head(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)


# -- inbound ------------------------------------------------------------------------------


async def test_options_over_tls_is_answered_on_the_same_connection(tls_ca: CertAuthority) -> None:
    async with peer(contexts(tls_ca)) as p:
        reader, writer = await open_tls(p.address, client_context(tls_ca))
        writer.write(OPTIONS.format(n=1, extra="").encode())
        head = await response_head(reader)
        assert head.startswith(b"SIP/2.0 200 "), head
        assert b"Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-1" in head
        (event,) = [e for e in p.events if isinstance(e, RequestReceived)]
        assert event.transport == "TLS"
        assert p.transport.tls_connections == 1
        writer.close()


async def test_a_double_crlf_ping_gets_one_crlf_pong_and_is_no_message(
    tls_ca: CertAuthority,
) -> None:
    limits = TcpLimits(idle_seconds=0.8)
    async with peer(contexts(tls_ca), limits) as p:
        reader, writer = await open_tls(p.address, client_context(tls_ca))
        for _ in range(4):  # pings every 0.4 s keep a 0.8 s idle timeout away
            writer.write(b"\r\n\r\n")
            assert await asyncio.wait_for(reader.readexactly(2), 2) == b"\r\n"
            await asyncio.sleep(0.4)
        writer.write(b"\r\n")  # a lone CRLF (a pong) is not answered
        assert not await closed_by_peer(reader, 0.2)
        assert p.events == [] and p.core.stats["keepalives"] == 4
        assert await closed_by_peer(reader, 2.0), "idle after the pings, still open"
        assert p.core.stats["tls_idle_timeouts"] == 1
        writer.close()


async def test_a_64_kb_message_arrives_whole_over_tls(tls_ca: CertAuthority) -> None:
    async with peer(contexts(tls_ca)) as p:
        reader, writer = await open_tls(p.address, client_context(tls_ca))
        padding = "X-Padding: " + "a" * 64_000 + "\r\n"
        message = OPTIONS.format(n=64, extra=padding).encode()
        assert 64_000 < len(message) <= 65_535
        writer.write(message)
        assert (await response_head(reader)).startswith(b"SIP/2.0 200 ")
        (event,) = [e for e in p.events if isinstance(e, RequestReceived)]
        assert event.request.headers.get("x-padding") == "a" * 64_000
        writer.close()


async def test_a_slowloris_message_over_tls_is_closed_at_the_header_timeout(
    tls_ca: CertAuthority,
) -> None:
    async with peer(contexts(tls_ca), TcpLimits(idle_seconds=30, header_seconds=0.6)) as p:
        reader, writer = await open_tls(p.address, client_context(tls_ca))
        elapsed = await dribble(reader, writer, OPTIONS.format(n="slow", extra="").encode())
        assert elapsed is not None, "the slowloris connection was kept"
        assert 0.6 <= elapsed < 2.0, elapsed
        assert p.core.stats["tls_header_timeouts"] == 1 and p.events == []
        writer.close()


async def test_a_handshake_never_finished_is_dropped_at_the_handshake_timeout(
    tls_ca: CertAuthority,
) -> None:
    async with peer(contexts(tls_ca, handshake_seconds=0.5)) as p:
        reader, writer = await asyncio.open_connection(*p.address)  # TCP only: no hello
        await asyncio.sleep(0.2)
        assert p.transport.inbound_connections == 1  # half-open: it holds a slot
        started = asyncio.get_running_loop().time()
        assert await closed_by_peer(reader, 3)
        assert 0.2 <= asyncio.get_running_loop().time() - started < 2.0
        await asyncio.sleep(0.05)
        assert p.transport.inbound_connections == 0
        assert p.core.stats["tls_handshakes_failed"] == 1
        writer.close()


async def test_tls_connections_past_the_per_source_limit_are_refused(tls_ca: CertAuthority) -> None:
    async with peer(contexts(tls_ca), TcpLimits(max_inbound_per_source=2)) as p:
        held = [await open_tls(p.address, client_context(tls_ca)) for _ in range(2)]
        with pytest.raises((ConnectionError, ssl.SSLError, asyncio.IncompleteReadError)):
            await open_tls(p.address, client_context(tls_ca))
        other = await open_tls(p.address, client_context(tls_ca), source="127.0.0.2")
        assert p.core.stats["tls_connections_refused"] == 1
        assert p.transport.inbound_connections == 3
        for _, writer in [*held, other]:
            writer.close()


async def test_a_handshake_flood_from_one_source_is_refused_before_the_crypto(
    tls_ca: CertAuthority,
) -> None:
    """The source's token bucket (burst 5, the next token in 100 s) pays for
    handshakes: the 6th and later are closed at accept, without a ServerHello, while
    another source gets in."""
    flood = FloodSettings(requests_per_second=0.01, request_burst=5)
    async with peer(contexts(tls_ca), TcpLimits(max_inbound_per_source=100), flood) as p:
        held = [await open_tls(p.address, client_context(tls_ca)) for _ in range(5)]
        refused = 0
        for _ in range(20):
            reader, writer = await asyncio.open_connection(*p.address)
            writer.write(b"\x16\x03\x01\x00\x05hello")  # the start of a ClientHello
            if await closed_by_peer(reader, 2):
                refused += 1
            writer.close()
        assert refused == 20
        assert p.core.stats["tls_handshakes_refused"] == 20
        assert p.core.stats["tls_handshakes_failed"] == 0  # no handshake was even begun
        _, writer = await open_tls(p.address, client_context(tls_ca), source="127.0.0.3")
        for _, w in [*held, (None, writer)]:
            w.close()


async def test_a_client_without_a_certificate_is_refused_when_clients_are_verified(
    tls_ca: CertAuthority,
) -> None:
    async with peer(contexts(tls_ca, verify_clients=True)) as p:
        reader, writer = await open_tls(p.address, client_context(tls_ca))
        writer.write(OPTIONS.format(n=2, extra="").encode())  # TLS 1.3: refused after
        assert await closed_by_peer(reader, 3)
        writer.close()
        reader, writer = await open_tls(p.address, client_context(tls_ca, tls_ca.client))
        writer.write(OPTIONS.format(n=3, extra="").encode())
        assert (await response_head(reader)).startswith(b"SIP/2.0 200 ")
        assert p.core.stats["tls_handshakes_failed"] == 1
        writer.close()


# -- outbound -----------------------------------------------------------------------------


async def test_requests_to_one_peer_share_one_tls_connection(tls_ca: CertAuthority) -> None:
    async with peer(contexts(tls_ca)) as server, peer(contexts(tls_ca), listen=False) as client:
        host, port = server.address
        for _ in range(3):
            await client.send_options(f"sips:uas@{host}:{port}")
        await client.wait_for(ResponseReceived, 3)
        assert client.answers() == [200, 200, 200]
        assert server.transport.inbound_connections == 1
        assert client.transport.tls_connections == 1
        (via,) = {
            e.request.top_via.transport for e in server.events if isinstance(e, RequestReceived)
        }
        assert via == "TLS"


async def test_transport_tls_is_taken_as_the_legacy_form_of_sips(tls_ca: CertAuthority) -> None:
    async with peer(contexts(tls_ca)) as server, peer(contexts(tls_ca), listen=False) as client:
        host, port = server.address
        await client.send_options(f"sip:uas@{host}:{port};transport=tls")
        await client.wait_for(ResponseReceived)
        assert client.answers() == [200]
        assert server.transport.tls_connections == 1


async def options_to(client: Peer, address: tuple[str, int], server_name: str | None) -> None:
    """OPTIONS to ``address`` as DNS would have resolved it from a URI naming
    ``server_name`` (RFC 5922 §7.2: the certificate must match that name)."""
    request = build_request(
        "OPTIONS", parse_uri("sips:uas@sip.example.net"), from_="<sips:rec@127.0.0.1>",
        to="<sips:uas@sip.example.net>",
    )  # fmt: skip
    client.core.send_request(
        request, client.transport.now(), destination=address, transport="TLS",
        server_name=server_name,
    )  # fmt: skip
    client.transport.flush()


async def test_a_resolved_address_is_verified_against_the_uris_domain(
    tls_ca: CertAuthority,
) -> None:
    """The peer's certificate names sip.example.net only; we reach it by the address DNS
    gave (127.0.0.1), so the name checked must be the domain, not the address."""
    async with (
        peer(contexts(tls_ca, tls_ca.other_host)) as server,
        peer(contexts(tls_ca), listen=False) as client,
    ):
        await options_to(client, server.address, "sip.example.net")
        await client.wait_for(ResponseReceived)
        assert client.answers() == [200]
        # a request with no name (in a dialog, say) reuses the verified connection
        await options_to(client, server.address, None)
        await client.wait_for(ResponseReceived, 2)
        assert client.answers() == [200, 200] and client.transport.tls_connections == 1
        # another name served from the same address does not share it: its own
        # connection is made, and the certificate does not match pbx.test
        await options_to(client, server.address, "pbx.test")
        await client.wait_for(TransactionTimedOut)
        assert client.answers() == [200, 200]
        assert client.core.stats["tls_connect_failed"] == 1


@pytest.mark.parametrize("server_pair", ["rogue", "other_host", "expired"])
async def test_a_peer_certificate_that_does_not_verify_fails_the_request_at_once(
    tls_ca: CertAuthority, server_pair: str
) -> None:
    bad = contexts(tls_ca, getattr(tls_ca, server_pair))
    async with peer(bad) as server, peer(contexts(tls_ca), listen=False) as client:
        host, port = server.address
        started = client.transport.now()
        await client.send_options(f"sips:uas@{host}:{port}")
        await client.wait_for(TransactionTimedOut)
        assert client.transport.now() - started < 2.0  # not Timer F's 32 s
        assert client.answers() == []
        assert client.core.stats["tls_connect_failed"] == 1
        assert not [e for e in server.events if isinstance(e, RequestReceived)]


async def test_a_sips_target_without_tls_fails_and_is_never_sent_over_tcp() -> None:
    async with peer(None) as server, peer(None, listen=False) as client:
        assert server.transport.tcp_address is not None
        host, port = server.transport.tcp_address
        await client.send_options(f"sips:uas@{host}:{port};transport=tcp")
        await client.wait_for(TransactionTimedOut)
        assert client.core.stats["tls_unavailable"] == 1
        assert server.events == [] and server.transport.inbound_connections == 0


# -- settings -----------------------------------------------------------------------------


def test_a_key_that_is_not_the_certificates_is_named(tls_ca: CertAuthority) -> None:
    settings = TlsSettings(cert=tls_ca.server.cert, key=tls_ca.client.key)
    with pytest.raises(TlsSetupError, match=r"^sip\.tls_key: .* is not the key of sip\.tls_cert"):
        load_contexts(settings)


def test_a_missing_file_is_named(tls_ca: CertAuthority, tmp_path: Path) -> None:
    with pytest.raises(TlsSetupError, match=r"^sip\.tls_cert: cannot read .*nope\.pem"):
        load_contexts(TlsSettings(cert=tmp_path / "nope.pem", key=tls_ca.server.key))
    with pytest.raises(TlsSetupError, match=r"^sip\.tls_ca: cannot read"):
        load_contexts(
            TlsSettings(cert=tls_ca.server.cert, key=tls_ca.server.key, ca=tmp_path / "no.pem")
        )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(TlsSetupError, match=r"^sip\.tls_ca: .*not a PEM CA bundle"):
        load_contexts(TlsSettings(cert=tls_ca.server.cert, key=tls_ca.server.key, ca=garbage))


def test_tls_below_1_2_is_never_offered(tls_ca: CertAuthority) -> None:
    both = contexts(tls_ca)
    assert both.server.minimum_version is ssl.TLSVersion.TLSv1_2
    assert both.client.minimum_version is ssl.TLSVersion.TLSv1_2
    assert both.client.check_hostname and both.client.verify_mode is ssl.CERT_REQUIRED


def test_tls_both_ways_under_uvloop(tls_ca: CertAuthority) -> None:
    """uvloop, the loop recproxy runs on: a ClientHello sent at once after connecting
    reaches the handshake (nothing read before the TLS layer took over is lost), and an
    outbound TLS connection is made and reused."""

    async def exchange() -> None:
        async with peer(contexts(tls_ca)) as server, peer(contexts(tls_ca), listen=False) as client:
            for n in range(5):
                reader, writer = await open_tls(server.address, client_context(tls_ca))
                writer.write(OPTIONS.format(n=f"uv{n}", extra="").encode())
                assert (await response_head(reader)).startswith(b"SIP/2.0 200 ")
                writer.close()
            host, port = server.address
            for _ in range(2):
                await client.send_options(f"sips:uas@{host}:{port}")
            await client.wait_for(ResponseReceived, 2)
            assert client.answers() == [200, 200] and client.transport.tls_connections == 1

    uvloop.run(exchange())


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(chunks=st.lists(st.binary(max_size=600), max_size=6))
def test_garbage_before_a_handshake_raises_only_the_ssl_error(
    tls_ca: CertAuthority, chunks: list[bytes]
) -> None:
    """Whatever a peer sends instead of a ClientHello, the session says so with
    ``ssl.SSLError`` (the transport then counts a failed handshake and aborts), or
    waits for more: never another exception."""
    session = ServerTlsSession(contexts(tls_ca).server)
    for chunk in [b"\x16\x03\x01", *chunks]:
        try:
            assert session.receive(chunk) == b""
        except ssl.SSLError:
            return
        session.outgoing()
    assert not session.established


# -- RFC 5923 aliases ---------------------------------------------------------------------


def aliased(transport: str, alias: bool) -> bytes:
    flag = ";alias" if alias else ""
    text = OPTIONS.format(n=f"alias-{transport}-{alias}", extra="").replace(
        "SIP/2.0/TLS 127.0.0.1:5999;", f"SIP/2.0/{transport} 127.0.0.1:5999{flag};"
    )
    return (text if transport == "TLS" else text.replace("sips:", "sip:")).encode()


async def request_on(reader: asyncio.StreamReader, within: float = 2.0) -> bytes | None:
    """The next request that arrives on our connection (None: none did)."""
    try:
        while True:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), within)
            if not head.startswith(b"SIP/2.0 "):
                return head
    except (TimeoutError, asyncio.IncompleteReadError):
        return None


@pytest.mark.parametrize(
    ("kind", "alias", "client_cert", "reused"),
    [
        ("TCP", True, False, True),
        ("TCP", False, False, False),
        ("TLS", True, True, True),  # the client's certificate verified: it is that host
        ("TLS", True, False, False),  # an unauthenticated TLS peer gets no alias
    ],
)
async def test_a_via_alias_lets_our_requests_reuse_the_peers_connection(
    tls_ca: CertAuthority, kind: str, alias: bool, client_cert: bool, reused: bool
) -> None:
    tls = contexts(tls_ca, verify_clients=True) if client_cert else contexts(tls_ca)
    async with peer(tls) as p:
        if kind == "TLS":
            pair = tls_ca.client if client_cert else None
            reader, writer = await open_tls(p.address, client_context(tls_ca, pair))
        else:
            assert p.transport.tcp_address is not None
            reader, writer = await asyncio.open_connection(*p.transport.tcp_address)
        writer.write(aliased(kind, alias))
        await p.wait_for(RequestReceived)
        scheme = (
            "sips:uas@127.0.0.1:5999" if kind == "TLS" else "sip:uas@127.0.0.1:5999;transport=tcp"
        )
        await p.send_options(scheme)
        request = await request_on(reader, 2.0 if reused else 0.5)
        if reused:
            assert request is not None and request.startswith(f"OPTIONS {scheme} ".encode())
        else:
            assert request is None  # sent to 127.0.0.1:5999 itself, where nobody listens
            await p.wait_for(TransactionTimedOut)
        writer.close()
