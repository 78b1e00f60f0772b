"""The packet ring: frames parsed from a block laid out as the kernel lays it out, IP/UDP
from captured bytes, and a real ring (in a network namespace of the test's own) keeping
only incoming RTP to our even ports."""

from __future__ import annotations

import socket
import struct
import time

from proxy.media.fastpath.ring import Packet, PacketRing, block_packets, port_filter
from tests.e2e.netns import in_private_network

# an IPv4/UDP/RTP packet as captured on loopback: 127.0.0.1:4000 → 127.0.0.1:20000
RTP = struct.pack("!BBHII", 0x80, 0, 7, 160, 0x1234) + b"\xff" * 160
UDP = struct.pack("!HHHH", 4000, 20000, 8 + len(RTP), 0) + RTP
IPV4 = (
    struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(UDP), 1, 0x4000, 64, 17, 0,
                socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1"))
    + UDP
)  # fmt: skip
IPV6 = (
    struct.pack("!IHBB16s16s", 0x60000000, len(UDP), 17, 64,
                socket.inet_pton(socket.AF_INET6, "2001:db8::10"),
                socket.inet_pton(socket.AF_INET6, "2001:db8::1"))
    + UDP
)  # fmt: skip


def block(*packets: tuple[float, bytes]) -> bytes:
    """A TPACKET_V3 block: its descriptor, then each packet's tpacket3_hdr (48 bytes and
    the sockaddr_ll, 20) and data, 16-byte aligned, as ``tpacket_rcv`` writes them."""
    first = 48
    body = b""
    offsets = []
    for moment, data in packets:
        net = 48 + 20 + 2  # as the kernel puts it for SOCK_DGRAM: aligned after the ll
        frame_length = (net + len(data) + 15) // 16 * 16
        offsets.append(frame_length)
        sec, nsec = int(moment), round((moment - int(moment)) * 1e9)
        header = struct.pack("=IIIIIIHH", 0, sec, nsec, len(data), len(data), 1, net, net)
        frame = header.ljust(net, b"\0") + data
        body += frame.ljust(frame_length, b"\0")
    chained = b""
    position = 0
    for index, length in enumerate(offsets):
        following = length if index < len(offsets) - 1 else 0
        chained += struct.pack("=I", following) + body[position + 4 : position + length]
        position += length
    descriptor = struct.pack("=IIIIII", 3, 0, 1, len(packets), first, first + len(chained))
    return descriptor.ljust(first, b"\0") + chained


LOCAL = socket.inet_aton("127.0.0.1")
V6_SOURCE = socket.inet_pton(socket.AF_INET6, "2001:db8::10")


def test_packets_come_out_of_a_block_with_their_arrival_times() -> None:
    packets = block_packets(block((1700000000.25, IPV4), (1700000000.5, IPV6)))
    assert [packet[1:] for packet in packets] == [
        (LOCAL, 4000, 20000, RTP),
        (V6_SOURCE, 4000, 20000, RTP),
    ]
    assert abs(packets[0].time - 1700000000.25) < 1e-6
    assert abs(packets[1].time - 1700000000.5) < 1e-6


def test_what_is_not_udp_is_skipped() -> None:
    tcp = bytearray(IPV4)
    tcp[9] = 6
    short = IPV4[:24]  # the UDP header cut
    packets = block_packets(
        block((1.0, bytes(tcp)), (2.0, short), (3.0, b"\x50" + IPV4[1:]), (4.0, IPV4))
    )
    assert packets == [Packet(4.0, LOCAL, 4000, 20000, RTP)]


def test_the_filter_program_ends_in_accept_and_drop() -> None:
    program = port_filter(20000, 20999)
    assert program[-2] == (0x06, 0, 0, 0xFFFF) and program[-1] == (0x06, 0, 0, 0)
    for index, (code, jt, jf, _) in enumerate(program[:-2]):
        assert code != 0x06, "a return before the end"
        assert index + 1 + max(jt, jf) < len(program), "a jump past the end"


def test_a_real_ring_keeps_incoming_rtp_to_even_ports_of_the_range() -> None:
    def capture() -> list[tuple[int, bytes]]:
        ring = PacketRing(20000, 20099, blocks=4, block_kib=64, retire_ms=2)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sender.bind(("127.0.0.1", 4000))
            for port in (20000, 20001, 20100, 19998, 20098):
                sender.sendto(RTP, ("127.0.0.1", port))
            deadline = time.monotonic() + 2
            seen: list[tuple[int, bytes]] = []
            while time.monotonic() < deadline and len(seen) < 2:
                seen += [(packet.port, packet.payload) for packet in ring.read()]
                time.sleep(0.01)
            time.sleep(0.05)
            seen += [(packet.port, packet.payload) for packet in ring.read()]
            assert ring.count_drops() == 0
            return seen
        finally:
            sender.close()
            ring.close()

    # once each (loopback's outgoing copy is filtered out), RTCP and other ports not
    assert in_private_network(capture, timeout=20) == [(20000, RTP), (20098, RTP)]
