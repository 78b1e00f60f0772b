"""RTP/RTCP parsing and serialising, wraparound helpers, receiver statistics."""

from __future__ import annotations

import struct
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.media.rtp import (
    RTCP_APP,
    RTCP_BYE,
    RTCP_RR,
    RTCP_SDES,
    RTCP_SR,
    RtpError,
    RtpPacket,
    SequenceTracker,
    is_rtcp,
    parse_rtcp,
    seq_diff,
    seq_newer,
    ts_diff,
    ts_newer,
)
from tests.media.media_helpers import read_pcap, shared_data_file

CAPTURE = ("sip", "real", "pcap", "rtp_rtcp_sip_ipv4_udp.pcap")


def _rtp_and_rtcp() -> tuple[list[bytes], list[bytes], list[str]]:
    """The capture's RTP and RTCP datagrams (UDP payloads with version 2), plus the
    destination of each RTP packet."""
    rtp: list[bytes] = []
    rtcp: list[bytes] = []
    destinations: list[str] = []
    for datagram in read_pcap(shared_data_file(*CAPTURE)):
        data = datagram.payload
        if len(data) < 4 or data[0] >> 6 != 2:
            continue  # SIP, SNMP, MGCP, ...: not RTP version 2
        if is_rtcp(data):
            rtcp.append(data)
        else:
            rtp.append(data)
            destinations.append(datagram.dst)
    return rtp, rtcp, destinations


# --------------------------------------------------------------------------- captured traffic


def test_captured_rtp_round_trips_byte_for_byte() -> None:
    rtp, _, destinations = _rtp_and_rtcp()
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
    rtp, _, _ = _rtp_and_rtcp()
    sizes = Counter(len(RtpPacket.parse(data).payload) for data in rtp)
    assert sizes == {160: 2852, 1: 32}


def test_every_captured_rtcp_packet_parses() -> None:
    _, rtcp, _ = _rtp_and_rtcp()
    assert len(rtcp) == 28
    shapes: Counter[tuple[int, ...]] = Counter()
    for data in rtcp:
        parts = parse_rtcp(data)
        shapes[tuple(part.packet_type for part in parts)] += 1
        assert parts[0].packet_type == RTCP_SR
        assert {part.ssrc for part in parts} <= {0x58F33DEA, 0xD2BD4E3E}
        joined = b"".join(part.data for part in parts)
        assert data.startswith(joined)
        assert data[len(joined) :] in (b"", b"\0\0")  # two phones' RTCP ends in 2 zero bytes
    assert shapes == {
        (RTCP_SR, RTCP_RR): 12,
        (RTCP_SR, RTCP_SDES): 12,
        (RTCP_SR, RTCP_RR, RTCP_SDES): 4,
    }


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


