"""A SIPREC recording session driven without sockets: the real SIP core fed the SRC's
bytes, a real catalog.  Accepting (200, one recvonly stream each, nothing relayed),
the catalog rows, a re-INVITE's new snapshot, a re-INVITE we refuse (the session goes
on), malformed metadata (400, nothing kept), [siprec] disabled (403), and shutdown."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import ipaddress
import sqlite3
import struct
from pathlib import Path

import pytest

from proxy.config import OperatorSettings, SiprecSettings, SipSettings
from proxy.media.srtp import SrtpStreams
from proxy.sip import sdp
from proxy.sip.events import Address
from proxy.sip.message import Request, Response
from proxy.sip.sdes import CryptoAttribute, new_key
from proxy.storage.catalog import CallKind, CallOutcome, NoticeMode
from tests.sip.siprec_examples import (
    ALICE,
    CONTENT_TYPE,
    SESSION_ID,
    metadata,
    multipart_body,
    sdp_offer,
)

from .call_harness import Harness, Peer

SRC: Address = ("127.0.0.1", 5080)
SIPREC = (("Require", "siprec"),)
SRC_97: Address = ("127.0.0.1", 51372)  # where the SRC sends stream 97 from


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a SIPREC flow unit test opened a socket")

    for name in ("create_datagram_endpoint", "create_connection", "create_server"):
        monkeypatch.setattr(asyncio.BaseEventLoop, name, refuse)


ANN = OperatorSettings("ann", "0" * 64, identities=("sip:bob@example.com",), team="desk")


def harness(
    tmp_path: Path,
    *,
    enabled: bool = True,
    sources: str = "127.0.0.1/32",
    sip: SipSettings | None = None,
    media_timeout: int = 0,
) -> Harness:
    """The call-flow harness with the SIP core and [siprec] as ``serve`` sets them (the
    SRC at ``SRC`` a source); Bob's phone is operator Ann's."""
    h = Harness(tmp_path, operators=(ANN,), sip=sip)
    siprec = SiprecSettings(
        enabled=enabled,
        sources=(ipaddress.ip_network(sources),),
        media_timeout_seconds=media_timeout,
    )
    h.b2bua.config = dataclasses.replace(h.config, siprec=siprec)
    h.core.settings = dataclasses.replace(
        h.core.settings,
        supported=("siprec",),
        accepted_content_types=("application/sdp", "multipart/mixed"),
    )
    return h


def body(xml: str | None = None, offer: str | None = None) -> bytes:
    return multipart_body(offer or sdp_offer("127.0.0.1"), xml or metadata()).encode()


def responses(h: Harness, method: str = "INVITE") -> list[Response]:
    return [
        s.message
        for s in h.to(SRC)
        if isinstance(s.message, Response) and s.message.cseq.method == method
    ]


def send_invite(
    h: Harness,
    src: Peer,
    content: bytes,
    *,
    to: str = "<sip:srs@127.0.0.1>",
    cseq: int = 1,
    headers: tuple[tuple[str, str], ...] = (),
) -> None:
    """The SRC's INVITE (or re-INVITE, with its dialog's To) with a multipart body."""
    request = src.request(
        "INVITE",
        to=to,
        cseq=cseq,
        body=content,
        headers=(*SIPREC, *headers),
        content_type=CONTENT_TYPE,
    )
    h.feed(request, SRC)


async def answered(h: Harness, src: Peer, *headers: tuple[str, str]) -> Response:
    send_invite(h, src, body(), headers=headers)
    await h.until(lambda: any(r.status == 200 for r in responses(h)))
    (ok,) = [r for r in responses(h) if r.status == 200]
    h.feed(src.request("ACK", to=str(ok.to), cseq=1), SRC)
    (session,) = h.b2bua.recording_sessions.values()
    await h.until(lambda: session.recording is not None)
    return ok


async def test_a_session_is_answered_recorded_and_closed_by_bye(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        src = Peer(SRC, "src", "rs-1")
        ok = await answered(h, src)
        answer = sdp.SessionDescription.parse(ok.body)
        assert [(m.direction, m.port > 0) for m in answer.media] == [
            (sdp.Direction.RECVONLY, True),
            (sdp.Direction.RECVONLY, True),
        ]
        assert not h.b2bua.calls  # not a call: no notice, no call taker
        assert not [s for s in h.sent if s.destination != SRC]
        (session,) = h.b2bua.recording_sessions.values()
        legs = [session.legs[0], session.legs[1]]
        assert all(leg.peer is None for leg in legs)  # nothing is relayed
        assert legs[1].destination == ("127.0.0.1", 51372)  # Alice's stream (97)
        recording = session.recording
        assert recording is not None
        assert legs[1].sink == recording.pair.caller.push  # Alice: left
        assert legs[0].sink == recording.pair.taker.push  # Bob: right
        call = await h.catalog.calls.get_call(session.id)
        assert call is not None and call.kind is CallKind.SIPREC
        assert call.operator == "ann"  # Bob's AOR is her phone: her recording, her team's
        for _ in range(200):  # the part is written just after the recording starts
            (part,) = await h.catalog.parts.parts(recording.id)
            if part.team is not None:
                break
            await asyncio.sleep(0.005)
        assert (part.operator, part.team) == ("ann", "desk")
        stored = await h.catalog.siprec.session(session.id)
        assert stored is not None and stored.session_id == SESSION_ID
        receipt = await h.catalog.calls.consent_receipt(session.id)
        assert receipt is not None and receipt.mode is NoticeMode.SRC

        h.feed(src.request("BYE", to=str(ok.to), cseq=2), SRC)
        await h.until(lambda: not h.b2bua.recording_sessions)
        assert [r.status for r in responses(h, "BYE")] == [200]
        assert h.recordings.finished == [recording.id]
        call = await h.catalog.calls.get_call(session.id)
        assert call is not None and call.outcome is CallOutcome.COMPLETED
        assert all(leg.closed and leg.sink is None for leg in legs)
        assert len(h.b2bua.routes) == 0


async def test_a_reinvite_stores_a_new_snapshot_and_one_we_refuse_changes_nothing(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path) as h:
        src = Peer(SRC, "src", "rs-2")
        ok = await answered(h, src)
        (session,) = h.b2bua.recording_sessions.values()
        renamed = metadata().replace(">Alice<", ">Alicia<")
        moved = sdp_offer("127.0.0.1", (49180, 51382))
        send_invite(h, src, body(renamed, moved), to=str(ok.to), cseq=2)
        await h.until(lambda: [r.status for r in responses(h)][-1] == 200 and len(responses(h)) > 2)
        snapshots = await h.catalog.siprec.snapshots(session.id)
        assert [p.name for p in snapshots[-1].participants if p.participant_id == ALICE] == [
            "Alicia"
        ]
        assert session.legs[1].destination == ("127.0.0.1", 51382)  # followed
        third = moved + "m=audio 49190 RTP/AVP 0\r\na=label:98\r\na=sendonly\r\n"
        send_invite(h, src, body(None, third), to=str(ok.to), cseq=3)
        await h.until(lambda: responses(h)[-1].status == 488)
        assert "two audio streams" in (responses(h)[-1].headers.get("warning") or "")
        assert len(await h.catalog.siprec.snapshots(session.id)) == 2
        assert set(session.legs) == {0, 1} and not session.finished
        session.hang_up()
        await h.until(lambda: not h.b2bua.recording_sessions)
        assert any(s.is_request("BYE") for s in h.to(SRC))  # shutdown: BYE to the SRC


async def test_malformed_metadata_gets_400_and_keeps_nothing(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        src = Peer(SRC, "src", "rs-3")
        broken = body("<recording xmlns='urn:ietf:params:xml:ns:recording:1'><participant>\n")
        send_invite(h, src, broken)
        await h.until(lambda: any(r.status == 400 for r in responses(h)))
        (refusal,) = [r for r in responses(h) if r.status == 400]
        assert "recording metadata: not well-formed XML" in refusal.reason
        await h.until(lambda: not h.b2bua.recording_sessions)
        assert len(h.b2bua.routes) == 0
        with sqlite3.connect(tmp_path / "catalog.sqlite3") as db:
            assert db.execute("SELECT COUNT(*) FROM calls").fetchone() == (0,)


async def test_with_siprec_disabled_the_invite_gets_403_without_state(tmp_path: Path) -> None:
    async with harness(tmp_path, enabled=False) as h:
        src = Peer(SRC, "src", "rs-4")
        send_invite(h, src, body())
        assert [(r.status, r.reason) for r in responses(h)] == [
            (403, "Forbidden (SIPREC is not enabled)")
        ]
        assert not h.b2bua.recording_sessions and not h.b2bua.calls
        assert len(h.b2bua.routes) == 0


async def test_a_trusted_peer_that_is_not_a_source_gets_403_without_state(
    tmp_path: Path,
) -> None:
    """A trusted call peer marking an INVITE as SIPREC (here Require: siprec and a
    metadata part) would skip the notice and leave an "SRC gave notice" receipt."""
    async with harness(tmp_path, sources="192.0.2.0/24") as h:
        assert h.config.sip.is_trusted(SRC[0])
        send_invite(h, Peer(SRC, "src", "rs-6"), body())
        assert [(r.status, r.reason) for r in responses(h)] == [
            (403, "Forbidden (not a SIPREC source)")
        ]
        assert not h.b2bua.recording_sessions and not h.b2bua.calls
        assert len(h.b2bua.routes) == 0
        with sqlite3.connect(tmp_path / "catalog.sqlite3") as db:
            assert db.execute("SELECT COUNT(*) FROM calls").fetchone() == (0,)


async def test_a_source_need_not_be_a_trusted_call_peer(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        h.b2bua.config = dataclasses.replace(
            h.b2bua.config, sip=dataclasses.replace(h.config.sip, trusted_peers=())
        )
        await answered(h, Peer(SRC, "src", "rs-7"))
        assert len(h.b2bua.recording_sessions) == 1


async def test_an_srtp_offer_keys_each_leg_and_the_recorder_hears_plain_audio(
    tmp_path: Path,
) -> None:
    """An SBC sending its copy over RTP/SAVP: our 200 carries a key of ours on each
    stream, and each leg decrypts with the SRC's before anything reaches the recording
    (before the fix: RTP/SAVP answered without a=crypto, ciphertext stored as G.711)."""
    suite = "AES_CM_128_HMAC_SHA1_80"
    src_key = new_key(suite)
    crypto = f"a=crypto:1 {suite} inline:{base64.b64encode(src_key).decode()}\r\n"
    offer = sdp_offer("127.0.0.1")
    for port in (49170, 51372):
        offer = offer.replace(
            f"m=audio {port} RTP/AVP 0\r\n", f"m=audio {port} RTP/SAVP 0\r\n{crypto}"
        )
    async with harness(tmp_path) as h:
        src = Peer(SRC, "src", "rs-8")
        send_invite(h, src, body(None, offer))
        await h.until(lambda: any(r.status == 200 for r in responses(h)))
        (ok,) = [r for r in responses(h) if r.status == 200]
        answer = sdp.SessionDescription.parse(ok.body)
        ours = []
        for media in answer.media:
            (line,) = [
                CryptoAttribute.parse(a.value) for a in media.attributes if a.key == "crypto"
            ]
            assert media.proto == "RTP/SAVP" and line.suite == suite
            ours.append(line.key)
        (session,) = h.b2bua.recording_sessions.values()
        leg = session.legs[1]  # Alice's stream, from 127.0.0.1:51372
        heard: list[bytes] = []
        leg.sink = lambda seq, ts, payload: heard.append(payload)
        sbc = SrtpStreams(suite, src_key, ours[1])  # the SRC's end of stream 97
        voice = b"\x11" * 160
        leg.rtp_received(sbc.protect(struct.pack("!BBHII", 0x80, 0, 1, 160, 7) + voice), SRC_97)
        assert heard == [voice] and leg.latched == SRC_97
        leg.rtp_received(struct.pack("!BBHII", 0x80, 0, 2, 320, 7) + voice, SRC_97)  # not SRTP
        assert heard == [voice] and leg.stats.srtp_auth_failed == 1
        session.hang_up()
        await h.until(lambda: not h.b2bua.recording_sessions)


SHORT = SipSettings(session_expires=2, min_se=1)  # the test-only knob: min_se below 90 s
TIMER = (("Supported", "timer"),)


async def test_update_and_bodyless_reinvite_refreshes_are_answered_200_with_the_interval(
    tmp_path: Path,
) -> None:
    """Before the fix an UPDATE got 405 (so an SRC's own timer ended the recording)
    and a re-INVITE without a body 488; and the 200 named no session interval."""
    async with harness(tmp_path) as h:
        src = Peer(SRC, "src", "rs-9")
        ok = await answered(h, src, *TIMER)
        assert ok.headers.get("session-expires") == "1800;refresher=uac"
        h.feed(src.request("UPDATE", to=str(ok.to), cseq=2, headers=TIMER), SRC)
        await h.until(lambda: responses(h, "UPDATE"))
        (update_ok,) = responses(h, "UPDATE")
        assert update_ok.status == 200 and not update_ok.body
        assert update_ok.headers.get("session-expires") == "1800;refresher=uac"
        h.feed(src.request("INVITE", to=str(ok.to), cseq=3, headers=TIMER), SRC)
        await h.until(lambda: len(responses(h)) > 1 and responses(h)[-1].status == 200)
        refresh_ok = responses(h)[-1]
        assert refresh_ok.body == ok.body  # our description again, as the offer
        assert refresh_ok.headers.get("session-expires") == "1800;refresher=uac"
        (session,) = h.b2bua.recording_sessions.values()
        assert not session.finished
        session.hang_up()
        await h.until(lambda: not h.b2bua.recording_sessions)


async def test_an_src_that_stops_refreshing_is_hung_up_and_its_recording_closed(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path, sip=SHORT) as h:
        src = Peer(SRC, "src", "rs-10")
        ok = await answered(h, src, *TIMER)
        assert ok.headers.get("session-expires") == "2;refresher=uac"
        (session,) = h.b2bua.recording_sessions.values()
        recording = session.recording
        assert recording is not None
        await h.until(lambda: not h.b2bua.recording_sessions, seconds=4)  # 2 - 2/3 s
        assert any(s.is_request("BYE") for s in h.to(SRC))
        assert h.recordings.finished == [recording.id]
        call = await h.catalog.calls.get_call(session.id)
        assert call is not None and call.outcome is CallOutcome.SESSION_EXPIRED
        assert all(leg.closed for leg in session.legs.values())


async def test_as_the_refresher_we_refresh_and_a_481_ends_the_session(tmp_path: Path) -> None:
    """An SRC without timer support: we refresh at half the interval (an UPDATE, as
    its Allow lists it); the 2xx keeps the session, a 481 ends it."""
    async with harness(tmp_path, sip=SHORT) as h:
        src = Peer(SRC, "src", "rs-11")
        ok = await answered(h, src, ("Allow", "INVITE, ACK, BYE, UPDATE"))
        assert ok.headers.get("session-expires") == "2;refresher=uas"
        (session,) = h.b2bua.recording_sessions.values()

        def updates() -> list[Request]:
            sent = [s.message for s in h.to(SRC) if isinstance(s.message, Request)]
            return [m for m in sent if m.method == "UPDATE"]

        await h.until(lambda: updates(), seconds=3)
        h.feed(src.answer(updates()[0], 200), SRC)
        await h.until(lambda: len(updates()) == 2, seconds=3)
        assert h.b2bua.recording_sessions
        h.feed(src.answer(updates()[1], 481), SRC)
        await h.until(lambda: not h.b2bua.recording_sessions)
        call = await h.catalog.calls.get_call(session.id)
        assert call is not None and call.outcome is CallOutcome.SESSION_EXPIRED


async def test_the_media_timeout_ends_a_silent_session(tmp_path: Path) -> None:
    async with harness(tmp_path, media_timeout=1) as h:
        src = Peer(SRC, "src", "rs-12")
        await answered(h, src, *TIMER)
        (session,) = h.b2bua.recording_sessions.values()
        leg = session.legs[1]
        leg.rtp_received(struct.pack("!BBHII", 0x80, 0, 1, 160, 7) + b"\x11" * 160, SRC_97)
        await asyncio.sleep(0.6)
        leg.rtp_received(struct.pack("!BBHII", 0x80, 0, 2, 320, 7) + b"\x11" * 160, SRC_97)
        await asyncio.sleep(0.6)
        assert h.b2bua.recording_sessions  # a packet 0.6 s ago: still alive
        await h.until(lambda: not h.b2bua.recording_sessions, seconds=3)
        call = await h.catalog.calls.get_call(session.id)
        assert call is not None and call.outcome is CallOutcome.SESSION_EXPIRED
        assert any(s.is_request("BYE") for s in h.to(SRC))


async def test_streams_from_two_address_families_are_refused_with_488(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        src = Peer(SRC, "src", "rs-5")
        mixed = sdp_offer("127.0.0.1").replace(
            "m=audio 51372 RTP/AVP 0\r\n", "m=audio 51372 RTP/AVP 0\r\nc=IN IP6 ::1\r\n"
        )
        send_invite(h, src, body(None, mixed))
        await h.until(lambda: any(r.status == 488 for r in responses(h)))
        (refusal,) = [r for r in responses(h) if r.status == 488]
        assert "two families" in (refusal.headers.get("warning") or "")
        await h.until(lambda: not h.b2bua.recording_sessions)
