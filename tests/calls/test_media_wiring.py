"""A call's media wiring on legs without sockets: what plays, where packets go, what
the recorder gets, and what is left when the call ends."""

from __future__ import annotations

import asyncio

import pytest

from proxy.calls.media_wiring import CallMedia, channel_summary, check_family
from proxy.media.announcer import PacketPacer, PromptSource, RingbackTone, beeps
from proxy.media.recorder import Recorder
from proxy.media.relay import LegMode, PortAllocator
from proxy.media.rtp import RtpPacket
from proxy.sip import sdp
from proxy.sip.errors import RemoteSipError

from .call_harness import ScriptedPlayer, SocketlessSession


def audio(port: int, *, pt: int = 0, event: int | None = 101) -> sdp.NegotiatedAudio:
    return sdp.NegotiatedAudio(
        media_index=0, encoding="PCMU" if pt == 0 else "PCMA", clock_rate=8000,
        send_payload_type=pt, receive_payload_type=pt, send_telephone_event=event,
        receive_telephone_event=event, ptime=None, remote_address="127.0.0.1",
        remote_port=port, direction=sdp.Direction.SENDRECV,
        remote_direction=sdp.Direction.SENDRECV, remote_hold=False,
    )  # fmt: skip


async def wired(player: ScriptedPlayer) -> CallMedia:
    media = CallMedia(SocketlessSession(PortAllocator(30000, 30999), "127.0.0.1"), player)
    CallMedia.configure(await media.open_a("127.0.0.1"), audio(40000))
    CallMedia.configure(await media.open_b("127.0.0.1"), audio(50000, pt=8, event=None))
    media.pacer = PacketPacer(RingbackTone(), "PCMU", 0, player.now(), 1234, 100, 8000)
    return media


async def test_a_configured_leg_sends_to_the_party_and_expects_its_payload_types() -> None:
    media = await wired(ScriptedPlayer())
    assert media.a_leg is not None and media.b_leg is not None
    assert media.a_leg.destination == ("127.0.0.1", 40000)
    assert (media.a_leg.audio_payload_type, media.a_leg.dtmf_payload_type) == (0, 101)
    assert (media.b_leg.audio_payload_type, media.b_leg.dtmf_payload_type) == (8, None)


async def test_bridging_continues_the_callers_stream_and_feeds_the_recorder() -> None:
    player = ScriptedPlayer()
    media = await wired(player)
    assert media.a_leg is not None and media.b_leg is not None and media.pacer is not None
    media.play_to_caller()
    media.pacer.due(player.now() + 0.1)  # ringback packets went out
    media.stop_ringback()
    assert media.a_leg not in player.playing
    rewriter = media.a_leg.rewriter
    assert rewriter is not None and rewriter.ssrc == 1234
    assert rewriter.next_own(160)[0] == media.pacer.next_sequence

    pair = Recorder(lambda *args: None).add("r1", "PCMU", "PCMA")
    seen: list[int] = []
    media.bridge(pair, outbound=False, staff_events=lambda seq, *rest: seen.append(seq))
    assert media.a_leg.sink == pair.caller.push and media.b_leg.sink == pair.taker.push
    assert media.a_leg.peer is media.b_leg and media.b_leg.peer is media.a_leg
    assert media.b_leg.dtmf_sink is not None and media.a_leg.dtmf_sink is None
    media.b_leg.dtmf_sink(7, 0, False, b"", b"")
    assert seen == [7]


async def test_what_the_caller_hears_next_goes_on_in_one_stream() -> None:
    player = ScriptedPlayer()
    media = CallMedia(SocketlessSession(PortAllocator(30000, 30999), "127.0.0.1"), player)
    notice = media.pace_to_caller(PromptSource(beeps(1)), audio(40000, pt=8))
    assert media.pacer is notice and (notice.codec, notice.payload_type) == ("PCMA", 8)
    first = [RtpPacket.parse(p) for p in notice.due(player.now() + 1)]
    assert notice.finished and first[0].marker
    ringback = media.pace_to_caller(RingbackTone(), audio(40000, pt=8))
    assert ringback is notice and not ringback.finished
    next_packet = RtpPacket.parse(ringback.due(player.now() + 1)[0])
    assert next_packet.ssrc == first[-1].ssrc and next_packet.marker
    assert next_packet.sequence_number == (first[-1].sequence_number + 1) & 0xFFFF


async def test_an_outbound_call_records_the_member_of_the_public_on_the_left() -> None:
    media = await wired(ScriptedPlayer())
    assert media.a_leg is not None and media.b_leg is not None
    media.stop_ringback()
    pair = Recorder(lambda *args: None).add("r2", "PCMU", "PCMA")
    media.bridge(pair, outbound=True, staff_events=lambda *args: None)
    assert media.b_leg.sink == pair.caller.push and media.a_leg.sink == pair.taker.push
    assert media.a_leg.dtmf_sink is not None
    media.unrecord(outbound=True)
    assert media.a_leg.sink is None and media.b_leg.sink is None


async def test_relay_goes_only_towards_a_party_that_receives() -> None:
    media = await wired(ScriptedPlayer())
    assert media.a_leg is not None and media.b_leg is not None
    media.relay(to_caller=False, to_taker=True)
    assert (media.a_leg.mode, media.b_leg.mode) == (LegMode.BRIDGED, LegMode.HOLD)
    media.relay(to_caller=True, to_taker=False)
    assert (media.a_leg.mode, media.b_leg.mode) == (LegMode.HOLD, LegMode.BRIDGED)


async def test_release_silences_both_legs_and_detaches_the_recorder() -> None:
    player = ScriptedPlayer()
    media = await wired(player)
    assert media.a_leg is not None and media.b_leg is not None
    done = media.play_to_caller()
    media.a_leg.sink = media.b_leg.sink = lambda *args: None
    media.release()
    await asyncio.sleep(0)
    assert done.cancelled() and player.playing == {}
    assert media.a_leg.sink is None and media.b_leg.sink is None


def test_a_channel_summary_carries_the_recorders_counters() -> None:
    pair = Recorder(lambda *args: None).add("r3", "PCMU", "PCMU")
    pair.caller.speech.update(True, 1.0)
    pair.caller.speech.update(False, 1.02)
    summary = channel_summary(12, pair.caller)
    assert (summary.packets, summary.classified_frames, summary.speech_frames) == (12, 2, 1)
    assert summary.received == pair.caller.jitter.stats.received
    assert channel_summary(5, None).classified_frames == 0


async def test_an_address_of_the_other_family_is_refused_with_488() -> None:
    media = await wired(ScriptedPlayer())
    assert media.a_leg is not None
    v6 = sdp.SessionDescription.parse(
        b"v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    )
    with pytest.raises(RemoteSipError) as refused:
        check_family(media.a_leg, sdp.media_address(v6))
    assert refused.value.status == 488
