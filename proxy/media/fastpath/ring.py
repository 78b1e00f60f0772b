"""The recorder's copy of the packets the kernel forwards: an ``AF_PACKET`` socket with
a ``TPACKET_V3`` receive ring, filtered in the kernel to our RTP ports.

A packet tap sees a packet as it arrives, before netfilter rewrites it, so the ring
holds what the party sent to our leg — the packet the relay would have received.  The
socket is ``SOCK_DGRAM`` (frames start at the IP header, so no link-layer or VLAN
offsets) and unbound (every interface of the network namespace).  The classic BPF
program keeps UDP to an even port of the RTP range, IPv4 or IPv6, not fragments, and
not the copies of our own or the parties' sends (``PACKET_OUTGOING``, seen on loopback).

The kernel fills blocks and hands each one over when it is full or ``retire_ms`` old;
the reader walks a handed block and gives it back.  When the reader is slow and the
ring full, the kernel drops — forwarding never waits for us — and counts the drops
(``PACKET_STATISTICS``).

The parsing (``block_packets``) is pure, for tests on captured bytes.
"""

from __future__ import annotations

import ctypes
import mmap
import socket
import struct
from collections.abc import Iterator
from typing import NamedTuple

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1

_BLOCK_HEADER = struct.Struct("=IIIIII")  # version, priv offset, status, packets, first, length
_FRAME_HEADER = struct.Struct("=IIIIIIHH")  # next, sec, nsec, snaplen, len, status, mac, net
_STATUS = struct.Struct("=I")
_UDP_PORTS = struct.Struct("!HH")

# classic BPF: opcodes (linux/filter.h)
_LD_B_ABS, _LD_H_ABS, _LD_H_IND, _LDX_B_MSH = 0x30, 0x28, 0x48, 0xB1
_ALU_AND_K, _JEQ_K, _JGE_K, _JGT_K, _JSET_K, _RET_K = 0x54, 0x15, 0x35, 0x25, 0x45, 0x06
_SKF_AD_PKTTYPE = 0xFFFFF000 + 4
_SNAPLEN = 0xFFFF


class Packet(NamedTuple):
    """One UDP datagram the kernel handed over: its arrival time (the kernel's, on the
    ``time.time()`` clock), source (packed, 4 or 16 bytes) and port, our leg's port, and
    the UDP payload."""

    time: float
    source: bytes
    source_port: int
    port: int
    payload: bytes


def port_filter(low: int, high: int) -> list[tuple[int, int, int, int]]:
    """The BPF program (code, jt, jf, k): incoming UDP to an even port in low..high."""
    labels: dict[str, int] = {}
    program: list[tuple[int, str | int, str | int, int]] = []

    def op(code: int, k: int = 0, jt: str | int = 0, jf: str | int = 0) -> None:
        program.append((code, jt, jf, k))

    def label(name: str) -> None:
        labels[name] = len(program)

    op(_LD_B_ABS, _SKF_AD_PKTTYPE)
    op(_JEQ_K, PACKET_OUTGOING, "drop", 0)
    op(_LD_B_ABS, 0)
    op(_ALU_AND_K, 0xF0)
    op(_JEQ_K, 0x60, "ipv6", 0)
    op(_JEQ_K, 0x40, 0, "drop")
    op(_LD_B_ABS, 9)  # IPv4: protocol
    op(_JEQ_K, socket.IPPROTO_UDP, 0, "drop")
    op(_LD_H_ABS, 6)  # flags and fragment offset: no fragments
    op(_JSET_K, 0x3FFF, "drop", 0)
    op(_LDX_B_MSH, 0)  # X = the IPv4 header's length
    op(_LD_H_IND, 2)  # the UDP destination port
    op(_JSET_K, 0, 0, "port")  # always false: on to the port test
    label("ipv6")
    op(_LD_B_ABS, 6)  # IPv6: next header (extension headers are not followed)
    op(_JEQ_K, socket.IPPROTO_UDP, 0, "drop")
    op(_LD_H_ABS, 42)
    label("port")
    op(_JSET_K, 1, "drop", 0)  # odd: RTCP, which stays on the relay
    op(_JGE_K, low, 0, "drop")
    op(_JGT_K, high, "drop", 0)
    op(_RET_K, _SNAPLEN)
    label("drop")
    op(_RET_K, 0)
    resolved = []
    for index, (code, jt, jf, k) in enumerate(program):
        jt_offset = labels[jt] - index - 1 if isinstance(jt, str) else jt
        jf_offset = labels[jf] - index - 1 if isinstance(jf, str) else jf
        resolved.append((code, jt_offset, jf_offset, k))
    return resolved


