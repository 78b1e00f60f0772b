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
import ipaddress
import logging
import secrets
import uuid
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config, OperatorSettings, ServiceSettings
from ..media.announcer import Announcer, PacketPacer, PromptSource, RingbackTone, beeps
from ..media.clock import MediaClock
from ..media.dtmf import DtmfDetector
from ..media.recorder import RecordingDirection
from ..media.relay import (
    LegMode,
    MediaSession,
    NoPortsAvailable,
    PortAllocator,
    RtpLeg,
    StreamRewriter,
)
from ..ratelog import RateLimitedLog
from ..recording_state import RecordingState
from ..records.errors import RecordingActionError
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
    RecordingAction,
)
from .dtmf_codes import CodeMatcher
from .offer_answer import RECORDABLE_CODECS, LegSdp

if TYPE_CHECKING:
    from ..sip.transport import SipTransport
    from .recording import ActiveRecording, RecordingService

log = logging.getLogger(__name__)
flood_log = RateLimitedLog(log)  # for what a flood of INVITEs would log once each

#: Methods refused with a reason that says why, in a dialog or outside one alike: REFER
#: (no transfers yet), SUBSCRIBE (no event package, so not ``refer``: RFC 6665 §4.2.2)
#: and NOTIFY (we never subscribe, so no subscription exists: RFC 6665 §4.1.3).
REFUSED_METHODS: Mapping[str, tuple[int, str]] = {
    "REFER": (501, "Not Implemented (call transfer is not supported)"),
    "SUBSCRIBE": (489, "Bad Event (no event packages are supported)"),
    "NOTIFY": (481, "Subscription Does Not Exist"),
}
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
        if method in ("BYE", "INFO", "UPDATE"):
            self.core.respond(event.transaction, 481, now=self.now())
        else:
            self.answer_other(event)

    def answer_other(self, event: RequestReceived, dialog: Dialog | None = None) -> None:
        """OPTIONS, the refused methods and anything else the call flow does not handle,
        answered the same in a dialog and outside one."""
        method = event.request.method
        now = self.now()
        if method == "OPTIONS":
            headers = [("Allow", self.core.allow), ("Accept", "application/sdp")]
            self.core.respond(event.transaction, 200, now=now, dialog=dialog, headers=headers)
        elif method in REFUSED_METHODS:
            status, reason = REFUSED_METHODS[method]
            self.core.respond(event.transaction, status, reason, now=now, dialog=dialog)
        else:
            headers = [("Allow", self.core.allow)]
            self.core.respond(event.transaction, 405, now=now, dialog=dialog, headers=headers)
        self.flush()

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
        self.failure_headers: tuple[tuple[str, str], ...] = ()  # e.g. a Warning with a 488
        self.started_at = datetime.now(UTC)
        self.caller = _party(invite.request.from_)
        self.callee = _party(invite.request.to)
        # leg A
        self.a_txn: ServerTransaction = invite.transaction
        self.a_dialog: Dialog | None = None
        self.a_answered = False
        self.a_offer: sdp.SessionDescription | None = None  # the caller's first description
        advertise = self.config.sip.advertise
        self.a = LegSdp("caller", secrets.randbelow(2**31), advertise)
        self.early_media = False  # the notice plays in a 183 (else after a 200)
        # leg B
        self.b_txn: ClientTransaction | None = None
        self.b_dialog: Dialog | None = None
        self.b = LegSdp("call taker", secrets.randbelow(2**31), advertise)
        # media
        self.media = MediaSession(
            b2bua.allocator,
            self.config.sip.advertise,
            nat_grace=self.config.media.nat_latch_seconds,
        )
        self.a_leg: RtpLeg | None = None
        self.b_leg: RtpLeg | None = None
        self.pacer: PacketPacer | None = None
        self.recording: ActiveRecording | None = None
        self.catalog_id: str | None = None
        self._offers: dict[ClientTransaction, LegSdp] = {}  # our re-offers awaiting answers
        self._hold_waiter: asyncio.Future[None] | None = None  # resolved when a hold changes
        self._holding: set[str] = set()  # the parties holding the call now
        self._background: set[asyncio.Task[None]] = set()  # hold events being written
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
        """Check the INVITE, anchor leg A's media on us, answer (200 or 183), record the
        call in the catalog.

        An INVITE without an offer (late offer) gets our offer in a 200, and its answer
        comes in the ACK: a 183 could carry the offer reliably only with PRACK (RFC 3262),
        which recproxy does not do, so such a call is answered at once, notice or not."""
        request = self.invite.request
        if not _accepts_sdp(request):
            self._respond(self.a_txn, 406, headers=[("Accept", "application/sdp")])
            raise _CallEnded(CallOutcome.FAILED, "caller (Accept excludes application/sdp)")
        if request.body:
            try:
                self.a_offer = sdp.SessionDescription.parse(request.body)
            except RemoteSipError:
                self.failure_status = 400
                raise _CallEnded(CallOutcome.FAILED, "caller (malformed SDP)") from None
        # a late offer's leg is IPv4 (our offer says so); otherwise the offer's family
        a_host = self._media_host_for(self.a_offer) if self.a_offer else self.config.sip.advertise
        await self._plan()
        try:
            self.a_leg = await self.media.open_leg("caller", host=a_host)
        except NoPortsAvailable:
            flood_log.error("no-rtp-ports", "call %s: no RTP ports left", self.id)
            self.failure_status = 503
            raise _CallEnded(CallOutcome.FAILED, "us (no RTP ports)") from None
        self.a.port = self.a_leg.port
        self.a.address = self.a_leg.local_host
        if self.a_offer is not None:
            try:
                answer, audio = self.a.answer(self.a_offer)
            except RemoteSipError as exc:
                self.failure_status = exc.status
                raise _CallEnded(CallOutcome.FAILED, "caller (no codec in common)") from None
            self._configure_leg(self.a_leg, audio)
            # with no notice to play the call is answered only when the far end answers
            self.early_media = (
                self.config.notice.mode == "early-media" or self.notice_prompt is None
            )
        else:
            answer = self.a.offer(RECORDABLE_CODECS, sdp.Direction.SENDRECV)
            self.a.answer_in_ack = True
        self.a_dialog = self.core.accept_dialog(self.a_txn)
        self.a_dialog.user_data = self
        status = 183 if self.early_media else 200
        self._respond(self.a_txn, status, dialog=self.a_dialog, body=answer.serialize())
        self.a_answered = not self.early_media
        call_row = await self.b2bua.catalog.calls.create_call(
            sip_call_id=request.call_id,
            caller=self.caller,
            callee=self.callee,
            direction=CallDirection.OUTBOUND if self.outbound else CallDirection.INBOUND,
            service=self.service.name if self.service else None,
            started_at=self.started_at,
            config_version=self.config.version,
            call_id=self.id,  # one id in log lines and the catalog
        )
        self.catalog_id = call_row.id
        if self.a_answered:
            await self.b2bua.catalog.calls.update_call(self.catalog_id, answered_at=_utc_now())
        while self.a.audio is None:  # a late offer: the answer is in the ACK
            event = await self._next()
            if event is not None:
                self._common(event)

    async def _plan(self) -> None:
        """Direction (P1), service (P3), the do-not-record list (P14) and so the notice,
        the prompt, whether to record, and where the call goes."""
        config = self.config
        request = self.invite.request
        dialled = _user(request.uri) or _user(request.to.uri) or ""
        outbound_allowed = config.routing.trunk is not None and config.sip.is_internal(
            self.invite.source[0]
        )
        number = config.numbers.normalise(dialled)  # E.164, or an extension as it is
        rule = config.routing.rule_for(number, outbound_allowed=outbound_allowed)
        self.outbound = rule is not None and rule.direction == "outbound"
        self.service = config.services.get(rule.service) if rule and rule.service else None
        if self.outbound:
            assert config.routing.trunk is not None
            trunk = parse_uri(config.routing.trunk)
            self.target = replace(trunk, user=dialled) if isinstance(trunk, SipUri) else trunk
        elif rule is not None and rule.call_taker is not None:
            self.target = parse_uri(rule.call_taker)
        if dialled:
            self.callee = number
        self.caller = config.numbers.normalise(self.caller)
        service = self.service
        wants_notice = not self.outbound
        if service is not None and service.notice is not None:
            wants_notice = service.notice
        self.record = service.record if service is not None else True
        prompt = service.prompt if service is not None and service.prompt else None
        if not self.outbound and self.caller.startswith("+"):
            listed = await self.b2bua.catalog.do_not_record.get(self.caller)
            if listed is not None:  # a written request not to be recorded
                self.do_not_record = True
                self.record = False
                wants_notice = True
                prompt = config.notice.no_record_prompt
                log.info("call %s: caller is on the do-not-record list", self.id)
        if wants_notice:
            self.notice_prompt = self.b2bua.prompt(prompt or config.notice.prompt)

    async def _play_notice(self) -> None:
        """Play the whole notice to the caller; store the consent receipt (P13).

        A caller who puts us on hold during the notice (sendonly, inactive, c=0.0.0.0)
        cannot hear it: it stops, and starts again from the beginning when the caller
        resumes, so that the caller hears it whole before the call taker is invited.
        The receipt counts the restarts and the time held."""
        assert self.a_leg is not None and self.a.audio is not None
        assert self.notice_prompt is not None
        self._set_phase(CallPhase.NOTICE)
        clock = self.b2bua.clock
        notice = self.notice_prompt
        self.pacer = pacer = Announcer(
            notice.pcm,  # type: ignore[arg-type]
            self.a.audio.encoding,
            self.a.audio.send_payload_type,
            clock.now(),
            secrets.randbits(32),
            secrets.randbits(16),
            secrets.randbits(32),
        )
        started_at = _utc_now()
        caller_left = False
        restarts = 0
        held = 0.0
        sent_before = 0  # packets of the attempts a hold cut short
        try:
            while True:
                if self.a.holds:
                    held_since = self.b2bua.now()
                    await self._until(self._hold_change())
                    held += self.b2bua.now() - held_since
                    continue
                if pacer.packets_sent > sent_before:  # a hold cut it short: from the start
                    restarts += 1
                    sent_before = pacer.packets_sent
                    pacer.set_source(PromptSource(notice.pcm), clock.now())  # type: ignore[arg-type]
                waiter = self._hold_change()
                done = clock.play(self.a_leg, pacer)
                done.add_done_callback(_resolver(waiter))
                await self._until(waiter)
                _raise_media_error(done)
                if not done.done() or done.cancelled():  # a hold came (and maybe went)
                    clock.silence(self.a_leg)
                    continue
                # the last packet has been sent, not heard: the notice has played only
                # when that packet's audio has run out too
                await self._pause(pacer.ptime)
                break
        except _CallEnded as ended:
            caller_left = ended.by.startswith("caller")
            raise
        finally:
            clock.silence(self.a_leg)
            played_ms = min(round((pacer.packets_sent - sent_before) * pacer.ptime * 1000),
                            notice.duration_ms)  # fmt: skip
            await self._consent_receipt(
                started_at, played_ms, caller_left, restarts=restarts, held_ms=round(held * 1000)
            )

    async def _ring_call_taker(self) -> None:
        """Invite the call taker; ringback to the caller until an answer, a refusal or
        the ring timeout (none while the caller holds the call)."""
        audio = self.a.audio
        assert self.a_leg is not None and audio is not None
        self._set_phase(CallPhase.RINGING)
        self.b_leg = await self.media.open_leg("call_taker", host=self._call_taker_media_host())
        self.b.port = self.b_leg.port
        self.b.address = self.b_leg.local_host
        clock = self.b2bua.clock
        ringback = RingbackTone(self.config.notice.ringback)
        if self.pacer is None:  # no notice was played: ringback starts the stream
            self.pacer = PacketPacer(
                ringback,
                audio.encoding,
                audio.send_payload_type,
                clock.now(),
                secrets.randbits(32),
                secrets.randbits(16),
                secrets.randbits(32),
            )
        else:
            self.pacer.set_source(ringback, clock.now())
        if not self.a.holds:
            clock.play(self.a_leg, self.pacer)
        offer = self.b.offer(self._b_codecs(), sdp.Direction.SENDRECV)
        target = self.target
        invite = build_request(
            "INVITE",
            target,
            from_=self._b_from(),
            to=f"<{target}>",
            contact=self.core.default_contact(),
            local_host=self.config.sip.advertise,
            body=offer.serialize(),
            headers=[("Allow", self.core.allow)],
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
        assert self.b_leg is not None
        dialog = event.dialog
        if dialog is None:
            raise RuntimeError("2xx without a dialog")
        dialog.user_data = self
        self.b_dialog = dialog
        self.core.send_ack(dialog, dialog.create_ack(event.response.cseq.number), self.b2bua.now())
        self.b2bua.flush()
        try:
            answer = sdp.SessionDescription.parse(event.response.body)
            audio = self.b.accept_answer(answer)
            _check_family(self.b_leg, sdp.media_address(answer, audio.media_index))
        except RemoteSipError as exc:
            log.warning("call %s: call taker's answer unusable: %s", self.id, exc.reason)
            raise _CallEnded(CallOutcome.FAILED, "call taker (bad SDP answer)") from None
        self._configure_leg(self.b_leg, audio)
        if self.outbound:  # the member of staff placed the call: leg A is theirs
            self.operator_settings = self._identify(self.invite.request)
        else:  # whoever answered leg B
            self.operator_settings = self._identify(event.response, self.target)

    async def _talk(self) -> None:
        """Bridge both legs, record, and relay until one side hangs up."""
        assert self.a_leg is not None and self.b_leg is not None and self.pacer is not None
        assert self.a.audio is not None and self.b.audio is not None
        clock = self.b2bua.clock
        clock.silence(self.a_leg)
        # the caller's stream continues from the last notice/ringback packet
        self.a_leg.rewriter = StreamRewriter(
            self.pacer.ssrc, self.pacer.next_sequence, self.pacer.next_timestamp
        )
        if not self.a_answered:
            assert self.a.local is not None  # the answer of the 183, again (RFC 3261 §13.2.1)
            self._respond(self.a_txn, 200, dialog=self.a_dialog, body=self.a.local.serialize())
            self.a_answered = True
            await self.b2bua.catalog.calls.update_call(self._catalog_id, answered_at=_utc_now())
        public_leg, staff_leg = self._public_and_staff()
        public_audio, staff_audio = (
            (self.b.audio, self.a.audio) if self.outbound else (self.a.audio, self.b.audio)
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
        # a hold or codec change of one party before the bridge reaches the other now
        if self.recording is not None:
            self.recording.pair.caller.set_held(bool(self._holding))
            self.recording.pair.taker.set_held(bool(self._holding))
        self._relay()
        self._sync(self.b)
        self._sync(self.a)
        await self.b2bua.catalog.calls.update_call(
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
        if self._background:  # hold events go in before the recording closes
            await asyncio.wait(set(self._background), timeout=5)
        if self.recording is not None and self.recording_state != "discarded":
            try:
                await self.b2bua.recordings.finish(self.recording)
            except Exception:
                log.exception("call %s: closing the recording failed", self.id)
        if self.catalog_id is not None:
            try:
                await self.b2bua.catalog.calls.update_call(
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
            side = self._side_of(event.dialog)
            if side is not None and side.answer_in_ack:
                self._answer_in_ack(side, event.request.body)
            return
        if isinstance(event, ResponseReceived):
            self._response_in_call(event)
            return
        if isinstance(event, TransactionTimedOut):
            side = self._offers.pop(event.transaction, None)
            if side is not None:
                log.warning("call %s: the %s never answered our offer", self.id, side.party)
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
            self._offer_in_call(event, self.a if from_a else self.b)
            return
        if method == "INFO" and self.phase is CallPhase.BRIDGED:
            self._info_in_call(event, from_a)
            return
        if method == "INFO":  # before the bridge: nothing to pass on
            self._respond(event.transaction, 200, dialog=event.dialog)
            return
        self.b2bua.answer_other(event, event.dialog)

    # ==================================================================================
    # Offers in the call: codec policy and hold (RFC 3264), from either party, any phase

    def _offer_in_call(self, event: RequestReceived, side: LegSdp) -> None:
        """A re-INVITE or UPDATE: we answer it ourselves from what we accept (the codec
        policy of ``offer_answer``); the other party learns only what it must — a hold or
        a codec change — in an offer of ours (``_sync``).  An offer we cannot accept gets
        its error (488, 400) and the call keeps its media."""
        txn = event.transaction
        if side in self._offers.values():
            self._respond(txn, 491, dialog=event.dialog)  # glare (RFC 3261 §14.2)
            return
        body = event.request.body
        if not body:
            wanted = self._wanted(side)
            if event.request.method == "UPDATE" or wanted is None:
                self._respond(txn, 200, dialog=event.dialog)
                return
            # a re-INVITE without an offer: ours goes in the 200, its answer in the ACK
            offer = side.offer((wanted[0],), wanted[1])
            side.answer_in_ack = True
            self._respond(txn, 200, dialog=event.dialog, body=offer.serialize())
            return
        try:
            offer_sdp = sdp.SessionDescription.parse(body)
            leg = self._leg_of(side)
            if leg is not None and offer_sdp.first_audio_index() is not None:
                _check_family(leg, sdp.media_address(offer_sdp, in_call=True))
            answer, audio = side.answer(offer_sdp)
        except RemoteSipError as exc:
            # refused: the call and its media stay as they were
            log.info("call %s: the %s's offer refused (%s)", self.id, side.party, exc.status)
            self._respond(txn, exc.status, dialog=event.dialog, headers=list(exc.extra_headers))
            return
        self._respond(txn, 200, dialog=event.dialog, body=answer.serialize())
        self._use(side, audio, body)
        self._sync(self._other(side))

    def _answer_in_ack(self, side: LegSdp, body: bytes) -> None:
        """The answer to the offer we put in a 2xx (a late offer, or a re-INVITE without
        one).  A call that never had media ends; one that had keeps it."""
        side.answer_in_ack = False
        try:
            answer = sdp.SessionDescription.parse(body)
            first = side.audio is None
            audio = side.accept_answer(answer)
        except RemoteSipError as exc:
            if side.audio is None:
                raise _CallEnded(
                    CallOutcome.FAILED, "caller (no usable answer in the ACK)"
                ) from None
            log.info("call %s: the %s's answer in the ACK unusable (%s)", self.id, side.party,
                     exc.status)  # fmt: skip
            return
        if first:  # the late offer's answer: leg A's media is set up now
            self.a_offer = answer
            if self.a_leg is not None:
                self._configure_leg(self.a_leg, audio)
            return
        self._use(side, audio, body)
        self._sync(self._other(side))

    def _response_in_call(self, event: ResponseReceived) -> None:
        txn = event.transaction
        side = self._offers.get(txn)
        if side is None:
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
        del self._offers[txn]
        if txn.method == "INVITE" and status < 300 and event.dialog is not None:
            ack = event.dialog.create_ack(event.response.cseq.number)
            self.core.send_ack(event.dialog, ack, self.b2bua.now())
            self.b2bua.flush()
        if status == 491:  # both offered at once: ours again after 2.1-4 s (RFC 3261 §14.1)
            delay = 2.1 + secrets.randbelow(1900) / 1000
            asyncio.get_running_loop().call_later(delay, self._offer_again, side)
            return
        if status >= 300:
            log.warning("call %s: the %s refused our offer (%s)", self.id, side.party, status)
            return
        try:
            audio = side.accept_answer(sdp.SessionDescription.parse(event.response.body))
        except RemoteSipError as exc:
            log.warning("call %s: the %s's answer unusable (%s)", self.id, side.party, exc.status)
            return
        self._use(side, audio, event.response.body)
        self._sync(side)  # what changed on the other side meanwhile
        self._sync(self._other(side))

    def _use(self, side: LegSdp, audio: sdp.NegotiatedAudio, body: bytes) -> None:
        """A completed exchange with one party: its address, payload types and codec to
        the leg and the recorder; its hold to the relay, the notice and the catalog."""
        leg = self._leg_of(side)
        if leg is not None:
            self._remote_sdp(leg, body)
            self._payload_types(leg, audio)
        direction = self._recorder_of(side)
        if direction is not None:
            direction.set_codec(audio.encoding)
        if side is self.a and self.pacer is not None:  # the notice or ringback
            self.pacer.codec = audio.encoding
            self.pacer.payload_type = audio.send_payload_type
        self._hold_changed(side)
        self._relay()

    def _wanted(self, side: LegSdp) -> tuple[str, sdp.Direction] | None:
        """What ``side`` should have: before the bridge, its codec both ways; once bridged, the
        other party's codec (the relay does not transcode) and its direction (a hold
        passed on: RFC 3264 §8.4)."""
        other = self._other(side)
        if side.audio is None:
            return None
        if self.phase is not CallPhase.BRIDGED or other.audio is None:
            return side.audio.encoding, sdp.Direction.SENDRECV
        return other.audio.encoding, other.direction

    def _sync(self, side: LegSdp) -> None:
        """Offer ``side`` what it should have, if that is not what it has: one offer of
        ours at a time, never while a party's dialog is not up, never one it refused."""
        wanted = self._wanted(side)
        dialog = self._dialog_of(side)
        if (
            wanted is None
            or self._offers
            or self.phase is not CallPhase.BRIDGED
            or dialog is None
            or dialog.state is not DialogState.CONFIRMED
            or wanted == side.wants()
            or wanted == side.refused
        ):
            return
        side.refused = wanted  # until it is answered
        offer = side.offer((wanted[0],), wanted[1])
        method = "INVITE"
        request = dialog.create_request(
            method, body=offer.serialize(), content_type="application/sdp",
            headers=[("Allow", self.core.allow)],
        )  # fmt: skip
        self._offers[self._send(request, dialog=dialog)] = side
        log.info("call %s: offering the %s %s %s", self.id, side.party, *(w for w in wanted))

    def _offer_again(self, side: LegSdp) -> None:
        if not self.finished:
            side.refused = None
            self._sync(side)

    def _hold_changed(self, side: LegSdp) -> None:
        """A party holds or resumes: the notice pauses, ringback stops, the recorder does
        not count the silence as missing audio, and the hold interval is a recording
        event (``hold`` / ``unhold``, with the party)."""
        holding = side.party in self._holding
        if side.holds == holding:
            return
        if side.holds:
            self._holding.add(side.party)
        else:
            self._holding.discard(side.party)
        log.info("call %s: the %s %s the call", self.id, side.party,
                 "holds" if side.holds else "resumes")  # fmt: skip
        if self._hold_waiter is not None:
            _resolve(self._hold_waiter)
        if side is self.a and self.phase is CallPhase.RINGING and self.a_leg is not None:
            clock = self.b2bua.clock
            if side.holds:
                clock.silence(self.a_leg)
            elif self.pacer is not None:
                self.pacer.set_source(RingbackTone(self.config.notice.ringback), clock.now())
                clock.play(self.a_leg, self.pacer)
        recording = self.recording
        if recording is None:
            return
        recording.pair.caller.set_held(bool(self._holding))
        recording.pair.taker.set_held(bool(self._holding))
        if self.recording_state == "recording":
            action = RecordingAction.HOLD if side.holds else RecordingAction.UNHOLD
            task = asyncio.get_running_loop().create_task(
                self._hold_event(recording.id, action, side)
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _hold_event(self, recording_id: str, action: RecordingAction, side: LegSdp) -> None:
        direction = side.direction.value
        try:
            await self.b2bua.catalog.events.add_recording_event(
                recording_id, action, actor=side.party,
                reason=f"{side.party} {'held' if side.holds else 'resumed'} ({direction})",
            )  # fmt: skip
        except Exception:
            log.exception("call %s: the %s event was not stored", self.id, action.value)

    def _hold_change(self) -> asyncio.Future[None]:
        """A future resolved at the next hold or resume of either party."""
        self._hold_waiter = asyncio.get_running_loop().create_future()
        return self._hold_waiter

    def _relay(self) -> None:
        """Once bridged, relay towards a party only while it receives: nothing reaches a
        party that holds us (RFC 3264 §8.4).  Packets still reach the recorder."""
        if self.phase is not CallPhase.BRIDGED or self.a_leg is None or self.b_leg is None:
            return
        self.a_leg.mode = LegMode.BRIDGED if self.b.direction.receives else LegMode.HOLD
        self.b_leg.mode = LegMode.BRIDGED if self.a.direction.receives else LegMode.HOLD

    def _side_of(self, dialog: Dialog | None) -> LegSdp | None:
        if dialog is None:
            return None
        return self.a if dialog is self.a_dialog else self.b if dialog is self.b_dialog else None

    def _other(self, side: LegSdp) -> LegSdp:
        return self.b if side is self.a else self.a

    def _leg_of(self, side: LegSdp) -> RtpLeg | None:
        return self.a_leg if side is self.a else self.b_leg

    def _dialog_of(self, side: LegSdp) -> Dialog | None:
        return self.a_dialog if side is self.a else self.b_dialog

    def _recorder_of(self, side: LegSdp) -> RecordingDirection | None:
        """The recorder's direction of a leg: left (caller) for the member of the public."""
        if self.recording is None:
            return None
        public = self.b if self.outbound else self.a
        pair = self.recording.pair
        return pair.caller if side is public else pair.taker

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
                await catalog.recordings.set_recording_state(
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
        audio = self.a.audio if self.outbound else self.b.audio
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
        """Handle the call's events until ``done`` resolves; a media error in ``done``
        (the clock could not play on our leg) ends the call."""
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
        _raise_media_error(done)

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
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        if txn.state not in (TransactionState.TRYING, TransactionState.PROCEEDING) and not (
            txn.state is TransactionState.ACCEPTED and 200 <= status < 300
        ):
            return  # already answered (e.g. the core sent 487 after a CANCEL)
        extra = [
            *(headers or []),
            *([("Allow", self.core.allow)] if txn.method == "INVITE" else []),
        ]
        self.core.respond(
            txn, status, now=self.b2bua.now(), dialog=dialog, body=body, headers=extra
        )
        self.b2bua.flush()

    def _send(self, request: Request, *, dialog: Dialog | None = None) -> ClientTransaction:
        txn = self.core.send_request(request, self.b2bua.now(), dialog=dialog)
        txn.user_data = self
        self.b2bua.flush()
        return txn

    def _b_codecs(self) -> tuple[str, ...]:
        """What leg B is offered: the caller's codec first, then the other recordable codec
        if the caller listed it too — the relay never transcodes, so nothing else."""
        assert self.a.audio is not None and self.a_offer is not None
        first = self.a.audio.encoding
        return (first, *(c for c in sdp.recordable_codecs(self.a_offer) if c != first))

    def _b_from(self) -> str:
        """Leg B's From: the caller's number and name, at our host."""
        request_from = self.invite.request.from_
        user = request_from.uri.user if isinstance(request_from.uri, SipUri) else None
        uri = SipUri(host=self.config.sip.advertise, user=user or "anonymous")
        display = f"{request_from.display} " if request_from.display else ""
        return f"{display}<{uri}>"

    def _configure_leg(self, leg: RtpLeg, audio: sdp.NegotiatedAudio) -> None:
        leg.set_remote(audio.remote_address, audio.remote_port)
        self._payload_types(leg, audio)

    @staticmethod
    def _payload_types(leg: RtpLeg, audio: sdp.NegotiatedAudio) -> None:
        leg.audio_payload_type = audio.receive_payload_type
        leg.dtmf_payload_type = audio.receive_telephone_event

    def _remote_sdp(self, leg: RtpLeg | None, body: bytes) -> None:
        """A new SDP from a leg's party: follow its media address (hold keeps it, and so
        does an address we cannot use)."""
        if leg is None:
            return
        try:
            description = sdp.SessionDescription.parse(body)
            index = description.first_audio_index()
            if index is None:
                return
            address = _check_family(leg, sdp.media_address(description, index, in_call=True))
        except RemoteSipError:
            return
        port = description.media[index].port
        if not address.hold and port != 0:
            leg.set_remote(address.host, port)

    def _media_host_for(self, offer: sdp.SessionDescription) -> str:
        """Our address for the caller's leg: in the family of the offer's ``c=``;
        488 with a Warning when that address is unusable or we have none in its family."""
        try:
            address = sdp.media_address(offer)
            host = self.config.sip.media_host(address.family)
            if host is None:
                raise sdp.unusable_address(f"no IPv{address.family} media address here")
        except RemoteSipError as exc:
            self.failure_status = exc.status
            self.failure_headers = exc.extra_headers
            raise _CallEnded(CallOutcome.FAILED, "caller (unusable media address)") from None
        return host

    def _call_taker_media_host(self) -> str:
        """Our address for the call taker's leg: IPv6 when its URI host is an IPv6
        literal, else IPv4."""
        host = self.target.host if isinstance(self.target, SipUri) else ""
        try:
            family = ipaddress.ip_address(host).version
        except ValueError:
            family = 4
        ours = self.config.sip.media_host(family)
        if ours is None:
            log.error("call %s: no IPv%d media address for the call taker", self.id, family)
            self.failure_status = 503
            raise _CallEnded(CallOutcome.FAILED, "us (no media address for the call taker)")
        return ours

    async def _consent_receipt(
        self,
        started_at: datetime,
        played_ms: int,
        left: bool,
        *,
        restarts: int = 0,
        held_ms: int = 0,
    ) -> None:
        """P13: what the caller was told — which notice, from when, how much of it (of its
        last start), how often a hold restarted it and for how long it was held; a call
        with no notice (outbound, or a service without one) gets a receipt saying so."""
        if self.catalog_id is None:
            return
        notice = self.notice_prompt
        mode = NoticeMode.EARLY_MEDIA if self.early_media else NoticeMode.ANSWER
        await self.b2bua.catalog.calls.add_consent_receipt(
            self.catalog_id,
            mode=mode if notice else NoticeMode.NONE,
            notice_sha256=notice.sha256 if notice else None,
            notice_version=notice.name if notice else None,
            started_at=started_at if notice else None,
            played_ms=played_ms,
            notice_ms=notice.duration_ms if notice else 0,
            completed=notice is not None and not left and played_ms >= notice.duration_ms - 20,
            caller_left_during_notice=left,
            do_not_record=self.do_not_record,
            notice_restarts=restarts,
            held_ms=held_ms,
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
            self.core.respond(
                self.a_txn,
                status,
                now=self.b2bua.now(),
                dialog=self.a_dialog,
                headers=self.failure_headers,
            )


@dataclass(frozen=True)
class _HangupRequested:
    """Put on a call's queue to end it from outside (shutdown, an operator)."""

    reason: str


def _raise_media_error(done: asyncio.Future[None]) -> None:
    """End the call if ``done`` (a player of the media clock) failed: the clock could not
    play on our leg, so the caller has not heard what we meant to play."""
    if done.done() and not done.cancelled() and done.exception() is not None:
        raise _CallEnded(CallOutcome.FAILED, f"recproxy (media error: {done.exception()!r})")


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _resolver(future: asyncio.Future[None]) -> Callable[[object], None]:
    """A done-callback that resolves ``future`` (when another future is done)."""
    return lambda _: _resolve(future)


def _refusal_outcome(status: int) -> CallOutcome:
    if status in (486, 600):
        return CallOutcome.CALLTAKER_BUSY
    if status in (603, 403):
        return CallOutcome.CALLTAKER_DECLINED
    if status in (408, 480):
        return CallOutcome.NO_ANSWER
    return CallOutcome.FAILED


def _user(uri: Uri) -> str | None:
    return uri.user if isinstance(uri, SipUri) and uri.user else None


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


def _accepts_sdp(request: Request) -> bool:
    """Whether the INVITE's ``Accept`` lets us answer with SDP: no Accept means
    application/sdp (RFC 3261 §20.1); otherwise a range covering it with q above 0."""
    if not request.headers.get_lines("accept"):
        return True
    for value in request.headers.get_all("accept"):
        media_range, *params = (part.strip().lower() for part in value.split(";"))
        if media_range.replace(" ", "") not in ("application/sdp", "application/*", "*/*"):
            continue
        quality = next((p[2:].strip() for p in params if p.startswith("q=")), "1")
        try:
            if float(quality) > 0:
                return True
        except ValueError:
            continue
    return False


def _party(addr: NameAddr) -> str:
    uri = addr.uri
    if isinstance(uri, SipUri) and uri.user:
        return uri.user
    return str(uri)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _check_family(leg: RtpLeg, address: sdp.MediaAddress) -> sdp.MediaAddress:
    """488 for an address a leg's sockets cannot reach: they are of one family."""
    if not address.hold and address.family != leg.family:
        raise sdp.unusable_address("the media address family of a call cannot change")
    return address
