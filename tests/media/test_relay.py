"""The RTP relay on real loopback sockets (IPv4 and ::1): latching, forwarding,
rewriting, ports, and sends that never raise."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import pytest
import uvloop

from proxy.media.relay import (
    MediaSession,
    NoPortsAvailable,
    PortAllocator,
    SourceLatch,
    StreamRewriter,
)


def rtp(seq: int, ts: int, ssrc: int, payload: bytes = b"\xff" * 160, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, ts, ssrc) + payload


class Phone:
    """A plain UDP socket standing in for a phone's RTP port (on ``host``: IPv4 or v6)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.address: tuple[str, int] = self.sock.getsockname()[:2]

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, (self.host, port))

    async def receive(self, timeout: float = 1.0) -> bytes:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.sock_recv(self.sock, 2048), timeout)

    async def nothing(self, wait: float = 0.15) -> bool:
        try:
            await self.receive(wait)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
async def session() -> AsyncIterator[MediaSession]:
    allocator = PortAllocator(41000, 41099)
    media = MediaSession(allocator, "127.0.0.1")
    yield media
    media.close()
    assert allocator.in_use == 0


async def settle() -> None:
    await asyncio.sleep(0.05)


async def test_bridged_legs_forward_both_ways_and_feed_sinks(session: MediaSession) -> None:
    seen: dict[str, list[tuple[int, int, bytes]]] = {"caller": [], "taker": []}
    caller_leg = await session.open_leg("caller", sink=lambda *a: seen["caller"].append(a))
    taker_leg = await session.open_leg("call_taker", sink=lambda *a: seen["taker"].append(a))
    caller_leg.audio_payload_type = taker_leg.audio_payload_type = 0
    alice, bob = Phone(), Phone()
    try:
        caller_leg.set_remote(*alice.address)
        taker_leg.set_remote(*bob.address)
        session.bridge()
        alice.send(rtp(1, 160, 0xA), caller_leg.port)
        assert await bob.receive() == rtp(1, 160, 0xA)
        bob.send(rtp(7, 900, 0xB, b"\x01" * 160), taker_leg.port)
        got = await alice.receive()
        assert got[12:] == b"\x01" * 160
        await settle()
        assert seen["caller"] == [(1, 160, b"\xff" * 160)]
        assert seen["taker"] == [(7, 900, b"\x01" * 160)]
        assert caller_leg.latched == alice.address
        assert taker_leg.stats.packets_in == 1 and caller_leg.stats.packets_out == 1
    finally:
        alice.close()
        bob.close()


async def test_packets_from_another_source_are_dropped_and_counted(session: MediaSession) -> None:
    received: list[int] = []
    leg = await session.open_leg("caller", sink=lambda seq, ts, p: received.append(seq))
    leg.audio_payload_type = 0
    taker = await session.open_leg("call_taker")
    alice, mallory, bob = Phone(), Phone(), Phone()
    try:
        leg.set_remote(*alice.address)
        taker.set_remote(*bob.address)
        session.bridge()
        alice.send(rtp(1, 160, 1), leg.port)  # latches to alice's exact port
        await bob.receive()
        mallory.send(rtp(2, 320, 666), leg.port)  # same IP, other port: RTP bleed attempt
        assert await bob.nothing()
        assert received == [1]
        assert leg.stats.dropped_unknown_source == 1
    finally:
        for phone in (alice, mallory, bob):
            phone.close()


async def test_not_bridged_means_not_forwarded_but_still_recorded(session: MediaSession) -> None:
    received: list[int] = []
    leg = await session.open_leg("caller", sink=lambda seq, ts, p: received.append(seq))
    leg.audio_payload_type = 0
    taker = await session.open_leg("call_taker")
    alice, bob = Phone(), Phone()
    try:
        leg.set_remote(*alice.address)
        taker.set_remote(*bob.address)
        alice.send(rtp(5, 800, 1), leg.port)
        assert await bob.nothing()
        assert received == [5]
    finally:
        alice.close()
        bob.close()


async def test_malformed_packets_are_dropped(session: MediaSession) -> None:
    leg = await session.open_leg("caller")
    alice = Phone()
    try:
        leg.set_remote(*alice.address)
        alice.send(b"\x00" * 20, leg.port)  # version 0
        alice.send(b"\x80\x00", leg.port)  # too short
        await settle()
        assert leg.stats.dropped_malformed == 2
        assert leg.stats.packets_in == 0
    finally:
        alice.close()