def block_packets(block: memoryview | bytes) -> list[Packet]:
    """The UDP datagrams of one block the kernel handed over, parsed in place: one copy
    per packet (its payload).  What is not IPv4 or IPv6 UDP is skipped (the BPF program
    lets nothing else in)."""
    _, _, _, count, offset, _ = _BLOCK_HEADER.unpack_from(block, 0)
    packets = []
    for _ in range(count):
        following, sec, nsec, snaplen, _, _, _, net = _FRAME_HEADER.unpack_from(block, offset)
        start = offset + net
        end = start + snaplen
        version = block[start] >> 4
        if version == 4:
            udp = start + (block[start] & 0x0F) * 4
            source = bytes(block[start + 12 : start + 16])
            protocol = block[start + 9]
        elif version == 6:
            udp = start + 40
            source = bytes(block[start + 8 : start + 24])
            protocol = block[start + 6]
        else:
            protocol = udp = 0
        if protocol == socket.IPPROTO_UDP and udp + 8 <= end:
            source_port, port = _UDP_PORTS.unpack_from(block, udp)
            packets.append(
                Packet(sec + nsec * 1e-9, source, source_port, port, bytes(block[udp + 8 : end]))
            )
        if not following:
            break
        offset += following
    return packets


class PacketRing:
    """The socket and its mapped ring (``blocks`` blocks of ``block_kib`` KiB)."""

    def __init__(
        self, low: int, high: int, *, block_kib: int = 256, blocks: int = 64, retire_ms: int = 4
    ) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        try:
            self._attach(port_filter(low, high))
            self.sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            self.block_size = block_kib * 1024
            self.blocks = blocks
            request = struct.pack(
                "=7I", self.block_size, blocks, 2048, self.block_size // 2048 * blocks,
                retire_ms, 0, 0,
            )  # fmt: skip
            self.sock.setsockopt(SOL_PACKET, PACKET_RX_RING, request)
            self.map = mmap.mmap(self.sock.fileno(), self.block_size * blocks)
        except OSError:
            self.sock.close()
            raise
        self._next = 0
        self.drops = 0  # the kernel's count, summed over reads of PACKET_STATISTICS

    def _attach(self, program: list[tuple[int, int, int, int]]) -> None:
        code = b"".join(struct.pack("=HBBI", *instruction) for instruction in program)
        buffer = ctypes.create_string_buffer(code)
        fprog = struct.pack("=HxxxxxxQ", len(program), ctypes.addressof(buffer))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> Iterator[Packet]:
        """Every packet of every block handed over so far, in order; each block is given
        back to the kernel once parsed."""
        ring = self.map
        for _ in range(self.blocks):
            start = self._next * self.block_size
            if _STATUS.unpack_from(ring, start + 8)[0] & TP_STATUS_USER == 0:
                return
            with memoryview(ring)[start : start + self.block_size] as block:
                packets = block_packets(block)
            _STATUS.pack_into(ring, start + 8, TP_STATUS_KERNEL)
            self._next = (self._next + 1) % self.blocks
            yield from packets

    def count_drops(self) -> int:
        """The kernel's drops since the last call, added to ``drops``."""
        stats = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
        _, dropped, _ = struct.unpack("=III", stats)
        self.drops += dropped
        return self.drops

    def close(self) -> None:
        self.map.close()
        self.sock.close()
