"""A transfer from the call taker (RFC 3515 REFER), recorded as a new part (P9): blind,
or attended (RFC 5589 §7) after the call taker has spoken to the colleague first.

The call taker of a bridged inbound call sends REFER with a ``Refer-To`` naming another
call taker's phone.  In an attended transfer it embeds ``Replaces`` naming the
consultation call between the two phones (RFC 3891); recproxy's INVITE to the colleague
carries it (with ``Require: replaces``), so their phone swaps the consultation for the
caller instead of ringing again, and ends the consultation itself.  The rest is the same
for both kinds.  recproxy, not the phone, does the transfer: the caller stays on its
own leg, and so with the first call taker, while recproxy invites the target with its
own offer.  The REFER gets 202, then NOTIFYs with the progress as sipfrag (``100
Trying``, then the target's final status, which ends the subscription).

* The target answers: the caller's media goes to the new leg, the recording's next part
  begins with the target's operator and team (one recording, one timeline, the same
  segments: only the call-taker channel's source changes), and the first call taker's
  leg gets BYE.
* The target fails (busy, an error, no answer within ``routing.ring_timeout_seconds``):
  the caller never left the first call taker, whose NOTIFY carries the failure.
* The caller hangs up first: the target's INVITE is cancelled.

Who may be a target is decided safely: only a phone configured as an operator's
identity *with a host* (``sip:2002@10.0.0.22``, ``2002@10.0.0.22``), so a call taker
cannot send a recorded call to an arbitrary address, and the INVITE goes to that host.
The caller's side cannot transfer (403: nobody outside may redirect a recorded call),
nor can an outbound call's member of staff (403: transfers are for incoming calls);
a REFER before the bridge is 403, one during a transfer 491, a missing or malformed
``Refer-To`` 400, and a REFER outside any call 481 (in :mod:`.b2bua`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..config import OperatorSettings
from ..events import CallTransferred, TransferRequested
from ..media.relay import NoPortsAvailable, RtpLeg
from ..recording_state import RecordingState
from ..sip import refer, sdp
from ..sip.dialog import Dialog, DialogState
from ..sip.errors import RemoteSipError
from ..sip.events import Event, RequestReceived, ResponseReceived, TransactionTimedOut
from ..sip.message import Request
from ..sip.replaces import OPTION_TAG as REPLACES_TAG
from ..sip.replaces import Replaces
from ..sip.resolve import Target
from ..sip.transaction import ClientTransaction, TransactionState
from ..sip.uri import SipUri, parse_uri
from ..storage.catalog import Attribution, CallOutcome
from .media_wiring import CallMedia, check_family
from .offer_answer import LegSdp
from .parties import identify, identity_matches
from .phases import CallOver, CallPhase

if TYPE_CHECKING:
    from .call import Call

log = logging.getLogger(__name__)

Refusal = tuple[int, str]


def refer_refusal(
    *, from_public: bool, outbound: bool, bridged: bool, busy: bool
) -> Refusal | None:
    """Why a REFER in a call is refused (status, reason), or None to look at its target."""
    if from_public:
        return 403, "Forbidden (the caller cannot transfer a recorded call)"
    if outbound:
        return 403, "Forbidden (only an incoming call can be transferred)"
    if not bridged:
        return 403, "Forbidden (the call is not bridged yet)"
    if busy:
        return 491, "Request Pending (a transfer is under way)"
    return None


def transfer_target(
    request: Request, operators: Iterable[OperatorSettings]
) -> tuple[SipUri, OperatorSettings, Replaces | None]:
    """The REFER's target, the operator whose phone it is, and for an attended transfer
    the consultation dialog the target's phone replaces.  ``RemoteSipError``: 400 for a
    missing or malformed ``Refer-To`` or ``Replaces``, 403 for a target that is no
    operator's identity with a host, or that embeds any other header."""
    target = refer.refer_to(request)
    replaces = refer.replaces_of(target)
    for operator in operators:
        for identity in operator.identities:
            phone = _phone(identity)
            if phone is not None and identity_matches(identity, target):
                return _invited(phone, target), operator, replaces
    raise RemoteSipError(403, "Forbidden (Refer-To is no call taker's phone)")


def _phone(identity: str) -> SipUri | None:
    """The configured phone an identity names, if it names a host (``"2002"`` names a
    user at any host: not enough to route a recorded call to)."""
    if "@" not in identity and ":" not in identity:
        return None
    try:
        uri = parse_uri(identity if ":" in identity else f"sip:{identity}")
    except RemoteSipError:
        return None
    return uri if isinstance(uri, SipUri) else None


