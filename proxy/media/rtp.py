"""RTP packets (RFC 3550), RTP/RTCP demultiplexing (RFC 5761) and wraparound arithmetic.

``RtpPacket.parse(data)`` reads one RTP packet and ``serialize()`` writes it back byte for
byte: ``RtpPacket.parse(x).serialize() == x`` for every packet ``parse`` accepts (the
padding octets are kept as received).  Malformed input raises ``RtpError`` with a message
that names what is wrong; nothing else escapes.

``is_rtcp(data)`` tells RTCP from RTP on a multiplexed port (RFC 5761).

Sequence numbers are 16 bits and timestamps 32 bits, and both wrap: compare them only
with ``seq_diff``/``seq_newer``/``ts_diff``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "RtpError",
    "RtpPacket",
    "is_rtcp",
    "seq_diff",
    "seq_newer",
    "ts_diff",
    "ts_newer",
]

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
SEQ_MOD = 1 << 16
TS_MOD = 1 << 32

_HEADER = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")


class RtpError(ValueError):
    """The bytes are not a well-formed RTP packet (the peer's fault)."""


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


def is_rtcp(data: bytes) -> bool:
    """Whether a packet on a multiplexed RTP/RTCP port is RTCP (RFC 5761 section 4): the
    second octet, marker bit masked, is 64..95 (RTCP packet types 192..223).  RTP must
    not use payload types 64..95 where RTCP is multiplexed."""
    return len(data) >= 2 and 64 <= (data[1] & 0x7F) <= 95


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
