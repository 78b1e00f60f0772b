"""SRTP through the call flow (issue 18), driven by SIP bytes without sockets: each
leg's policy decides what we answer and offer, the relay legs get the agreed keys, a
refused offer gets 488 with its Warning, a re-INVITE rekeys, and a plain answer to a
call taker who must use SRTP fails the call."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import pytest

from proxy.config import SrtpSettings
from proxy.events import (
    CallBridged,
    CallEnded,
    CallTakerInvited,
    CallTransferred,
    NoticeStarted,
)
from proxy.media.srtp import SrtpStreams
from proxy.sip import sdp as sdp_module
from proxy.sip.message import Request, Response
from proxy.sip.sdes import CryptoAttribute, new_key

from .call_harness import CALLER, TAKER, Harness, Peer, sdp
from .test_call_flow import CALLER_TO, invite_branch, no_sockets, play_notice
from .test_transfer import OPERATORS, SECOND, target_invite, transferring

SUITE = "AES_CM_128_HMAC_SHA1_80"


__all__ = ["no_sockets"]  # the fixture, used here too


def srtp_sdp(port: int, key: bytes, profile: str = "RTP/SAVP", tag: int = 1) -> bytes:
    """A phone's SDP with one a=crypto line of ``SUITE``."""
    line = f"a=crypto:{tag} {SUITE} inline:{base64.b64encode(key).decode()}\r\n"
    return sdp(port).replace(b"RTP/AVP", profile.encode()) + line.encode()


def crypto_of(message: Request | Response) -> list[CryptoAttribute]:
    description = sdp_module.SessionDescription.parse(message.body)
    (audio,) = description.media
    return [CryptoAttribute.parse(a.value) for a in audio.attributes if a.key == "crypto"]


def rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0xABC) + b"\x55" * 160


async def start(h: Harness, caller: Peer, body: bytes) -> None:
    """The caller's INVITE; returns once the notice plays."""
    h.feed(caller.request("INVITE", to=CALLER_TO, body=body), CALLER)
    await h.until(lambda: h.published(NoticeStarted))


async def answered(
    h: Harness, caller: Peer, taker: Peer, taker_invite: Request, body: bytes
) -> Response:
    """The call taker answers ``body``, the caller ACKs our 200: bridged; the 200."""
    h.feed(taker.answer(taker_invite, 200, body), TAKER)
    await h.until(lambda: responses(h, 200))
    ok = responses(h, 200)[-1]
    h.feed(caller.request("ACK", to=str(ok.to), cseq=1), CALLER)
    await h.until(lambda: h.published(CallBridged))
    return ok


def responses(h: Harness, status: int) -> list[Response]:
    return [
        s.message
        for s in h.to(CALLER)
        if isinstance(s.message, Response) and s.message.status == status
    ]


async def test_an_srtp_caller_gets_our_key_and_its_leg_decrypts(tmp_path: Path) -> None:
    async with Harness(tmp_path, srtp=SrtpSettings("require", "off")) as h:
        caller = Peer(CALLER, "caller", "srtp-1")
        theirs = new_key(SUITE)
        invite = caller.request(
            "INVITE", to=CALLER_TO, body=srtp_sdp(40000, theirs), branch=invite_branch(caller)
        )
        h.feed(invite, CALLER)
        await h.until(lambda: responses(h, 183))
        (answer,) = responses(h, 183)
        assert b"m=audio" in answer.body and b"RTP/SAVP" in answer.body
        (ours,) = crypto_of(answer)
        assert (ours.tag, ours.suite) == (1, SUITE) and ours.key != theirs
        a_leg = h.call.media.a_leg
        assert a_leg is not None and a_leg.srtp is not None
        phone = SrtpStreams(SUITE, theirs, ours.key)  # the caller's libsrtp
        assert a_leg.srtp.unprotect(phone.protect(rtp(1))) == rtp(1)
        assert phone.unprotect(a_leg.srtp.protect(rtp(2))) == rtp(2)
        # the call taker's leg is plain ("off")
        taker_invite = await play_notice(h)
        assert b"RTP/AVP" in taker_invite.body and crypto_of(taker_invite) == []


@pytest.mark.parametrize(
    ("policy", "body", "warning"),
    [
        ("require", sdp(40000), '302 recproxy "SRTP is required here'),
        ("off", srtp_sdp(40000, new_key(SUITE)), '302 recproxy "SRTP is off here'),
        ("offer", srtp_sdp(40000, b"too short"), "306 recproxy "),
    ],
)
async def test_an_offer_the_policy_refuses_gets_488_with_its_warning(
    tmp_path: Path, policy: str, body: bytes, warning: str
) -> None:
    async with Harness(tmp_path, srtp=SrtpSettings(policy, "off")) as h:
        caller = Peer(CALLER, "caller", f"srtp-2-{policy}")
        h.feed(caller.request("INVITE", to=CALLER_TO, body=body), CALLER)
        await h.until(lambda: h.published(CallEnded))
        await h.until(lambda: responses(h, 488))
        (refusal,) = responses(h, 488)
        assert (refusal.headers.get("Warning") or "").startswith(warning)
        assert h.to(TAKER) == [] and not h.published(CallTakerInvited)
        (ended,) = h.published(CallEnded)
        assert ended.outcome == "failed"