def _rtcp(packet_type: int, count: int, body: bytes, padding: bool = False) -> bytes:
    assert len(body) % 4 == 0
    first = 0x80 | (0x20 if padding else 0) | count
    return struct.pack("!BBH", first, packet_type, len(body) // 4) + body


_SENDER_INFO = struct.pack("!IIIII", 1, 2, 3, 4, 5)
_REPORT_BLOCK = struct.pack("!IIIIII", 0x22, 0, 0, 0, 0, 0)


def test_compound_rtcp_splits_into_typed_parts() -> None:
    sr = _rtcp(RTCP_SR, 1, struct.pack("!I", 0x11) + _SENDER_INFO + _REPORT_BLOCK)
    sdes = _rtcp(RTCP_SDES, 1, struct.pack("!I", 0x11) + b"\x01\x05alice\x00" + b"\x00" * 0)
    bye = _rtcp(RTCP_BYE, 1, struct.pack("!I", 0x11) + b"\x03bye")
    app = _rtcp(RTCP_APP, 0, struct.pack("!I", 0x11) + b"NAME" + b"data")
    rr = _rtcp(RTCP_RR, 0, struct.pack("!I", 0x33))
    parts = parse_rtcp(sr + sdes + bye + app + rr)
    assert [(p.packet_type, p.ssrc) for p in parts] == [
        (RTCP_SR, 0x11),
        (RTCP_SDES, 0x11),
        (RTCP_BYE, 0x11),
        (RTCP_APP, 0x11),
        (RTCP_RR, 0x33),
    ]
    assert [p.data for p in parts] == [sr, sdes, bye, app, rr]


def test_bye_without_sources_has_no_ssrc_and_feedback_types_are_accepted() -> None:
    bye = _rtcp(RTCP_BYE, 0, b"")
    nack = _rtcp(205, 1, struct.pack("!II", 0x44, 0x55) + b"\0\0\0\0")
    parts = parse_rtcp(bye + nack)
    assert [(p.packet_type, p.ssrc) for p in parts] == [(RTCP_BYE, None), (205, 0x44)]


def test_padding_in_the_last_rtcp_part_is_accepted() -> None:
    rr = _rtcp(RTCP_RR, 0, struct.pack("!I", 0x33) + b"\0\0\0\x04", padding=True)
    assert parse_rtcp(rr)[0].ssrc == 0x33


def test_trailing_zero_bytes_after_the_last_part_are_tolerated_but_not_junk() -> None:
    rr = _rtcp(RTCP_RR, 0, struct.pack("!I", 0x33))
    assert len(parse_rtcp(rr + b"\0\0")) == 1
    with pytest.raises(RtpError, match="2 trailing bytes"):
        parse_rtcp(rr + b"\x81\xc9")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\xc8", "too short: 2 bytes"),
        (_rtcp(RTCP_RR, 0, b"\0\0\0\0")[:6], r"length 1 words ends at byte 8, packet has 6"),
        (b"\x40" + _rtcp(RTCP_RR, 0, b"\0\0\0\0")[1:], "bad version 1"),
        (_rtcp(150, 0, b"\0\0\0\0"), "packet type 150 is not in 192..223"),
        (_rtcp(RTCP_SR, 0, b"\0" * 12), "sender info and 0 report blocks needs 28 bytes"),
        (_rtcp(RTCP_RR, 2, b"\0" * 28), "2 report blocks needs 56 bytes"),
        (_rtcp(RTCP_BYE, 2, b"\0" * 4), "2 SSRCs needs 12 bytes"),
        (_rtcp(RTCP_BYE, 1, b"\0" * 4 + b"\x09abc"), "reason text overruns"),
        (_rtcp(RTCP_APP, 0, b"\0" * 4), "SSRC and name needs 12 bytes"),
        (_rtcp(RTCP_SDES, 2, b"\0" * 4 + b"\0\0\0\0"), "SDES chunk 1 overruns"),
        (_rtcp(RTCP_SDES, 1, b"\0" * 4 + b"\x01\x09abcdef"), "SDES chunk 0 item 1 overruns"),
        (_rtcp(RTCP_SDES, 1, b"\0" * 4 + b"\x01\x02ab"), "has no end-of-items octet"),
        (
            _rtcp(RTCP_RR, 0, b"\0\0\0\0\0\0\0\x04", padding=True) + _rtcp(RTCP_RR, 0, b"\0" * 4),
            "padding is allowed only in the last part",
        ),
        (_rtcp(RTCP_RR, 0, b"\0\0\0\0\0\0\0\x09", padding=True), "padding length 9 does not fit"),
    ],
)
def test_malformed_rtcp_raises_a_precise_error(data: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        parse_rtcp(data)


@given(st.binary(max_size=120))
def test_parse_rtcp_returns_parts_or_raises_rtp_error(data: bytes) -> None:
    try:
        parts = parse_rtcp(data)
    except RtpError:
        return
    assert b"".join(part.data for part in parts) == data[: sum(len(p.data) for p in parts)]


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


# --------------------------------------------------------------------------- statistics


def _feed(tracker: SequenceTracker, seqs: list[int]) -> list[bool]:
    return [tracker.update(s & 0xFFFF, (s * 160) & 0xFFFFFFFF, s * 160.0) for s in seqs]


def test_tracker_counts_from_the_end_of_probation() -> None:
    tracker = SequenceTracker(min_sequential=2)
    assert _feed(tracker, [100]) == [False]
    assert not tracker.valid and tracker.expected == 0
    assert _feed(tracker, [101, 102]) == [True, True]
    assert tracker.valid
    assert (tracker.base, tracker.highest, tracker.received, tracker.lost) == (101, 102, 2, 0)


def test_tracker_with_min_sequential_one_accepts_the_first_packet() -> None:
    tracker = SequenceTracker(min_sequential=1)
    assert _feed(tracker, [0]) == [True]
    assert (tracker.base, tracker.highest, tracker.expected, tracker.cycles) == (0, 0, 1, 0)


def test_tracker_extends_across_sequence_wraparound_and_counts_loss() -> None:
    tracker = SequenceTracker(min_sequential=1)
    seqs = [s & 0xFFFF for s in range(65530, 65546) if s not in (65534, 65540)]
    _feed(tracker, seqs)
    assert tracker.cycles == 1
    assert tracker.highest == 65545
    assert tracker.expected == 16
    assert tracker.received == 14
    assert tracker.lost == 2


def test_tracker_counts_duplicates_and_late_packets_without_moving_highest() -> None:
    tracker = SequenceTracker(min_sequential=1)
    _feed(tracker, [10, 11, 13, 12, 13])
    assert tracker.highest == 13
    assert tracker.received == 5
    assert tracker.lost == -1  # RFC 3550: duplicates make the loss negative


def test_tracker_resynchronises_after_two_packets_confirm_a_jump() -> None:
    tracker = SequenceTracker(min_sequential=1)
    _feed(tracker, [1, 2, 3])
    assert tracker.update(40000, 0, 0.0) is False  # a stray packet far away: ignored
    assert tracker.highest == 3
    assert tracker.update(40001, 160, 160.0) is True  # confirmed: the sender restarted
    assert (tracker.base, tracker.highest, tracker.received) == (40001, 40001, 1)


def test_jitter_is_zero_for_a_perfectly_paced_stream_even_across_timestamp_wrap() -> None:
    tracker = SequenceTracker(min_sequential=1)
    first_ts = 0xFFFFFFFF - 800
    for i in range(50):
        tracker.update(i, (first_ts + 160 * i) & 0xFFFFFFFF, 1000.0 + 160 * i)
    assert tracker.jitter == 0.0


def test_jitter_converges_to_the_transit_variation() -> None:
    tracker = SequenceTracker(min_sequential=1)
    for i in range(400):
        arrival = 160.0 * i + (40.0 if i % 2 else 0.0)  # transit alternates by 40 units
        tracker.update(i, 160 * i, arrival)
    assert tracker.jitter == pytest.approx(40.0, abs=0.01)
