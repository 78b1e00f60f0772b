"""The relay with SRTP legs, on real loopback sockets and real libsrtp: what a party
sends is decrypted for the other leg and the recorder, re-protected with our key on an
SRTP leg, and a tampered or replayed packet is dropped, counted per leg, and never
latches the leg."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import pytest

from proxy.media.relay import MediaSession, PortAllocator, RtpLeg
from proxy.media.srtp import SrtpStreams
from proxy.sip.sdes import new_key
from tests.media.test_relay import Phone, rtp, settle

SUITE = "AES_CM_128_HMAC_SHA1_80"
RTCP_RR = struct.pack("!BBHI", 0x80, 201, 1, 0xA)


@pytest.fixture
async def session() -> AsyncIterator[MediaSession]:
    allocator = PortAllocator(41200, 41299)
    media = MediaSession(allocator, "127.0.0.1")
    yield media
    media.close()
    assert allocator.in_use == 0


class Keys:
    """One SRTP leg's keys: the party's end and ours."""

    def __init__(self, suite: str = SUITE) -> None:
        self.suite = suite
        self.ours, self.theirs = new_key(suite), new_key(suite)
        self.party = SrtpStreams(suite, self.theirs, self.ours)  # the phone's libsrtp

    def apply(self, leg: RtpLeg) -> None:
        leg.secure(self.suite, self.ours, self.theirs)


async def test_an_srtp_caller_and_a_plain_call_taker(session: MediaSession) -> None:
    recorded: list[bytes] = []
    caller = await session.open_leg("caller", sink=lambda seq, ts, p: recorded.append(p))
    taker = await session.open_leg("call_taker")
    caller.audio_payload_type = taker.audio_payload_type = 0
    keys = Keys()
    keys.apply(caller)
    alice, bob = Phone(), Phone()
    try:
        caller.set_remote(*alice.address)
        taker.set_remote(*bob.address)
        session.bridge()
        voice = b"\x11" * 160
        alice.send(keys.party.protect(rtp(1, 160, 0xA, voice)), caller.port)
        assert await bob.receive() == rtp(1, 160, 0xA, voice)  # plain to the plain leg
        assert recorded == [voice]  # the recorder hears plain audio
        bob.send(rtp(5, 800, 0xB, b"\x22" * 160), taker.port)
        protected = await alice.receive()
        assert b"\x22" * 160 not in protected
        assert keys.party.unprotect(protected) == rtp(5, 800, 0xB, b"\x22" * 160)
    finally:
        alice.close()
        bob.close()


async def test_srtcp_is_decrypted_and_protected_like_rtp(session: MediaSession) -> None:
    caller = await session.open_leg("caller")
    taker = await session.open_leg("call_taker")
    keys = Keys()
    keys.apply(caller)
    alice_rtcp, bob_rtcp = Phone(), Phone()  # RTCP sockets: their RTP port is one below
    try:
        caller.set_remote(alice_rtcp.address[0], alice_rtcp.address[1] - 1)
        taker.set_remote(bob_rtcp.address[0], bob_rtcp.address[1] - 1)
        session.bridge()
        alice_rtcp.send(keys.party.protect_rtcp(RTCP_RR), caller.port + 1)
        assert await bob_rtcp.receive() == RTCP_RR  # plain to the plain leg
        bob_rtcp.send(RTCP_RR, taker.port + 1)
        assert keys.party.unprotect_rtcp(await alice_rtcp.receive()) == RTCP_RR
        forged = bytearray(keys.party.protect_rtcp(RTCP_RR))
        forged[-1] ^= 1
        alice_rtcp.send(bytes(forged), caller.port + 1)
        assert await bob_rtcp.nothing()
        assert caller.stats.srtp_auth_failed == 1 and caller.stats.rtcp_in == 1
    finally:
        alice_rtcp.close()
        bob_rtcp.close()


async def test_both_legs_srtp_with_their_own_keys(session: MediaSession) -> None:
    caller = await session.open_leg("caller")
    taker = await session.open_leg("call_taker")
    a_keys, b_keys = Keys("AEAD_AES_256_GCM"), Keys(SUITE)
    a_keys.apply(caller)
    b_keys.apply(taker)
    alice, bob = Phone(), Phone()
    try:
        caller.set_remote(*alice.address)
        taker.set_remote(*bob.address)
        session.bridge()
        alice.send(a_keys.party.protect(rtp(1, 160, 0xA)), caller.port)
        assert b_keys.party.unprotect(await bob.receive()) == rtp(1, 160, 0xA)
        bob.send(b_keys.party.protect(rtp(1, 160, 0xB)), taker.port)
        assert a_keys.party.unprotect(await alice.receive()) == rtp(1, 160, 0xB)
    finally:
        alice.close()
        bob.close()


async def test_tampered_and_replayed_packets_are_dropped_and_counted(
    session: MediaSession,
) -> None:
    recorded: list[bytes] = []
    caller = await session.open_leg("caller", sink=lambda seq, ts, p: recorded.append(p))
    taker = await session.open_leg("call_taker")
    caller.audio_payload_type = 0
    keys = Keys()
    keys.apply(caller)
    alice, bob = Phone(), Phone()
    try:
        caller.set_remote(*alice.address)
        taker.set_remote(*bob.address)
        session.bridge()
        first = keys.party.protect(rtp(1, 160, 0xA))
        alice.send(first, caller.port)
        await bob.receive()
        tampered = bytearray(keys.party.protect(rtp(2, 320, 0xA)))
        tampered[30] ^= 0xFF
        alice.send(bytes(tampered), caller.port)
        alice.send(first, caller.port)  # a replay
        assert await bob.nothing()
        assert (caller.stats.srtp_auth_failed, caller.stats.srtp_replayed) == (1, 1)
        assert caller.stats.packets_in == 1 and len(recorded) == 1
        snapshot = session.allocator.snapshot()
        assert snapshot.by_party["caller"].srtp_auth_failed == 1
        assert snapshot.by_party["caller"].srtp_replayed == 1
        assert snapshot.by_party["call_taker"].srtp_auth_failed == 0
    finally:
        alice.close()
        bob.close()


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


async def test_what_we_play_to_an_srtp_party_is_protected(session: MediaSession) -> None:
    caller = await session.open_leg("caller")
    keys = Keys()
    keys.apply(caller)
    alice = Phone()
    try:
        caller.set_remote(*alice.address)
        notice = rtp(100, 16000, 0xC0FFEE, b"\x33" * 160)
        caller.send_own(notice)
        received = await alice.receive()
        assert b"\x33" * 160 not in received
        assert keys.party.unprotect(received) == notice
        assert caller.stats.packets_out == 1
    finally:
        alice.close()


async def test_a_leg_back_to_plain_rtp_relays_plain(session: MediaSession) -> None:
    caller = await session.open_leg("caller")
    keys = Keys()
    keys.apply(caller)
    caller.secure(None)
    alice = Phone()
    try:
        caller.set_remote(*alice.address)
        caller.send_own(rtp(1, 160, 0xA))
        assert await alice.receive() == rtp(1, 160, 0xA)
    finally:
        alice.close()


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