def test_rewriter_continues_one_stream_across_sources() -> None:
    rewriter = StreamRewriter(ssrc=0x1234, first_seq=100, first_ts=8000)
    own = [rewriter.next_own(160) for _ in range(3)]
    assert own == [(100, 8000), (101, 8160), (102, 8320)]
    packet = bytearray(rtp(40000, 5_000_000, 0xBEEF))
    rewriter.rewrite(packet)
    _, marker_pt, seq, ts, ssrc = struct.unpack_from("!BBHII", packet)
    assert (seq, ts, ssrc) == (103, 8480, 0x1234)
    assert marker_pt & 0x80
    packet = bytearray(rtp(40001, 5_000_160, 0xBEEF))
    rewriter.rewrite(packet)
    _, marker_pt, seq, ts, ssrc = struct.unpack_from("!BBHII", packet)
    assert (seq, ts, ssrc) == (104, 8640, 0x1234)
    assert not marker_pt & 0x80


def test_rewriter_wraps_sequence_and_timestamp() -> None:
    rewriter = StreamRewriter(ssrc=1, first_seq=65535, first_ts=0xFFFFFF60)
    assert rewriter.next_own(160) == (65535, 0xFFFFFF60)
    packet = bytearray(rtp(10, 10, 2))
    rewriter.rewrite(packet)
    _, _, seq, ts, _ = struct.unpack_from("!BBHII", packet)
    assert (seq, ts) == (0, 0)


async def test_caller_leg_rewrites_relayed_packets(session: MediaSession) -> None:
    caller = await session.open_leg("caller")
    taker = await session.open_leg("call_taker")
    caller.rewriter = StreamRewriter(ssrc=0x77, first_seq=1, first_ts=0)
    alice, bob = Phone(), Phone()
    try:
        caller.set_remote(*alice.address)
        taker.set_remote(*bob.address)
        seq, ts = caller.rewriter.next_own(160)
        caller.send_own(rtp(seq, ts, 0x77))
        first = await alice.receive()
        session.bridge()
        bob.send(rtp(999, 123456, 0xB0B), taker.port)
        second = await alice.receive()
        s1 = struct.unpack_from("!HII", first, 2)
        s2 = struct.unpack_from("!HII", second, 2)
        assert s2 == (s1[0] + 1, s1[1] + 160, 0x77)
    finally:
        alice.close()
        bob.close()


def test_allocator_hands_out_even_ports_and_runs_out() -> None:
    allocator = PortAllocator(30001, 30008)
    ports = [allocator.allocate() for _ in range(3)]
    assert ports == [30002, 30004, 30006]
    with pytest.raises(NoPortsAvailable):
        allocator.allocate()
    allocator.release(30004)
    assert allocator.allocate() == 30004
    assert allocator.in_use == 3


async def test_busy_ports_are_skipped() -> None:
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", 41200))
    try:
        allocator = PortAllocator(41200, 41203)
        media = MediaSession(allocator, "127.0.0.1")
        leg = await media.open_leg("caller")
        assert leg.port == 41202
        media.close()
        assert allocator.in_use == 0
    finally:
        blocker.close()


async def test_a_pair_whose_rtcp_port_is_busy_is_skipped_and_its_rtp_socket_closed() -> None:
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", 41211))  # the RTCP port of the first pair
    try:
        allocator = PortAllocator(41210, 41213)
        media = MediaSession(allocator, "127.0.0.1")
        leg = await media.open_leg("caller")
        assert leg.port == 41212
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 41210))  # the skipped pair's RTP socket was closed
        probe.close()
        media.close()
        assert allocator.in_use == 0
    finally:
        blocker.close()


def test_a_leg_binds_both_ports_and_frees_them_on_asyncio_and_uvloop() -> None:
    """The legs' sockets are made and bound by the relay, then handed to the loop."""

    def bindable(port: int) -> bool:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            probe.close()
        return True

    async def open_then_close() -> tuple[bool, bool, bool, bool]:
        media = MediaSession(PortAllocator(41220, 41229), "127.0.0.1")
        leg = await media.open_leg("caller")
        held = (bindable(leg.port), bindable(leg.port + 1))
        media.close()
        await asyncio.sleep(0)  # the loop closes the transports' sockets
        return (*held, bindable(leg.port), bindable(leg.port + 1))

    for run in (asyncio.run, uvloop.run):
        assert run(open_then_close()) == (False, False, True, True)


