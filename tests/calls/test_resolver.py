"""The RFC 3263 resolver against a real DNS server on loopback (started by the test):
NAPTR → SRV → A with dnspython's asyncio resolver, its TTL cache and its timeout."""

from __future__ import annotations

import asyncio
import random
import socket

from proxy.calls.resolver import Resolver
from proxy.sip.resolve import Target
from proxy.sip.uri import SipUri, parse_uri

from ..dns_server import DnsServer

ZONE = {
    ("pbx.example", "NAPTR"): [
        '10 10 "s" "SIP+D2T" "" _sip._tcp.pbx.example.',
        '20 10 "s" "SIP+D2U" "" _sip._udp.pbx.example.',
    ],
    ("_sip._tcp.pbx.example", "SRV"): ["10 0 5080 one.pbx.example."],
    ("_sip._udp.pbx.example", "SRV"): [
        "10 0 5070 one.pbx.example.",
        "20 0 5072 two.pbx.example.",
    ],
    ("one.pbx.example", "A"): ["127.0.0.11"],
    ("two.pbx.example", "A"): ["127.0.0.12"],
    ("v6.pbx.example", "AAAA"): ["::1"],
}


def uri(text: str) -> SipUri:
    parsed = parse_uri(text)
    assert isinstance(parsed, SipUri)
    return parsed


async def test_naptr_srv_and_a_records_give_the_ordered_targets() -> None:
    with DnsServer(ZONE) as server:
        resolver = Resolver([server.address], transports=("UDP", "TCP"), rng=random.Random(1))
        targets = await resolver.resolve(uri("sip:desk@pbx.example"))
    assert targets == [
        Target("127.0.0.11", 5080, "TCP"),
        Target("127.0.0.11", 5070, "UDP"),
        Target("127.0.0.12", 5072, "UDP"),
    ]
    assert server.asked[0] == ("pbx.example", "NAPTR")


async def test_udp_only_skips_the_tcp_naptr_record() -> None:
    with DnsServer(ZONE) as server:
        resolver = Resolver([server.address], transports=("UDP",))
        targets = await resolver.resolve(uri("sip:desk@pbx.example"))
    assert [t.port for t in targets] == [5070, 5072]
    assert ("_sip._tcp.pbx.example", "SRV") not in server.asked


async def test_answers_are_cached_for_their_ttl_and_asked_again_after() -> None:
    clock = [100.0]
    with DnsServer(ZONE, ttl=30) as server:
        resolver = Resolver([server.address], now=lambda: clock[0])
        first = await resolver.resolve(uri("sip:desk@one.pbx.example:5070"))
        asked = len(server.asked)
        clock[0] += 29
        assert await resolver.resolve(uri("sip:desk@one.pbx.example:5070")) == first
        assert len(server.asked) == asked  # from the cache
        clock[0] += 2
        await resolver.resolve(uri("sip:desk@one.pbx.example:5070"))
        assert len(server.asked) > asked  # the TTL ran out
    assert first == [Target("127.0.0.11", 5070, "UDP")]


async def test_an_ipv6_only_name_gives_nothing_when_we_send_over_ipv4_only() -> None:
    with DnsServer(ZONE) as server:
        v4 = Resolver([server.address], families=(4,))
        v6 = Resolver([server.address], families=(4, 6))
        assert await v4.resolve(uri("sip:desk@v6.pbx.example:5060")) == []
        assert await v6.resolve(uri("sip:desk@v6.pbx.example:5060")) == [Target("::1", 5060, "UDP")]


async def test_a_dead_name_server_gives_no_targets_within_the_timeout() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))  # receives, never answers
    try:
        port = silent.getsockname()[1]
        resolver = Resolver([f"127.0.0.1:{port}"], timeout=0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        # an explicit port: A only (IPv4), one lookup
        assert await resolver.resolve(uri("sip:desk@pbx.example:5060")) == []
        assert loop.time() - started < 2
    finally:
        silent.close()


async def test_a_numeric_uri_asks_no_name_server() -> None:
    resolver = Resolver(["127.0.0.1:9"], timeout=0.1)  # nothing listens there
    assert await resolver.resolve(uri("sip:desk@127.0.0.5:5070")) == [
        Target("127.0.0.5", 5070, "UDP")
    ]


async def test_known_gives_an_address_or_fresh_cached_answers_without_awaiting() -> None:
    clock = [100.0]
    with DnsServer(ZONE, ttl=30) as server:
        resolver = Resolver(
            [server.address], transports=("UDP",), rng=random.Random(1), now=lambda: clock[0]
        )
        numeric = uri("sip:desk@127.0.0.5:5090")
        assert resolver.known(numeric) == await resolver.resolve(numeric)
        assert resolver.known(numeric) == [Target("127.0.0.5", 5090, "UDP")]
        named = uri("sip:desk@pbx.example")
        assert resolver.known(named) is None  # not asked yet: DNS is needed
        asked = await resolver.resolve(named)
        questions = list(server.asked)
        assert resolver.known(named) == asked  # every answer cached and fresh
        clock[0] += 31
        assert resolver.known(named) is None  # the TTL ran out
        assert server.asked == questions  # known() itself never asks
