"""The life of a recorded call, top to bottom.

A caller's INVITE (leg A) from a trusted peer is answered, and the recording notice is
played to the caller *before* the call taker is even invited (P13).  Only when the whole
notice has played is the call taker invited (leg B) while the caller hears ringback.
When the call taker answers, RTP is bridged both ways through our ports and the
conversation is recorded.  A BYE from either side ends both legs; every path releases
the RTP ports and closes the recording.  Each call leaves a consent receipt.

``B2bua`` receives the SIP core's events and hands each to its call; ``Call.run`` is
one coroutine per call with explicit phases::

    SETUP → NOTICE → RINGING → BRIDGED → ENDED
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import uuid
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config, OperatorSettings, ServiceSettings
from ..control.api import RecordingActionError
from ..media.announcer import Announcer, PacketPacer, PromptSource, RingbackTone, beeps
from ..media.clock import MediaClock
from ..media.dtmf import DtmfDetector
from ..media.relay import MediaSession, NoPortsAvailable, PortAllocator, RtpLeg, StreamRewriter
from ..ratelog import RateLimitedLog
from ..sip import sdp
from ..sip.core import Refusal, SipCore
from ..sip.dialog import Dialog, DialogState, build_request
from ..sip.errors import RemoteSipError
from ..sip.events import (
    AckReceived,
    AckTimedOut,
    Address,
    Event,
    MessageDropped,
    RequestCancelled,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from ..sip.headers import NameAddr
from ..sip.message import Request, Response
from ..sip.transaction import ClientTransaction, ServerTransaction, TransactionState
from ..sip.uri import SipUri, Uri, parse_uri
from ..storage.catalog import (
    CallDirection,
    CallOutcome,
    Catalog,
    EventChannel,
    NoticeMode,
    RecordingState,
)
from .dtmf_codes import CodeMatcher

if TYPE_CHECKING:
    from ..sip.transport import SipTransport
    from .recording import ActiveRecording, RecordingService

log = logging.getLogger(__name__)
flood_log = RateLimitedLog(log)  # for what a flood of INVITEs would log once each

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE"
_G711_NAMES = {0: "PCMU", 8: "PCMA"}


@dataclass(frozen=True)
class Prompt:
    """A notice prompt: 8 kHz PCM, and what identifies it in consent receipts."""

    pcm: object  # numpy int16 array (kept opaque here)
    sha256: str
    duration_ms: int
    name: str


class CallPhase(enum.Enum):
    SETUP = "setup"
    NOTICE = "notice"
    RINGING = "ringing"
    BRIDGED = "bridged"
    ENDED = "ended"


class _CallEnded(Exception):
    """Raised inside a call's flow when a party hangs up."""

    def __init__(self, outcome: CallOutcome, by: str) -> None:
        super().__init__(f"{by} ended the call")
        self.outcome = outcome
        self.by = by


class B2bua:
    """Dispatches the SIP core's events to calls; starts and stops calls."""

    def __init__(
        self,
        config: Config,
        core: SipCore,
        allocator: PortAllocator,
        clock: MediaClock,
        catalog: Catalog,
        recordings: RecordingService,
        notice: Prompt,
        prompts: Mapping[Path, Prompt] | None = None,
    ) -> None:
        self.config = config
        self.core = core
        self.allocator = allocator
        self.clock = clock
        self.catalog = catalog
        self.recordings = recordings
        self.notice = notice
        # every prompt the configuration names (notice, do-not-record, per service)
        self.prompts: dict[Path, Prompt] = dict(prompts or {})
        self.prompts.setdefault(config.notice.prompt, notice)
        self.transport: SipTransport | None = None
        self.calls: dict[str, Call] = {}
        self.accepting = True
        self.stats: dict[str, int] = {}
        self.on_phase: Callable[[Call, CallPhase, CallPhase], None] | None = None
        # called with (action, channel) for every recording stop/discard/resume
        self.on_recording_action: Callable[[str, str], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- SIP plumbing -------------------------------------------------------------------

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def flush(self) -> None:
        if self.transport is not None:
            self.transport.flush()

    def prompt(self, path: Path) -> Prompt:
        return self.prompts.get(path) or self.notice

    def count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    def on_event(self, event: Event) -> None:
        """The SipTransport's event handler."""
        if isinstance(event, RequestReceived):
            if event.dialog is not None:
                self._to_call(event.dialog.user_data, event)
            elif event.request.method == "INVITE":
                self._new_call(event)
            else:
                self._out_of_dialog(event)
        elif isinstance(event, ResponseReceived | TransactionTimedOut | RequestCancelled):
            self._to_call(event.transaction.user_data, event)
        elif isinstance(event, AckReceived):
            self._to_call(event.dialog.user_data, event)
        elif isinstance(event, AckTimedOut):
            owner = event.dialog.user_data if event.dialog else None
            if owner is None and event.transaction is not None:
                owner = event.transaction.user_data
            self._to_call(owner, event)
        elif isinstance(event, MessageDropped):
            self.count("sip_dropped")

    def _to_call(self, owner: object, event: Event) -> None:
        if isinstance(owner, Call) and not owner.finished:
            owner.events.put_nowait(event)
        elif isinstance(event, RequestReceived):
            # a request in a dialog whose call has already ended
            self.core.respond(event.transaction, 481, now=self.now(), dialog=event.dialog)

    def _out_of_dialog(self, event: RequestReceived) -> None:
        method = event.request.method
        now = self.now()
        if method == "OPTIONS":
            self.core.respond(
                event.transaction,
                200,
                now=now,
                headers=[("Allow", ALLOW), ("Accept", "application/sdp")],
            )
        elif method in ("BYE", "INFO", "UPDATE", "NOTIFY", "REFER"):
            self.core.respond(event.transaction, 481, now=now)
        else:
            self.core.respond(event.transaction, 405, now=now, headers=[("Allow", ALLOW)])

    def admit(self, request: Request, source: Address) -> Refusal | None:
        """The SIP core's admission hook: asked before it keeps any state for a request
        from outside a dialog, so a refusal costs no transaction and no RTP port."""
        if request.method != "INVITE":
            return None
        host = source[0]
        if not self.config.sip.is_trusted(host):
            self.count("rejected_untrusted")
            flood_log.warning("untrusted", "INVITE from untrusted %s:%s refused", *source)
            return Refusal(403, "Forbidden (not a trusted peer)")
        limits = self.config.limits
        if len(self.calls) >= limits.max_calls or (
            len(self.calls) >= limits.max_calls_per_source
            and sum(c.invite.source[0] == host for c in self.calls.values())
            >= limits.max_calls_per_source
        ):
            flood_log.warning("busy", "INVITE from %s:%s refused: too many calls", *source)
            retry_after = str(limits.retry_after_seconds)
            return Refusal(
                503, "Service Unavailable (too many calls)", (("Retry-After", retry_after),)
            )
        return None

    def _new_call(self, event: RequestReceived) -> None:
        now = self.now()
        if not self.accepting:
            self.core.respond(
                event.transaction,
                503,
                "Service Unavailable (shutting down)",
                now=now,
                headers=[("Retry-After", "30")],
            )
            return
        call = Call(self, event)
        event.transaction.user_data = call
        self.calls[call.id] = call
        task = asyncio.get_running_loop().create_task(call.run(), name=f"call-{call.id}")
        self._tasks.add(task)
        task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call task failed", exc_info=task.exception())

    # -- life cycle ------------------------------------------------------------------------

    async def shutdown(self, grace: float) -> None:
        """Refuse new calls (503); let active calls finish for ``grace`` seconds; then end
        the rest with BYE and close their recordings."""
        self.accepting = False
        deadline = self.now() + grace
        while self.calls and self.now() < deadline:
            await asyncio.sleep(min(0.1, max(deadline - self.now(), 0)))
        for call in list(self.calls.values()):
            call.hang_up("shutdown")
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=10)