async def test_rtcp_is_relayed_when_bridged(session: MediaSession) -> None:
    caller = await session.open_leg("caller")
    taker = await session.open_leg("call_taker")
    alice_rtcp, bob_rtcp = Phone(), Phone()
    try:
        caller.set_remote(alice_rtcp.address[0], alice_rtcp.address[1] - 1)
        taker.set_remote(bob_rtcp.address[0], bob_rtcp.address[1] - 1)
        session.bridge()
        report = struct.pack("!BBHI", 0x80, 201, 1, 0xA)
        alice_rtcp.send(report, caller.port + 1)
        assert await bob_rtcp.receive() == report
    finally:
        alice_rtcp.close()
        bob_rtcp.close()


async def test_only_the_audio_payload_type_is_recorded_and_dtmf_goes_aside(
    session: MediaSession,
) -> None:
    audio: list[int] = []
    events: list[tuple[int, bool, bytes]] = []
    leg = await session.open_leg("caller", sink=lambda seq, ts, p: audio.append(seq))
    leg.audio_payload_type = 8
    leg.dtmf_payload_type = 101
    leg.dtmf_sink = lambda seq, ts, marker, p, packet: events.append((seq, marker, p))
    alice = Phone()
    try:
        leg.set_remote(*alice.address)
        alice.send(rtp(1, 160, 5, pt=8), leg.port)
        alice.send(rtp(2, 320, 5, b"\x05\x0a\x00\xa0", pt=101 | 0x80), leg.port)
        alice.send(rtp(3, 480, 5, b"\x00", pt=13), leg.port)  # comfort noise: neither
        await settle()
        assert audio == [1]
        assert events == [(2, True, b"\x05\x0a\x00\xa0")]
    finally:
        alice.close()


async def test_allocator_keeps_totals_of_closed_legs() -> None:
    allocator = PortAllocator(41300, 41399)
    media = MediaSession(allocator, "127.0.0.1")
    leg = await media.open_leg("caller")
    alice = Phone()
    try:
        leg.set_remote(*alice.address)
        alice.send(rtp(1, 160, 1), leg.port)
        alice.send(b"\x00" * 20, leg.port)
        await settle()
        assert allocator.open_legs == {leg}
        media.close()
        assert allocator.open_legs == set()
        assert allocator.closed_totals.packets_in == 1
        assert allocator.closed_totals.dropped_malformed == 1
        media.close()  # idempotent: not counted twice
        assert allocator.closed_totals.packets_in == 1
    finally:
        alice.close()


async def test_held_telephone_events_are_not_forwarded_but_audio_is(
    session: MediaSession,
) -> None:
    caller = await session.open_leg("caller")
    taker = await session.open_leg("call_taker")
    taker.dtmf_payload_type = 101
    held: list[bytes] = []
    taker.dtmf_sink = lambda seq, ts, marker, p, packet: held.append(packet)
    alice, bob = Phone(), Phone()
    try:
        caller.set_remote(*alice.address)
        taker.set_remote(*bob.address)
        session.bridge()
        event = rtp(1, 160, 9, b"\x0a\x0a\x00\xa0", pt=101)
        bob.send(event, taker.port)
        bob.send(rtp(2, 320, 9, pt=0), taker.port)
        assert (await alice.receive())[1] & 0x7F == 0  # the audio, not the event
        assert await alice.nothing()
        assert held == [event]
        caller.send_relayed(held[0])  # what the DTMF handler does with a released digit
        assert (await alice.receive())[1] & 0x7F == 101
    finally:
        alice.close()
        bob.close()


async def test_a_muted_leg_sends_nothing_relayed(session: MediaSession) -> None:
    caller = await session.open_leg("caller")
    taker = await session.open_leg("call_taker")
    alice, bob = Phone(), Phone()
    try:
        caller.set_remote(*alice.address)
        taker.set_remote(*bob.address)
        session.bridge()
        taker.muted = True
        alice.send(rtp(1, 160, 1), caller.port)
        assert await bob.nothing()
        taker.muted = False
        alice.send(rtp(2, 320, 1), caller.port)
        assert (await bob.receive())[2:4] == b"\x00\x02"
    finally:
        alice.close()
        bob.close()


