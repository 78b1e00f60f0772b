"""The media of one call: its two RTP legs, what plays on them, and where their packets
go.

The call flow says *what* should happen to the media (open the caller's leg, play the
notice, bridge, record, hang up); this says *how*, in terms of the relay: legs and their
payload types, the stream rewriter that continues the caller's stream after the notice,
the recorder's sinks, relay modes while a party holds, the confirmation beeps to the call
taker, and giving the ports back.  The legs come from a :class:`MediaSession` (sockets)
and play through a :class:`Player` (the media clock), both handed in, so the call flow
can be driven without sockets.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Protocol

from ..events import ChannelSummary
from ..media import g711
from ..media.announcer import FrameSource, PacketPacer, PromptSource, beep_audio
from ..media.recorder import RecordingChannelPair, RecordingDirection
from ..media.relay import LegMode, MediaSession, RtpLeg, StreamRewriter
from ..sip import sdp
from ..sip.errors import RemoteSipError

G711_NAMES = g711.PAYLOAD_TYPES


class Player(Protocol):
    """What the call needs of the media clock: its time, and playing on a leg."""

    def now(self) -> float: ...

    def play(self, leg: RtpLeg, pacer: PacketPacer) -> asyncio.Future[None]: ...

    def silence(self, leg: RtpLeg) -> None: ...


SessionFactory = Callable[[], MediaSession]


class KernelForwarding(Protocol):
    """The kernel fast path (:class:`~proxy.media.fastpath.KernelPath`), when in use:
    a bridged call is offered to it, and taken back whenever the relay must forward."""

    def offer(self, a: RtpLeg, b: RtpLeg) -> None: ...

    def withdraw(self, leg: RtpLeg) -> None: ...


class MediaWorkers(Protocol):
    """The media worker processes (:class:`~proxy.media.workers.WorkerPool`), when in
    use: offered and withdrawn as the kernel path is; ``lost(reason)`` is called if the
    worker relaying the call dies (the call then ends, its recording interrupted).  A
    withdrawn call is relayed here at once, but its stream numbering is the worker's
    until it answers: ``when_back`` runs what numbers packets of its own after that."""

    def offer(self, a: RtpLeg, b: RtpLeg, lost: Callable[[str], None]) -> None: ...

    def withdraw(self, leg: RtpLeg) -> None: ...

    def when_back(self, leg: RtpLeg, then: Callable[[], None]) -> None: ...


class CallMedia:
    """Leg A (the caller's) and leg B (the call taker's) of one call."""

    def __init__(
        self,
        session: MediaSession,
        player: Player,
        kernel: KernelForwarding | None = None,
        workers: MediaWorkers | None = None,
        lost: Callable[[str], None] | None = None,
    ) -> None:
        self.session = session
        self.player = player
        self.kernel = kernel
        self.workers = workers
        self.lost = lost
        self.a_leg: RtpLeg | None = None
        self.b_leg: RtpLeg | None = None
        self.pacer: PacketPacer | None = None  # the notice, then ringback, to the caller
        self._earlier_takers = 0  # packets received from call takers who transferred

    async def open_a(self, host: str) -> RtpLeg:
        """The caller's leg (``NoPortsAvailable`` when no port pair is free)."""
        self.a_leg = await self.session.open_leg("caller", host=host)
        return self.a_leg

    async def open_b(self, host: str) -> RtpLeg:
        self.b_leg = await self.session.open_leg("call_taker", host=host)
        return self.b_leg

    async def open_transfer(self, host: str) -> RtpLeg:
        """A leg to a transfer target, apart from the call until it answers."""
        return await self.session.open_leg("transfer target", host=host)

    def hand_over(
        self,
        leg: RtpLeg,
        pair: RecordingChannelPair | None,
        staff_events: Callable[[int, int, bool, bytes, bytes], None],
    ) -> None:
        """The transfer target answered on ``leg`` (an inbound call: leg B is staff's):
        its audio goes to the caller and to the recorder's call-taker channel, on the
        same timeline, and the first call taker's leg closes.  The caller's stream
        rewriter makes the new source continue the caller's stream."""
        old = self.b_leg
        self._withdraw()
        if old is not None:
            self.player.silence(old)
            old.sink = None
            self._earlier_takers += old.stats.packets_in
        if pair is not None:
            leg.sink = pair.taker.push
            leg.on_codec_change = lambda pt: pair.taker.set_codec(G711_NAMES[pt])
        leg.dtmf_sink = staff_events
        self.b_leg = leg
        self.session.hand_over(leg)
        self._offer()

    def drop(self, leg: RtpLeg) -> None:
        """A transfer target's leg that never joined the call (it failed)."""
        self.player.silence(leg)
        self.session.close_leg(leg)

    def pace_to_caller(self, source: FrameSource, audio: sdp.NegotiatedAudio) -> PacketPacer:
        """``source`` is what the caller hears next (the notice, then ringback): the
        caller's stream goes on from where it is, or starts with a random SSRC,
        sequence number and timestamp (RFC 3550 §5.1) if nothing has played yet."""
        now = self.player.now()
        if self.pacer is not None:
            self.pacer.set_source(source, now)
            return self.pacer
        self.pacer = PacketPacer(
            source,
            audio.encoding,
            audio.send_payload_type,
            now,
            secrets.randbits(32),
            secrets.randbits(16),
            secrets.randbits(32),
        )
        return self.pacer

    def play_to_caller(self) -> asyncio.Future[None]:
        """Play the pacer (notice or ringback) on leg A."""
        assert self.a_leg is not None and self.pacer is not None
        return self.player.play(self.a_leg, self.pacer)

    def quiet_caller(self) -> None:
        if self.a_leg is not None:
            self.player.silence(self.a_leg)

    @staticmethod
    def configure(leg: RtpLeg, audio: sdp.NegotiatedAudio) -> None:
        """A negotiated stream: where to send, and which payload types to expect."""
        leg.set_remote(audio.remote_address, audio.remote_port)
        CallMedia.payload_types(leg, audio)

    @staticmethod
    def payload_types(leg: RtpLeg, audio: sdp.NegotiatedAudio) -> None:
        """What a completed exchange agreed for the leg's packets: payload types, and the
        SRTP keys (none: plain RTP) its party and we now send with."""
        leg.audio_payload_type = audio.receive_payload_type
        leg.dtmf_payload_type = audio.receive_telephone_event
        keys = audio.srtp
        if keys is None:
            leg.secure(None)
        else:
            leg.secure(keys.suite, keys.send_key, keys.receive_key)

    @staticmethod
    def follow(leg: RtpLeg | None, body: bytes) -> None:
        """A new SDP from a leg's party: follow its media address (hold keeps it, and so
        does an address we cannot use)."""
        if leg is None:
            return
        try:
            description = sdp.SessionDescription.parse(body)
            index = description.first_audio_index()
            if index is None:
                return
            address = check_family(leg, sdp.media_address(description, index, in_call=True))
        except RemoteSipError:
            return
        port = description.media[index].port
        if not address.hold and port != 0:
            leg.set_remote(address.host, port)

    def stop_ringback(self) -> None:
        """The call taker answered: the caller's stream continues from the last notice or
        ringback packet, with the call taker's audio in it."""
        assert self.a_leg is not None and self.pacer is not None
        self.player.silence(self.a_leg)
        self.a_leg.rewriter = StreamRewriter(
            self.pacer.ssrc, self.pacer.next_sequence, self.pacer.next_timestamp
        )

    def public_and_staff(self, outbound: bool) -> tuple[RtpLeg, RtpLeg]:
        """(the member of the public's leg, the member of staff's leg)."""
        assert self.a_leg is not None and self.b_leg is not None
        return (self.b_leg, self.a_leg) if outbound else (self.a_leg, self.b_leg)

    def bridge(
        self,
        pair: RecordingChannelPair | None,
        *,
        outbound: bool,
        staff_events: Callable[[int, int, bool, bytes, bytes], None],
    ) -> None:
        """Relay both ways; both directions to the recorder (left: the public; right:
        staff); the call taker's telephone events to ``staff_events`` (the recording
        switch)."""
        public_leg, staff_leg = self.public_and_staff(outbound)
        if pair is not None:
            public_leg.sink = pair.caller.push
            staff_leg.sink = pair.taker.push
            public_leg.on_codec_change = lambda pt: pair.caller.set_codec(G711_NAMES[pt])
            staff_leg.on_codec_change = lambda pt: pair.taker.set_codec(G711_NAMES[pt])
        staff_leg.dtmf_sink = staff_events
        self.session.bridge()
        self._offer()

    def unrecord(self, outbound: bool) -> None:
        """Nothing more reaches the recorder (the recording was discarded)."""
        for leg in self.public_and_staff(outbound):
            leg.sink = None

    def relay(self, *, to_caller: bool, to_taker: bool) -> None:
        """Once bridged, relay towards a party only while it receives: nothing reaches a
        party that holds us (RFC 3264 §8.4).  Packets still reach the recorder."""
        if self.a_leg is None or self.b_leg is None:
            return
        self.a_leg.mode = LegMode.BRIDGED if to_taker else LegMode.HOLD
        self.b_leg.mode = LegMode.BRIDGED if to_caller else LegMode.HOLD
        if to_caller and to_taker:
            self._offer()
        else:
            self._withdraw()

    def packets_in(self) -> tuple[int, int]:
        """RTP packets received so far from (the caller, the call taker)."""
        a, b = self.a_leg, self.b_leg
        taker = self._earlier_takers + (b.stats.packets_in if b else 0)
        return (a.stats.packets_in if a else 0, taker)

    def beep_to_staff(self, staff_leg: RtpLeg, audio: sdp.NegotiatedAudio) -> None:
        """Two short beeps to the call taker only; the caller's audio to them pauses for
        the beeps' length and the stream continues after them."""
        if staff_leg.closed:
            return
        self._withdraw()  # the relay forwards while a tone plays, and renumbers after it
        staff_leg.muted = True
        if self.workers is not None:  # the tone follows the worker's last packet
            self.workers.when_back(staff_leg, lambda: self._beep(staff_leg, audio))
        else:
            self._beep(staff_leg, audio)

    def _beep(self, staff_leg: RtpLeg, audio: sdp.NegotiatedAudio) -> None:
        if staff_leg.closed:
            return
        rewriter = staff_leg.rewriter
        if rewriter is None:
            rewriter = StreamRewriter(secrets.randbits(32), secrets.randbits(16), 0)
            staff_leg.rewriter = rewriter
        tone = PacketPacer(
            PromptSource(beep_audio()),
            audio.encoding,
            audio.send_payload_type,
            self.player.now(),
            rewriter.ssrc,
            (rewriter.last_seq + 1) & 0xFFFF,
            (rewriter.last_ts + 160) & 0xFFFFFFFF,
        )

        def resume(_: object) -> None:
            rewriter.continue_after(tone.next_sequence, tone.next_timestamp)
            staff_leg.muted = False
            self._offer()

        self.player.play(staff_leg, tone).add_done_callback(resume)

    def release(self) -> None:
        """Silence both legs, detach the recorder, close the sockets, free the ports."""
        self._withdraw()
        for leg in (self.a_leg, self.b_leg):
            if leg is not None:
                self.player.silence(leg)
                leg.sink = None
        self.session.close()

    def _offer(self) -> None:
        """To the kernel or a media worker once it can go (each looks again while the
        legs latch)."""
        a, b = self.a_leg, self.b_leg
        if a is None or b is None:
            return
        if self.kernel is not None:
            self.kernel.offer(a, b)
        if self.workers is not None and self.lost is not None:
            self.workers.offer(a, b, self.lost)

    def _withdraw(self) -> None:
        """Back to the relay, now: the kernel's rules are removed, or the worker lets go
        of the sockets, before anything else changes."""
        if self.a_leg is None:
            return
        if self.kernel is not None:
            self.kernel.withdraw(self.a_leg)
        if self.workers is not None:
            self.workers.withdraw(self.a_leg)


def check_family(leg: RtpLeg, address: sdp.MediaAddress) -> sdp.MediaAddress:
    """488 for an address a leg's sockets cannot reach: they are of one family."""
    if not address.hold and address.family != leg.family:
        raise sdp.unusable_address("the media address family of a call cannot change")
    return address


def channel_summary(packets: int, direction: RecordingDirection | None) -> ChannelSummary:
    """One direction at the call's end: packets received while bridged, and the
    recorder's VAD and jitter counters of that direction (zero when not recorded)."""
    if direction is None:
        return ChannelSummary(packets)
    jitter = direction.jitter.stats
    return ChannelSummary(
        packets,
        classified_frames=direction.speech.frames,
        speech_frames=direction.speech.speech_frames,
        received=jitter.received,
        duplicates=jitter.duplicates,
        late=jitter.late,
        lost=jitter.lost,
    )
