"""SDES ``a=crypto`` lines (RFC 4568): parsed and written back, paired offer to answer,
and whatever the text, a line or the protocol error (488 with a Warning)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.sip.errors import RemoteSipError
from proxy.sip.sdes import (
    SUITES,
    CryptoAttribute,
    KeyParam,
    SrtpKeys,
    answer_crypto,
    choose_crypto,
    new_key,
    offer_crypto,
    pair_answer,
)

# RFC 4568 section 9.1's example offer (with a lifetime and an MKI)
RFC_LINE = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4"
KEY30 = base64.b64encode(bytes(range(30))).decode()
KEY44 = base64.b64encode(bytes(range(44))).decode()


@pytest.mark.parametrize(
    "text",
    [
        RFC_LINE,
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}",
        f"2 AES_CM_128_HMAC_SHA1_32 inline:{KEY30}|2^31",
        f"3 AEAD_AES_256_GCM inline:{KEY44}",
        f"4 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|1:1;inline:{KEY30}|2:1",
        f"5 AES_CM_128_HMAC_SHA1_80 inline:{KEY30} UNENCRYPTED_SRTCP KDR=1",
        "6 F8_128_HMAC_SHA1_80 inline:anything|goes here",  # a suite we do not know: kept
    ],
)
def test_a_line_reads_and_writes_back_unchanged(text: str) -> None:
    assert CryptoAttribute.parse(text).to_text() == text


def test_the_rfc_example_is_read_field_by_field() -> None:
    line = CryptoAttribute.parse(RFC_LINE)
    assert (line.tag, line.suite, line.session_params) == (1, "AES_CM_128_HMAC_SHA1_80", ())
    (key,) = line.keys
    assert len(key.key_salt) == 30
    assert (key.lifetime, key.mki) == ("2^20", (1, 4))
    assert not line.usable  # an MKI: libsrtp is given one key with none


def test_only_one_plain_key_of_a_known_suite_is_usable() -> None:
    assert CryptoAttribute.parse(f"1 AEAD_AES_256_GCM inline:{KEY44}").usable
    assert CryptoAttribute.parse(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^31").usable
    for text in (
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30} UNENCRYPTED_SRTP",
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30};inline:{KEY30}",
        "1 F8_128_HMAC_SHA1_80 inline:whatever",
    ):
        line = CryptoAttribute.parse(text)
        assert not line.usable
        with pytest.raises(ValueError):
            _ = line.key


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "AES_CM_128_HMAC_SHA1_80 inline:x",  # no tag
        "1234567890 AES_CM_128_HMAC_SHA1_80 inline:" + KEY30,  # a 10-digit tag
        "1 AES_CM_128_HMAC_SHA1_80",  # no key
        "1 AES_CM_128_HMAC_SHA1_80 uri:https://example.com/key",  # not inline
        "1 AES_CM_128_HMAC_SHA1_80 inline:not*base64!",
        "1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY44,  # a GCM-length key
        "1 AEAD_AES_256_GCM inline:" + KEY30,  # too short
        "1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY30[:-1],  # broken padding
        "1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY30 + "|1:0",  # MKI length 0
        "1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY30 + "|1:129",  # MKI length over 128
        "1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY30 + "|2^65",
        "1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY30 + "|x",
        "1 AES-CM inline:" + KEY30,  # not a suite token
    ],
)
def test_a_malformed_line_is_a_488_with_a_warning(text: str) -> None:
    with pytest.raises(RemoteSipError) as caught:
        CryptoAttribute.parse(text)
    error = caught.value
    assert (error.status, error.reason) == (488, "Not Acceptable Here")
    ((name, value),) = error.extra_headers
    assert name == "Warning" and value.startswith("306 recproxy ")
    assert KEY30[:20] not in value and KEY44[:20] not in value  # never the peer's bytes


def test_keys_never_show_in_a_repr() -> None:
    key = new_key("AES_CM_128_HMAC_SHA1_80")
    shown = repr(SrtpKeys("AES_CM_128_HMAC_SHA1_80", key, key)) + repr(KeyParam(key))
    shown += repr(CryptoAttribute.parse(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}"))
    assert key.hex() not in shown and repr(key) not in shown
    assert KEY30 not in shown and repr(bytes(range(30))) not in shown


def test_our_offer_has_one_line_per_suite_with_fresh_keys() -> None:
    first, second = offer_crypto(), offer_crypto()
    assert [(line.tag, line.suite) for line in first] == list(enumerate(SUITES, start=1))
    for line, again in zip(first, second, strict=True):
        assert line.usable and len(line.key) == sum(SUITES[line.suite])
        assert line.key != again.key
        assert CryptoAttribute.parse(line.to_text()) == line


def test_the_answerer_takes_the_first_usable_line_in_the_offerers_order() -> None:
    offered = [
        CryptoAttribute.parse("1 F8_128_HMAC_SHA1_80 inline:whatever"),
        CryptoAttribute.parse(f"2 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|1:1"),
        CryptoAttribute.parse(f"3 AES_CM_128_HMAC_SHA1_32 inline:{KEY30}"),
        CryptoAttribute.parse(f"4 AEAD_AES_256_GCM inline:{KEY44}"),
    ]
    chosen = choose_crypto(offered)
    assert chosen is offered[2]
    ours = answer_crypto(chosen)
    assert (ours.tag, ours.suite) == (3, "AES_CM_128_HMAC_SHA1_32")
    assert ours.key != chosen.key
    assert choose_crypto(offered[:2]) is None


def test_an_answer_pairs_with_the_offered_line_of_its_tag() -> None:
    ours = offer_crypto()
    theirs = answer_crypto(ours[1])
    keys = pair_answer(ours, [theirs])
    assert keys == SrtpKeys(ours[1].suite, ours[1].key, theirs.key)
    assert pair_answer(ours, []) is None  # plain RTP


@pytest.mark.parametrize(
    "answered",
    [
        [f"9 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}"],  # a tag we did not offer
        [f"2 AES_CM_128_HMAC_SHA1_32 inline:{KEY30}"],  # tag 2 was SHA1_80
        [f"2 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|1:1"],  # an MKI
        [f"2 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}"] * 2,  # two lines
    ],
)
def test_an_answer_that_does_not_match_our_offer_is_a_488(answered: list[str]) -> None:
    with pytest.raises(RemoteSipError) as caught:
        pair_answer(offer_crypto(), [CryptoAttribute.parse(text) for text in answered])
    assert caught.value.status == 488


def _assert_line_or_488(text: str) -> None:
    try:
        line = CryptoAttribute.parse(text)
    except RemoteSipError as error:
        assert error.status == 488
        return
    assert CryptoAttribute.parse(line.to_text()) == line


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_a_line_or_the_protocol_error(text: str) -> None:
    _assert_line_or_488(text)


_B64 = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=70
)


@settings(max_examples=300, deadline=None)
@given(
    tag=st.one_of(st.integers(0, 10**10).map(str), st.text(max_size=4)),
    suite=st.one_of(st.sampled_from([*SUITES, "F8_128_HMAC_SHA1_80"]), st.text(max_size=10)),
    method=st.sampled_from(["inline:", "INLINE:", "uri:", ""]),
    key=st.one_of(
        _B64, st.binary(min_size=0, max_size=50).map(lambda b: base64.b64encode(b).decode())
    ),
    lifetime=st.sampled_from(["", "|2^20", "|2^99", "|100", "|x", "|2^"]),
    mki=st.sampled_from(["", "|1:4", "|1:0", "|1:999", "|:4", "|1:"]),
    session=st.sampled_from(["", " KDR=1", " UNENCRYPTED_SRTP", "\t"]),
)
def test_lines_near_the_grammar_are_a_line_or_the_protocol_error(
    tag: str, suite: str, method: str, key: str, lifetime: str, mki: str, session: str
) -> None:
    _assert_line_or_488(f"{tag} {suite} {method}{key}{lifetime}{mki}{session}")