def test_rewriter_continues_after_packets_numbered_elsewhere() -> None:
    rewriter = StreamRewriter(ssrc=5, first_seq=10, first_ts=1600)
    packet = bytearray(rtp(500, 80000, 77))
    rewriter.rewrite(packet)
    rewriter.continue_after(next_seq=20, next_ts=4000)  # a tone sent 9 packets meanwhile
    packet = bytearray(rtp(501, 80160, 77))
    rewriter.rewrite(packet)
    _, _, seq, ts, ssrc = struct.unpack_from("!BBHII", packet)
    assert (seq, ts, ssrc) == (20, 4000, 5)


def test_rewriter_catches_up_with_a_worker_that_numbered_later_packets() -> None:
    worker = StreamRewriter(ssrc=5, first_seq=10, first_ts=1600)
    worker.rewrite(bytearray(rtp(500, 80000, 77)))
    here = StreamRewriter(ssrc=5, first_seq=0, first_ts=0)
    here.load(worker.state())  # handed to a worker, which goes on: 11 … 20
    for n in range(1, 11):
        worker.rewrite(bytearray(rtp(500 + n, 80000 + 160 * n, 77)))
    packet = bytearray(rtp(9000, 0, 88))  # a new source here, before the worker answered
    here.rewrite(packet)
    assert struct.unpack_from("!H", packet, 2)[0] == 11  # from the stale numbering
    here.catch_up(worker.state())
    packet = bytearray(rtp(9001, 160, 88))
    here.rewrite(packet)
    _, marker_pt, seq, ts, _ = struct.unpack_from("!BBHII", packet)
    assert (seq, ts) == (21, 3360)  # after the worker's last, 20 at 3200
    assert marker_pt & 0x80
    same = StreamRewriter(ssrc=5, first_seq=0, first_ts=0)
    same.load(worker.state())
    same.rewrite(bytearray(rtp(511, 80000 + 160 * 11, 77)))  # later, same offsets
    before = same.state()
    same.catch_up(worker.state())  # the worker's are earlier: nothing changes
    assert same.state() == before


# ---------------------------------------------------------------------------------------
# IPv6: legs bound in the family of the party they face


async def test_ipv6_legs_relay_and_latch_on_loopback(session: MediaSession) -> None:
    caller = await session.open_leg("caller", host="::1")
    taker = await session.open_leg("call_taker", host="::1")
    alice, bob = Phone("::1"), Phone("::1")
    try:
        caller.set_remote("0:0::1", alice.address[1])  # SDP text, not the kernel's form
        taker.set_remote(*bob.address)
        session.bridge()
        alice.send(rtp(1, 160, 0xA), caller.port)
        assert await bob.receive() == rtp(1, 160, 0xA)
        bob.send(rtp(2, 320, 0xB), taker.port)
        assert (await alice.receive())[12:] == b"\xff" * 160
        assert caller.latched == alice.address and caller.family == 6
    finally:
        alice.close()
        bob.close()


async def test_an_ipv4_caller_and_an_ipv6_call_taker_are_relayed(session: MediaSession) -> None:
    caller = await session.open_leg("caller")
    taker = await session.open_leg("call_taker", host="::1")
    alice, bob = Phone("127.0.0.1"), Phone("::1")
    try:
        caller.set_remote(*alice.address)
        taker.set_remote(*bob.address)
        session.bridge()
        alice.send(rtp(1, 160, 0xA), caller.port)
        assert await bob.receive() == rtp(1, 160, 0xA)
        bob.send(rtp(7, 900, 0xB, b"\x01" * 160), taker.port)
        assert (await alice.receive())[12:] == b"\x01" * 160
        assert (caller.family, taker.family) == (4, 6)
    finally:
        alice.close()
        bob.close()


# ---------------------------------------------------------------------------------------
# Latching: the exact SDP address first; another port of that IP only after quiet


async def test_a_sender_on_the_partys_ip_that_sends_first_does_not_take_the_leg(
    session: MediaSession,
) -> None:
    """Defect 6: on main the first packet from the SDP's IP, any port, owned the leg."""
    received: list[int] = []
    leg = await session.open_leg("caller", sink=lambda seq, ts, p: received.append(seq))
    leg.audio_payload_type = 0
    taker = await session.open_leg("call_taker")
    alice, mallory, bob = Phone(), Phone(), Phone()
    try:
        leg.set_remote(*alice.address)
        taker.set_remote(*bob.address)
        session.bridge()
        mallory.send(rtp(100, 16000, 666, b"\x66" * 160), leg.port)  # first, same IP
        await settle()
        for seq in range(1, 4):
            alice.send(rtp(seq, seq * 160, 1), leg.port)
            mallory.send(rtp(100 + seq, 16000 + seq * 160, 666, b"\x66" * 160), leg.port)
        for _ in range(3):
            assert (await bob.receive())[8:12] == b"\x00\x00\x00\x01"  # alice's SSRC
        assert await bob.nothing()
        assert received == [1, 2, 3]
        assert leg.latched == alice.address
        assert leg.stats.dropped_unknown_source == 4
    finally:
        for phone in (alice, mallory, bob):
            phone.close()


