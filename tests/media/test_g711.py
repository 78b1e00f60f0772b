"""G.711 tables against ITU-T G.711 values and a bit-level reference coder.

The reference below is written from the description in G.711 and the classic public
domain reference coder's conventions (µ-law: 14-bit magnitude, bias 33, clip at 8159;
A-law: 13-bit value, one's complement for negatives, even bits inverted): one sample at
a time, with explicit segment searches and bit operations, independent of the
vectorised table construction in ``proxy.media.g711``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.media import g711
from tests.media.media_helpers import shared_data_file

# --------------------------------------------------------------------------- reference coder


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for index, end in enumerate(ends):
        if value <= end:
            return index
    return len(ends)


_ULAW_ENDS = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_ENDS = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def ref_linear_to_ulaw(sample: int) -> int:
    value = sample >> 2  # 16-bit to 14-bit, rounding toward minus infinity
    if value < 0:
        value, mask = -value, 0x7F
    else:
        mask = 0xFF
    value = min(value, 8159) + 33
    seg = _segment(value, _ULAW_ENDS)
    if seg > 7:
        return 0x7F ^ mask
    return ((seg << 4) | ((value >> (seg + 1)) & 0x0F)) ^ mask


def ref_ulaw_to_linear(code: int) -> int:
    code = ~code & 0xFF
    magnitude = ((((code & 0x0F) << 3) + 0x84) << ((code >> 4) & 0x07)) - 0x84
    return -magnitude if code & 0x80 else magnitude


def ref_linear_to_alaw(sample: int) -> int:
    value = sample >> 3  # 16-bit to 13-bit
    if value >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        value = -value - 1
    seg = _segment(value, _ALAW_ENDS)
    if seg > 7:
        return 0x7F ^ mask
    quantised = (value >> 1) if seg < 2 else (value >> seg)
    return ((seg << 4) | (quantised & 0x0F)) ^ mask


def ref_alaw_to_linear(code: int) -> int:
    code ^= 0x55
    magnitude = (code & 0x0F) << 4
    seg = (code >> 4) & 0x07
    if seg == 0:
        magnitude += 8
    else:
        magnitude = (magnitude + 0x108) << (seg - 1)
    return magnitude if code & 0x80 else -magnitude


# --------------------------------------------------------------------------- golden values

# (code, linear) pairs from G.711's tables (µ-law table 2a, A-law table 1a): the decoder
# output values, scaled to 16 bits as the reference coder does (µ-law's 14-bit values
# times 4, e.g. 8031 -> 32124; A-law's 13-bit values times 8, e.g. 4032 -> 32256).
ULAW_GOLDEN = [
    (0xFF, 0),
    (0x7F, 0),  # "negative zero"
    (0x80, 32124),  # largest positive
    (0x00, -32124),
    (0xFE, 8),
    (0x7E, -8),
    (0xF0, 120),  # end of segment 0
    (0xEF, 132),  # start of segment 1
    (0xE0, 372),
    (0xDF, 396),
    (0xCF, 924),
    (0xBF, 1980),  # segment starts: 495, 1023, 2079, 4191 in 14 bits
    (0xAF, 4092),
    (0x9F, 8316),
    (0x8F, 16764),
    (0x90, 15996),
    (0x10, -15996),
]
ALAW_GOLDEN = [
    (0xD5, 8),
    (0x55, -8),
    (0xAA, 32256),  # largest positive
    (0x2A, -32256),
    (0xD4, 24),
    (0xDA, 248),  # end of segment 0
    (0xC5, 264),  # segment 1 starts
    (0xCA, 504),
    (0xF5, 528),  # segment 2
    (0xE5, 1056),  # segment 3
    (0x95, 2112),
    (0x85, 4224),
    (0xB5, 8448),
    (0xA5, 16896),
    (0x25, -16896),
]


@pytest.mark.parametrize(("code", "linear"), ULAW_GOLDEN)
def test_ulaw_decodes_standard_values(code: int, linear: int) -> None:
    assert int(g711.ULAW_DECODE[code]) == linear
    assert ref_ulaw_to_linear(code) == linear


@pytest.mark.parametrize(("code", "linear"), ALAW_GOLDEN)
def test_alaw_decodes_standard_values(code: int, linear: int) -> None:
    assert int(g711.ALAW_DECODE[code]) == linear
    assert ref_alaw_to_linear(code) == linear


@pytest.mark.parametrize(
    ("linear", "code"),
    [(0, 0xFF), (-1, 0x7E), (32767, 0x80), (-32768, 0x00), (32124, 0x80), (8, 0xFE),
     (120, 0xF0), (123, 0xF0), (124, 0xEF), (-132, 0x6F), (-121, 0x6F), (-120, 0x70)],
)  # fmt: skip
def test_ulaw_encodes_standard_values(linear: int, code: int) -> None:
    assert g711.encode(np.array([linear], dtype=np.int16), "PCMU") == bytes([code])


@pytest.mark.parametrize(
    ("linear", "code"),
    [(0, 0xD5), (-1, 0x55), (7, 0xD5), (8, 0xD5), (-8, 0x55), (32767, 0xAA), (-32768, 0x2A),
     (255, 0xDA), (256, 0xC5), (-257, 0x45)],
)  # fmt: skip
def test_alaw_encodes_standard_values(linear: int, code: int) -> None:
    assert g711.encode(np.array([linear], dtype=np.int16), "PCMA") == bytes([code])


# --------------------------------------------------------------------------- exhaustive


ALL_PCM = np.arange(-32768, 32768, dtype=np.int64)


def test_ulaw_encode_table_matches_reference_for_all_65536_inputs() -> None:
    expected = bytes(ref_linear_to_ulaw(int(x)) for x in ALL_PCM)
    assert g711.encode(ALL_PCM.astype(np.int16), "PCMU") == expected


def test_alaw_encode_table_matches_reference_for_all_65536_inputs() -> None:
    expected = bytes(ref_linear_to_alaw(int(x)) for x in ALL_PCM)
    assert g711.encode(ALL_PCM.astype(np.int16), "PCMA") == expected


def test_decode_tables_match_reference_for_all_256_codes() -> None:
    codes = bytes(range(256))
    assert g711.decode(codes, "PCMU").tolist() == [ref_ulaw_to_linear(c) for c in range(256)]
    assert g711.decode(codes, "PCMA").tolist() == [ref_alaw_to_linear(c) for c in range(256)]


def test_encode_tables_are_indexed_by_the_uint16_view() -> None:
    assert g711.ULAW_ENCODE.shape == (65536,) and g711.ULAW_ENCODE.dtype == np.uint8
    assert g711.ALAW_ENCODE.shape == (65536,) and g711.ALAW_ENCODE.dtype == np.uint8
    assert g711.ULAW_DECODE.shape == (256,) and g711.ULAW_DECODE.dtype == np.int16
    assert g711.ALAW_DECODE.shape == (256,) and g711.ALAW_DECODE.dtype == np.int16
    minus_one = np.array([-1], dtype=np.int16).view(np.uint16)[0]
    assert minus_one == 0xFFFF
    assert g711.ULAW_ENCODE[0xFFFF] == ref_linear_to_ulaw(-1)
    assert g711.ALAW_ENCODE[0x8000] == ref_linear_to_alaw(-32768)


def test_tables_are_read_only() -> None:
    with pytest.raises(ValueError):
        g711.ULAW_DECODE[0] = 1
    with pytest.raises(ValueError):
        g711.ALAW_ENCODE[0] = 1


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_encode_decode_encode_is_idempotent(codec: str) -> None:
    first = g711.encode(ALL_PCM.astype(np.int16), codec)
    again = g711.encode(g711.decode(first, codec), codec)
    assert again == first


def test_every_ulaw_code_but_negative_zero_survives_decode_encode() -> None:
    codes = bytes(range(256))
    back = g711.encode(g711.decode(codes, "PCMU"), "PCMU")
    differing = [c for c in range(256) if back[c] != c]
    assert differing == [0x7F]  # decodes to 0, which encodes as 0xFF
    assert g711.encode(g711.decode(codes, "PCMA"), "PCMA") == codes


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_quantisation_error_is_within_half_a_step(codec: str) -> None:
    pcm = np.arange(-32000, 32000, 7, dtype=np.int16)
    error = np.abs(g711.decode(g711.encode(pcm, codec), codec).astype(np.int32) - pcm)
    # The largest segment's step is 1024 (µ-law) / 1024 (A-law); relative error stays small.
    assert error.max() <= 512 + 4
    assert np.all(error <= np.maximum(np.abs(pcm.astype(np.int32)) // 16, 16))


# --------------------------------------------------------------------------- API


@given(st.lists(st.integers(-32768, 32767), max_size=400), st.sampled_from(["PCMU", "PCMA"]))
def test_encode_and_decode_are_elementwise_table_lookups(samples: list[int], codec: str) -> None:
    pcm = np.array(samples, dtype=np.int16)
    ref = ref_linear_to_ulaw if codec == "PCMU" else ref_linear_to_alaw
    encoded = g711.encode(pcm, codec)
    assert encoded == bytes(ref(s) for s in samples)
    decoded = g711.decode(encoded, codec)
    assert decoded.dtype == np.int16 and decoded.shape == (len(samples),)


def test_codec_names_are_case_insensitive() -> None:
    assert g711.codec_name("pcmu") == "PCMU"
    assert g711.codec_name("Pcma") == "PCMA"
    assert g711.decode(b"\xff", "pcmu").tolist() == [0]
    assert g711.encode(np.array([0], dtype=np.int16), "pcma") == b"\xd5"


@pytest.mark.parametrize("name", ["G729", "L16", "", "PCM"])
def test_other_codecs_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="unsupported codec"):
        g711.codec_name(name)
    with pytest.raises(ValueError):
        g711.decode(b"\0", name)


def test_silence_bytes_decode_to_the_quietest_level() -> None:
    assert g711.silence_byte("PCMU") == 0xFF
    assert g711.silence_byte("pcma") == 0xD5
    assert g711.ULAW_DECODE[0xFF] == 0
    assert abs(int(g711.ALAW_DECODE[0xD5])) == 8


def test_encode_accepts_a_non_contiguous_view() -> None:
    stereo = np.array([[100, -100], [2000, -2000], [30000, -30000]], dtype=np.int16)
    assert g711.encode(stereo[:, 1], "PCMU") == g711.encode(stereo[:, 1].copy(), "PCMU")


def test_real_ulaw_speech_decodes_close_to_the_16_bit_master() -> None:
    ulaw = shared_data_file("audio", "notice_8k.ulaw").read_bytes()
    master_bytes = shared_data_file("audio", "notice_8k_s16.wav").read_bytes()[44:]
    master = np.frombuffer(master_bytes, dtype="<i2").astype(np.float64)
    decoded = g711.decode(ulaw, "PCMU").astype(np.float64)
    assert len(decoded) == len(master) == 80000
    assert np.corrcoef(decoded, master)[0, 1] > 0.999