class Call:
    """One call: leg A (the caller, our UAS side) and leg B (the call taker, our UAC)."""

    def __init__(self, b2bua: B2bua, invite: RequestReceived) -> None:
        self.b2bua = b2bua
        self.core = b2bua.core
        self.config = b2bua.config
        self.id = str(uuid.uuid4())
        self.invite = invite
        self.events: asyncio.Queue[Event | _HangupRequested] = asyncio.Queue()
        self.phase = CallPhase.SETUP
        self.finished = False
        self.outcome = CallOutcome.FAILED
        self.failure_status = 500
        self.started_at = datetime.now(UTC)
        self.caller = _party(invite.request.from_)
        self.callee = _party(invite.request.to)
        # leg A
        self.a_txn: ServerTransaction = invite.transaction
        self.a_dialog: Dialog | None = None
        self.a_answered = False
        self.a_offer: sdp.SessionDescription | None = None
        self.a_local_sdp: sdp.SessionDescription | None = None
        self.audio: sdp.NegotiatedAudio | None = None
        # leg B
        self.b_txn: ClientTransaction | None = None
        self.b_dialog: Dialog | None = None
        self.b_local_sdp: sdp.SessionDescription | None = None
        self.b_audio: sdp.NegotiatedAudio | None = None
        # media
        self.media = MediaSession(b2bua.allocator, self.config.sip.advertise)
        self.a_leg: RtpLeg | None = None
        self.b_leg: RtpLeg | None = None
        self.pacer: PacketPacer | None = None
        self.recording: ActiveRecording | None = None
        self.catalog_id: str | None = None
        self._session_version = 1
        self._pending_reinvite: dict[ClientTransaction, tuple[ServerTransaction, bool]] = {}
        self._hangup_requested: str | None = None
        # what this call is (decided in _plan): P1 direction, P3 service, P14 list
        self.outbound = False
        self.service: ServiceSettings | None = None
        self.target: Uri = parse_uri(self.config.routing.call_taker)
        self.notice_prompt: Prompt | None = None
        self.record = True
        self.do_not_record = False
        self.operator_settings: OperatorSettings | None = None
        # the call taker's recording switch (P14)
        self.recording_state: str | None = None  # recording | stopped | discarded
        self._matcher = CodeMatcher(self.config.dtmf.codes())
        self._detector = DtmfDetector()
        self._held_events: dict[Hashable, list[bytes]] = {}
        self._event_fate: dict[int, bool] = {}  # RTP timestamp → passed on (True) or not
        self._held_infos: dict[Hashable, tuple[bytes, str]] = {}
        self._dtmf_timer: asyncio.TimerHandle | None = None
        self._action_lock = asyncio.Lock()

    # ==================================================================================
    # The call flow

    async def run(self) -> None:
        try:
            await self._setup()
            if self.notice_prompt is not None:
                await self._play_notice()
            else:
                await self._consent_receipt(_utc_now(), 0, left=False)
            await self._ring_call_taker()
            await self._talk()
        except _CallEnded as ended:
            self.outcome = ended.outcome
            log.info("call %s ended by %s (%s)", self.id, ended.by, ended.outcome.value)
        except Exception:
            log.exception("call %s failed", self.id)
            self.outcome = CallOutcome.FAILED
        finally:
            await self._teardown()

    async def _setup(self) -> None:
        """Check the offer, anchor leg A's media on us, answer (200 or 183), record the
        call in the catalog."""
        request = self.invite.request
        if not request.body:
            self.failure_status = 488
            raise _CallEnded(CallOutcome.FAILED, "caller (INVITE without an SDP offer)")
        try:
            self.a_offer = sdp.SessionDescription.parse(request.body)
        except RemoteSipError:
            self.failure_status = 400
            raise _CallEnded(CallOutcome.FAILED, "caller (malformed SDP)") from None
        await self._plan()
        try:
            self.a_leg = await self.media.open_leg("caller")
        except NoPortsAvailable:
            flood_log.error("no-rtp-ports", "call %s: no RTP ports left", self.id)
            self.failure_status = 503
            raise _CallEnded(CallOutcome.FAILED, "us (no RTP ports)") from None
        try:
            answer = sdp.answer_offer(
                self.a_offer,
                local_address=self.config.sip.advertise,
                ports=lambda index, media: self.a_leg.port if self.a_leg else None,
                session_id=secrets.randbelow(2**31),
                session_version=self._session_version,
            )
            self.audio = sdp.negotiated(self.a_offer, answer, local_role=sdp.Role.ANSWERER)
        except RemoteSipError as exc:
            self.failure_status = exc.status
            raise _CallEnded(CallOutcome.FAILED, "caller (no codec in common)") from None
        self.a_local_sdp = answer
        self._configure_leg(self.a_leg, self.audio)
        self.a_dialog = self.core.accept_dialog(self.a_txn)
        self.a_dialog.user_data = self
        # with no notice to play the call is answered only when the far end answers
        early = self.config.notice.mode == "early-media" or self.notice_prompt is None
        self._respond(
            self.a_txn, 183 if early else 200, dialog=self.a_dialog, body=answer.serialize()
        )
        self.a_answered = not early
        call_row = await self.b2bua.catalog.create_call(
            sip_call_id=request.call_id,
            caller=self.caller,
            callee=self.callee,
            direction=CallDirection.OUTBOUND if self.outbound else CallDirection.INBOUND,
            service=self.service.name if self.service else None,
            started_at=self.started_at,
            config_version=self.config.version,
        )
        self.catalog_id = call_row.id
        if self.a_answered:
            await self.b2bua.catalog.update_call(self.catalog_id, answered_at=_utc_now())

    async def _plan(self) -> None:
        """Direction (P1), service (P3), the do-not-record list (P14) and so the notice,
        the prompt, whether to record, and where the call goes."""
        config = self.config
        request = self.invite.request
        dialled = _user(request.uri) or _user(request.to.uri) or ""
        outbound_allowed = config.routing.trunk is not None and config.sip.is_internal(
            self.invite.source[0]
        )
        rule = config.routing.rule_for(dialled, outbound_allowed=outbound_allowed)
        self.outbound = rule is not None and rule.direction == "outbound"
        self.service = config.services.get(rule.service) if rule and rule.service else None
        if self.outbound:
            assert config.routing.trunk is not None
            trunk = parse_uri(config.routing.trunk)
            self.target = replace(trunk, user=dialled) if isinstance(trunk, SipUri) else trunk
        elif rule is not None and rule.call_taker is not None:
            self.target = parse_uri(rule.call_taker)
        if dialled:
            self.callee = _number(dialled, config)
        self.caller = _number(self.caller, config)
        service = self.service
        wants_notice = not self.outbound
        if service is not None and service.notice is not None:
            wants_notice = service.notice
        self.record = service.record if service is not None else True
        prompt = service.prompt if service is not None and service.prompt else None
        if not self.outbound and self.caller.startswith("+"):
            listed = await self.b2bua.catalog.do_not_record(self.caller)
            if listed is not None:  # a written request not to be recorded
                self.do_not_record = True
                self.record = False
                wants_notice = True
                prompt = config.notice.no_record_prompt
                log.info("call %s: caller is on the do-not-record list", self.id)
        if wants_notice:
            self.notice_prompt = self.b2bua.prompt(prompt or config.notice.prompt)

    async def _play_notice(self) -> None:
        """Play the whole notice to the caller; store the consent receipt (P13)."""
        assert self.a_leg is not None and self.audio is not None
        assert self.notice_prompt is not None
        self._set_phase(CallPhase.NOTICE)
        clock = self.b2bua.clock
        notice = self.notice_prompt
        ssrc = secrets.randbits(32)
        self.pacer = Announcer(
            notice.pcm,  # type: ignore[arg-type]
            self.audio.encoding,
            self.audio.send_payload_type,
            clock.now(),
            ssrc,
            secrets.randbits(16),
            secrets.randbits(32),
        )
        started_at = _utc_now()
        done = clock.play(self.a_leg, self.pacer)
        caller_left = False
        try:
            await self._until(done)
            # ``done`` means the last packet has been sent, not heard: the notice has
            # played only when that packet's audio has run out too
            await self._pause(self.pacer.ptime)
        except _CallEnded:
            caller_left = True
            raise
        finally:
            clock.silence(self.a_leg)
            played_ms = min(self.pacer.played_ms, notice.duration_ms)
            await self._consent_receipt(started_at, played_ms, caller_left)

    async def _ring_call_taker(self) -> None:
        """Invite the call taker; ringback to the caller until an answer, a refusal or
        the ring timeout."""
        assert self.a_leg is not None and self.audio is not None
        self._set_phase(CallPhase.RINGING)
        self.b_leg = await self.media.open_leg("call_taker")
        clock = self.b2bua.clock
        ringback = RingbackTone(self.config.notice.ringback)
        if self.pacer is None:  # no notice was played: ringback starts the stream
            self.pacer = PacketPacer(
                ringback,
                self.audio.encoding,
                self.audio.send_payload_type,
                clock.now(),
                secrets.randbits(32),
                secrets.randbits(16),
                secrets.randbits(32),
            )
        else:
            self.pacer.set_source(ringback, clock.now())
        clock.play(self.a_leg, self.pacer)
        self.b_local_sdp = sdp.create_offer(
            self.config.sip.advertise,
            self.b_leg.port,
            session_id=secrets.randbelow(2**31),
            session_version=1,
            codecs=self._b_codecs(),
            telephone_event=self.audio.receive_telephone_event or 101,
            ptime=self.audio.ptime or 20,
        )
        target = self.target
        invite = build_request(
            "INVITE",
            target,
            from_=self._b_from(),
            to=f"<{target}>",
            contact=self.core.default_contact(),
            local_host=self.config.sip.advertise,
            body=self.b_local_sdp.serialize(),
            headers=[("Allow", ALLOW)],
        )
        self.b_txn = self._send(invite)
        timeout = self.config.routing.ring_timeout_seconds
        deadline = self.b2bua.now() + timeout
        while True:
            remaining = deadline - self.b2bua.now()
            if remaining <= 0:
                self._cancel_b()
                self.failure_status = 480
                raise _CallEnded(CallOutcome.NO_ANSWER, "call taker (no answer)")
            event = await self._next(timeout=remaining)
            if event is None:
                continue
            if isinstance(event, ResponseReceived) and event.transaction is self.b_txn:
                status = event.response.status
                if status < 200:
                    if event.dialog is not None:
                        event.dialog.user_data = self
                    continue
                if status < 300:
                    await self._call_taker_answered(event)
                    return
                self.failure_status = status
                raise _CallEnded(_refusal_outcome(status), f"call taker ({status})")
            if isinstance(event, TransactionTimedOut) and event.transaction is self.b_txn:
                self.failure_status = 408
                raise _CallEnded(CallOutcome.NO_ANSWER, "call taker (no response)")
            self._common(event)

    async def _call_taker_answered(self, event: ResponseReceived) -> None:
        assert self.b_leg is not None and self.b_local_sdp is not None
        dialog = event.dialog
        if dialog is None:
            raise RuntimeError("2xx without a dialog")
        dialog.user_data = self
        self.b_dialog = dialog
        self.core.send_ack(dialog, dialog.create_ack(event.response.cseq.number), self.b2bua.now())
        self.b2bua.flush()
        try:
            answer = sdp.SessionDescription.parse(event.response.body)
            self.b_audio = sdp.negotiated(self.b_local_sdp, answer, local_role=sdp.Role.OFFERER)
        except RemoteSipError as exc:
            log.warning("call %s: call taker's answer unusable: %s", self.id, exc.reason)
            raise _CallEnded(CallOutcome.FAILED, "call taker (bad SDP answer)") from None
        self._configure_leg(self.b_leg, self.b_audio)
        if self.outbound:  # the member of staff placed the call: leg A is theirs
            self.operator_settings = self._identify(self.invite.request)
        else:  # whoever answered leg B
            self.operator_settings = self._identify(event.response, self.target)

    async def _talk(self) -> None:
        """Bridge both legs, record, and relay until one side hangs up."""
        assert self.a_leg is not None and self.b_leg is not None and self.pacer is not None
        assert self.audio is not None and self.b_audio is not None
        clock = self.b2bua.clock
        clock.silence(self.a_leg)
        # the caller's stream continues from the last notice/ringback packet
        self.a_leg.rewriter = StreamRewriter(
            self.pacer.ssrc, self.pacer.next_sequence, self.pacer.next_timestamp
        )
        if not self.a_answered:
            self._respond(self.a_txn, 200, dialog=self.a_dialog, body=self._a_sdp_bytes())
            self.a_answered = True
            await self.b2bua.catalog.update_call(self._catalog_id, answered_at=_utc_now())
        public_leg, staff_leg = self._public_and_staff()
        public_audio, staff_audio = (
            (self.b_audio, self.audio) if self.outbound else (self.audio, self.b_audio)
        )
        if self.record:
            # left channel: the member of the public; right: the member of staff
            self.recording = await self.b2bua.recordings.start(
                self._catalog_id, public_audio.encoding, staff_audio.encoding
            )
        if self.recording is not None:
            pair = self.recording.pair
            public_leg.sink = pair.caller.push
            staff_leg.sink = pair.taker.push
            public_leg.on_codec_change = lambda pt: pair.caller.set_codec(_G711_NAMES[pt])
            staff_leg.on_codec_change = lambda pt: pair.taker.set_codec(_G711_NAMES[pt])
            self.recording_state = "recording"
        # the call taker's digits go through the code matcher (P14)
        staff_leg.dtmf_sink = self._staff_event
        self.media.bridge()
        self._set_phase(CallPhase.BRIDGED)
        await self.b2bua.catalog.update_call(
            self._catalog_id,
            bridged_at=_utc_now(),
            operator=self.operator,
        )
        while True:
            event = await self._next()
            if event is not None:
                self._common(event)

    async def _teardown(self) -> None:
        """Whatever happened: end both legs, release ports, close the recording, write
        the outcome."""
        ended_at = _utc_now()  # not after the recording is sealed: that may take a while
        self.finished = True
        self._set_phase(CallPhase.ENDED)
        try:
            self._end_leg_b()
            self._end_leg_a()
            self.b2bua.flush()
        except Exception:
            log.exception("call %s: error while hanging up", self.id)
        for leg in (self.a_leg, self.b_leg):
            if leg is not None:
                self.b2bua.clock.silence(leg)
                leg.sink = None
        self.media.close()
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
        if self.recording is not None and self.recording_state != "discarded":
            try:
                await self.b2bua.recordings.finish(self.recording)
            except Exception:
                log.exception("call %s: closing the recording failed", self.id)
        if self.catalog_id is not None:
            try:
                await self.b2bua.catalog.update_call(
                    self.catalog_id, ended_at=ended_at, outcome=self.outcome
                )
            except Exception:
                log.exception("call %s: catalog update failed", self.id)
        self.b2bua.calls.pop(self.id, None)

    # ==================================================================================
    # Events common to every phase

    def _common(self, event: Event) -> None:
        """Handle an event any phase may see; raise _CallEnded when a party leaves."""
        if isinstance(event, RequestCancelled):
            raise _CallEnded(self._caller_left_outcome(), "caller (CANCEL)")
        if isinstance(event, AckTimedOut):
            if event.dialog is self.a_dialog or event.transaction is self.a_txn:
                raise _CallEnded(CallOutcome.FAILED, "caller (never ACKed our answer)")
            return
        if isinstance(event, AckReceived):
            if event.dialog is self.a_dialog and event.request.body:
                self._remote_sdp(self.a_leg, event.request.body)
            return
        if isinstance(event, ResponseReceived):
            self._response_in_call(event)
            return
        if isinstance(event, TransactionTimedOut):
            pending = self._pending_reinvite.pop(event.transaction, None)
            if pending is not None:
                self._respond(pending[0], 408)
            return
        if isinstance(event, RequestReceived):
            self._request_in_call(event)

    def _request_in_call(self, event: RequestReceived) -> None:
        method = event.request.method
        from_a = event.dialog is self.a_dialog
        if method == "BYE":
            self._respond(event.transaction, 200, dialog=event.dialog)
            if from_a:
                if self.a_dialog is not None:
                    self.a_dialog.state = DialogState.TERMINATED
                raise _CallEnded(self._caller_left_outcome(), "caller (BYE)")
            if self.b_dialog is not None:
                self.b_dialog.state = DialogState.TERMINATED
            raise _CallEnded(CallOutcome.COMPLETED, "call taker (BYE)")
        if method in ("INVITE", "UPDATE"):
            self._offer_in_call(event, from_a)
            return
        if method == "INFO" and self.phase is CallPhase.BRIDGED:
            self._info_in_call(event, from_a)
            return
        # OPTIONS, anything else in the dialog: acknowledge it
        self._respond(event.transaction, 200, dialog=event.dialog)

    def _offer_in_call(self, event: RequestReceived, from_a: bool) -> None:
        """re-INVITE / UPDATE: during the notice and ringing we answer for ourselves
        (media stays where it is); when bridged the offer is passed across."""
        txn = event.transaction
        leg = self.a_leg if from_a else self.b_leg
        other_dialog = self.b_dialog if from_a else self.a_dialog
        other_leg = self.b_leg if from_a else self.a_leg
        if self._pending_reinvite:
            self._respond(txn, 491, dialog=event.dialog)  # glare (RFC 3261 §14.1)
            return
        body = event.request.body
        if body:
            try:
                offer = sdp.SessionDescription.parse(body)
            except RemoteSipError as exc:
                self._respond(txn, exc.status, dialog=event.dialog)
                return
        else:
            offer = None
        bridged = self.phase is CallPhase.BRIDGED
        if offer is None or not bridged or other_dialog is None or other_leg is None:
            if offer is not None and leg is not None:
                self._remote_sdp(leg, body)
            self._session_version += 1
            ours = self._a_sdp_bytes() if from_a else self._b_sdp_bytes()
            self._respond(txn, 200, dialog=event.dialog, body=ours)
            return
        if leg is not None:
            self._remote_sdp(leg, body)
        anchored = sdp.anchor_media(
            offer,
            address=self.config.sip.advertise,
            ports=_audio_port(offer, other_leg.port),
            bump_version=True,
        )
        request = other_dialog.create_request(event.request.method, body=anchored.serialize())
        out = self._send(request, dialog=other_dialog)
        self._pending_reinvite[out] = (txn, from_a)

    def _response_in_call(self, event: ResponseReceived) -> None:
        txn = event.transaction
        pending = self._pending_reinvite.get(txn)
        if pending is None:
            if (
                txn is self.b_txn
                and 200 <= event.response.status < 300
                and event.dialog is not None
                and event.dialog is not self.b_dialog
            ):
                # a second 2xx (forked, or after we gave up): ACK and end it
                self._ack_and_bye(event)
            return
        status = event.response.status
        if status < 200:
            return
        del self._pending_reinvite[txn]
        pending_txn, from_a = pending
        answering_leg = self.b_leg if from_a else self.a_leg
        our_leg = self.a_leg if from_a else self.b_leg
        if txn.method == "INVITE" and status < 300 and event.dialog is not None:
            self.core.send_ack(
                event.dialog, event.dialog.create_ack(event.response.cseq.number), self.b2bua.now()
            )
        if status >= 300 or not event.response.body or answering_leg is None or our_leg is None:
            self._respond(pending_txn, status, dialog=self.a_dialog if from_a else self.b_dialog)
            return
        self._remote_sdp(answering_leg, event.response.body)
        answer = sdp.SessionDescription.parse(event.response.body)
        anchored = sdp.anchor_media(
            answer,
            address=self.config.sip.advertise,
            ports=_audio_port(answer, our_leg.port),
            bump_version=True,
        )
        if from_a:
            self.a_local_sdp = anchored
        else:
            self.b_local_sdp = anchored
        self._respond(
            pending_txn,
            status,
            dialog=self.a_dialog if from_a else self.b_dialog,
            body=anchored.serialize(),
        )

    # ==================================================================================
    # The recording switch (P14): DTMF codes from the call taker's phone, and the API

    @property
    def operator(self) -> str | None:
        return self.operator_settings.name if self.operator_settings else None

    def describe(self) -> dict[str, Any]:
        """What the call takers' API shows of an active call."""
        return {
            "id": self.id,
            "phase": self.phase.value,
            "direction": "outbound" if self.outbound else "inbound",
            "caller": self.caller,
            "callee": self.callee,
            "service": self.service.name if self.service else None,
            "operator": self.operator,
            "started_at": self.started_at.isoformat().replace("+00:00", "Z"),
            "recording": self.recording_state
            or ("not recorded" if not self.record else "not started"),
        }

    async def recording_action(
        self, action: str, *, actor: str, channel: str, reason: str
    ) -> dict[str, Any]:
        """Stop (keep what was recorded), discard (destroy it) or resume, at the next
        20 ms tick; every action is a recording event with who, when, why and how."""
        async with self._action_lock:
            recording = self.recording
            state = self.recording_state
            if recording is None or state is None:
                raise RecordingActionError("this call has no recording")
            if state == "discarded":
                raise RecordingActionError("the recording was discarded")
            if action == "stop" and state != "recording":
                raise RecordingActionError("the recording is already stopped")
            if action == "resume" and state != "stopped":
                raise RecordingActionError("the recording is not stopped")
            catalog = self.b2bua.catalog
            event_channel = EventChannel(channel)
            if action in ("stop", "resume"):
                if action == "stop":
                    recording.pair.pause("skip")  # the audio ends; a resume starts a new span
                else:
                    recording.pair.resume()
                self.recording_state = "stopped" if action == "stop" else "recording"
                await catalog.set_recording_state(
                    recording.id,
                    RecordingState.STOPPED if action == "stop" else RecordingState.RECORDING,
                    actor=actor,
                    channel=event_channel,
                    reason=reason,
                )
            elif action == "discard":
                for leg in self._public_and_staff():
                    leg.sink = None
                self.recording_state = "discarded"
                await self.b2bua.recordings.discard(
                    recording, actor=actor, channel=event_channel, reason=reason
                )
            else:
                raise RecordingActionError(f"unknown action {action!r}")
            log.info(
                "call %s: recording %s %s by %s via %s: %s",
                self.id, recording.id, action, actor, channel, reason,
            )  # fmt: skip
            if self.b2bua.on_recording_action is not None:
                self.b2bua.on_recording_action(action, channel)
            return {"id": self.id, "recording_id": recording.id, "recording": self.recording_state}

    def _staff_event(
        self, sequence: int, timestamp: int, marker: bool, payload: bytes, packet: bytes
    ) -> None:
        """A telephone-event packet from the call taker: held until it is known not to
        be part of a recording code; a code's packets never reach the caller."""
        public_leg, _ = self._public_and_staff()
        fate = self._event_fate.get(timestamp)
        if fate is True:
            public_leg.send_relayed(packet)
            return
        if fate is False:
            return
        now = self.b2bua.now()
        self._held_events.setdefault(timestamp, []).append(packet)
        ignored = self._detector.ignored
        ssrc = int.from_bytes(packet[8:12], "big")
        for digit in self._detector.feed(timestamp, marker, payload, sequence=sequence, ssrc=ssrc):
            self._apply(self._matcher.feed(digit.digit, digit.start_timestamp, now))
        if self._detector.ignored > ignored and len(self._held_events.get(timestamp, ())) == 1:
            # the first packet of an event the detector does not follow (not a key, a
            # stale or a malformed one): no part of a code, so passed on, not held forever
            self._release(timestamp, public_leg)
        self._arm_dtmf_timer()

    def _info_in_call(self, event: RequestReceived, from_a: bool) -> None:
        """SIP INFO: DTMF (application/dtmf-relay or application/dtmf) from the call taker
        goes through the code matcher; anything else is answered and not passed on."""
        self._respond(event.transaction, 200, dialog=event.dialog)
        staff_is_a = self.outbound
        if from_a != staff_is_a:
            return
        digit = _info_digit(event.request.content_type, event.request.body)
        if digit is None:
            return
        key = ("info", event.request.cseq.number)
        self._held_infos[key] = (event.request.body, event.request.content_type or "")
        self._apply(self._matcher.feed(digit, key, self.b2bua.now()))
        self._arm_dtmf_timer()

    def _apply(self, decision: Any) -> None:
        public_leg, _ = self._public_and_staff()
        for key in decision.released:
            self._release(key, public_leg)
        for key in decision.dropped:
            if isinstance(key, int):
                self._event_fate[key] = False
                self._held_events.pop(key, None)
            else:
                self._held_infos.pop(key, None)
        if decision.action is not None:
            asyncio.get_running_loop().create_task(self._dtmf_action(decision.action))

    def _release(self, key: Hashable, public_leg: RtpLeg) -> None:
        if isinstance(key, int):
            self._event_fate[key] = True
            for packet in self._held_events.pop(key, []):
                public_leg.send_relayed(packet)
            return
        held = self._held_infos.pop(key, None)
        public_dialog = self.b_dialog if self.outbound else self.a_dialog
        if held is None or public_dialog is None:
            return
        body, content_type = held
        info = public_dialog.create_request("INFO", body=body, content_type=content_type)
        self._send(info, dialog=public_dialog)

    def _arm_dtmf_timer(self) -> None:
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
            self._dtmf_timer = None
        if self._matcher.holding or self._detector.pending:
            loop = asyncio.get_running_loop()
            self._dtmf_timer = loop.call_later(self._matcher.timeout, self._dtmf_expire)

    def _dtmf_expire(self) -> None:
        self._dtmf_timer = None
        now = self.b2bua.now()
        for digit in self._detector.flush():  # an event whose end packets were lost
            self._apply(self._matcher.feed(digit.digit, digit.start_timestamp, now))
        self._apply(self._matcher.expire(now + self._matcher.timeout))

    async def _dtmf_action(self, action: str) -> None:
        actor = self.operator or "call taker"
        try:
            await self.recording_action(
                action, actor=actor, channel="dtmf", reason=f"{action} code keyed on the phone"
            )
        except RecordingActionError as exc:
            log.info("call %s: %s code ignored: %s", self.id, action, exc)
            return
        except Exception:
            log.exception("call %s: %s by DTMF failed", self.id, action)
            return
        self._confirm_to_staff()

    def _confirm_to_staff(self) -> None:
        """Two short beeps to the call taker only; the caller hears nothing."""
        _, staff_leg = self._public_and_staff()
        audio = self.audio if self.outbound else self.b_audio
        if audio is None or staff_leg.closed:
            return
        clock = self.b2bua.clock
        rewriter = staff_leg.rewriter
        if rewriter is None:
            rewriter = StreamRewriter(secrets.randbits(32), secrets.randbits(16), 0)
            staff_leg.rewriter = rewriter
        tone = PacketPacer(
            PromptSource(beeps(2)),
            audio.encoding,
            audio.send_payload_type,
            clock.now(),
            rewriter.ssrc,
            (rewriter.last_seq + 1) & 0xFFFF,
            (rewriter.last_ts + 160) & 0xFFFFFFFF,
        )
        staff_leg.muted = True  # the caller's audio pauses for the beeps' length

        def resume(_: object) -> None:
            rewriter.continue_after(tone.next_sequence, tone.next_timestamp)
            staff_leg.muted = False

        clock.play(staff_leg, tone).add_done_callback(resume)

    def _public_and_staff(self) -> tuple[RtpLeg, RtpLeg]:
        """(the member of the public's leg, the member of staff's leg)."""
        assert self.a_leg is not None and self.b_leg is not None
        return (self.b_leg, self.a_leg) if self.outbound else (self.a_leg, self.b_leg)

    def _identify(self, message: Request | Response, *extra: Uri) -> OperatorSettings | None:
        """The operator whose configured identities match the answering (or calling)
        phone: its Contact, P-Asserted-Identity, From (for a caller) or target URI."""
        candidates: list[Uri] = []
        try:
            candidates += [c.uri for c in message.contacts if c.display != "*"]
            for value in message.headers.get_all("p-asserted-identity"):
                candidates.append(NameAddr.parse(value).uri)
            if isinstance(message, Request):
                candidates.append(message.from_.uri)
        except RemoteSipError:
            pass
        candidates += list(extra)
        for operator in self.config.operators:
            if any(_identity_matches(i, u) for i in operator.identities for u in candidates):
                return operator
        return None

    # ==================================================================================
    # Helpers

    def hang_up(self, reason: str) -> None:
        """End the call from outside its task (shutdown, an operator)."""
        self._hangup_requested = reason
        self.events.put_nowait(_HangupRequested(reason))

    async def _next(self, timeout: float | None = None) -> Event | None:
        try:
            event = await asyncio.wait_for(self.events.get(), timeout)
        except TimeoutError:
            return None
        if isinstance(event, _HangupRequested):
            raise _CallEnded(
                CallOutcome.COMPLETED if self.phase is CallPhase.BRIDGED else CallOutcome.FAILED,
                f"recproxy ({event.reason})",
            )
        return event

    async def _pause(self, seconds: float) -> None:
        """Handle the call's events for ``seconds``."""
        loop = asyncio.get_running_loop()
        elapsed: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _resolve, elapsed)
        try:
            await self._until(elapsed)
        finally:
            timer.cancel()

    async def _until(self, done: asyncio.Future[None]) -> None:
        """Handle the call's events until ``done`` resolves."""
        while not done.done():
            getter = asyncio.ensure_future(self.events.get())
            waiting: set[asyncio.Future[Any]] = {getter, done}
            finished, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if getter in finished:
                event = getter.result()
                if isinstance(event, _HangupRequested):
                    raise _CallEnded(CallOutcome.FAILED, f"recproxy ({event.reason})")
                self._common(event)
            else:
                getter.cancel()

    def _set_phase(self, phase: CallPhase) -> None:
        old, self.phase = self.phase, phase
        if self.b2bua.on_phase is not None and old is not phase:
            self.b2bua.on_phase(self, old, phase)

    def _caller_left_outcome(self) -> CallOutcome:
        if self.phase is CallPhase.NOTICE or self.phase is CallPhase.SETUP:
            return CallOutcome.CALLER_ABANDONED_DURING_NOTICE
        if self.phase is CallPhase.RINGING:
            return CallOutcome.CALLER_ABANDONED_WHILE_RINGING
        return CallOutcome.COMPLETED

    @property
    def _catalog_id(self) -> str:
        if self.catalog_id is None:
            raise RuntimeError("call not in the catalog yet")
        return self.catalog_id

    def _respond(
        self,
        txn: ServerTransaction,
        status: int,
        *,
        dialog: Dialog | None = None,
        body: bytes = b"",
    ) -> None:
        if txn.state not in (TransactionState.TRYING, TransactionState.PROCEEDING) and not (
            txn.state is TransactionState.ACCEPTED and 200 <= status < 300
        ):
            return  # already answered (e.g. the core sent 487 after a CANCEL)
        headers = [("Allow", ALLOW)] if txn.method == "INVITE" else []
        self.core.respond(
            txn, status, now=self.b2bua.now(), dialog=dialog, body=body, headers=headers
        )
        self.b2bua.flush()

    def _send(self, request: Request, *, dialog: Dialog | None = None) -> ClientTransaction:
        txn = self.core.send_request(request, self.b2bua.now(), dialog=dialog)
        txn.user_data = self
        self.b2bua.flush()
        return txn

    def _b_codecs(self) -> tuple[str, ...]:
        """What leg B is offered: the caller's codec first, then the other G.711 codec if
        the caller offered it too — the relay never transcodes, so nothing else."""
        assert self.audio is not None and self.a_offer is not None
        codecs = [self.audio.encoding]
        index = self.a_offer.first_audio_index()
        if index is not None:
            offered = self.a_offer.media[index]
            for name in ("PCMU", "PCMA"):
                if name not in codecs and offered.find_format(name, 8000) is not None:
                    codecs.append(name)
        return tuple(codecs)

    def _b_from(self) -> str:
        """Leg B's From: the caller's number and name, at our host."""
        request_from = self.invite.request.from_
        user = request_from.uri.user if isinstance(request_from.uri, SipUri) else None
        uri = SipUri(host=self.config.sip.advertise, user=user or "anonymous")
        display = f"{request_from.display} " if request_from.display else ""
        return f"{display}<{uri}>"

    def _configure_leg(self, leg: RtpLeg, audio: sdp.NegotiatedAudio) -> None:
        leg.set_remote(audio.remote_address, audio.remote_port)
        leg.audio_payload_type = audio.receive_payload_type
        leg.dtmf_payload_type = audio.receive_telephone_event

    def _remote_sdp(self, leg: RtpLeg | None, body: bytes) -> None:
        """A new SDP from a leg's party: follow its media address (hold keeps it)."""
        if leg is None:
            return
        try:
            description = sdp.SessionDescription.parse(body)
        except RemoteSipError:
            return
        index = description.first_audio_index()
        if index is None:
            return
        media = description.media[index]
        connection = description.connection_for(media)
        if connection is None or connection.is_hold_address or media.port == 0:
            return
        leg.set_remote(connection.host, media.port)

    def _a_sdp_bytes(self) -> bytes:
        assert self.a_local_sdp is not None
        return self.a_local_sdp.serialize()

    def _b_sdp_bytes(self) -> bytes:
        assert self.b_local_sdp is not None
        return self.b_local_sdp.serialize()

    async def _consent_receipt(self, started_at: datetime, played_ms: int, left: bool) -> None:
        """P13: what the caller was told — which notice, from when, how much of it; a call
        with no notice (outbound, or a service without one) gets a receipt saying so."""
        if self.catalog_id is None:
            return
        notice = self.notice_prompt
        await self.b2bua.catalog.add_consent_receipt(
            self.catalog_id,
            mode=NoticeMode(self.config.notice.mode) if notice else NoticeMode.NONE,
            notice_sha256=notice.sha256 if notice else None,
            notice_version=notice.name if notice else None,
            started_at=started_at if notice else None,
            played_ms=played_ms,
            notice_ms=notice.duration_ms if notice else 0,
            completed=notice is not None and not left and played_ms >= notice.duration_ms - 20,
            caller_left_during_notice=left,
            do_not_record=self.do_not_record,
        )

    def _cancel_b(self) -> None:
        if self.b_txn is not None and self.b_txn.state in (
            TransactionState.CALLING,
            TransactionState.PROCEEDING,
        ):
            self.core.cancel(self.b_txn, self.b2bua.now())
            self.b2bua.flush()

    def _ack_and_bye(self, event: ResponseReceived) -> None:
        dialog = event.dialog
        assert dialog is not None
        dialog.user_data = self
        self.core.send_ack(dialog, dialog.create_ack(event.response.cseq.number), self.b2bua.now())
        bye = dialog.create_request("BYE")
        self.core.send_request(bye, self.b2bua.now(), dialog=dialog)
        self.b2bua.flush()

    def _end_leg_b(self) -> None:
        if self.b_dialog is not None and self.b_dialog.state is DialogState.CONFIRMED:
            bye = self.b_dialog.create_request("BYE")
            txn = self.core.send_request(bye, self.b2bua.now(), dialog=self.b_dialog)
            txn.user_data = None
        elif self.b_txn is not None:
            self._cancel_b()

    def _end_leg_a(self) -> None:
        if self.a_answered:
            if self.a_dialog is not None and self.a_dialog.state is DialogState.CONFIRMED:
                bye = self.a_dialog.create_request("BYE")
                txn = self.core.send_request(bye, self.b2bua.now(), dialog=self.a_dialog)
                txn.user_data = None
            return
        if self.a_txn.state is TransactionState.PROCEEDING:
            status = self.failure_status if self.failure_status >= 300 else 500
            self.core.respond(self.a_txn, status, now=self.b2bua.now(), dialog=self.a_dialog)