def _invited(phone: SipUri, target: SipUri) -> SipUri:
    """Where the target's INVITE goes: the configured phone's host, port and parameters,
    never the ``Refer-To``'s (a ``maddr`` there would send the recorded caller wherever
    the REFER says); the user is the phone's, else the one referred to."""
    return SipUri(
        phone.host,
        user=phone.user or target.user,
        port=phone.port,
        params=phone.params,
        scheme=phone.scheme,
    )


@dataclass(frozen=True, eq=False)
class TargetLookedUp(Event):
    """A transfer target's RFC 3263 lookup has finished: put on the call's queue, so the
    call's events are handled while it runs (a caller's BYE is not kept waiting)."""

    lookup: asyncio.Future[list[Target]]


@dataclass
class _Lookup:
    """A transfer accepted (202) whose target's addresses are being looked up."""

    target: SipUri
    operator: OperatorSettings
    replaces: Replaces | None  # an attended transfer's consultation dialog; None: blind
    notify_to: Dialog  # the first call taker's dialog, where the REFER came from
    deadline: float  # on the call's monotonic clock: the ring time bounds the lookup too
    task: asyncio.Future[list[Target]]
    transferor_left: bool = False  # the first call taker hung up after the 202


@dataclass
class _Pending:
    """A transfer under way: the target being invited, and where its NOTIFYs go."""

    target: SipUri
    operator: OperatorSettings
    replaces: Replaces | None
    notify_to: Dialog
    leg: RtpLeg
    side: LegSdp
    address: Target  # where the INVITE went (a 422's retry goes there too)
    invite: ClientTransaction
    deadline: float
    transferor_left: bool = False


