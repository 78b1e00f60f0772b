"""pcap files: RTP captures written for SIPp to play, and tcpdump captures read back.

Written: classic libpcap, Ethernet / IPv4 / UDP / RTP, one 20 ms G.711 packet per
record, as SIPp's ``play_pcap_audio`` expects (it replays the UDP payloads with the
capture's timing to the media address the SDP answer names).

Read: classic libpcap in either byte order, micro- or nanosecond timestamps, with the
link types tcpdump uses on Linux loopback (Ethernet) and the cooked ones (SLL, SLL2),
IPv4 and UDP.
"""

from __future__ import annotations

import shutil
import signal
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276

SAMPLES_PER_PACKET = 160  # 20 ms at 8 kHz


@dataclass(frozen=True)
class Datagram:
    time: float  # capture time, seconds since the epoch
    source: tuple[str, int]
    destination: tuple[str, int]
    payload: bytes


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket | None:
        """None for anything that is not an RTP version 2 packet."""
        if len(data) < 12 or data[0] >> 6 != 2:
            return None
        first, second, sequence, timestamp, ssrc = struct.unpack_from("!BBHII", data)
        offset = 12 + 4 * (first & 0x0F)
        if first & 0x10:  # header extension
            if len(data) < offset + 4:
                return None
            (words,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * words
        end = len(data)
        if first & 0x20:  # padding
            end -= data[-1]
        if offset > end:
            return None
        return cls(second & 0x7F, bool(second & 0x80), sequence, timestamp, ssrc, data[offset:end])


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def _ipv4_udp(payload: bytes, source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    udp = struct.pack("!HHHH", source[1], destination[1], 8 + len(payload), 0) + payload
    src = bytes(int(part) for part in source[0].split("."))
    dst = bytes(int(part) for part in destination[0].split("."))
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, src, dst)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + udp


def _write_pcap(
    path: Path,
    records: list[tuple[int, bytes]],
    source: tuple[str, int],
    destination: tuple[str, int],
) -> None:
    """(microseconds from the start, UDP payload) records as a classic pcap."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET)]
    ethernet = b"\x00" * 12 + b"\x08\x00"
    for micros, payload in records:
        frame = ethernet + _ipv4_udp(payload, source, destination)
        out.append(
            struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000, len(frame), len(frame))
        )
        out.append(frame)
    path.write_bytes(b"".join(out))


def write_rtp_pcap(
    path: Path,
    payload: bytes,
    *,
    payload_type: int = 0,
    ssrc: int = 0x1234ABCD,
    first_sequence: int = 0,
    first_timestamp: int = 0,
    source: tuple[str, int] = ("127.0.0.1", 4000),
    destination: tuple[str, int] = ("127.0.0.1", 4002),
) -> int:
    """G.711 audio as 20 ms RTP packets, 20 ms apart; returns the number of packets.
    A final part shorter than 20 ms is left out."""
    packets = len(payload) // SAMPLES_PER_PACKET
    records: list[tuple[int, bytes]] = []
    for index in range(packets):
        rtp = (
            struct.pack(
                "!BBHII",
                0x80,
                payload_type | (0x80 if index == 0 else 0),
                (first_sequence + index) & 0xFFFF,
                (first_timestamp + index * SAMPLES_PER_PACKET) & 0xFFFFFFFF,
                ssrc,
            )
            + payload[index * SAMPLES_PER_PACKET : (index + 1) * SAMPLES_PER_PACKET]
        )
        records.append((index * 20_000, rtp))
    _write_pcap(path, records, source, destination)
    return packets


TELEPHONE_EVENTS = "0123456789*#ABCD"  # RFC 4733 event codes 0-15


def write_key_press_pcap(
    path: Path,
    key: str,
    *,
    sequence: int,
    timestamp: int,
    ssrc: int,
    updates: int = 7,
    payload_type: int = 101,
    volume: int = 10,
    source: tuple[str, int] = ("127.0.0.1", 4000),
    destination: tuple[str, int] = ("127.0.0.1", 4002),
) -> int:
    """One key press as a phone sends it (RFC 4733 telephone-events, 20 ms apart): the
    first packet with the marker bit, ``updates`` packets with a growing duration, then
    the end packet (E bit) three times with one sequence number.  All share the
    event's start ``timestamp``; returns the number of packets."""
    code = TELEPHONE_EVENTS.index(key)
    records: list[tuple[int, bytes]] = []
    for index in range(updates + 3):
        end = index >= updates
        step = min(index, updates)
        header = struct.pack(
            "!BBHII",
            0x80,
            payload_type | (0x80 if index == 0 else 0),
            (sequence + step) & 0xFFFF,
            timestamp & 0xFFFFFFFF,
            ssrc,
        )
        event = struct.pack(
            "!BBH", code, (0x80 if end else 0) | volume, (step + 1) * SAMPLES_PER_PACKET
        )
        records.append((step * 20_000, header + event))
    _write_pcap(path, records, source, destination)
    return len(records)


def read_udp(path: Path) -> list[Datagram]:
    """Every complete IPv4/UDP datagram in a capture (a record cut short by a capture
    being stopped is left out)."""
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        order = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        order = ">"
    else:
        raise AssertionError(f"{path}: not a classic pcap file (magic {magic.hex()})")
    nanos = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    (linktype,) = struct.unpack_from(order + "I", data, 20)
    result: list[Datagram] = []
    offset = 24
    while offset + 16 <= len(data):
        seconds, fraction, captured, _ = struct.unpack_from(order + "IIII", data, offset)
        offset += 16
        if offset + captured > len(data):
            break
        frame = data[offset : offset + captured]
        offset += captured
        datagram = _decode_frame(frame, linktype, seconds + fraction / (1e9 if nanos else 1e6))
        if datagram is not None:
            result.append(datagram)
    return result


def _decode_frame(frame: bytes, linktype: int, time: float) -> Datagram | None:
    if linktype == LINKTYPE_ETHERNET:
        ether_type, start = struct.unpack_from("!H", frame, 12)[0], 14
        while ether_type == 0x8100 and len(frame) >= start + 4:  # 802.1Q tags
            ether_type, start = struct.unpack_from("!H", frame, start + 2)[0], start + 4
        if ether_type != 0x0800:
            return None
    elif linktype == LINKTYPE_LINUX_SLL:
        if struct.unpack_from("!H", frame, 14)[0] != 0x0800:
            return None
        start = 16
    elif linktype == LINKTYPE_LINUX_SLL2:
        if struct.unpack_from("!H", frame, 0)[0] != 0x0800:
            return None
        start = 20
    elif linktype == LINKTYPE_RAW:
        start = 0
    else:
        raise AssertionError(f"pcap link type {linktype} is not supported")
    ip = frame[start:]
    if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
        return None
    header_length = 4 * (ip[0] & 0x0F)
    total_length, fragment = struct.unpack_from("!H2xH", ip, 2)
    if fragment & 0x3FFF:  # a fragment: not needed for RTP or SIP on loopback
        return None
    udp = ip[header_length:total_length]
    if len(udp) < 8:
        return None
    source_port, destination_port, udp_length = struct.unpack_from("!HHH", udp)
    source = ".".join(str(b) for b in ip[12:16])
    destination = ".".join(str(b) for b in ip[16:20])
    return Datagram(time, (source, source_port), (destination, destination_port), udp[8:udp_length])


class LoopbackCapture:
    """``tcpdump -i lo`` writing a pcap (packet-buffered, so it can be read while it
    runs).  Started before the traffic it is to see: the constructor returns once
    tcpdump says it is listening."""

    def __init__(self, path: Path, capture_filter: str, *, timeout: float = 10.0) -> None:
        binary = shutil.which("tcpdump")
        if binary is None:
            raise AssertionError("tcpdump is not installed: apt-get install tcpdump")
        self.path = path
        self._errors_path = path.with_suffix(".tcpdump.log")
        self._errors = self._errors_path.open("wb")
        # -U --immediate-mode: each packet reaches the file at once (it is read while
        # tcpdump runs); -Z root: keep the right to write into the test's folder;
        # -B: in immediate mode each packet takes a whole snaplen-sized slot of the
        # kernel's ring, and the default 2 MiB holds only a few: with several captures
        # on a busy machine the kernel dropped packets
        command = [
            binary, "-i", "lo", "-n", "-U", "--immediate-mode", "-Z", "root", "-s", "0",
            "-B", "16384", "-w", str(path), capture_filter,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=self._errors,
        )
        deadline = time.monotonic() + timeout
        while b"listening on" not in self._errors_path.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"tcpdump did not start: {self._errors_path.read_text()}")
            time.sleep(0.02)

    def datagrams(self) -> list[Datagram]:
        return read_udp(self.path) if self.path.exists() else []

    def stop(self) -> list[Datagram]:
        """Stop it (the pcap is complete then) and return what it captured."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._errors.close()
        return self.datagrams()
