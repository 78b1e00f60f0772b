"""RTP and RTCP packets (RFC 3550), demultiplexing (RFC 5761) and wraparound arithmetic.

``RtpPacket.parse(data)`` reads one RTP packet and ``serialize()`` writes it back byte for
byte: ``RtpPacket.parse(x).serialize() == x`` for every packet ``parse`` accepts (the
padding octets are kept as received).  Malformed input raises ``RtpError`` with a message
that names what is wrong; nothing else escapes.

``parse_rtcp(data)`` splits a compound RTCP packet into its parts and checks each part's
length fields against what the packet type needs.

Sequence numbers are 16 bits and timestamps 32 bits, and both wrap: compare them only
with ``seq_diff``/``seq_newer``/``ts_diff``.  ``SequenceTracker`` keeps the RFC 3550
receiver statistics (A.1 extended sequence numbers, A.3 loss, A.8 interarrival jitter).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "RTCP_APP",
    "RTCP_BYE",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_SR",
    "RtcpPacket",
    "RtpError",
    "RtpPacket",
    "SequenceTracker",
    "is_rtcp",
    "parse_rtcp",
    "seq_diff",
    "seq_newer",
    "ts_diff",
    "ts_newer",
]

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
SEQ_MOD = 1 << 16
TS_MOD = 1 << 32

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204

_HEADER = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")
_RTCP_HEADER = struct.Struct("!BBH")
_REPORT_BLOCK_SIZE = 24


class RtpError(ValueError):
    """The bytes are not a well-formed RTP or RTCP packet (the peer's fault)."""


# --------------------------------------------------------------------------- RTP


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet.  ``padding`` holds the padding octets exactly as received (the
    last of them is their count); it is empty when the P bit is clear.  The header
    extension is present when ``extension_profile`` is not ``None``; ``extension_data``
    is its body (a multiple of 4 bytes)."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension_profile: int | None = None
    extension_data: bytes = b""
    padding: bytes = b""
    version: int = RTP_VERSION

    def __post_init__(self) -> None:
        if self.version != RTP_VERSION:
            raise ValueError(f"RTP version must be 2, not {self.version}")
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload type {self.payload_type} is not in 0..127")
        if not 0 <= self.sequence_number < SEQ_MOD:
            raise ValueError(f"sequence number {self.sequence_number} is not 16-bit")
        if not 0 <= self.timestamp < TS_MOD:
            raise ValueError(f"timestamp {self.timestamp} is not 32-bit")
        if not 0 <= self.ssrc < TS_MOD:
            raise ValueError(f"SSRC {self.ssrc} is not 32-bit")
        if len(self.csrc) > 15:
            raise ValueError(f"{len(self.csrc)} CSRCs; at most 15 fit the CC field")
        if any(not 0 <= c < TS_MOD for c in self.csrc):
            raise ValueError("a CSRC is not 32-bit")
        if self.extension_profile is None:
            if self.extension_data:
                raise ValueError("extension data without an extension profile")
        else:
            if not 0 <= self.extension_profile < SEQ_MOD:
                raise ValueError(f"extension profile {self.extension_profile} is not 16-bit")
            if len(self.extension_data) % 4:
                raise ValueError("extension data must be a multiple of 4 bytes")
            if len(self.extension_data) // 4 >= SEQ_MOD:
                raise ValueError("extension data too long for its 16-bit length field")
        if self.padding and (len(self.padding) > 255 or self.padding[-1] != len(self.padding)):
            raise ValueError("the last padding octet must be the padding length (1..255)")

    @property
    def extension(self) -> bool:
        """The X bit: a header extension is present."""
        return self.extension_profile is not None

    @property
    def has_padding(self) -> bool:
        """The P bit."""
        return bool(self.padding)

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one RTP packet; raise ``RtpError`` naming the defect."""
        size = len(data)
        if size < RTP_HEADER_SIZE:
            raise RtpError(f"RTP packet too short: {size} bytes, the fixed header needs 12")
        first, second, sequence_number, timestamp, ssrc = _HEADER.unpack_from(data)
        version = first >> 6
        if version != RTP_VERSION:
            raise RtpError(f"bad RTP version {version} (expected 2)")
        csrc_count = first & 0x0F
        offset = RTP_HEADER_SIZE + 4 * csrc_count
        if offset > size:
            raise RtpError(
                f"CSRC list overruns the packet: CC={csrc_count} needs {offset} bytes, "
                f"packet has {size}"
            )
        csrc = struct.unpack_from(f"!{csrc_count}I", data, RTP_HEADER_SIZE)
        extension_profile: int | None = None
        extension_data = b""
        if first & 0x10:
            if offset + 4 > size:
                raise RtpError(
                    f"header extension overruns the packet: its header needs bytes "
                    f"{offset}..{offset + 4}, packet has {size}"
                )
            extension_profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
            end = offset + 4 + 4 * words
            if end > size:
                raise RtpError(
                    f"header extension overruns the packet: length {words} words ends at "
                    f"byte {end}, packet has {size}"
                )
            extension_data = bytes(data[offset + 4 : end])
            offset = end
        payload_end = size
        padding = b""
        if first & 0x20:
            if size == offset:
                raise RtpError("P bit set but no room for the padding length octet")
            count = data[-1]
            if count == 0:
                raise RtpError("P bit set but the padding length octet is 0")
            if offset + count > size:
                raise RtpError(
                    f"padding overruns the payload: {count} padding octets, "
                    f"only {size - offset} bytes follow the header"
                )
            payload_end = size - count
            padding = bytes(data[payload_end:])
        return cls(
            payload_type=second & 0x7F,
            sequence_number=sequence_number,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[offset:payload_end]),
            marker=bool(second & 0x80),
            csrc=csrc,
            extension_profile=extension_profile,
            extension_data=extension_data,
            padding=padding,
        )

    def serialize(self) -> bytes:
        """The packet's bytes."""
        first = (
            (self.version << 6)
            | (0x20 if self.padding else 0)
            | (0x10 if self.extension_profile is not None else 0)
            | len(self.csrc)
        )
        second = (0x80 if self.marker else 0) | self.payload_type
        parts = [
            _HEADER.pack(first, second, self.sequence_number, self.timestamp, self.ssrc),
            struct.pack(f"!{len(self.csrc)}I", *self.csrc),
        ]
        if self.extension_profile is not None:
            parts.append(
                _EXTENSION_HEADER.pack(self.extension_profile, len(self.extension_data) // 4)
            )
            parts.append(self.extension_data)
        parts.append(self.payload)
        parts.append(self.padding)
        return b"".join(parts)


# --------------------------------------------------------------------------- RTCP


class RtcpPacket(NamedTuple):
    """One part of a compound RTCP packet: its type (200 SR, 201 RR, 202 SDES, 203 BYE,
    204 APP, ...), the SSRC it is about (the sender for SR/RR/APP and feedback, the first
    chunk's or source's SSRC for SDES/BYE, ``None`` when there is none) and its bytes."""

    packet_type: int
    ssrc: int | None
    data: bytes


def is_rtcp(data: bytes) -> bool:
    """Whether a packet on a multiplexed RTP/RTCP port is RTCP (RFC 5761 section 4): the
    second octet, marker bit masked, is 64..95 (RTCP packet types 192..223).  RTP must
    not use payload types 64..95 where RTCP is multiplexed."""
    return len(data) >= 2 and 64 <= (data[1] & 0x7F) <= 95


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Split a (compound) RTCP packet into its parts; raise ``RtpError`` on a malformed
    one.  Only the last part may carry padding (RFC 3550 section 6.4.1).  One to three
    zero bytes after the last part (sent by some softphones) are ignored."""
    size = len(data)
    if size < 4:
        raise RtpError(f"RTCP packet too short: {size} bytes, the header needs 4")
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < size:
        index = len(packets)
        if size - offset < 4:
            # Some phones append a few zero bytes after the last part; tolerate those.
            if any(data[offset:]):
                raise RtpError(
                    f"RTCP part {index}: {size - offset} trailing bytes, a header needs 4"
                )
            break
        first, packet_type, words = _RTCP_HEADER.unpack_from(data, offset)
        version = first >> 6
        if version != RTP_VERSION:
            raise RtpError(f"RTCP part {index}: bad version {version} (expected 2)")
        if not 192 <= packet_type <= 223:
            raise RtpError(f"RTCP part {index}: packet type {packet_type} is not in 192..223")
        end = offset + 4 * (words + 1)
        if end > size:
            raise RtpError(
                f"RTCP part {index} (type {packet_type}): length {words} words ends at "
                f"byte {end}, packet has {size}"
            )
        body_end = end
        if first & 0x20:
            if end != size:
                raise RtpError(f"RTCP part {index}: padding is allowed only in the last part")
            count = data[end - 1]
            if count == 0 or count > end - offset - 4:
                raise RtpError(
                    f"RTCP part {index}: padding length {count} does not fit the "
                    f"{end - offset - 4}-byte body"
                )
            body_end = end - count
        count_field = first & 0x1F
        ssrc = _check_rtcp_body(index, packet_type, count_field, data, offset, body_end)
        packets.append(RtcpPacket(packet_type, ssrc, bytes(data[offset:end])))
        offset = end
    return packets


def _check_rtcp_body(
    index: int, packet_type: int, count: int, data: bytes, start: int, end: int
) -> int | None:
    """Check the body of one RTCP part against its type; return the SSRC it is about."""
    length = end - start
    what = f"RTCP part {index} (type {packet_type})"

    def need(size: int, why: str) -> None:
        if length < size:
            raise RtpError(f"{what}: {why} needs {size} bytes, the part has {length}")

    if packet_type == RTCP_SR:
        need(28 + _REPORT_BLOCK_SIZE * count, f"sender info and {count} report blocks")
    elif packet_type == RTCP_RR:
        need(8 + _REPORT_BLOCK_SIZE * count, f"{count} report blocks")
    elif packet_type == RTCP_SDES:
        return _check_sdes(what, count, data, start + 4, end)
    elif packet_type == RTCP_BYE:
        need(4 + 4 * count, f"{count} SSRCs")
        reason_at = start + 4 + 4 * count
        if reason_at < end:
            reason_end = reason_at + 1 + data[reason_at]
            if reason_end > end:
                raise RtpError(f"{what}: the reason text overruns the part")
        if count == 0:
            return None
    elif packet_type == RTCP_APP:
        need(12, "SSRC and name")
    else:
        need(8, "an SSRC")
    return int.from_bytes(data[start + 4 : start + 8], "big")


def _check_sdes(what: str, count: int, data: bytes, offset: int, end: int) -> int | None:
    first_ssrc: int | None = None
    for chunk in range(count):
        if offset + 4 > end:
            raise RtpError(f"{what}: SDES chunk {chunk} overruns the part")
        if first_ssrc is None:
            first_ssrc = int.from_bytes(data[offset : offset + 4], "big")
        offset += 4
        while True:
            if offset >= end:
                raise RtpError(f"{what}: SDES chunk {chunk} has no end-of-items octet")
            item = data[offset]
            if item == 0:
                # The item list ends with a null octet, then pads to a 32-bit boundary.
                offset = (offset + 4) & ~3
                break
            if offset + 2 > end or offset + 2 + data[offset + 1] > end:
                raise RtpError(f"{what}: SDES chunk {chunk} item {item} overruns the part")
            offset += 2 + data[offset + 1]
    if offset > end:
        raise RtpError(f"{what}: SDES chunk padding overruns the part")
    return first_ssrc


# --------------------------------------------------------------------------- wraparound


def seq_diff(a: int, b: int) -> int:
    """``a - b`` for 16-bit sequence numbers, in -32768..32767."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def seq_newer(a: int, b: int) -> bool:
    """Whether sequence number ``a`` comes after ``b`` (modulo 2**16)."""
    return seq_diff(a, b) > 0


def ts_diff(a: int, b: int) -> int:
    """``a - b`` for 32-bit RTP timestamps, in -2**31..2**31-1."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def ts_newer(a: int, b: int) -> bool:
    """Whether timestamp ``a`` comes after ``b`` (modulo 2**32)."""
    return ts_diff(a, b) > 0


class SequenceTracker:
    """Receiver statistics for one SSRC, after RFC 3550 appendix A.

    ``update(sequence_number, timestamp, arrival)`` takes each packet; ``arrival`` is
    the arrival time in RTP timestamp units (seconds times the clock rate), used for the
    A.8 interarrival jitter.  A source is valid after ``min_sequential`` packets in
    sequence (probation, A.1; 1 accepts the first packet at once).  A jump of more than
    ``max_dropout`` ahead or ``max_misorder`` behind is taken as a restart of the
    sender once a second packet confirms it."""

    def __init__(
        self, *, min_sequential: int = 2, max_dropout: int = 3000, max_misorder: int = 100
    ) -> None:
        if min_sequential < 1:
            raise ValueError("min_sequential must be at least 1")
        self._min_sequential = min_sequential
        self._max_dropout = max_dropout
        self._max_misorder = max_misorder
        self._started = False
        self._probation = min_sequential
        self._max_seq = 0
        self._cycles = 0  # count of wraps, times 2**16
        self._base_seq = 0
        self._bad_seq = SEQ_MOD + 1
        self._received = 0
        self._transit: float | None = None
        self._last_ts = 0  # unwrapped timestamp of the last packet counted
        self._jitter = 0.0

    @property
    def valid(self) -> bool:
        """Whether the source has passed probation."""
        return self._started and self._probation == 0

    @property
    def cycles(self) -> int:
        """How many times the sequence number has wrapped."""
        return self._cycles >> 16

    @property
    def highest(self) -> int:
        """The extended highest sequence number received (cycles * 2**16 + max)."""
        return self._cycles + self._max_seq

    @property
    def base(self) -> int:
        """The first sequence number counted."""
        return self._base_seq

    @property
    def received(self) -> int:
        """Packets counted (duplicates included, as RFC 3550 does)."""
        return self._received

    @property
    def expected(self) -> int:
        if not self.valid:
            return 0
        return self.highest - self._base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost: expected - received (negative with duplicates)."""
        return self.expected - self._received

    @property
    def jitter(self) -> float:
        """Interarrival jitter, in timestamp units (A.8)."""
        return self._jitter

    def update(self, sequence_number: int, timestamp: int, arrival: float) -> bool:
        """Count one packet; return whether it belongs to the valid sequence (False
        while on probation and for a packet taken as a bad jump)."""
        seq = sequence_number & 0xFFFF
        if not self._started:
            self._started = True
            self._init(seq)
            self._max_seq = (seq - 1) & 0xFFFF
            self._probation = self._min_sequential
        if self._probation:
            if seq == (self._max_seq + 1) & 0xFFFF:
                self._probation -= 1
                self._max_seq = seq
                if self._probation == 0:
                    self._init(seq)
                    self._received += 1
                    self._jitter_update(timestamp, arrival)
                    return True
            else:
                self._probation = self._min_sequential - 1
                self._max_seq = seq
            return False
        udelta = (seq - self._max_seq) & 0xFFFF
        if udelta < self._max_dropout:
            if seq < self._max_seq:
                self._cycles += SEQ_MOD
            self._max_seq = seq
        elif udelta <= SEQ_MOD - self._max_misorder:
            if seq == self._bad_seq:
                # Two packets in sequence after a big jump: the sender restarted.
                self._init(seq)
                self._transit = None
            else:
                self._bad_seq = (seq + 1) & 0xFFFF
                return False
        # else: a duplicate or a reordered packet; counted, max unchanged.
        self._received += 1
        self._jitter_update(timestamp, arrival)
        return True

    def _init(self, seq: int) -> None:
        self._base_seq = seq
        self._max_seq = seq
        self._bad_seq = SEQ_MOD + 1
        self._cycles = 0
        self._received = 0

    def _jitter_update(self, timestamp: int, arrival: float) -> None:
        # transit = arrival - timestamp, with the timestamp unwrapped against the last
        # one so that a 32-bit wrap does not look like a jump.
        if self._transit is None:
            self._last_ts = timestamp
            self._transit = arrival - timestamp
            return
        unwrapped = self._last_ts + ts_diff(timestamp, self._last_ts)
        transit = arrival - unwrapped
        d = abs(transit - self._transit)
        self._transit = transit
        self._last_ts = unwrapped
        self._jitter += (d - self._jitter) / 16.0
