"""The relay with SRTP legs, on real loopback sockets and real libsrtp: what a party
sends is decrypted for the other leg and the recorder, re-protected with our key on an
SRTP leg, and a tampered or replayed packet is dropped, counted per leg, and never
latches the leg."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from proxy.media.relay import MediaSession, RtpLeg
from proxy.media.srtp import MAX_OUTBOUND_SSRCS, SrtpStreams
from proxy.sip.sdes import new_key
from tests.media.test_relay import Phone, rtp, session, settle

SUITE = "AES_CM_128_HMAC_SHA1_80"
RTCP_RR = struct.pack("!BBHI", 0x80, 201, 1, 0xA)


__all__ = ["session"]  # test_relay's fixture, used here too


class Keys:
    """One SRTP leg's keys: the party's end and ours."""

    def __init__(self, suite: str = SUITE) -> None:
        self.suite = suite
        self.ours, self.theirs = new_key(suite), new_key(suite)
        self.party = SrtpStreams(suite, self.theirs, self.ours)  # the phone's libsrtp

    def apply(self, leg: RtpLeg) -> None:
        leg.secure(self.suite, self.ours, self.theirs)


@dataclass
class Bridged:
    """Two bridged legs, the caller's recorded, and a phone on each (``rtcp``: the
    phones' sockets stand for their RTCP ports, their RTP port one below)."""

    caller: RtpLeg
    taker: RtpLeg
    alice: Phone
    bob: Phone
    recorded: list[bytes]


@contextlib.asynccontextmanager
async def bridged(
    session: MediaSession, a_keys: Keys | None, b_keys: Keys | None, *, rtcp: bool = False
) -> AsyncIterator[Bridged]:
    recorded: list[bytes] = []
    caller = await session.open_leg("caller", sink=lambda seq, ts, p: recorded.append(p))
    taker = await session.open_leg("call_taker")
    caller.audio_payload_type = taker.audio_payload_type = 0
    for keys, leg in ((a_keys, caller), (b_keys, taker)):
        if keys is not None:
            keys.apply(leg)
    alice, bob = Phone(), Phone()
    below = 1 if rtcp else 0
    try:
        caller.set_remote(alice.address[0], alice.address[1] - below)
        taker.set_remote(bob.address[0], bob.address[1] - below)
        session.bridge()
        yield Bridged(caller, taker, alice, bob, recorded)
    finally:
        alice.close()
        bob.close()


async def test_an_srtp_caller_and_a_plain_call_taker(session: MediaSession) -> None:
    keys = Keys()
    async with bridged(session, keys, None) as call:
        voice = b"\x11" * 160
        call.alice.send(keys.party.protect(rtp(1, 160, 0xA, voice)), call.caller.port)
        assert await call.bob.receive() == rtp(1, 160, 0xA, voice)  # plain to the plain leg
        assert call.recorded == [voice]  # the recorder hears plain audio
        call.bob.send(rtp(5, 800, 0xB, b"\x22" * 160), call.taker.port)
        protected = await call.alice.receive()
        assert b"\x22" * 160 not in protected
        assert keys.party.unprotect(protected) == rtp(5, 800, 0xB, b"\x22" * 160)


async def test_srtcp_is_decrypted_and_protected_like_rtp(session: MediaSession) -> None:
    keys = Keys()
    async with bridged(session, keys, None, rtcp=True) as call:
        call.alice.send(keys.party.protect_rtcp(RTCP_RR), call.caller.port + 1)
        assert await call.bob.receive() == RTCP_RR  # plain to the plain leg
        call.bob.send(RTCP_RR, call.taker.port + 1)
        assert keys.party.unprotect_rtcp(await call.alice.receive()) == RTCP_RR
        forged = bytearray(keys.party.protect_rtcp(RTCP_RR))
        forged[-1] ^= 1
        call.alice.send(bytes(forged), call.caller.port + 1)
        assert await call.bob.nothing()
        assert call.caller.stats.srtp_auth_failed == 1 and call.caller.stats.rtcp_in == 1


async def test_both_legs_srtp_with_their_own_keys(session: MediaSession) -> None:
    a_keys, b_keys = Keys("AEAD_AES_256_GCM"), Keys(SUITE)
    async with bridged(session, a_keys, b_keys) as call:
        call.alice.send(a_keys.party.protect(rtp(1, 160, 0xA)), call.caller.port)
        assert b_keys.party.unprotect(await call.bob.receive()) == rtp(1, 160, 0xA)
        call.bob.send(b_keys.party.protect(rtp(1, 160, 0xB)), call.taker.port)
        assert a_keys.party.unprotect(await call.alice.receive()) == rtp(1, 160, 0xB)