@dataclass(frozen=True)
class _HangupRequested:
    """Put on a call's queue to end it from outside (shutdown, an operator)."""

    reason: str


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _refusal_outcome(status: int) -> CallOutcome:
    if status in (486, 600):
        return CallOutcome.CALLTAKER_BUSY
    if status in (603, 403):
        return CallOutcome.CALLTAKER_DECLINED
    if status in (408, 480):
        return CallOutcome.NO_ANSWER
    return CallOutcome.FAILED


def _audio_port(description: sdp.SessionDescription, port: int) -> list[int | None]:
    """Our port for the first audio stream; every other stream declined (port 0)."""
    index = description.first_audio_index()
    return [port if i == index else None for i in range(len(description.media))]


def _user(uri: Uri) -> str | None:
    return uri.user if isinstance(uri, SipUri) and uri.user else None


def _number(text: str, config: Config) -> str:
    """A telephone number in E.164 (for the catalog, the do-not-record list and
    subject-access search); anything that is not a number is kept as it is."""
    stripped = text.replace(" ", "").replace("-", "")
    if stripped and all(c.isdigit() for c in stripped.lstrip("+")) and len(stripped) >= 6:
        return config.numbers.e164(stripped)
    return text


def _identity_matches(identity: str, uri: Uri) -> bool:
    """``"2001"`` matches a URI whose user is 2001; ``"sip:2001@10.0.0.21"`` matches that
    user at that host (and port, if the identity names one)."""
    if not isinstance(uri, SipUri):
        return False
    if ":" not in identity and "@" not in identity:
        return uri.user == identity
    try:
        wanted = parse_uri(identity if ":" in identity else f"sip:{identity}")
    except RemoteSipError:
        return False
    if not isinstance(wanted, SipUri):
        return False
    if wanted.user is not None and wanted.user != uri.user:
        return False
    if wanted.host.lower() != uri.host.lower():
        return False
    return wanted.port is None or wanted.port == (uri.port or 5060)


def _info_digit(content_type: str | None, body: bytes) -> str | None:
    """The key in a DTMF INFO: ``Signal=5`` (application/dtmf-relay) or ``5``
    (application/dtmf)."""
    text = body.decode("ascii", "replace").strip()
    if content_type == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal":
                value = value.strip()
                return value if len(value) == 1 and value in "0123456789*#ABCD" else None
        return None
    if content_type == "application/dtmf" and len(text) == 1 and text in "0123456789*#ABCD":
        return text
    return None


def _party(addr: NameAddr) -> str:
    uri = addr.uri
    if isinstance(uri, SipUri) and uri.user:
        return uri.user
    return str(uri)


def _utc_now() -> datetime:
    return datetime.now(UTC)
