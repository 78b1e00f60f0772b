"""Each leg's SRTP policy (``[media] srtp``) in its offers and answers
(``proxy.calls.srtp_policy`` through ``LegSdp``), without sockets: descriptions in,
descriptions and agreed keys out."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.calls.offer_answer import RECORDABLE_CODECS, LegSdp
from proxy.sip import sdp
from proxy.sip.errors import RemoteSipError
from proxy.sip.sdes import CryptoAttribute

OURS = "192.0.2.10"
KEY30 = bytes(range(30))
KEY44 = bytes(range(44))
SHA1_80 = "1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(KEY30).decode()
GCM = "2 AEAD_AES_256_GCM inline:" + base64.b64encode(KEY44).decode()


def offer(profile: str = "RTP/SAVP", *crypto: str, extra: str = "") -> sdp.SessionDescription:
    lines = [
        "v=0",
        "o=phone 7 1 IN IP4 198.51.100.7",
        "s=-",
        "c=IN IP4 198.51.100.7",
        "t=0 0",
        f"m=audio 40000 {profile} 0 8 101",
        "a=rtpmap:101 telephone-event/8000",
        *(f"a=crypto:{line}" for line in crypto),
        "a=sendrecv",
        *extra.strip().splitlines(),
    ]
    return sdp.SessionDescription.parse(("\r\n".join(lines) + "\r\n").encode())


def leg(policy: str) -> LegSdp:
    return LegSdp("caller", 4242, OURS, port=30000, srtp=policy)


def crypto_of(description: sdp.SessionDescription, index: int = 0) -> list[CryptoAttribute]:
    media = description.media[index]
    return [CryptoAttribute.parse(a.value) for a in media.attributes if a.key == "crypto"]


def refused(side: LegSdp, description: sdp.SessionDescription) -> str:
    """The Warning of the 488 the offer gets; the leg is unchanged."""
    before = (side.version, side.local, side.audio)
    with pytest.raises(RemoteSipError) as caught:
        side.answer(description)
    assert (caught.value.status, caught.value.reason) == (488, "Not Acceptable Here")
    assert (side.version, side.local, side.audio) == before
    ((name, value),) = caught.value.extra_headers
    assert name == "Warning"
    return value


# --- the caller's leg: we answer ----------------------------------------------------


@pytest.mark.parametrize("policy", ["offer", "require"])
@pytest.mark.parametrize("profile", ["RTP/SAVP", "RTP/AVP"])
def test_an_offer_with_a_usable_line_gets_our_own_fresh_key(policy: str, profile: str) -> None:
    side = leg(policy)
    answer, audio = side.answer(offer(profile, SHA1_80))
    assert answer.media[0].proto == profile
    (ours,) = crypto_of(answer)
    assert (ours.tag, ours.suite) == (1, "AES_CM_128_HMAC_SHA1_80")
    assert ours.key != KEY30
    assert audio.srtp is not None
    assert (audio.srtp.suite, audio.srtp.send_key, audio.srtp.receive_key) == (
        "AES_CM_128_HMAC_SHA1_80",
        ours.key,
        KEY30,
    )
    _, again = side.answer(offer(profile, SHA1_80))  # a re-offer: our key kept
    assert again.srtp is not None and again.srtp.send_key == ours.key
    _, other = leg(policy).answer(offer(profile, SHA1_80))  # another leg: its own key
    assert other.srtp is not None and other.srtp.send_key != ours.key


def test_the_offerers_first_usable_suite_is_taken() -> None:
    mki = "3 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(KEY30).decode() + "|1:4"
    answer, audio = leg("require").answer(offer("RTP/SAVP", mki, GCM, SHA1_80))
    (ours,) = crypto_of(answer)
    assert (ours.tag, ours.suite, len(ours.key)) == (2, "AEAD_AES_256_GCM", 44)
    assert audio.srtp is not None and audio.srtp.receive_key == KEY44


def test_off_answers_best_effort_crypto_with_plain_rtp() -> None:
    answer, audio = leg("off").answer(offer("RTP/AVP", SHA1_80))
    assert crypto_of(answer) == [] and audio.srtp is None
    assert answer.media[0].proto == "RTP/AVP"


def test_off_does_not_read_crypto_lines() -> None:
    _, audio = leg("off").answer(offer("RTP/AVP", "1 AES_CM_128_HMAC_SHA1_80 inline:!!"))
    assert audio.srtp is None


def test_offer_answers_a_plain_offer_with_plain_rtp() -> None:
    answer, audio = leg("offer").answer(offer("RTP/AVP"))
    assert crypto_of(answer) == [] and audio.srtp is None


def test_off_refuses_an_srtp_only_offer() -> None:
    assert refused(leg("off"), offer("RTP/SAVP", SHA1_80)) == (
        '302 recproxy "SRTP is off here: offer RTP/AVP"'
    )


@pytest.mark.parametrize("plain", [offer("RTP/AVP"), offer("RTP/AVP", "7 F8_128_HMAC_SHA1_80 x")])
def test_require_refuses_a_plain_offer(plain: sdp.SessionDescription) -> None:
    assert refused(leg("require"), plain) == (
        '302 recproxy "SRTP is required here: offer RTP/SAVP with a=crypto"'
    )


@pytest.mark.parametrize("policy", ["offer", "require"])
def test_srtp_with_no_suite_we_speak_is_refused(policy: str) -> None:
    warning = refused(leg(policy), offer("RTP/SAVP", "1 F8_128_HMAC_SHA1_80 inline:x"))
    assert warning.startswith('306 recproxy "no a=crypto line with a suite we support')


@pytest.mark.parametrize("policy", ["off", "offer", "require"])
@pytest.mark.parametrize("profile", ["RTP/SAVPF", "UDP/TLS/RTP/SAVP", "UDP/TLS/RTP/SAVPF"])
def test_feedback_and_dtls_profiles_are_refused_clearly(policy: str, profile: str) -> None:
    warning = refused(leg(policy), offer(profile, SHA1_80))
    assert "RTP/SAVPF and DTLS-SRTP are not supported" in warning


@pytest.mark.parametrize("policy", ["offer", "require"])
def test_a_malformed_crypto_line_is_a_488_and_changes_nothing(policy: str) -> None:
    side = leg(policy)
    side.answer(offer("RTP/SAVP", SHA1_80))
    warning = refused(side, offer("RTP/SAVP", "1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ="))
    assert warning.startswith("306 recproxy ")


def test_the_plain_stream_of_a_capability_pair_is_taken_when_srtp_is_off() -> None:
    two = offer("RTP/SAVP", SHA1_80, extra="m=audio 40002 RTP/AVP 0\na=sendrecv")
    answer, audio = leg("off").answer(two)
    assert [m.port for m in answer.media] == [0, 30000]
    assert audio.media_index == 1 and audio.srtp is None


# --- the call taker's leg: we offer -------------------------------------------------


def test_off_offers_plain_rtp() -> None:
    ours = leg("off").offer(RECORDABLE_CODECS, sdp.Direction.SENDRECV)
    assert ours.media[0].proto == "RTP/AVP" and crypto_of(ours) == []


@pytest.mark.parametrize(("policy", "profile"), [("offer", "RTP/AVP"), ("require", "RTP/SAVP")])
def test_our_offer_carries_a_key_per_suite_fresh_per_leg_kept_across_re_offers(
    policy: str, profile: str
) -> None:
    side = leg(policy)
    first = side.offer(RECORDABLE_CODECS, sdp.Direction.SENDRECV)
    assert first.media[0].proto == profile
    lines = crypto_of(first)
    assert [(line.tag, line.suite) for line in lines] == [
        (1, "AEAD_AES_256_GCM"),
        (2, "AES_CM_128_HMAC_SHA1_80"),
    ]
    keys = [line.key for line in lines]
    assert len(set(keys)) == 2
    again = side.offer(RECORDABLE_CODECS, sdp.Direction.SENDONLY)
    assert [line.key for line in crypto_of(again)] == keys  # a re-offer (a hold): kept
    other = leg(policy).offer(RECORDABLE_CODECS, sdp.Direction.SENDRECV)
    assert set(keys).isdisjoint(line.key for line in crypto_of(other))


def test_a_leg_that_went_plain_gets_new_keys_when_srtp_comes_back() -> None:
    side = leg("offer")
    first = crypto_of(side.offer(RECORDABLE_CODECS, sdp.Direction.SENDRECV))
    assert side.accept_answer(offer("RTP/AVP")).srtp is None  # the party took plain RTP
    later = crypto_of(side.offer(RECORDABLE_CODECS, sdp.Direction.SENDRECV))
    assert {line.key for line in first}.isdisjoint(line.key for line in later)


@pytest.mark.parametrize("policy", ["offer", "require"])
def test_an_answer_with_a_line_agrees_its_keys(policy: str) -> None:
    side = leg(policy)
    ours = side.offer(RECORDABLE_CODECS, sdp.Direction.SENDRECV)
    theirs = "2 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(KEY30).decode()
    audio = side.accept_answer(offer("RTP/SAVP", theirs))
    assert audio.srtp is not None
    assert audio.srtp.suite == "AES_CM_128_HMAC_SHA1_80"
    assert audio.srtp.send_key == crypto_of(ours)[1].key and audio.srtp.receive_key == KEY30


def test_offer_takes_a_plain_answer_as_plain_rtp() -> None:
    side = leg("offer")
    side.offer(RECORDABLE_CODECS, sdp.Direction.SENDRECV)
    assert side.accept_answer(offer("RTP/AVP")).srtp is None


def test_require_refuses_a_plain_answer() -> None:
    side = leg("require")
    side.offer(RECORDABLE_CODECS, sdp.Direction.SENDRECV)
    with pytest.raises(RemoteSipError) as caught:
        side.accept_answer(offer("RTP/AVP"))
    assert caught.value.status == 488
    assert side.audio is None  # nothing agreed


@pytest.mark.parametrize(
    "theirs",
    [
        "5 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(KEY30).decode(),  # not our tag
        "1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(KEY30).decode(),  # tag 1 is GCM
        "2 AES_CM_128_HMAC_SHA1_80 inline:short",
    ],
)
def test_a_mismatched_or_malformed_answer_is_refused(theirs: str) -> None:
    side = leg("offer")
    side.offer(RECORDABLE_CODECS, sdp.Direction.SENDRECV)
    with pytest.raises(RemoteSipError) as caught:
        side.accept_answer(offer("RTP/AVP", theirs))
    assert caught.value.status == 488


def test_off_ignores_crypto_in_an_answer() -> None:
    side = leg("off")
    side.offer(RECORDABLE_CODECS, sdp.Direction.SENDRECV)
    assert side.accept_answer(offer("RTP/AVP", SHA1_80)).srtp is None


def test_two_legs_agree_mirror_keys() -> None:
    """Our offer on one leg answered by another leg of ours: each sends with the key the
    other receives with."""
    offerer, answerer = leg("require"), leg("offer")
    ours = offerer.offer(RECORDABLE_CODECS, sdp.Direction.SENDRECV)
    answer, answered = answerer.answer(ours)
    agreed = offerer.accept_answer(answer)
    assert agreed.srtp is not None and answered.srtp is not None
    assert agreed.srtp.suite == answered.srtp.suite == "AEAD_AES_256_GCM"
    assert agreed.srtp.send_key == answered.srtp.receive_key
    assert agreed.srtp.receive_key == answered.srtp.send_key


# --- fuzzing: an offer with any crypto lines is answered or refused, nothing else ---------

_CRYPTO_VALUE = st.one_of(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
        max_size=120,
    ),
    st.builds(
        lambda tag, suite, key, tail: f"{tag} {suite} inline:{key}{tail}",
        st.integers(0, 10**10),
        st.sampled_from(["AES_CM_128_HMAC_SHA1_80", "AEAD_AES_256_GCM", "X", "AES_CM_128"]),
        st.binary(max_size=50).map(lambda b: base64.b64encode(b).decode()),
        st.sampled_from(["", "|2^20", "|1:4", " KDR=1", "|2^20|1:4", ";inline:AAAA"]),
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    policy=st.sampled_from(["off", "offer", "require"]),
    profile=st.sampled_from(["RTP/AVP", "RTP/SAVP", "RTP/SAVPF"]),
    lines=st.lists(_CRYPTO_VALUE, max_size=3),
)
def test_any_crypto_lines_are_answered_or_refused_with_the_protocol_error(
    policy: str, profile: str, lines: list[str]
) -> None:
    side = leg(policy)
    try:
        description = offer(profile, *lines)
    except RemoteSipError as error:  # the SDP itself did not parse
        assert error.status == 400
        return
    try:
        answer, audio = side.answer(description)
    except RemoteSipError as error:
        assert error.status == 488
        return
    assert (audio.srtp is not None) == bool(crypto_of(answer))
    if policy == "require":
        assert audio.srtp is not None


def test_a_re_offer_proposes_the_suite_in_use_alone_with_the_same_key() -> None:
    """A party may not follow a change of suite in mid-call (baresip 1.0 keeps decrypting
    with its first one): once keyed, our re-offers keep the suite and the key."""
    side = leg("require")
    first = crypto_of(side.offer(RECORDABLE_CODECS, sdp.Direction.SENDRECV))
    theirs = "2 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(KEY30).decode()
    side.accept_answer(offer("RTP/SAVP", theirs))
    (again,) = crypto_of(side.offer(RECORDABLE_CODECS, sdp.Direction.SENDONLY))
    assert (again.tag, again.suite, again.key) == (1, "AES_CM_128_HMAC_SHA1_80", first[1].key)


@settings(max_examples=200, deadline=None)
@given(
    policy=st.sampled_from(["offer", "require"]),
    value=st.binary(max_size=120).filter(lambda b: b"\r" not in b and b"\n" not in b),
)
def test_any_bytes_in_a_crypto_line_are_answered_or_refused(policy: str, value: bytes) -> None:
    """From the network: bytes, not text (SDP is decoded with surrogateescape)."""
    body = (
        b"v=0\r\no=phone 7 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
        b"m=audio 40000 RTP/SAVP 0\r\na=crypto:" + value + b"\r\n"
    )
    try:
        leg(policy).answer(sdp.SessionDescription.parse(body))
    except RemoteSipError as error:
        assert error.status in (400, 488)