@dataclass
class Transfers:
    """The transfers of one call: at most one at a time."""

    call: Call
    pending: _Pending | None = None
    looking_up: _Lookup | None = None
    _given_up: set[ClientTransaction] = field(default_factory=set)  # cancelled INVITEs

    def remaining(self) -> float | None:
        """Seconds until a transfer's target has rung (or been looked up) too long
        (None: no transfer)."""
        current = self.pending or self.looking_up
        if current is None:
            return None
        return max(current.deadline - self.call.b2bua.now(), 0.0)

    def refuse(self, event: RequestReceived) -> None:
        """A REFER before the bridge (during the notice or ringing): nothing to transfer
        yet (once bridged, :meth:`handle` takes every REFER)."""
        refusal = refer_refusal(
            from_public=self._from_public(event),
            outbound=self.call.plan.outbound,
            bridged=False,
            busy=False,
        )
        assert refusal is not None  # never None unless bridged
        self._respond(event, refusal)

    async def handle(self, event: Event) -> bool:
        """Feed a bridged call's event; True when it was the transfer's."""
        if isinstance(event, RequestReceived) and event.request.method == "REFER":
            await self._refer(event)
            return True
        if isinstance(event, TargetLookedUp):
            lookup = self.looking_up
            if lookup is not None and event.lookup is lookup.task:
                self.looking_up = None
                await self._invite_target(lookup)
            return True  # else a lookup given up on: nothing to do
        pending = self.pending or self.looking_up
        if isinstance(event, ResponseReceived) and event.transaction in self._given_up:
            if 200 <= event.response.status < 300:  # answered as we gave up: end it
                self.call.sip.ack_and_bye(event)
            return True
        if pending is None:
            return False
        if isinstance(pending, _Pending) and await self._target_event(pending, event):
            return True
        if (
            isinstance(event, RequestReceived)
            and event.request.method == "BYE"
            and event.dialog is pending.notify_to
        ):
            # a blind transfer's phone may hang up after the 202: the caller waits on
            self.call.sip.respond(event.transaction, 200, dialog=event.dialog)
            self.call.sip.hung_up(event.dialog)
            pending.transferor_left = True
            return True
        return False

    async def _target_event(self, pending: _Pending, event: Event) -> bool:
        """A response to (or the timeout of) the target's INVITE: True if it was one."""
        call = self.call
        if isinstance(event, TransactionTimedOut) and event.transaction is pending.invite:
            self._failed(pending, 408, "Request Timeout")
            return True
        if not isinstance(event, ResponseReceived) or event.transaction is not pending.invite:
            return False
        status = event.response.status
        if status < 200:
            if event.dialog is not None:
                call.sip.adopt(event.dialog)
        elif status < 300:
            await self._answered(pending, event)
        elif status == 422 and call.timers.retry_after_422(event.response):
            # the session interval asked again, at least the target's Min-SE (RFC 4028
            # §7.3): the same address, the same Replaces; the transfer stays pending
            log.info("call %s: transfer target answered 422, invited again", call.id)
            pending.invite = self._send_invite(
                pending.target, pending.replaces, pending.side, pending.address
            )
        else:
            self._failed(pending, status, event.response.reason)
        return True

    def ring_timed_out(self) -> None:
        """The target did not answer (or was not found) within the ring time: CANCEL,
        and the caller stays."""
        lookup = self.looking_up
        if lookup is not None:
            self.looking_up = None
            lookup.task.cancel()
            self._failed(lookup, 503, "Service Unavailable")
            return
        pending = self.pending
        if pending is not None:
            self._give_up(pending.invite)
            self._failed(pending, 408, "Request Timeout")

    def abandon(self) -> None:
        """The call is ending during a transfer: cancel the lookup or the target's INVITE."""
        pending = self.pending or self.looking_up
        if pending is None:
            return
        self.pending = self.looking_up = None
        if isinstance(pending, _Pending):
            self._give_up(pending.invite)
        else:
            pending.task.cancel()
        self._notify(pending.notify_to, 487, "Request Terminated")
        self._publish(pending, "abandoned")

    # -- the steps ---------------------------------------------------------------------

    async def _refer(self, event: RequestReceived) -> None:
        call = self.call
        refusal = refer_refusal(
            from_public=self._from_public(event),
            outbound=call.plan.outbound,
            bridged=call.phase is CallPhase.BRIDGED,
            busy=self.pending is not None or self.looking_up is not None,
        )
        if refusal is not None:
            self._respond(event, refusal)
            return
        try:
            target, operator, replaces = transfer_target(event.request, call.config.operators)
        except RemoteSipError as exc:
            log.info("call %s: REFER refused (%s %s)", call.id, exc.status, exc.reason)
            self._respond(event, (exc.status, exc.reason))
            return
        dialog = event.dialog
        assert dialog is not None  # bridged: the REFER came in the call taker's dialog
        call.sip.respond(event.transaction, 202, dialog=dialog)
        self._notify(dialog, 100, "Trying")
        call.b2bua.publish(TransferRequested(call.id, call.operator, operator.name))
        kind = "blind" if replaces is None else "attended"
        log.info(
            "call %s: %s transfers the call to %s (%s)",
            call.id, call.operator, operator.name, kind,
        )  # fmt: skip
        # a phone named by a host name goes to its first RFC 3263 address (issue 18),
        # looked up while the call's events are handled, within the ring time
        ring = call.config.routing.ring_timeout_seconds
        task = asyncio.ensure_future(asyncio.wait_for(call.b2bua.resolver.resolve(target), ring))
        lookup = _Lookup(target, operator, replaces, dialog, call.b2bua.now() + ring, task)
        self.looking_up = lookup
        task.add_done_callback(lambda done: call.events.put_nowait(TargetLookedUp(done)))

    async def _invite_target(self, lookup: _Lookup) -> None:
        """The lookup is over: the target's INVITE to its first address; none (or an
        error, or the ring time spent) fails the transfer with 503."""
        call, task = self.call, lookup.task
        error = None if task.cancelled() else task.exception()
        found = [] if task.cancelled() or error is not None else task.result()
        if error is not None:  # a resolver failure, or the ring time spent: no address
            log.info("call %s: transfer target %s: lookup failed (%r)", call.id,
                     lookup.target, error)  # fmt: skip
        leg = await self._target_leg(found[0]) if found else None
        if not found or leg is None:
            self._failed(lookup, 503, "Service Unavailable")
            return
        side = LegSdp(
            "call taker",
            secrets.randbelow(2**31),
            call.config.sip.advertise,
            srtp=call.config.media.srtp.call_taker,
        )
        side.port, side.address = leg.port, leg.local_host
        pending = _Pending(
            lookup.target, lookup.operator, lookup.replaces, lookup.notify_to, leg, side,
            found[0], self._send_invite(lookup.target, lookup.replaces, side, found[0]),
            call.b2bua.now() + call.config.routing.ring_timeout_seconds,
            lookup.transferor_left,
        )  # fmt: skip
        self.pending = pending

    def _send_invite(
        self, target: SipUri, replaces: Replaces | None, side: LegSdp, address: Target
    ) -> ClientTransaction:
        """Our INVITE to the target with a new offer from ``side``."""
        call = self.call
        invite = call.call_taker_invite(target, side)
        if replaces is not None:  # their phone swaps its consultation for this call
            invite.headers.add("Replaces", str(replaces))
            invite.headers.add("Require", REPLACES_TAG)
        return call.sip.send(
            invite,
            destination=(address.host, address.port),
            transport=address.transport,
            server_name=address.server_name,
        )

    async def _target_leg(self, address: Target) -> RtpLeg | None:
        """The target's RTP leg, in its address's family; None when none can be opened."""
        call = self.call
        try:
            host = call.call_taker_media_host(SipUri(host=address.host))
            return await call.media.open_transfer(host)
        except (NoPortsAvailable, CallOver):
            return None

    async def _answered(self, pending: _Pending, event: ResponseReceived) -> None:
        """The target answered: it takes the call, the first call taker's leg ends."""
        call, sip = self.call, self.call.sip
        dialog = event.dialog
        assert dialog is not None  # the core makes the dialog of a 2xx
        sip.adopt(dialog)
        sip.ack(event)
        try:
            answer = sdp.SessionDescription.parse(event.response.body)
            audio = pending.side.accept_answer(answer)
            check_family(pending.leg, sdp.media_address(answer, audio.media_index))
        except RemoteSipError as exc:
            log.warning("call %s: transfer target's answer unusable: %s", call.id, exc.reason)
            sip.bye(dialog)
            self._failed(pending, 488, "Not Acceptable Here")
            return
        at = datetime.now(UTC)
        self.pending = None
        call.timers.confirmed(event)  # the target's session interval, once its SDP is taken
        call.timers.forget(pending.notify_to)  # the first call taker's leg is ending
        CallMedia.configure(pending.leg, audio)
        recording = call.switch.recording
        call.media.hand_over(
            pending.leg,
            recording.pair if recording is not None else None,
            call.switch.staff_event,
        )
        self._notify(pending.notify_to, 200, "OK")
        first = call.operator
        if not pending.transferor_left:
            sip.bye(pending.notify_to)
        sip.b_dialog, sip.b_txn = dialog, pending.invite
        call.b = pending.side
        call.offers.relay()  # towards each party only while it receives
        call.operator_settings = (
            identify(call.config.operators, event.response, pending.target) or pending.operator
        )
        call.switch.hand_over(operator=call.operator, staff=call.b)
        if recording is not None and call.switch.keeps_recording:
            settings = call.operator_settings
            by = Attribution(first, reason=f"transferred to {settings.name}")
            await call.b2bua.recordings.begin_part(
                recording,
                operator=settings.name,
                team=settings.team,
                at=at,
                transfer=by if call.switch.state is RecordingState.RECORDING else None,
            )
        self._publish(pending, "succeeded", event.response.status)  # once catalogued

    def _failed(self, pending: _Pending | _Lookup, status: int, reason: str) -> None:
        """The caller stays with the first call taker, who is told why."""
        self.pending = None
        call = self.call
        if isinstance(pending, _Pending):
            call.media.drop(pending.leg)
        self._notify(pending.notify_to, status, reason)
        self._publish(pending, "failed", status)
        log.info("call %s: transfer to %s failed (%s)", call.id, pending.operator.name, status)
        if pending.transferor_left:  # nobody left to take the call back
            raise CallOver(CallOutcome.COMPLETED, "call_taker", "transfer failed after BYE")

    # -- helpers ------------------------------------------------------------------------

    def _from_public(self, event: RequestReceived) -> bool:
        """Whether the REFER came from the member of the public's leg."""
        sip, outbound = self.call.sip, self.call.plan.outbound
        return event.dialog is (sip.b_dialog if outbound else sip.a_dialog)

    def _respond(self, event: RequestReceived, refusal: Refusal) -> None:
        status, reason = refusal
        self.call.sip.core.respond(
            event.transaction, status, reason, now=self.call.b2bua.now(), dialog=event.dialog
        )
        self.call.sip.flush()

    def _notify(self, dialog: Dialog, status: int, reason: str) -> None:
        """Progress to the first call taker, while their dialog is up (not answered:
        nobody waits for it, RFC 3515 §2.4.4 lets a NOTIFY fail alone)."""
        if dialog.state is not DialogState.CONFIRMED:
            return
        self.call.sip.notify(refer.notify(dialog, status, reason), dialog)

    def _give_up(self, invite: ClientTransaction) -> None:
        if invite.state in (TransactionState.CALLING, TransactionState.PROCEEDING):
            self._given_up.add(invite)
        self.call.sip.cancel(invite)

    def _publish(
        self, pending: _Pending | _Lookup, outcome: str, status: int | None = None
    ) -> None:
        self.call.b2bua.publish(
            CallTransferred(self.call.id, outcome, pending.operator.name, status)
        )
