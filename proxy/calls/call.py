"""The life of one recorded call, top to bottom.

A caller's INVITE (leg A) from a trusted peer is answered, and the recording notice is
played to the caller *before* the call taker is even invited (P13).  Only when the whole
notice has played is the call taker invited (leg B) while the caller hears ringback.
When the call taker answers, RTP is bridged both ways through our ports and the
conversation is recorded.  A BYE from either side ends both legs; every path releases
the RTP ports and closes the recording.  Each call leaves a consent receipt.

``Call.run`` is one coroutine per call with explicit phases::

    SETUP → NOTICE → RINGING → BRIDGED → ENDED

What is not the flow itself is a collaborator: the SIP legs' transactions and dialogs
(:mod:`.sip_legs`), the media wiring (:mod:`.media_wiring`), the recording switch
(:mod:`.recording_switch`), the API view (:mod:`.view`) and the offers exchanged during
the call (:mod:`.renegotiation`).  What happens is published as domain events
(:mod:`proxy.events`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..config import OperatorSettings
from ..events import (
    CallBridged,
    CallEnded,
    CallStarted,
    NoticeAbandoned,
    NoticeFinished,
    NoticeStarted,
)
from ..media.announcer import PromptSource, RingbackTone
from ..media.relay import NoPortsAvailable
from ..ratelog import RateLimitedLog
from ..sip import sdp
from ..sip.dialog import build_request
from ..sip.errors import RemoteSipError
from ..sip.events import (
    AckReceived,
    AckTimedOut,
    Event,
    RequestCancelled,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from ..sip.message import Request
from ..sip.prack import OPTION_TAG, allows_reliable, send_reliably
from ..sip.uri import SipUri, Uri
from ..storage.catalog import CallDirection, CallOutcome, FirstPart, NewCall
from .call_entry import CallEntry
from .consent import NoticeHeard, notice_receipt
from .ending import close_recording_and_call
from .hunt import Hunt
from .mailbox import Mailbox
from .media_wiring import CallMedia, channel_summary, check_family
from .offer_answer import RECORDABLE_CODECS, LegSdp
from .parties import accepts_sdp, identify, party
from .phases import CallOver, CallPhase, Party
from .plan import not_recorded, plan_call, unplanned
from .prompt import Prompt
from .recording_switch import RecordingSwitch
from .renegotiation import Renegotiation
from .session_refresh import SessionRefresh
from .sip_legs import SipLegs
from .transfer import Transfers
from .view import CallView

if TYPE_CHECKING:
    from .b2bua import B2bua
    from .recording import ActiveRecording

log = logging.getLogger(__name__)
flood_log = RateLimitedLog(log)  # for what a flood of INVITEs would log once each


@dataclass(frozen=True)
class HangupRequested:
    """Put on a call's queue to end it from outside (shutdown, an operator)."""

    reason: str
    outcome: CallOutcome | None = None  # None: completed once bridged, else failed


