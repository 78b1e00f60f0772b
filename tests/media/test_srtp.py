"""One leg's SRTP (``proxy.media.srtp``) over real libsrtp: protect and unprotect round
trips for every suite, RTCP too, a tampered packet and a replay refused with their
reason, and rekeying that keeps what did not change."""

from __future__ import annotations

import struct

import pytest

from proxy.media.srtp import (
    MAX_OUTBOUND_SSRCS,
    PROFILES,
    Rejection,
    SrtpRejected,
    SrtpStreams,
)
from proxy.sip.sdes import SUITES, new_key


def rtp(seq: int, ssrc: int = 0x1234, payload: bytes = b"\x55" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + payload


# an RTCP receiver report with no report blocks (RFC 3550 section 6.4.2)
RTCP_RR = struct.pack("!BBHI", 0x80, 201, 1, 0x1234)


def pair(suite: str) -> tuple[SrtpStreams, SrtpStreams]:
    """Two ends of one leg: ours, and the party's (keys mirrored)."""
    ours, theirs = new_key(suite), new_key(suite)
    return SrtpStreams(suite, ours, theirs), SrtpStreams(suite, theirs, ours)


def test_the_relay_speaks_every_suite_sdes_negotiates() -> None:
    assert set(PROFILES) == set(SUITES)


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_protect_then_unprotect_gives_the_packet_back(suite: str) -> None:
    us, party = pair(suite)
    for seq in range(1, 6):
        packet = rtp(seq)
        protected = us.protect(packet)
        assert protected != packet and packet[12:] not in protected
        assert party.unprotect(protected) == packet
    assert party.unprotect_rtcp(us.protect_rtcp(RTCP_RR)) == RTCP_RR
    assert us.unprotect(party.protect(rtp(9))) == rtp(9)


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_a_tampered_packet_fails_authentication(suite: str) -> None:
    us, party = pair(suite)
    protected = bytearray(party.protect(rtp(1)))
    protected[20] ^= 0x01
    with pytest.raises(SrtpRejected) as caught:
        us.unprotect(bytes(protected))
    assert caught.value.reason is Rejection.AUTHENTICATION
    assert us.unprotect(party.protect(rtp(2))) == rtp(2)  # the stream goes on


def test_a_packet_under_another_key_fails_authentication() -> None:
    us, _ = pair("AES_CM_128_HMAC_SHA1_80")
    stranger, _ = pair("AES_CM_128_HMAC_SHA1_80")
    with pytest.raises(SrtpRejected) as caught:
        us.unprotect(stranger.protect(rtp(1)))
    assert caught.value.reason is Rejection.AUTHENTICATION


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_a_replayed_packet_is_refused(suite: str) -> None:
    us, party = pair(suite)
    protected = party.protect(rtp(1))
    assert us.unprotect(protected) == rtp(1)
    with pytest.raises(SrtpRejected) as caught:
        us.unprotect(protected)
    assert caught.value.reason is Rejection.REPLAYED
    rtcp = party.protect_rtcp(RTCP_RR)
    us.unprotect_rtcp(rtcp)
    with pytest.raises(SrtpRejected) as caught:
        us.unprotect_rtcp(rtcp)
    assert caught.value.reason is Rejection.REPLAYED


def test_a_very_old_packet_is_refused_as_replayed() -> None:
    us, party = pair("AES_CM_128_HMAC_SHA1_80")
    old = party.protect(rtp(1))
    for seq in range(2, 300):
        us.unprotect(party.protect(rtp(seq)))
    with pytest.raises(SrtpRejected) as caught:
        us.unprotect(old)
    assert caught.value.reason is Rejection.REPLAYED


def test_short_or_oversized_packets_are_malformed() -> None:
    us, party = pair("AES_CM_128_HMAC_SHA1_80")
    for short in (b"\x80\x00\x00", b"\x80" * 12, b"\x80" * 14):  # no room for a tag
        with pytest.raises(SrtpRejected) as caught:
            us.unprotect(short)
        assert caught.value.reason is Rejection.MALFORMED
    with pytest.raises(SrtpRejected) as caught:
        party.protect(rtp(1, payload=b"\0" * 1490))
    assert caught.value.reason is Rejection.MALFORMED


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_a_repeated_sequence_number_is_refused_not_protected_with_the_same_keystream(
    suite: str,
) -> None:
    """Two packets under one SSRC and index would share a keystream (AES-GCM: a nonce),
    so the second is refused, whatever its payload; the stream goes on after it."""
    us, party = pair(suite)
    assert party.unprotect(us.protect(rtp(7))) == rtp(7)
    for repeat in (rtp(7), rtp(7, payload=b"\xaa" * 160)):
        with pytest.raises(SrtpRejected) as caught:
            us.protect(repeat)
        assert caught.value.reason is Rejection.REPEATED
    assert party.unprotect(us.protect(rtp(8))) == rtp(8)


def test_an_outbound_session_protects_a_bounded_number_of_ssrcs() -> None:
    """A sender changing its SSRC in every packet cannot grow libsrtp's streams: past
    the limit a new SSRC is refused, the ones already seen (RTP or RTCP) go on."""
    us, party = pair("AES_CM_128_HMAC_SHA1_80")
    for ssrc in range(1, MAX_OUTBOUND_SSRCS + 1):
        us.protect(rtp(1, ssrc=ssrc))
    with pytest.raises(SrtpRejected) as caught:
        us.protect(rtp(1, ssrc=MAX_OUTBOUND_SSRCS + 1))
    assert caught.value.reason is Rejection.SSRC_LIMIT
    rr = struct.pack("!BBHI", 0x80, 201, 1, MAX_OUTBOUND_SSRCS + 2)
    with pytest.raises(SrtpRejected) as caught:
        us.protect_rtcp(rr)
    assert caught.value.reason is Rejection.SSRC_LIMIT
    assert party.unprotect(us.protect(rtp(2, ssrc=5))) == rtp(2, ssrc=5)
    rr = struct.pack("!BBHI", 0x80, 201, 1, 5)
    assert party.unprotect_rtcp(us.protect_rtcp(rr)) == rr


def test_rekeying_keeps_the_partys_unchanged_stream_and_its_replay_window() -> None:
    suite = "AES_CM_128_HMAC_SHA1_80"
    theirs = new_key(suite)
    us = SrtpStreams(suite, new_key(suite), theirs)
    party = SrtpStreams(suite, theirs, new_key(suite))
    seen = party.protect(rtp(1))
    us.unprotect(seen)
    new_ours = new_key(suite)
    us = us.rekey(suite, new_ours, theirs)  # a new key of ours only
    with pytest.raises(SrtpRejected):
        us.unprotect(seen)  # still a replay: the inbound stream was kept
    party = SrtpStreams(suite, theirs, new_ours)
    assert party.unprotect(us.protect(rtp(2))) == rtp(2)


def test_the_partys_previous_key_works_until_the_next_rekey() -> None:
    suite = "AEAD_AES_256_GCM"
    ours, old, new = new_key(suite), new_key(suite), new_key(suite)
    us = SrtpStreams(suite, ours, old)
    late = SrtpStreams(suite, old, ours).protect(rtp(5))  # sent just before the change
    us = us.rekey(suite, ours, new)
    assert us.unprotect(SrtpStreams(suite, new, ours).protect(rtp(6))) == rtp(6)
    assert us.unprotect(late) == rtp(5)
    us = us.rekey(suite, ours, new_key(suite))
    with pytest.raises(SrtpRejected) as caught:
        us.unprotect(SrtpStreams(suite, old, ours).protect(rtp(7)))
    assert caught.value.reason is Rejection.AUTHENTICATION


def test_rekeying_to_another_suite_takes_new_sessions() -> None:
    us = SrtpStreams("AES_CM_128_HMAC_SHA1_80", new_key("AES_CM_128_HMAC_SHA1_80"), b"\1" * 30)
    ours, theirs = new_key("AEAD_AES_256_GCM"), new_key("AEAD_AES_256_GCM")
    us = us.rekey("AEAD_AES_256_GCM", ours, theirs)
    assert us.suite == "AEAD_AES_256_GCM"
    party = SrtpStreams("AEAD_AES_256_GCM", theirs, ours)
    assert us.unprotect(party.protect(rtp(1))) == rtp(1)
    assert party.unprotect(us.protect(rtp(1))) == rtp(1)


def test_no_key_shows_in_a_repr() -> None:
    key = new_key("AES_CM_128_HMAC_SHA1_80")
    streams = SrtpStreams("AES_CM_128_HMAC_SHA1_80", key, key)
    assert repr(streams) == "<SrtpStreams AES_CM_128_HMAC_SHA1_80>"


def test_an_unknown_suite_is_our_bug() -> None:
    with pytest.raises(ValueError, match="unsupported SRTP suite"):
        SrtpStreams("F8_128_HMAC_SHA1_80", b"", b"")
