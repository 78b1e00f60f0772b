"""Test data lookup and a tiny pcap reader for the media tests.

Test data lives in ``shared/testdata`` beside the repository (``RECPROXY_TESTDATA``
overrides); SIPp's sample captures come from the Debian package ``sip-tester``
(``RECPROXY_SIPP_PCAPS`` overrides the folder).  A missing file fails the test: a media
test that skips its data proves nothing.

The pcap reader knows the classic libpcap format (either byte order, micro- or
nanosecond timestamps), Ethernet (with 802.1Q tags) and raw-IP link types, IPv4 and
UDP — enough for RTP captures.  IP fragments other than the first are skipped.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTDATA_ENV = "RECPROXY_TESTDATA"
SIPP_ENV = "RECPROXY_SIPP_PCAPS"


def shared_data_dir() -> Path:
    override = os.environ.get(TESTDATA_ENV)
    root = (
        Path(override) if override else Path(__file__).resolve().parents[3] / "shared" / "testdata"
    )
    if not root.is_dir():
        pytest.fail(f"test data folder {root} not found; set {TESTDATA_ENV}", pytrace=False)
    return root


def shared_data_file(*parts: str) -> Path:
    path = shared_data_dir().joinpath(*parts)
    if not path.is_file():
        pytest.fail(f"test data file {path} not found", pytrace=False)
    return path


def sipp_pcap(name: str) -> Path:
    folder = Path(os.environ.get(SIPP_ENV, "/usr/share/sip-tester"))
    path = folder / name
    if not path.is_file():
        pytest.fail(
            f"SIPp capture {path} not found: install the sip-tester package "
            f"or set {SIPP_ENV} to a folder holding its pcap files",
            pytrace=False,
        )
    return path


@dataclass(frozen=True)
class UdpDatagram:
    time: float
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


_LINKTYPE_ETHERNET = 1
_LINKTYPE_RAW = 101
_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_VLAN = (0x8100, 0x88A8)


def read_pcap(path: Path) -> Iterator[UdpDatagram]:
    """The IPv4/UDP datagrams of a classic pcap file, in capture order."""
    data = path.read_bytes()
    if len(data) < 24:
        raise ValueError(f"{path}: too short for a pcap global header")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        order = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        order = ">"
    else:
        raise ValueError(f"{path}: not a classic pcap file (magic {magic.hex()})")
    fraction = 1e-9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
    (linktype,) = struct.unpack_from(order + "I", data, 20)
    record = struct.Struct(order + "IIII")
    offset = 24
    while offset + 16 <= len(data):
        seconds, fractional, captured, _original = record.unpack_from(data, offset)
        offset += 16
        frame = data[offset : offset + captured]
        offset += captured
        ip = _ip_packet(frame, linktype)
        if ip is None:
            continue
        datagram = _udp(ip, seconds + fractional * fraction)
        if datagram is not None:
            yield datagram


def _ip_packet(frame: bytes, linktype: int) -> bytes | None:
    if linktype == _LINKTYPE_RAW:
        return frame
    if linktype != _LINKTYPE_ETHERNET or len(frame) < 14:
        return None
    offset = 12
    (ethertype,) = struct.unpack_from("!H", frame, offset)
    while ethertype in _ETHERTYPE_VLAN and len(frame) >= offset + 6:
        offset += 4
        (ethertype,) = struct.unpack_from("!H", frame, offset)
    if ethertype != _ETHERTYPE_IPV4:
        return None
    return frame[offset + 2 :]


def _udp(ip: bytes, time: float) -> UdpDatagram | None:
    if len(ip) < 20 or ip[0] >> 4 != 4:
        return None
    header = (ip[0] & 0x0F) * 4
    (total,) = struct.unpack_from("!H", ip, 2)
    (fragment,) = struct.unpack_from("!H", ip, 6)
    if ip[9] != 17 or fragment & 0x1FFF:  # not UDP, or a non-first fragment
        return None
    ip = ip[:total]  # drop Ethernet padding
    if len(ip) < header + 8:
        return None
    sport, dport, length = struct.unpack_from("!HHH", ip, header)
    payload = ip[header + 8 : header + length]
    src = ".".join(str(b) for b in ip[12:16])
    dst = ".".join(str(b) for b in ip[16:20])
    return UdpDatagram(time, src, sport, dst, dport, payload)