class Call:
    """One call: leg A (the caller, our UAS side) and leg B (the call taker, our UAC)."""

    def __init__(self, b2bua: B2bua, invite: RequestReceived) -> None:
        self.b2bua = b2bua
        self.config = config = b2bua.config
        self.id = str(uuid.uuid4())
        self.invite = invite
        self.events: Mailbox[Event | HangupRequested] = Mailbox()
        self.phase = CallPhase.SETUP
        self.finished = False
        self.outcome = CallOutcome.FAILED
        self.ended_by: Party = "proxy"
        self.started_at = datetime.now(UTC)
        self.caller = party(invite.request.from_)
        self.callee = party(invite.request.to)
        self.sip = SipLegs(
            b2bua.core,
            invite.transaction,
            now=b2bua.now,
            flush=b2bua.flush,
            bind=lambda what: b2bua.routes.bind(what, self),
        )
        self.a_offer: sdp.SessionDescription | None = None  # the caller's first description
        advertise = config.sip.advertise
        srtp = config.media.srtp  # each leg's SRTP policy (issue 18)
        self.a = LegSdp("caller", secrets.randbelow(2**31), advertise, srtp=srtp.caller)
        self.b = LegSdp("call taker", secrets.randbelow(2**31), advertise, srtp=srtp.call_taker)
        self.early_media = False  # the notice plays in a 183 (else after a 200)
        self.media = CallMedia(
            b2bua.new_session(), b2bua.clock, b2bua.kernel, b2bua.workers, self._media_lost
        )
        self.entry: CallEntry | None = None  # its catalog rows, until written
        self.plan = unplanned(config, self.caller, self.callee)  # decided in _plan
        self.notice_prompt: Prompt | None = None
        self.operator_settings: OperatorSettings | None = None
        self.switch = RecordingSwitch(
            self.id,
            catalog=b2bua.catalog,
            recordings=b2bua.recordings,
            media=self.media,
            legs=self.sip,
            codes=config.dtmf.codes(),
            now=b2bua.now,
            publish=b2bua.publish,
        )
        self.offers = Renegotiation(self)
        self.transfers = Transfers(self)
        self.hunt = Hunt(self, self._next, self._common, self._until)
        self.timers = SessionRefresh(self)  # RFC 4028, on both legs
        self.sip.answering = self.timers.answering
        self._bridged_at: float | None = None  # monotonic
        self._packets_at_bridge = (0, 0)

    # ==================================================================================
    # The call flow

    async def run(self) -> None:
        try:
            await self._setup()
            if self.notice_prompt is not None:
                await self._play_notice()
            else:
                self._consent_receipt(NoticeHeard(_utc_now(), 0, left=False))
            await self._ring_call_taker()
            await self._talk()
        except CallOver as over:
            self.outcome, self.ended_by = over.outcome, over.by
            log.info("call %s ended by %s (%s, %s)", self.id, over.by, over.why,
                     over.outcome.value)  # fmt: skip
        except Exception:
            log.exception("call %s failed", self.id)
            self.outcome, self.ended_by = CallOutcome.FAILED, "proxy"
        finally:
            await self._teardown()

    async def _setup(self) -> None:
        """Check the INVITE, anchor leg A's media on us, answer (200 or 183), record the
        call in the catalog.

        An INVITE without an offer (late offer) gets our offer in a 200, and its answer
        comes in the ACK: a 183 could carry the offer only reliably, with its answer in the
        PRACK (RFC 3262), which recproxy does not do (its reliable 183 carries an answer),
        so such a call is answered at once, notice or not."""
        request = self.invite.request
        sip = self.sip
        if not accepts_sdp(request):
            sip.respond(sip.a_txn, 406, headers=[("Accept", "application/sdp")])
            raise CallOver(CallOutcome.FAILED, "caller", "Accept excludes application/sdp")
        reliable = self.config.sip.reliable_provisional
        if reliable == "required" and not allows_reliable(request):  # RFC 3262 §3
            sip.respond(sip.a_txn, 421, headers=[("Require", OPTION_TAG)])
            raise CallOver(CallOutcome.FAILED, "caller", "100rel required")
        if request.body:
            try:
                self.a_offer = sdp.SessionDescription.parse(request.body)
            except RemoteSipError:
                sip.fail(400)
                raise CallOver(CallOutcome.FAILED, "caller", "malformed SDP") from None
        # a late offer's leg is IPv4 (our offer says so); otherwise the offer's family
        a_host = self._media_host_for(self.a_offer) if self.a_offer else self.config.sip.advertise
        await self._plan()
        self.b2bua.publish(
            CallStarted(
                self.id,
                self.started_at,
                "outbound" if self.plan.outbound else "inbound",
                self.plan.service_name,
            )
        )
        try:
            a_leg = await self.media.open_a(a_host)
        except NoPortsAvailable:
            flood_log.error("no-rtp-ports", "call %s: no RTP ports left", self.id)
            sip.fail(503)
            raise CallOver(CallOutcome.FAILED, "proxy", "no RTP ports") from None
        self.a.port = a_leg.port
        self.a.address = a_leg.local_host
        if self.a_offer is not None:
            try:
                answer, audio = self.a.answer(self.a_offer)
            except RemoteSipError as exc:  # no codec in common, or SRTP refused (a Warning)
                sip.fail(exc.status, exc.extra_headers)
                raise CallOver(CallOutcome.FAILED, "caller", "no codec in common") from None
            CallMedia.configure(a_leg, audio)
            # with no notice to play the call is answered only when the far end answers
            self.early_media = (
                self.config.notice.mode == "early-media" or self.notice_prompt is None
            )
        else:
            answer = self.a.offer(RECORDABLE_CODECS, sdp.Direction.SENDRECV)
            self.a.answer_in_ack = True
        dialog = sip.accept_a()
        status = 183 if self.early_media else 200
        sip.respond(sip.a_txn, status, dialog=dialog, body=answer.serialize(),
                    reliable=status == 183 and send_reliably(request, reliable))  # fmt: skip
        sip.a_answered = not self.early_media
        self.entry = CallEntry(
            NewCall(
                sip_call_id=request.call_id,
                caller=self.caller,
                callee=self.callee,
                direction=CallDirection.OUTBOUND if self.plan.outbound else CallDirection.INBOUND,
                service=self.plan.service_name,
                started_at=self.started_at,
                config_version=self.b2bua.config_version,
                call_id=self.id,  # one id in log lines and the catalog
                node=self.b2bua.config.node.name,
            )
        )
        if sip.a_answered:
            self.entry.answered(_utc_now())
        while self.a.audio is None:  # a late offer: the answer is in the ACK
            event = await self._next()
            if event is not None:
                self._common(event)

    async def _plan(self) -> None:
        """Direction (P1), service (P3), the do-not-record list (P14) and so the notice,
        the prompt, whether to record, and where the call goes."""
        config = self.config
        plan = plan_call(config, self.invite.request, self.invite.source[0], self.caller)
        if (
            plan.may_be_listed
            and await self.b2bua.catalog.do_not_record.get(plan.caller) is not None
        ):
            plan = not_recorded(plan, config)  # a written request not to be recorded
            log.info("call %s: caller is on the do-not-record list", self.id)
        self.plan = plan
        self.caller, self.callee = plan.caller, plan.callee
        if plan.notice is not None:
            self.notice_prompt = self.b2bua.prompt(plan.notice)

    async def _play_notice(self) -> None:
        """Play the whole notice to the caller; store the consent receipt (P13).

        A caller who puts us on hold during the notice (sendonly, inactive, c=0.0.0.0)
        cannot hear it: it stops, and starts again from the beginning when the caller
        resumes, so that the caller hears it whole before the call taker is invited.
        The receipt counts the restarts and the time held."""
        assert self.media.a_leg is not None and self.a.audio is not None
        assert self.notice_prompt is not None
        self.phase = CallPhase.NOTICE
        clock = self.b2bua.clock
        notice = self.notice_prompt
        self.b2bua.publish(NoticeStarted(self.id, notice.duration_ms))
        pacer = self.media.pace_to_caller(PromptSource(notice.audio), self.a.audio)
        started_at = _utc_now()
        caller_left = False
        ended: CallOver | None = None
        played = False
        restarts = 0
        held = 0.0
        sent_before = 0  # packets of the attempts a hold cut short
        try:
            while True:
                if self.a.holds:
                    held_since = self.b2bua.now()
                    await self._until(self.offers.hold_change())
                    held += self.b2bua.now() - held_since
                    continue
                if pacer.packets_sent > sent_before:  # a hold cut it short: from the start
                    restarts += 1
                    sent_before = pacer.packets_sent
                    pacer.set_source(PromptSource(notice.audio), clock.now())
                waiter = self.offers.hold_change()
                done = self.media.play_to_caller()
                done.add_done_callback(_resolver(waiter))
                await self._until(waiter)
                _raise_media_error(done)
                if not done.done() or done.cancelled():  # a hold came (and maybe went)
                    self.media.quiet_caller()
                    continue
                # the last packet has been sent, not heard: the notice has played only
                # when that packet's audio has run out too
                await self._pause(pacer.ptime)
                played = True
                break
        except CallOver as over:
            caller_left = over.by == "caller"
            ended = over
            raise
        finally:
            self.media.quiet_caller()
            played_ms = min(round((pacer.packets_sent - sent_before) * pacer.ptime * 1000),
                            notice.duration_ms)  # fmt: skip
            heard_ms = min(pacer.played_ms, notice.duration_ms)
            if played:
                self.b2bua.publish(NoticeFinished(self.id, heard_ms))
            else:
                abandoned = (
                    ended is not None
                    and ended.outcome is CallOutcome.CALLER_ABANDONED_DURING_NOTICE
                )
                self.b2bua.publish(NoticeAbandoned(self.id, heard_ms, caller_left=abandoned))
            heard = NoticeHeard(started_at, played_ms, caller_left, restarts, round(held * 1000))
            self._consent_receipt(heard)

    async def _ring_call_taker(self) -> None:
        """Ringback to the caller while the call takers are rung in turn (:mod:`.hunt`)
        until one answers, all refuse or the ring timeout passes."""
        audio = self.a.audio
        assert self.media.a_leg is not None and audio is not None
        self.phase = CallPhase.RINGING
        # after the notice, in its stream; with no notice, ringback starts the stream
        self.media.pace_to_caller(RingbackTone(self.config.notice.ringback), audio)
        if not self.a.holds:
            self.media.play_to_caller()
        await self._call_taker_answered(await self.hunt.ring())

    async def _call_taker_answered(self, event: ResponseReceived) -> None:
        assert self.media.b_leg is not None
        dialog = event.dialog
        if dialog is None:
            raise RuntimeError("2xx without a dialog")
        self.sip.adopt(dialog)
        self.sip.b_dialog = dialog
        self.sip.ack(event)
        self.timers.confirmed(event)
        try:
            answer = sdp.SessionDescription.parse(event.response.body)
            audio = self.b.accept_answer(answer)
            check_family(self.media.b_leg, sdp.media_address(answer, audio.media_index))
        except RemoteSipError as exc:
            log.warning("call %s: call taker's answer unusable: %s", self.id, exc.reason)
            raise CallOver(CallOutcome.FAILED, "call_taker", "bad SDP answer") from None
        CallMedia.configure(self.media.b_leg, audio)
        operators = self.config.operators
        if self.plan.outbound:  # the member of staff placed the call: leg A is theirs
            self.operator_settings = identify(operators, self.invite.request)
        else:  # whoever answered leg B
            self.operator_settings = identify(operators, event.response, self.plan.target)

    async def _talk(self) -> None:
        """Bridge both legs, record, and relay until one side hangs up."""
        assert self.a.audio is not None and self.b.audio is not None
        self.media.stop_ringback()
        sip = self.sip
        if not sip.a_answered:
            assert self.a.local is not None  # the answer of the 183, again (RFC 3261 §13.2.1)
            sip.respond(sip.a_txn, 200, dialog=sip.a_dialog, body=self.a.local.serialize())
            sip.a_answered = True
            self._entry.answered(_utc_now())
        public, staff = (self.b, self.a) if self.plan.outbound else (self.a, self.b)
        assert public.audio is not None and staff.audio is not None
        recording: ActiveRecording | None = None
        # the call's set-up in one catalog write: with its recording, if it has one
        bridged = _utc_now()
        set_up = self._entry.bridged(bridged, self.operator)
        if self.plan.record:
            # left channel: the member of the public; right: the member of staff;
            # part 1: the call taker who answered (P9)
            settings = self.operator_settings
            team = settings.team if settings is not None else None
            recording = await self.b2bua.recordings.start(
                self.id, public.audio.encoding, staff.audio.encoding, started=bridged,
                call=replace(set_up, first_part=FirstPart(self.operator, team)),
                lost=self._media_lost,
            )  # fmt: skip
            self._entry.submitted()  # transaction 1 carries it from here
        self.switch.arm(recording, outbound=self.plan.outbound, operator=self.operator, staff=staff)
        # the call taker's digits go through the code matcher (P14)
        pair = recording.pair if recording is not None else None
        self.media.bridge(pair, outbound=self.plan.outbound, staff_events=self.switch.staff_event)
        self._bridged_at = time.monotonic()
        self._packets_at_bridge = self.media.packets_in()
        self.phase = CallPhase.BRIDGED
        self.b2bua.publish(CallBridged(self.id, self.setup_seconds(), self.operator))
        # a hold or codec change of one party before the bridge reaches the other now
        if pair is not None:
            pair.caller.set_held(self.offers.anyone_holds)
            pair.taker.set_held(self.offers.anyone_holds)
        self.offers.relay()
        self.offers.sync(self.b)
        self.offers.sync(self.a)
        if not self.plan.record:
            self._entry.submitted()
            await self.b2bua.recordings.write_call(f"call {self.id}: set-up", set_up)
        while True:  # a transfer (REFER) hands the call to another call taker
            event = await self._next(timeout=self.transfers.remaining())
            if event is None:
                self.transfers.ring_timed_out()
            elif not await self.transfers.handle(event):
                self._common(event)

    async def _teardown(self) -> None:
        """Whatever happened: end both legs, release ports, close the recording, write
        the outcome."""
        ended_at = _utc_now()  # not after the recording is sealed: that may take a while
        self.finished = True
        self.phase = CallPhase.ENDED
        self.timers.stop()
        try:
            self.transfers.abandon()
            self.sip.end_b()
            self.sip.end_a()
            self.b2bua.flush()
        except Exception:
            log.exception("call %s: error while hanging up", self.id)
        self.media.release()
        if self.recording is not None:  # a media worker's counters, for the summary
            await self.b2bua.recordings.counters(self.recording)
        self.b2bua.publish(self._ended())
        await self.switch.close()
        recording = self.switch.recording if self.switch.keeps_recording else None
        end = None if self.entry is None else self.entry.ended(ended_at, self.outcome)
        try:
            await close_recording_and_call(
                self.b2bua.recordings, recording, end, what=f"call {self.id}"
            )
        finally:  # cancelled at shutdown too: nothing routes to the call any more
            self.b2bua.call_over(self)

    def _ended(self) -> CallEnded:
        """The call's end as an event: talk time on the monotonic clock, and per
        direction the packets received while bridged and the recorder's counters."""
        recording = self.switch.recording
        pair = recording.pair if recording is not None else None
        if self._bridged_at is None:
            return CallEnded(self.id, self.outcome.value, self.ended_by)
        seconds = max(time.monotonic() - self._bridged_at, 0.0)
        packets = self.media.packets_in()
        caller, taker = (
            now - then for now, then in zip(packets, self._packets_at_bridge, strict=True)
        )
        return CallEnded(
            self.id,
            self.outcome.value,
            self.ended_by,
            bridged_seconds=seconds,
            caller=channel_summary(caller, pair.caller if pair is not None else None),
            taker=channel_summary(taker, pair.taker if pair is not None else None),
        )

    # ==================================================================================
    # Events common to every phase

    def _common(self, event: Event) -> None:
        """Handle an event any phase may see; raise CallOver when a party leaves."""
        sip = self.sip
        if isinstance(event, RequestCancelled):
            raise CallOver(self._caller_left_outcome(), "caller", "CANCEL")
        if isinstance(event, AckTimedOut):
            if event.dialog is sip.a_dialog or event.transaction is sip.a_txn:
                raise CallOver(CallOutcome.FAILED, "caller", "never ACKed our answer")
            return
        if isinstance(event, AckReceived):
            side = self.offers.side_of(event.dialog)
            if side is not None and side.answer_in_ack:
                self.offers.answer_in_ack(side, event.request.body)
            return
        if isinstance(event, ResponseReceived):
            if not self.timers.answered(event):
                self.offers.response(event)
            return
        if isinstance(event, TransactionTimedOut):
            if not self.timers.timed_out(event.transaction):
                self.offers.timed_out(event.transaction)
            return
        if isinstance(event, RequestReceived):
            self._request_in_call(event)

    def _request_in_call(self, event: RequestReceived) -> None:
        method = event.request.method
        sip = self.sip
        from_a = event.dialog is sip.a_dialog
        if method == "BYE":
            sip.respond(event.transaction, 200, dialog=event.dialog)
            if from_a:
                sip.hung_up(sip.a_dialog)
                raise CallOver(self._caller_left_outcome(), "caller", "BYE")
            sip.hung_up(sip.b_dialog)
            raise CallOver(CallOutcome.COMPLETED, "call_taker", "BYE")
        if method in ("INVITE", "UPDATE"):
            self.offers.offer(event, self.a if from_a else self.b)
            return
        if method == "INFO":
            # DTMF from the call taker goes through the recording switch once bridged;
            # anything else is answered and not passed on
            sip.respond(event.transaction, 200, dialog=event.dialog)
            if self.phase is CallPhase.BRIDGED and from_a == self.plan.outbound:
                self.switch.staff_info(event)
            return
        if method == "REFER":  # a bridged call's REFER goes to its transfers first
            self.transfers.refuse(event)
            return
        self.b2bua.answer_other(event, event.dialog)

    # ==================================================================================
    # The API's view and the recording switch

    @property
    def operator(self) -> str | None:
        return self.operator_settings.name if self.operator_settings else None

    @property
    def recording(self) -> ActiveRecording | None:
        return self.switch.recording

    def describe(self) -> dict[str, Any]:
        """What the call takers' API shows of an active call."""
        return CallView(
            id=self.id,
            phase=self.phase.value,
            outbound=self.plan.outbound,
            caller=self.caller,
            callee=self.callee,
            service=self.plan.service_name,
            operator=self.operator,
            started_at=self.started_at,
            recording=self.switch.state,
            recorded=self.plan.record,
        ).describe()

    async def recording_action(
        self, action: str, *, actor: str, channel: str, reason: str
    ) -> dict[str, Any]:
        """Stop, discard or resume this call's recording (the recording switch)."""
        return await self.switch.act(action, actor=actor, channel=channel, reason=reason)

    # ==================================================================================
    # Helpers

    def hang_up(self, reason: str, outcome: CallOutcome | None = None) -> None:
        """End the call from outside its task (shutdown, an operator, a session timer)."""
        self.events.put_nowait(HangupRequested(reason, outcome))

    def _media_lost(self, reason: str) -> None:
        """The media worker relaying the call died: its media cannot go on, so the call
        ends, and its recording is ``interrupted`` (as after a crash), not failed."""
        recording = self.switch.recording
        if recording is not None:
            recording.interrupted = reason
        self.hang_up(reason, CallOutcome.FAILED)

    async def _next(self, timeout: float | None = None) -> Event | None:
        event = await self.events.get(timeout)
        if event is None:
            return None
        if isinstance(event, HangupRequested):
            outcome = event.outcome or (
                CallOutcome.COMPLETED if self.phase is CallPhase.BRIDGED else CallOutcome.FAILED
            )
            raise CallOver(outcome, "proxy", event.reason)
        return event

    async def _pause(self, seconds: float) -> None:
        """Handle the call's events for ``seconds``."""
        loop = asyncio.get_running_loop()
        elapsed: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, resolve, elapsed)
        try:
            await self._until(elapsed)
        finally:
            timer.cancel()

    async def _until(self, done: asyncio.Future[None]) -> None:
        """Handle the call's events until ``done`` resolves; a media error in ``done``
        (the clock could not play on our leg) ends the call."""
        while not done.done():
            event = self.events.pop()
            if event is None:
                await self.events.wait(until=done)
            elif isinstance(event, HangupRequested):
                raise CallOver(event.outcome or CallOutcome.FAILED, "proxy", event.reason)
            else:
                self._common(event)
        _raise_media_error(done)

    def setup_seconds(self) -> float:
        return max((_utc_now() - self.started_at).total_seconds(), 0.0)

    def _caller_left_outcome(self) -> CallOutcome:
        if self.phase is CallPhase.NOTICE or self.phase is CallPhase.SETUP:
            return CallOutcome.CALLER_ABANDONED_DURING_NOTICE
        if self.phase is CallPhase.RINGING:
            return CallOutcome.CALLER_ABANDONED_WHILE_RINGING
        return CallOutcome.COMPLETED

    def _consent_receipt(self, heard: NoticeHeard) -> None:
        """P13: what the caller was told (none for a call that never got as far as an
        entry), written with the call's set-up or end."""
        if self.entry is not None:
            self.entry.heard(
                notice_receipt(
                    self.id,
                    self.notice_prompt,
                    heard,
                    early_media=self.early_media,
                    do_not_record=self.plan.do_not_record,
                )
            )

    @property
    def _entry(self) -> CallEntry:
        if self.entry is None:
            raise RuntimeError("call not answered yet")
        return self.entry

    def call_taker_invite(
        self, target: Uri, side: LegSdp, offer: sdp.SessionDescription | None = None
    ) -> Request:
        """Our INVITE to a call taker (the first, or a transfer's target) with our offer
        from ``side`` (``offer``, when the forks of one AOR share it): the caller's codec
        first, the caller's number at our host."""
        if offer is None:
            offer = side.offer(self._b_codecs(), sdp.Direction.SENDRECV)
        return build_request(
            "INVITE",
            target,
            from_=self._b_from(),
            to=f"<{target}>",
            contact=self.sip.core.default_contact(),
            local_host=self.config.sip.advertise,
            body=offer.serialize(),
            headers=[
                ("Allow", self.sip.core.allow),
                ("Supported", OPTION_TAG),  # a reliable 1xx is PRACKed by the SIP core
                *self.timers.invite_headers(),
            ],
        )

    def _b_codecs(self) -> tuple[str, ...]:
        """What leg B is offered: the caller's codec first, then the other recordable codec
        if the caller listed it too — the relay never transcodes, so nothing else."""
        assert self.a.audio is not None and self.a_offer is not None
        first = self.a.audio.encoding
        return (first, *(c for c in sdp.recordable_codecs(self.a_offer) if c != first))

    def _b_from(self) -> str:
        """Leg B's From: the caller's number and name, at our host."""
        request_from = self.invite.request.from_
        caller = request_from.uri.user if isinstance(request_from.uri, SipUri) else None
        uri = SipUri(host=self.config.sip.advertise, user=caller or "anonymous")
        display = f"{request_from.display} " if request_from.display else ""
        return f"{display}<{uri}>"

    def _media_host_for(self, offer: sdp.SessionDescription) -> str:
        """Our address for the caller's leg: in the family of the offer's ``c=``;
        488 with a Warning when that address is unusable or we have none in its family."""
        try:
            address = sdp.media_address(offer)
            host = self.config.sip.media_host(address.family)
            if host is None:
                raise sdp.unusable_address(f"no IPv{address.family} media address here")
        except RemoteSipError as exc:
            self.sip.fail(exc.status, exc.extra_headers)
            raise CallOver(CallOutcome.FAILED, "caller", "unusable media address") from None
        return host

    def call_taker_media_host(self, target: Uri) -> str:
        """Our address for a call taker's leg: IPv6 when its URI host is an IPv6
        literal, else IPv4."""
        host = target.host if isinstance(target, SipUri) else ""
        try:
            family = ipaddress.ip_address(host).version
        except ValueError:
            family = 4
        ours = self.config.sip.media_host(family)
        if ours is None:
            log.error("call %s: no IPv%d media address for the call taker", self.id, family)
            self.sip.fail(503)
            raise CallOver(CallOutcome.FAILED, "proxy", "no media address for the call taker")
        return ours


def _raise_media_error(done: asyncio.Future[None]) -> None:
    """End the call if ``done`` (a player of the media clock) failed: the clock could not
    play on our leg, so the caller has not heard what we meant to play."""
    if done.done() and not done.cancelled() and done.exception() is not None:
        raise CallOver(CallOutcome.FAILED, "proxy", f"media error: {done.exception()!r}")


def resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _resolver(future: asyncio.Future[None]) -> Callable[[object], None]:
    """A done-callback that resolves ``future`` (when another future is done)."""
    return lambda _: resolve(future)


def _utc_now() -> datetime:
    return datetime.now(UTC)
