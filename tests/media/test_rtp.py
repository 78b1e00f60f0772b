"""RTP parsing and serialising, RTP/RTCP demultiplexing, wraparound helpers."""

from __future__ import annotations

import struct
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.media.rtp import (
    RtpError,
    RtpPacket,
    is_rtcp,
    seq_diff,
    seq_newer,
    ts_diff,
    ts_newer,
)
from tests.media.media_helpers import read_pcap, shared_data_file

CAPTURE = ("sip", "real", "pcap", "rtp_rtcp_sip_ipv4_udp.pcap")


def _captured_rtp() -> tuple[list[bytes], list[str]]:
    """The capture's RTP datagrams (UDP payloads with version 2 that are not RTCP), with
    the destination of each."""
    rtp: list[bytes] = []
    destinations: list[str] = []
    for datagram in read_pcap(shared_data_file(*CAPTURE)):
        data = datagram.payload
        if len(data) < 4 or data[0] >> 6 != 2 or is_rtcp(data):
            continue  # SIP, SNMP, MGCP, ...: not RTP version 2; or RTCP
        rtp.append(data)
        destinations.append(datagram.dst)
    return rtp, destinations


# --------------------------------------------------------------------------- captured traffic


def test_captured_rtp_round_trips_byte_for_byte() -> None:
    rtp, destinations = _captured_rtp()
    by_payload_type: Counter[int] = Counter()
    by_ssrc: Counter[int] = Counter()
    for data in rtp:
        packet = RtpPacket.parse(data)
        assert packet.serialize() == data
        by_payload_type[packet.payload_type] += 1
        by_ssrc[packet.ssrc] += 1
    # All G.711 A-law.  The capture was taken on a relay (200.57.7.196) and holds each
    # packet twice, in and out; the source README counts the 1445 that reached the relay.
    assert by_payload_type == {8: 2884}
    assert sum(1 for d in destinations if d == "200.57.7.196") == 1445
    assert by_ssrc == {0x58F33DEA: 1782, 0xD2BD4E3E: 1096, 0x00002E3D: 6}


def test_captured_rtp_payloads_are_20ms_g711_apart_from_comfort_bytes() -> None:
    rtp, _ = _captured_rtp()
    sizes = Counter(len(RtpPacket.parse(data).payload) for data in rtp)
    assert sizes == {160: 2852, 1: 32}


# --------------------------------------------------------------------------- RTP


def _header(first: int = 0x80, second: int = 0, seq: int = 1, ts: int = 2, ssrc: int = 3) -> bytes:
    return struct.pack("!BBHII", first, second, seq, ts, ssrc)


def test_parse_reads_every_header_field() -> None:
    data = (
        struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 0x80 | 101, 0xFFFF, 0xFFFFFFFF, 0xDEADBEEF)
        + struct.pack("!II", 11, 22)
        + struct.pack("!HH", 0xBEDE, 1)
        + b"\x10\xaa\x00\x00"
        + b"payload"
        + b"\x00\x00\x03"
    )
    packet = RtpPacket.parse(data)
    assert packet.version == 2
    assert packet.marker is True
    assert packet.payload_type == 101
    assert packet.sequence_number == 0xFFFF
    assert packet.timestamp == 0xFFFFFFFF
    assert packet.ssrc == 0xDEADBEEF
    assert packet.csrc == (11, 22)
    assert packet.extension and packet.extension_profile == 0xBEDE
    assert packet.extension_data == b"\x10\xaa\x00\x00"
    assert packet.has_padding and packet.padding == b"\x00\x00\x03"
    assert packet.payload == b"payload"
    assert packet.serialize() == data


