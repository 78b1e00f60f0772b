"""The call taker's recording switch (P14): stop, discard and resume a live recording,
asked for by DTMF codes keyed on the call taker's phone or through the API; and the
hold events of a recorded call.

The state checks live here (stop needs a running recording, resume a stopped one, a
discarded recording takes nothing more); whether a *person* may act on a call is the
records layer's decision.  The call taker's digits are held back until they are known
not to be part of a code (``CodeMatcher``), so a code never reaches the caller.  Every
action is a catalog recording event and a :class:`~proxy.events.RecordingSwitched`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Hashable, Mapping
from typing import TYPE_CHECKING, Any

from ..events import Publish, RecordingSwitched
from ..media.dtmf import DtmfDetector
from ..media.relay import RtpLeg
from ..recording_state import RecordingState
from ..records.errors import RecordingActionError
from ..sip.events import RequestReceived
from ..storage.catalog import Attribution, Catalog, EventChannel, RecordingAction
from .dtmf_codes import CodeDecision, CodeMatcher
from .media_wiring import CallMedia
from .offer_answer import LegSdp
from .sip_legs import SipLegs

if TYPE_CHECKING:
    from .recording import ActiveRecording, RecordingService

log = logging.getLogger(__name__)

_KEYS = "0123456789*#ABCD"


class RecordingSwitch:
    """One call's recording, as the call taker switches it; ``state`` is ``None`` until
    the call is bridged with a recording."""

    def __init__(
        self,
        call_id: str,
        *,
        catalog: Catalog,
        recordings: RecordingService,
        media: CallMedia,
        legs: SipLegs,
        codes: Mapping[str, str],
        now: Callable[[], float],
        publish: Publish,
    ) -> None:
        self.call_id = call_id
        self.catalog = catalog
        self.recordings = recordings
        self.media = media
        self.legs = legs
        self.now = now
        self.publish = publish
        self.recording: ActiveRecording | None = None
        self.state: RecordingState | None = None
        self.outbound = False
        self.operator: str | None = None
        self.staff: LegSdp | None = None  # the member of staff's side (for the beeps)
        self._lock = asyncio.Lock()
        self._matcher = CodeMatcher(codes)
        self._detector = DtmfDetector()
        self._held_events: dict[Hashable, list[bytes]] = {}
        self._event_fate: dict[int, bool] = {}  # RTP timestamp → passed on (True) or not
        self._held_infos: dict[Hashable, tuple[bytes, str]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._hold_writes: set[asyncio.Task[None]] = set()  # awaited before the close
        self._actions: set[asyncio.Task[None]] = set()  # DTMF actions under way

    def arm(
        self,
        recording: ActiveRecording | None,
        *,
        outbound: bool,
        operator: str | None,
        staff: LegSdp,
    ) -> None:
        """The call is bridged: the switch works from now on."""
        self.recording = recording
        self.state = RecordingState.RECORDING if recording is not None else None
        self.outbound = outbound
        self.operator = operator
        self.staff = staff

    def hand_over(self, *, operator: str | None, staff: LegSdp) -> None:
        """A transfer: the new call taker's codes and beeps from now on."""
        self.operator = operator
        self.staff = staff

    @property
    def keeps_recording(self) -> bool:
        """Whether the recording is to be finished (closed) when the call ends."""
        return self.recording is not None and self.state is not RecordingState.DISCARDED

    # -- the switch ------------------------------------------------------------------------

    async def act(self, action: str, *, actor: str, channel: str, reason: str) -> dict[str, Any]:
        """Stop (keep what was recorded), discard (destroy it) or resume, at the next
        20 ms tick; every action is a recording event with who, when, why and how."""
        async with self._lock:
            recording, state = self.recording, self.state
            if recording is None or state is None:
                raise RecordingActionError("this call has no recording")
            if state is RecordingState.DISCARDED:
                raise RecordingActionError("the recording was discarded")
            if action == "stop" and state is not RecordingState.RECORDING:
                raise RecordingActionError("the recording is already stopped")
            if action == "resume" and state is not RecordingState.STOPPED:
                raise RecordingActionError("the recording is not stopped")
            by = Attribution(actor, EventChannel(channel), reason)
            if action in ("stop", "resume"):
                if action == "stop":
                    recording.pair.pause("skip")  # the audio ends; a resume starts a new span
                    self.state = RecordingState.STOPPED
                else:
                    recording.pair.resume()
                    self.state = RecordingState.RECORDING
                await recording.row_written()  # right after the bridge it may not be yet
                if recording.refused is not None:
                    raise RecordingActionError(f"the recording is not kept: {recording.refused}")
                await self.catalog.recordings.set_recording_state(recording.id, self.state, by)
            elif action == "discard":
                self.media.unrecord(self.outbound)
                self.state = RecordingState.DISCARDED
                await self.recordings.discard(recording, by)
            else:
                raise RecordingActionError(f"unknown action {action!r}")
            log.info(
                "call %s: recording %s %s by %s via %s: %s",
                self.call_id, recording.id, action, actor, channel, reason,
            )  # fmt: skip
            self.publish(
                RecordingSwitched(recording.id, self.call_id, action, actor, channel, reason)
            )
            return {"id": self.call_id, "recording_id": recording.id, "recording": self.state.value}

    # -- holds -------------------------------------------------------------------------------

    def hold_changed(self, side: LegSdp, *, anyone_holds: bool) -> None:
        """A party held or resumed: the recorder does not count the silence as missing
        audio, and a running recording gets a ``hold`` / ``unhold`` event."""
        recording = self.recording
        if recording is None:
            return
        recording.pair.caller.set_held(anyone_holds)
        recording.pair.taker.set_held(anyone_holds)
        if self.state is RecordingState.RECORDING:
            action = RecordingAction.HOLD if side.holds else RecordingAction.UNHOLD
            reason = f"{side.party} {'held' if side.holds else 'resumed'} ({side.direction.value})"
            self._spawn(self._hold_writes, self._hold_event(recording, action, side.party, reason))

    async def _hold_event(
        self, recording: ActiveRecording, action: RecordingAction, party: str, reason: str
    ) -> None:
        try:
            await recording.row_written()
            await self.catalog.events.add_recording_event(
                recording.id, action, Attribution(party, reason=reason)
            )
        except Exception:
            log.exception("call %s: the %s event was not stored", self.call_id, action.value)

    # -- DTMF codes ------------------------------------------------------------------------

    def staff_event(
        self, sequence: int, timestamp: int, marker: bool, payload: bytes, packet: bytes
    ) -> None:
        """A telephone-event packet from the call taker: held until it is known not to
        be part of a recording code; a code's packets never reach the caller."""
        public_leg, _ = self.media.public_and_staff(self.outbound)
        fate = self._event_fate.get(timestamp)
        if fate is True:
            public_leg.send_relayed(packet)
            return
        if fate is False:
            return
        now = self.now()
        self._held_events.setdefault(timestamp, []).append(packet)
        ignored = self._detector.ignored
        ssrc = int.from_bytes(packet[8:12], "big")
        for digit in self._detector.feed(timestamp, marker, payload, sequence=sequence, ssrc=ssrc):
            self._apply(self._matcher.feed(digit.digit, digit.start_timestamp, now))
        if self._detector.ignored > ignored and len(self._held_events.get(timestamp, ())) == 1:
            # the first packet of an event the detector does not follow (not a key, a
            # stale or a malformed one): no part of a code, so passed on, not held forever
            self._release(timestamp, public_leg)
        self._arm_timer()

    def staff_info(self, event: RequestReceived) -> None:
        """SIP INFO from the call taker (already answered): a DTMF digit goes through
        the code matcher; anything else is not passed on."""
        digit = info_digit(event.request.content_type, event.request.body)
        if digit is None:
            return
        key = ("info", event.request.cseq.number)
        self._held_infos[key] = (event.request.body, event.request.content_type or "")
        self._apply(self._matcher.feed(digit, key, self.now()))
        self._arm_timer()

    def _apply(self, decision: CodeDecision) -> None:
        public_leg, _ = self.media.public_and_staff(self.outbound)
        for key in decision.released:
            self._release(key, public_leg)
        for key in decision.dropped:
            if isinstance(key, int):
                self._event_fate[key] = False
                self._held_events.pop(key, None)
            else:
                self._held_infos.pop(key, None)
        if decision.action is not None:
            self._spawn(self._actions, self._dtmf_action(decision.action))

    def _release(self, key: Hashable, public_leg: RtpLeg) -> None:
        if isinstance(key, int):
            self._event_fate[key] = True
            for packet in self._held_events.pop(key, []):
                public_leg.send_relayed(packet)
            return
        held = self._held_infos.pop(key, None)
        legs = self.legs
        public_dialog = legs.b_dialog if self.outbound else legs.a_dialog
        if held is None or public_dialog is None:
            return
        body, content_type = held
        info = public_dialog.create_request("INFO", body=body, content_type=content_type)
        legs.send(info, dialog=public_dialog)

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._matcher.holding or self._detector.pending:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._matcher.timeout, self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = self.now()
        for digit in self._detector.flush():  # an event whose end packets were lost
            self._apply(self._matcher.feed(digit.digit, digit.start_timestamp, now))
        self._apply(self._matcher.expire(now + self._matcher.timeout))

    async def _dtmf_action(self, action: str) -> None:
        actor = self.operator or "call taker"
        try:
            await self.act(
                action, actor=actor, channel="dtmf", reason=f"{action} code keyed on the phone"
            )
        except RecordingActionError as exc:
            log.info("call %s: %s code ignored: %s", self.call_id, action, exc)
            return
        except Exception:
            log.exception("call %s: %s by DTMF failed", self.call_id, action)
            return
        audio = self.staff.audio if self.staff is not None else None
        if audio is not None:  # two short beeps to the call taker only
            _, staff_leg = self.media.public_and_staff(self.outbound)
            self.media.beep_to_staff(staff_leg, audio)

    @staticmethod
    def _spawn(tasks: set[asyncio.Task[None]], work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def close(self) -> None:
        """The call ended: no more digits; hold events go in before the recording closes."""
        if self._timer is not None:
            self._timer.cancel()
        if self._hold_writes:
            await asyncio.wait(set(self._hold_writes), timeout=5)


def info_digit(content_type: str | None, body: bytes) -> str | None:
    """The key in a DTMF INFO: ``Signal=5`` (application/dtmf-relay) or ``5``
    (application/dtmf)."""
    text = body.decode("ascii", "replace").strip()
    if content_type == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal":
                value = value.strip()
                return value if len(value) == 1 and value in _KEYS else None
        return None
    if content_type == "application/dtmf" and len(text) == 1 and text in _KEYS:
        return text
    return None
