"""G.711 µ-law (PCMU) and A-law (PCMA) as numpy lookup tables (ITU-T G.711).

Decoding indexes a 256-entry int16 table with the code bytes; encoding indexes a
65536-entry uint8 table with the 16-bit PCM samples viewed as uint16.  Both are one
numpy gather, so whole frames (or whole batches of frames) convert in one call.

The tables are built once, vectorised, from the segment/mantissa description of the
standard, with the conventions of the widely used reference implementation: µ-law
works on 14-bit magnitudes (the two low bits of a 16-bit sample dropped) with a bias
of 33, A-law on 13-bit values (three low bits dropped); inputs beyond the largest
segment clip to the largest code.  µ-law code 0x7F ("negative zero") decodes to 0.
All tables are read-only.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALAW_DECODE",
    "ALAW_ENCODE",
    "CODECS",
    "ULAW_DECODE",
    "ULAW_ENCODE",
    "codec_name",
    "decode",
    "decode_table",
    "encode",
    "encode_table",
    "silence_byte",
]

CODECS: Final = ("PCMU", "PCMA")

_ULAW_BIAS = 0x84  # 132: the bias in the 16-bit domain (33 in the 14-bit one)
_ULAW_CLIP = 8159  # largest 14-bit magnitude before the bias is added
# Upper ends of the eight segments (inclusive), for biased 14-bit µ-law magnitudes and
# for 13-bit A-law magnitudes.
_ULAW_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _readonly(array: npt.NDArray[np.generic]) -> None:
    array.flags.writeable = False


def _ulaw_decode_table() -> npt.NDArray[np.int16]:
    inverted = (~np.arange(256, dtype=np.int32)) & 0xFF  # codes are sent inverted
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    linear = np.where(inverted & 0x80, -magnitude, magnitude)
    return linear.astype(np.int16)


def _alaw_decode_table() -> npt.NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32) ^ 0x55  # even bits are sent inverted
    segment = (code >> 4) & 0x07
    mantissa = code & 0x0F
    # Segment 0 is linear with step 16 around the half-step 8; segment s >= 1 has the
    # implicit leading one (0x100) and step 16 << (s - 1).
    magnitude = np.where(
        segment == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(segment - 1, 0),
    )
    linear = np.where(code & 0x80, magnitude, -magnitude)
    return linear.astype(np.int16)


def _all_pcm() -> npt.NDArray[np.int32]:
    """Every int16 value, in the order of its uint16 view (0..32767, -32768..-1)."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    value = _all_pcm() >> 2  # 14-bit, arithmetic shift
    negative = value < 0
    magnitude = np.minimum(np.where(negative, -value, value), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    segment = np.searchsorted(_ULAW_SEGMENT_ENDS, magnitude)  # first end >= magnitude
    code = np.where(
        segment >= 8,
        0x7F,
        (np.minimum(segment, 7) << 4) | ((magnitude >> (np.minimum(segment, 7) + 1)) & 0x0F),
    )
    code ^= np.where(negative, 0x7F, 0xFF)
    return code.astype(np.uint8)


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    value = _all_pcm() >> 3  # 13-bit, arithmetic shift
    negative = value < 0
    magnitude = np.where(negative, -value - 1, value)  # one's complement for negatives
    segment = np.searchsorted(_ALAW_SEGMENT_ENDS, magnitude)
    shift = np.where(segment < 2, 1, np.minimum(segment, 7))
    code = np.where(
        segment >= 8,
        0x7F,
        (np.minimum(segment, 7) << 4) | ((magnitude >> shift) & 0x0F),
    )
    code ^= np.where(negative, 0x55, 0xD5)
    return code.astype(np.uint8)


ULAW_DECODE: Final = _ulaw_decode_table()
ALAW_DECODE: Final = _alaw_decode_table()
ULAW_ENCODE: Final = _ulaw_encode_table()
ALAW_ENCODE: Final = _alaw_encode_table()
for _table in (ULAW_DECODE, ALAW_DECODE, ULAW_ENCODE, ALAW_ENCODE):
    _readonly(_table)
del _table

_DECODE: Final = {"PCMU": ULAW_DECODE, "PCMA": ALAW_DECODE}
_ENCODE: Final = {"PCMU": ULAW_ENCODE, "PCMA": ALAW_ENCODE}
# The code of linear 0: µ-law 0xFF (0x7F also decodes to 0), A-law 0xD5 (decodes to +8,
# the smallest step; A-law has no exact zero).
_SILENCE: Final = {"PCMU": 0xFF, "PCMA": 0xD5}


#: the static RTP payload types of G.711 (RFC 3551), by number
PAYLOAD_TYPES = {0: "PCMU", 8: "PCMA"}


def codec_name(codec: str) -> str:
    """The canonical name ("PCMU" or "PCMA") of a G.711 codec name in any case; raise
    ``ValueError`` for any other codec."""
    name = codec.upper()
    if name not in _DECODE:
        raise ValueError(f"unsupported codec {codec!r}: G.711 is PCMU or PCMA")
    return name


def decode_table(codec: str) -> npt.NDArray[np.int16]:
    """The 256-entry code → linear table of a codec."""
    return _DECODE[codec_name(codec)]


def encode_table(codec: str) -> npt.NDArray[np.uint8]:
    """The 65536-entry table, indexed by the uint16 view of an int16 sample."""
    return _ENCODE[codec_name(codec)]


def silence_byte(codec: str) -> int:
    """The code byte for silence in a codec."""
    return _SILENCE[codec_name(codec)]


def decode(payload: bytes, codec: str) -> npt.NDArray[np.int16]:
    """G.711 code bytes → int16 PCM (a new array, one sample per byte)."""
    table = decode_table(codec)
    return table[np.frombuffer(payload, dtype=np.uint8)]


def encode(pcm: npt.NDArray[np.int16], codec: str) -> bytes:
    """int16 PCM → G.711 code bytes (one byte per sample)."""
    table = encode_table(codec)
    samples = np.ascontiguousarray(pcm, dtype=np.int16)
    return table[samples.view(np.uint16)].tobytes()


# --- wire audio: G.711 codes tagged with their law (what recordings store) ---------------
#
# A wire sample is a uint16: the RTP payload type of its law in the high byte (0 PCMU, 8
# PCMA) and the code byte as received in the low byte, or WIRE_SILENCE for a sample the
# recorder filled (lost, late, paused): that is written as the chunk's law's silence.

CODEC_TAGS = {"PCMU": 0, "PCMA": 8}
TAG_CODECS = {tag: name for name, tag in CODEC_TAGS.items()}
WIRE_SILENCE = 0xFF00


def _wire_decode_table() -> npt.NDArray[np.int16]:
    table = np.zeros(1 << 16, dtype=np.int16)  # silence and unknown tags decode to 0
    for name, tag in CODEC_TAGS.items():
        table[tag << 8 : (tag << 8) + 256] = decode_table(name)
    table.flags.writeable = False
    return table


_WIRE_DECODE = _wire_decode_table()


def wire_samples(codes: npt.NDArray[np.uint8], codec: str) -> npt.NDArray[np.uint16]:
    """Wire samples of G.711 ``codes`` (any shape) of one law."""
    tag = CODEC_TAGS[codec_name(codec)]
    return np.asarray(codes, dtype=np.uint8).astype(np.uint16) | np.uint16(tag << 8)


def wire_decode(wire: npt.NDArray[np.uint16]) -> npt.NDArray[np.int16]:
    """16-bit samples of wire samples (any shape; one gather)."""
    return _WIRE_DECODE[wire]