def test_built_packet_serialises_to_the_rfc_layout() -> None:
    packet = RtpPacket(payload_type=0, sequence_number=7, timestamp=160, ssrc=1, payload=b"\xff")
    assert packet.serialize() == bytes.fromhex("80000007000000a000000001ff")
    assert RtpPacket.parse(packet.serialize()) == packet


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short: 0 bytes"),
        (b"\x80" * 11, "too short: 11 bytes"),
        (_header(first=0x40), "bad RTP version 1"),
        (_header(first=0x00), "bad RTP version 0"),
        (_header(first=0x82) + b"\0\0\0\1", "CSRC list overruns the packet: CC=2 needs 20"),
        (_header(first=0x90) + b"\xbe\xde", "header extension overruns the packet: its header"),
        (_header(first=0x90) + b"\xbe\xde\x00\x02" + b"\0" * 7, "length 2 words ends at byte 24"),
        (_header(first=0xA0), "no room for the padding length octet"),
        (_header(first=0xA0) + b"abc\x00", "padding length octet is 0"),
        (_header(first=0xA0) + b"ab\x04", "padding overruns the payload: 4 padding octets"),
    ],
)
def test_malformed_rtp_raises_a_precise_error(data: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        RtpPacket.parse(data)


def test_rtp_error_is_a_value_error() -> None:
    assert issubclass(RtpError, ValueError)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"payload_type": 128},
        {"sequence_number": 65536},
        {"timestamp": -1},
        {"ssrc": 1 << 32},
        {"csrc": tuple(range(16))},
        {"extension_data": b"\0\0\0\0"},
        {"extension_profile": 1, "extension_data": b"\0"},
        {"padding": b"\x00\x01"},
        {"version": 1},
    ],
)
def test_invalid_packet_fields_are_refused_when_built(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"payload_type": 0, "sequence_number": 0, "timestamp": 0, "ssrc": 0}
    fields.update(kwargs)
    with pytest.raises(ValueError):
        RtpPacket(**fields)  # type: ignore[arg-type]


_packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=64),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension_profile=st.none() | st.integers(0, 0xFFFF),
    padding=st.integers(0, 12).map(lambda n: b"\x00" * (n - 1) + bytes([n]) if n else b""),
).filter(lambda p: p.extension_profile is not None or not p.extension_data)


@given(_packets, st.binary(max_size=8).map(lambda b: b[: len(b) // 4 * 4]))
def test_any_packet_round_trips(packet: RtpPacket, extension: bytes) -> None:
    if packet.extension_profile is not None:
        packet = RtpPacket(
            payload_type=packet.payload_type,
            sequence_number=packet.sequence_number,
            timestamp=packet.timestamp,
            ssrc=packet.ssrc,
            payload=packet.payload,
            marker=packet.marker,
            csrc=packet.csrc,
            extension_profile=packet.extension_profile,
            extension_data=extension,
            padding=packet.padding,
        )
    data = packet.serialize()
    assert RtpPacket.parse(data) == packet
    assert RtpPacket.parse(data).serialize() == data


@given(st.binary(max_size=80))
def test_parse_returns_a_packet_or_raises_rtp_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    assert packet.serialize() == data


# --------------------------------------------------------------------------- RTCP


@pytest.mark.parametrize(
    ("second", "expected"),
    [(200, True), (201, True), (192, True), (223, True), (0x80 | 72, True), (72, True),
     (0, False), (8, False), (0x80 | 8, False), (101, False), (0x80 | 96, False), (63, False)],
)  # fmt: skip
def test_is_rtcp_demultiplexes_by_rfc_5761_range(second: int, expected: bool) -> None:
    assert is_rtcp(bytes([0x80, second, 0, 1])) is expected


def test_is_rtcp_is_false_for_a_runt() -> None:
    assert is_rtcp(b"\x80") is False


# --------------------------------------------------------------------------- wraparound


def test_sequence_difference_wraps() -> None:
    assert seq_diff(0, 65535) == 1
    assert seq_diff(65535, 0) == -1
    assert seq_diff(5, 65530) == 11
    assert seq_diff(32767, 0) == 32767
    assert seq_diff(32768, 0) == -32768
    assert seq_newer(2, 65534) and not seq_newer(65534, 2)
    assert not seq_newer(7, 7)


def test_timestamp_difference_wraps() -> None:
    assert ts_diff(0, 0xFFFFFFFF) == 1
    assert ts_diff(80, 0xFFFFFF60) == 240
    assert ts_diff(0xFFFFFF60, 80) == -240
    assert ts_newer(100, 0xFFFFFF00) and not ts_newer(0xFFFFFF00, 100)


@given(st.integers(0, 0xFFFF), st.integers(-32768, 32767))
def test_seq_diff_inverts_modular_addition(base: int, delta: int) -> None:
    assert seq_diff((base + delta) & 0xFFFF, base) == delta


@given(st.integers(0, 0xFFFFFFFF), st.integers(-(2**31), 2**31 - 1))
def test_ts_diff_inverts_modular_addition(base: int, delta: int) -> None:
    assert ts_diff((base + delta) & 0xFFFFFFFF, base) == delta