async def test_another_port_is_accepted_after_the_nat_grace_and_the_exact_one_retakes() -> None:
    allocator = PortAllocator(41400, 41499)
    media = MediaSession(allocator, "127.0.0.1", nat_grace=0.2)
    leg = await media.open_leg("caller")
    taker = await media.open_leg("call_taker")
    exact, nat, bob = Phone(), Phone(), Phone()
    try:
        leg.set_remote(*exact.address)  # the party's SDP; it sends from a NAT port instead
        taker.set_remote(*bob.address)
        media.bridge()
        nat.send(rtp(1, 160, 5), leg.port)
        assert await bob.nothing(0.05), "another port accepted before the grace"
        await asyncio.sleep(0.2)
        nat.send(rtp(2, 320, 5), leg.port)
        assert (await bob.receive())[2:4] == b"\x00\x02"
        assert leg.latched == nat.address
        exact.send(rtp(3, 480, 5), leg.port)  # the SDP's own address appears: it wins
        assert (await bob.receive())[2:4] == b"\x00\x03"
        nat.send(rtp(4, 640, 5), leg.port)
        assert await bob.nothing()
        assert leg.latched == exact.address
        assert leg.stats.dropped_unknown_source == 2
    finally:
        for phone in (exact, nat, bob):
            phone.close()
        media.close()


async def test_a_latched_source_that_keeps_sending_is_not_replaced() -> None:
    allocator = PortAllocator(41400, 41499)
    media = MediaSession(allocator, "127.0.0.1", nat_grace=0.15)
    leg = await media.open_leg("caller")
    alice, mallory = Phone(), Phone()
    try:
        leg.set_remote(*alice.address)
        for seq in range(15):  # 0.3 s: twice the grace, both sending all the time
            alice.send(rtp(seq, seq * 160, 1), leg.port)
            mallory.send(rtp(seq, seq * 160, 2), leg.port)
            await asyncio.sleep(0.02)
        assert leg.latched == alice.address
        assert leg.stats.packets_in == 15 and leg.stats.dropped_unknown_source == 15
    finally:
        alice.close()
        mallory.close()
        media.close()


def test_latch_rules_on_a_fake_clock() -> None:
    now = [100.0]
    latch = SourceLatch(1.0, clock=lambda: now[0])
    exact, nat, other_host = ("10.0.0.5", 4000), ("10.0.0.5", 61000), ("10.0.0.6", 4000)
    latch.expect(exact, activity=0)
    assert not latch.admit(other_host, 0)  # another IP: never
    now[0] = 100.9
    assert not latch.admit(nat, 0)  # nothing yet, but not quiet for 1 s since the SDP
    now[0] = 101.0
    assert latch.admit(nat, 0)  # 1 s of nothing: the NAT case
    assert latch.admit(exact, 5)  # the exact address: always, at once
    now[0] = 105.0
    assert not latch.admit(nat, 9)  # the latched source sent since the last look
    now[0] = 105.9
    assert not latch.admit(nat, 9)
    now[0] = 106.0
    assert latch.admit(nat, 9)  # ... and then nothing for 1 s


async def test_rtcp_prefers_the_exact_port_too(session: MediaSession) -> None:
    caller = await session.open_leg("caller")
    taker = await session.open_leg("call_taker")
    alice_rtcp, mallory, bob_rtcp = Phone(), Phone(), Phone()
    try:
        caller.set_remote(alice_rtcp.address[0], alice_rtcp.address[1] - 1)
        taker.set_remote(bob_rtcp.address[0], bob_rtcp.address[1] - 1)
        session.bridge()
        mallory.send(b"\x80\xc9\x00\x01evil", caller.port + 1)
        report = struct.pack("!BBHI", 0x80, 201, 1, 0xA)
        alice_rtcp.send(report, caller.port + 1)
        assert await bob_rtcp.receive() == report
        assert await bob_rtcp.nothing()
        assert caller.rtcp_latched == alice_rtcp.address
        assert caller.stats.dropped_unknown_source == 1
    finally:
        for phone in (alice_rtcp, mallory, bob_rtcp):
            phone.close()