async def test_tampered_and_replayed_packets_are_dropped_and_counted(
    session: MediaSession,
) -> None:
    keys = Keys()
    async with bridged(session, keys, None) as call:
        first = keys.party.protect(rtp(1, 160, 0xA))
        call.alice.send(first, call.caller.port)
        await call.bob.receive()
        tampered = bytearray(keys.party.protect(rtp(2, 320, 0xA)))
        tampered[30] ^= 0xFF
        call.alice.send(bytes(tampered), call.caller.port)
        call.alice.send(first, call.caller.port)  # a replay
        assert await call.bob.nothing()
        stats = call.caller.stats
        assert (stats.srtp_auth_failed, stats.srtp_replayed) == (1, 1)
        assert stats.packets_in == 1 and len(call.recorded) == 1
        snapshot = session.allocator.snapshot()
        assert snapshot.by_party["caller"].srtp_auth_failed == 1
        assert snapshot.by_party["caller"].srtp_replayed == 1
        assert snapshot.by_party["call_taker"].srtp_auth_failed == 0


async def test_a_forged_packet_from_the_sdp_address_does_not_latch(
    session: MediaSession,
) -> None:
    """Before the party's first packet, a forgery from its SDP address must not take the
    leg: an SRTP leg latches only on an authentic packet."""
    caller = await session.open_leg("caller")
    keys = Keys()
    keys.apply(caller)
    alice = Phone()
    try:
        caller.set_remote(*alice.address)
        alice.send(rtp(1, 160, 0xA) + b"\0" * 10, caller.port)  # not under the key
        await settle()
        assert caller.latched is None and caller.stats.srtp_auth_failed == 1
        alice.send(keys.party.protect(rtp(2, 320, 0xA)), caller.port)
        await settle()
        assert caller.latched == alice.address
    finally:
        alice.close()


@pytest.mark.parametrize("back_to_plain", [False, True])
async def test_what_we_play_to_an_srtp_party_is_protected_until_it_goes_plain(
    session: MediaSession, back_to_plain: bool
) -> None:
    keys = Keys()
    async with bridged(session, keys, None) as call:
        if back_to_plain:  # a re-offer without a=crypto
            call.caller.secure(None)
        notice = rtp(100, 16000, 0xC0FFEE, b"\x33" * 160)
        call.caller.send_own(notice)
        received = await call.alice.receive()
        if back_to_plain:
            assert received == notice
        else:
            assert b"\x33" * 160 not in received
            assert keys.party.unprotect(received) == notice
        assert call.caller.stats.packets_out == 1


async def test_counters_of_closed_legs_stay_per_party(session: MediaSession) -> None:
    caller = await session.open_leg("caller")
    target = await session.open_leg("transfer target")
    caller.stats.srtp_auth_failed = 3
    target.stats.srtp_replayed = 2
    session.close_leg(caller)
    session.close_leg(target)
    by_party = session.allocator.snapshot().by_party
    assert (by_party["caller"].srtp_auth_failed, by_party["call_taker"].srtp_replayed) == (3, 2)
    await asyncio.sleep(0)


async def test_a_plain_partys_duplicate_is_not_reprotected_on_an_srtp_leg(
    session: MediaSession,
) -> None:
    """The plain caller sends one sequence number twice (another payload the second
    time): protecting both would reuse the keystream, so the second is not sent."""
    keys = Keys("AEAD_AES_256_GCM")
    async with bridged(session, None, keys) as call:
        call.alice.send(rtp(1, 160, 0xA, b"\x11" * 160), call.caller.port)
        assert keys.party.unprotect(await call.bob.receive()) == rtp(1, 160, 0xA, b"\x11" * 160)
        call.alice.send(rtp(1, 160, 0xA, b"\x22" * 160), call.caller.port)
        assert await call.bob.nothing()
        call.alice.send(rtp(2, 320, 0xA), call.caller.port)
        assert keys.party.unprotect(await call.bob.receive()) == rtp(2, 320, 0xA)
        assert call.taker.stats.srtp_repeated == 1 and call.taker.stats.packets_out == 2
        assert session.allocator.snapshot().by_party["call_taker"].srtp_repeated == 1


async def test_a_new_ssrc_in_every_packet_stops_growing_the_srtp_legs_streams(
    session: MediaSession,
) -> None:
    """A plain caller (or a spoofer of its address) changing SSRC in every packet:
    past the limit the packets towards the SRTP leg are dropped and counted."""
    keys = Keys()
    extra = 5
    async with bridged(session, None, keys) as call:
        for ssrc in range(1, MAX_OUTBOUND_SSRCS + extra + 1):
            call.alice.send(rtp(1, 160, ssrc), call.caller.port)
        for _ in range(100):
            if call.caller.stats.packets_in == MAX_OUTBOUND_SSRCS + extra:
                break
            await asyncio.sleep(0.01)
        assert call.caller.stats.packets_in == MAX_OUTBOUND_SSRCS + extra
        assert call.taker.stats.packets_out == MAX_OUTBOUND_SSRCS
        assert call.taker.stats.srtp_ssrc_limit == extra