async def test_an_srtp_call_taker_is_offered_keys_and_its_answer_keys_its_leg(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path, srtp=SrtpSettings("off", "require")) as h:
        caller, taker = Peer(CALLER, "caller", "srtp-3"), Peer(TAKER, "taker", "")
        await start(h, caller, sdp(40000))
        taker_invite = await play_notice(h)
        assert b"RTP/SAVP" in taker_invite.body
        offered = crypto_of(taker_invite)
        assert [line.suite for line in offered] == ["AEAD_AES_256_GCM", SUITE]
        theirs = new_key(SUITE)
        await answered(h, caller, taker, taker_invite, srtp_sdp(50000, theirs, tag=2))
        b_leg = h.call.media.b_leg
        assert b_leg is not None and b_leg.srtp is not None
        phone = SrtpStreams(SUITE, theirs, offered[1].key)
        assert b_leg.srtp.unprotect(phone.protect(rtp(1))) == rtp(1)
        assert h.call.media.a_leg is not None and h.call.media.a_leg.srtp is None


async def test_a_plain_answer_from_a_call_taker_who_must_use_srtp_fails_the_call(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path, srtp=SrtpSettings("off", "require")) as h:
        caller, taker = Peer(CALLER, "caller", "srtp-4"), Peer(TAKER, "taker", "")
        await start(h, caller, sdp(40000))
        taker_invite = await play_notice(h)
        h.feed(taker.answer(taker_invite, 200, sdp(50000)), TAKER)
        await h.until(lambda: h.published(CallEnded))
        assert not h.published(CallBridged)
        (ended,) = h.published(CallEnded)
        assert ended.outcome == "failed"
        assert any(s.is_request("BYE") for s in h.to(TAKER))


async def test_a_re_invite_with_a_new_key_of_the_callers_rekeys_its_leg(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path, srtp=SrtpSettings("offer", "off")) as h:
        caller = Peer(CALLER, "caller", "srtp-5")
        first = new_key(SUITE)
        h.feed(caller.request("INVITE", to=CALLER_TO, body=srtp_sdp(40000, first)), CALLER)
        await h.until(lambda: responses(h, 183))
        (ours,) = crypto_of(responses(h, 183)[0])
        a_leg = h.call.media.a_leg
        assert a_leg is not None
        # ...the call is bridged, then the caller re-offers with a new key
        taker = Peer(TAKER, "taker", "")
        ok = await answered(h, caller, taker, await play_notice(h), sdp(50000))
        second = new_key(SUITE)
        caller.cseq = 2
        h.feed(caller.request("INVITE", to=str(ok.to), body=srtp_sdp(40000, second)), CALLER)
        await h.until(lambda: len(responses(h, 200)) > 1)
        (new_ours,) = crypto_of(responses(h, 200)[-1])
        assert new_ours.key == ours.key  # ours is kept across re-offers (baresip 1.0)
        assert a_leg.srtp is not None
        phone = SrtpStreams(SUITE, second, new_ours.key)
        assert a_leg.srtp.unprotect(phone.protect(rtp(10))) == rtp(10)
        assert phone.unprotect(a_leg.srtp.protect(rtp(11))) == rtp(11)


async def test_a_transfer_target_gets_fresh_keys_of_its_own(tmp_path: Path) -> None:
    """A blind transfer under call_taker = "offer": the first call taker answered plain,
    the target is offered new keys and its answer keys the new leg alone."""
    async with Harness(tmp_path, operators=OPERATORS, srtp=SrtpSettings("off", "offer")) as h:
        await transferring(h, "srtp-6")
        first_leg = h.call.media.b_leg
        assert first_leg is not None and first_leg.srtp is None  # it answered plain
        (first_invite,) = [s.message for s in h.to(TAKER) if s.is_request("INVITE")]
        assert isinstance(first_invite, Request)
        offered = target_invite(h)
        lines = crypto_of(offered)
        assert b"RTP/AVP" in offered.body and len(lines) == 2
        earlier = {line.key for line in crypto_of(first_invite)}
        assert earlier and earlier.isdisjoint(line.key for line in lines)
        theirs = new_key(SUITE)
        bob = Peer(SECOND, "bob", "")
        h.feed(bob.answer(offered, 200, srtp_sdp(52000, theirs, "RTP/AVP", tag=2)), SECOND)
        await h.until(lambda: h.published(CallTransferred))
        new_leg = h.call.media.b_leg
        assert new_leg is not None and new_leg is not first_leg
        assert new_leg.srtp is not None
        phone = SrtpStreams(SUITE, theirs, lines[1].key)
        assert new_leg.srtp.unprotect(phone.protect(rtp(1))) == rtp(1)
        assert phone.unprotect(new_leg.srtp.protect(rtp(2))) == rtp(2)


async def test_a_late_offer_is_ours_with_keys_and_the_ack_keys_the_callers_leg(
    tmp_path: Path,
) -> None:
    """An INVITE without SDP: our offer in the 200 follows the caller's policy
    (require: RTP/SAVP), and the answer in the ACK keys leg A."""
    async with Harness(tmp_path, srtp=SrtpSettings("require", "off")) as h:
        caller = Peer(CALLER, "caller", "srtp-7")
        h.feed(caller.request("INVITE", to=CALLER_TO), CALLER)
        await h.until(lambda: responses(h, 200))
        ok = responses(h, 200)[0]
        assert b"RTP/SAVP" in ok.body
        ours = crypto_of(ok)
        assert [line.suite for line in ours] == ["AEAD_AES_256_GCM", SUITE]
        theirs = new_key(SUITE)
        answer = srtp_sdp(40000, theirs, tag=2)
        h.feed(caller.request("ACK", to=str(ok.to), cseq=1, body=answer), CALLER)
        await h.until(lambda: h.published(NoticeStarted))
        a_leg = h.call.media.a_leg
        assert a_leg is not None and a_leg.srtp is not None
        phone = SrtpStreams(SUITE, theirs, ours[1].key)
        assert a_leg.srtp.unprotect(phone.protect(rtp(1))) == rtp(1)
