"""Offers during a call (RFC 3264), from either party, in any phase: the codec policy and
holds.

We answer each party's re-INVITE or UPDATE ourselves from what we accept (the codec
policy of :mod:`.offer_answer`); the other party learns only what it must — a hold or a
codec change — in an offer of ours (``sync``), one at a time, never while a party's
dialog is not up and never one it refused.  A hold pauses the notice, stops ringback,
tells the recorder the silence is not missing audio and becomes a recording event.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING

from ..media.announcer import RingbackTone
from ..media.recorder import RecordingDirection
from ..media.relay import RtpLeg
from ..sip import sdp
from ..sip.dialog import Dialog, DialogState
from ..sip.errors import RemoteSipError
from ..sip.events import RequestReceived, ResponseReceived
from ..sip.transaction import ClientTransaction, Transaction
from ..storage.catalog import CallOutcome
from .media_wiring import CallMedia, check_family
from .offer_answer import LegSdp
from .phases import CallOver, CallPhase

if TYPE_CHECKING:
    from .call import Call

log = logging.getLogger(__name__)


class Renegotiation:
    """The offers and holds of one call, after its first exchange with each party."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self._hold_waiter: asyncio.Future[None] | None = None  # resolved when a hold changes
        self._holding: set[str] = set()  # the parties holding the call now

    @property
    def anyone_holds(self) -> bool:
        return bool(self._holding)

    @property
    def _bridged(self) -> bool:
        return self.call.phase is CallPhase.BRIDGED

    def offer(self, event: RequestReceived, side: LegSdp) -> None:
        """A re-INVITE or UPDATE: answered from what we accept; an offer we cannot accept
        gets its error (488, 400) and the call keeps its media."""
        sip = self.call.sip
        txn = event.transaction
        body = event.request.body
        # glare: an offer of ours is unanswered — a re-offer, our offer in a 2xx awaiting
        # the ACK, our INVITE's before the party answered it (RFC 3261 §14.2, RFC 3311
        # §5.2).  (An offer of the party's is answered at once, in the same step: the 500
        # with Retry-After of §5.2 for one left unanswered has no case here.)
        if (
            side in sip.offers.values()
            or self.call.timers.reinviting(event.dialog)  # a session refresh of ours
            or (body and (side.answer_in_ack or side.audio is None))
        ):
            sip.respond(txn, 491, dialog=event.dialog)
            return
        if not body:
            wanted = self._wanted(side)
            if event.request.method == "UPDATE" or wanted is None:
                sip.respond(txn, 200, dialog=event.dialog)
                return
            # a re-INVITE without an offer: ours goes in the 200, its answer in the ACK
            offer = side.offer((wanted[0],), wanted[1])
            side.answer_in_ack = True
            sip.respond(txn, 200, dialog=event.dialog, body=offer.serialize())
            return
        try:
            offer_sdp = sdp.SessionDescription.parse(body)
            leg = self._leg_of(side)
            if leg is not None and offer_sdp.first_audio_index() is not None:
                check_family(leg, sdp.media_address(offer_sdp, in_call=True))
            answer, audio = side.answer(offer_sdp)
        except RemoteSipError as exc:
            # refused: the call and its media stay as they were
            log.info("call %s: the %s's offer refused (%s)", self.call.id, side.party, exc.status)
            sip.respond(txn, exc.status, dialog=event.dialog, headers=list(exc.extra_headers))
            return
        sip.respond(txn, 200, dialog=event.dialog, body=answer.serialize())
        self._use(side, audio, body)
        self.sync(self._other(side))

    def answer_in_ack(self, side: LegSdp, body: bytes) -> None:
        """The answer to the offer we put in a 2xx (a late offer, or a re-INVITE without
        one).  A call that never had media ends; one that had keeps it."""
        side.answer_in_ack = False
        try:
            answer = sdp.SessionDescription.parse(body)
            first = side.audio is None
            audio = side.accept_answer(answer)
        except RemoteSipError as exc:
            if side.audio is None:
                raise CallOver(
                    CallOutcome.FAILED, "caller", "no usable answer in the ACK"
                ) from None
            log.info("call %s: the %s's answer in the ACK unusable (%s)", self.call.id,
                     side.party, exc.status)  # fmt: skip
            return
        if first:  # the late offer's answer: leg A's media is set up now
            self.call.a_offer = answer
            if self.call.media.a_leg is not None:
                CallMedia.configure(self.call.media.a_leg, audio)
            return
        self._use(side, audio, body)
        self.sync(self._other(side))

    def response(self, event: ResponseReceived) -> None:
        """A response in the call: to one of our offers, or a stray 2xx to leg B."""
        sip = self.call.sip
        txn = event.transaction
        side = sip.offers.get(txn)
        if side is None:
            if (
                sip.is_b_invite(txn)
                and 200 <= event.response.status < 300
                and event.dialog is not None
                and event.dialog is not sip.b_dialog
            ):
                sip.ack_and_bye(event)  # a second 2xx (forked, or after we gave up)
            return
        status = event.response.status
        if status < 200:
            return
        del sip.offers[txn]
        if txn.method == "INVITE" and status < 300 and event.dialog is not None:
            sip.ack(event)
        if status == 491:  # both offered at once: ours again after 2.1-4 s (RFC 3261 §14.1)
            delay = 2.1 + secrets.randbelow(1900) / 1000
            asyncio.get_running_loop().call_later(delay, self._offer_again, side)
            return
        if status >= 300:
            log.warning("call %s: the %s refused our offer (%s)", self.call.id, side.party, status)
            return
        try:
            audio = side.accept_answer(sdp.SessionDescription.parse(event.response.body))
        except RemoteSipError as exc:
            log.warning("call %s: the %s's answer unusable (%s)", self.call.id, side.party,
                        exc.status)  # fmt: skip
            return
        self._use(side, audio, event.response.body)
        self.sync(side)  # what changed on the other side meanwhile
        self.sync(self._other(side))

    def timed_out(self, transaction: Transaction) -> None:
        side = (
            self.call.sip.offers.pop(transaction, None)
            if isinstance(transaction, ClientTransaction)
            else None
        )
        if side is not None:
            log.warning("call %s: the %s never answered our offer", self.call.id, side.party)

    def _use(self, side: LegSdp, audio: sdp.NegotiatedAudio, body: bytes) -> None:
        """A completed exchange with one party: its address, payload types and codec to
        the leg and the recorder; its hold to the relay, the notice and the catalog."""
        leg = self._leg_of(side)
        if leg is not None:
            CallMedia.follow(leg, body)
            CallMedia.payload_types(leg, audio)
        direction = self._recorder_of(side)
        if direction is not None:
            direction.set_codec(audio.encoding)
        pacer = self.call.media.pacer
        if side is self.call.a and pacer is not None:  # the notice or ringback
            pacer.codec = audio.encoding
            pacer.payload_type = audio.send_payload_type
        self._hold_changed(side)
        self.relay()

    def _wanted(self, side: LegSdp) -> tuple[str, sdp.Direction] | None:
        """What ``side`` should have: before the bridge, its codec both ways; once bridged,
        the other party's codec (the relay does not transcode) and its direction (a hold
        passed on: RFC 3264 §8.4)."""
        other = self._other(side)
        if side.audio is None:
            return None
        if not self._bridged or other.audio is None:
            return side.audio.encoding, sdp.Direction.SENDRECV
        return other.audio.encoding, other.direction

    def sync(self, side: LegSdp) -> None:
        """Offer ``side`` what it should have, if that is not what it has."""
        sip = self.call.sip
        wanted = self._wanted(side)
        dialog = self._dialog_of(side)
        if (
            wanted is None
            or sip.offers
            or not self._bridged
            or dialog is None
            or dialog.state is not DialogState.CONFIRMED
            or wanted == side.wants()
            or wanted == side.refused
        ):
            return
        side.refused = wanted  # until it is answered
        offer = side.offer((wanted[0],), wanted[1])
        request = dialog.create_request(
            "INVITE", body=offer.serialize(), content_type="application/sdp",
            headers=[("Allow", sip.core.allow)],
        )  # fmt: skip
        sip.offers[sip.send(request, dialog=dialog)] = side
        log.info("call %s: offering the %s %s %s", self.call.id, side.party, *wanted)

    def _offer_again(self, side: LegSdp) -> None:
        if not self.call.finished:
            side.refused = None
            self.sync(side)

    def _hold_changed(self, side: LegSdp) -> None:
        """A party holds or resumes: the notice pauses, ringback stops, and the recording
        switch hears of it (recorder, hold events)."""
        holding = side.party in self._holding
        if side.holds == holding:
            return
        if side.holds:
            self._holding.add(side.party)
        else:
            self._holding.discard(side.party)
        call = self.call
        log.info("call %s: the %s %s the call", call.id, side.party,
                 "holds" if side.holds else "resumes")  # fmt: skip
        if self._hold_waiter is not None and not self._hold_waiter.done():
            self._hold_waiter.set_result(None)
        media = call.media
        if side is call.a and call.phase is CallPhase.RINGING and media.a_leg is not None:
            if side.holds:
                media.quiet_caller()
            elif media.pacer is not None:
                ringback = RingbackTone(call.config.notice.ringback)
                media.pacer.set_source(ringback, media.player.now())
                media.play_to_caller()
        call.switch.hold_changed(side, anyone_holds=self.anyone_holds)

    def hold_change(self) -> asyncio.Future[None]:
        """A future resolved at the next hold or resume of either party."""
        self._hold_waiter = asyncio.get_running_loop().create_future()
        return self._hold_waiter

    def relay(self) -> None:
        """Once bridged, relay towards a party only while it receives."""
        if self._bridged:
            call = self.call
            call.media.relay(
                to_caller=call.a.direction.receives, to_taker=call.b.direction.receives
            )

    def side_of(self, dialog: Dialog | None) -> LegSdp | None:
        if dialog is None:
            return None
        call = self.call
        return (
            call.a
            if dialog is call.sip.a_dialog
            else call.b
            if dialog is call.sip.b_dialog
            else None
        )

    def _other(self, side: LegSdp) -> LegSdp:
        return self.call.b if side is self.call.a else self.call.a

    def _leg_of(self, side: LegSdp) -> RtpLeg | None:
        return self.call.media.a_leg if side is self.call.a else self.call.media.b_leg

    def _dialog_of(self, side: LegSdp) -> Dialog | None:
        return self.call.sip.a_dialog if side is self.call.a else self.call.sip.b_dialog

    def _recorder_of(self, side: LegSdp) -> RecordingDirection | None:
        """The recorder's direction of a leg: left (caller) for the member of the public."""
        recording = self.call.switch.recording
        if recording is None:
            return None
        public = self.call.b if self.call.plan.outbound else self.call.a
        return recording.pair.caller if side is public else recording.pair.taker