# ---------------------------------------------------------------------------------------
# Sends never raise (uvloop raises from sendto at once; asyncio reports to the protocol)

UNREACHABLE = ["::1", "999.1.1.1"]  # another family; not a literal (uvloop: ValueError)


async def _send_to_bad_addresses_then_relay() -> tuple[int, bytes]:
    allocator = PortAllocator(41500, 41599)
    media = MediaSession(allocator, "127.0.0.1")
    caller = await media.open_leg("caller")
    taker = await media.open_leg("call_taker")
    alice, bob = Phone(), Phone()
    try:
        media.bridge()
        caller.set_remote(*alice.address)
        for host in UNREACHABLE:  # what an SDP named before addresses were checked
            taker.set_remote(host, 4000)
            taker.send_own(rtp(1, 160, 3))
            taker.send_rtcp(b"\x80\xc9\x00\x01")
            alice.send(rtp(2, 320, 1), caller.port)  # relayed to the bad address
            await settle()
        taker.set_remote(*bob.address)  # the same sockets still work
        alice.send(rtp(3, 480, 1), caller.port)
        return taker.stats.send_errors, await bob.receive()
    finally:
        alice.close()
        bob.close()
        media.close()


def test_sends_to_unusable_addresses_are_counted_under_uvloop_and_the_leg_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors, relayed = uvloop.run(_send_to_bad_addresses_then_relay())
    assert errors == 3 * len(UNREACHABLE)
    assert relayed[2:4] == b"\x00\x03"
    warnings = [r for r in caplog.records if "cannot send" in r.getMessage()]
    assert len(warnings) == 1, "logged once per leg, not once per packet"


def test_sends_to_unusable_addresses_do_not_raise_under_asyncio() -> None:
    _, relayed = asyncio.run(_send_to_bad_addresses_then_relay())
    assert relayed[2:4] == b"\x00\x03"


async def test_the_allocator_snapshot_sums_open_and_closed_legs() -> None:
    allocator = PortAllocator(41200, 41299)
    media = MediaSession(allocator, "127.0.0.1")
    caller = await media.open_leg("caller")
    phone = Phone()
    try:
        caller.set_remote(*phone.address)
        caller.stats.packets_in = 7  # as the relay counts them
        allocator.closed_totals.packets_in = 5  # legs of calls already ended
        snap = allocator.snapshot()
        assert (snap.in_use, snap.capacity) == (1, allocator.capacity)
        assert snap.totals.packets_in == 12
        caller.stats.packets_in = 8
        assert snap.totals.packets_in == 12  # a copy
        media.close()  # the leg's counters move to the closed totals: nothing lost
        after = allocator.snapshot()
        assert (after.in_use, after.totals.packets_in) == (0, 13)
    finally:
        media.close()
        phone.close()


async def test_a_hand_over_relays_the_caller_to_the_new_leg_and_frees_the_old(
    session: MediaSession,
) -> None:
    caller_leg = await session.open_leg("caller")
    first = await session.open_leg("call_taker")
    second = await session.open_leg("transfer target")
    alice, bob, carol = Phone(), Phone(), Phone()
    try:
        caller_leg.set_remote(*alice.address)
        first.set_remote(*bob.address)
        second.set_remote(*carol.address)
        session.bridge()
        assert session.allocator.in_use == 3  # three legs (a port pair each)
        alice.send(rtp(1, 160, 0xA), caller_leg.port)
        assert await bob.receive() == rtp(1, 160, 0xA)
        assert await carol.nothing()  # the target hears nothing before it answers

        session.hand_over(second)
        assert session.call_taker is second and first.closed
        assert session.allocator.in_use == 2
        alice.send(rtp(2, 320, 0xA), caller_leg.port)
        assert await carol.receive() == rtp(2, 320, 0xA)
        carol.send(rtp(9, 99, 0xC, b"\x02" * 160), second.port)
        assert (await alice.receive())[12:] == b"\x02" * 160
        assert await bob.nothing()
    finally:
        for phone in (alice, bob, carol):
            phone.close()
