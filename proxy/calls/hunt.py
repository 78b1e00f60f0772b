"""Ringing the call takers: a hunt group tried in order, each call taker's addresses
from DNS (RFC 3263) tried in turn, until one answers.

For each call taker of the plan's hunt group (``[routing] call_takers``; those marked
down by the OPTIONS keepalives are skipped while another is up) its URI is resolved,
and its addresses tried in order.  An INVITE that gets nothing back (Timer B, or no
response at all within ``no_answer_seconds``) or a 503 moves on to the call taker's
next address (RFC 3263 §4.3); one that rings for ``no_answer_seconds`` is CANCELled and
a busy, a decline or any other refusal moves on to the next call taker.  After the last
the caller hears the last refusal, as with one call taker; ``ring_timeout_seconds``
bounds the whole hunt.  The caller's leg, the notice and the recording are untouched
throughout: leg B's media port is opened once and offered to each in turn.

A call taker named by an AOR of our registrar (``sip:NAME@realm``, see
:meth:`~proxy.calls.register.RegisterDesk.aor_of`) is rung at every phone registered
for it at once: one INVITE per registered contact, each its own client transaction sent
to the contact's URI, all with one offer (leg B's one port).  The first 2xx wins and the
others are CANCELled (a 2xx that crosses the CANCEL is ACKed and ended); a refusal ends
only its own branch; when all fail, or ``no_answer_seconds`` passes, the hunt moves on.
An AOR with no phone registered is skipped (``unregistered``).

Every move is logged and published as :class:`~proxy.events.CallTakerFailedOver`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from enum import StrEnum
from typing import TYPE_CHECKING

from ..events import CallTakerFailedOver, CallTakerInvited
from ..sip import sdp
from ..sip.events import Event, ResponseReceived, TransactionTimedOut
from ..sip.resolve import Target
from ..sip.transaction import ClientTransaction
from ..sip.uri import SipUri, Uri
from ..storage.catalog import CallOutcome
from .phases import CallOver

if TYPE_CHECKING:
    from .call import Call

log = logging.getLogger(__name__)


class Failover(StrEnum):
    """Why the hunt moved on from an INVITE (the metric's ``reason`` label)."""

    NO_RESPONSE = "no_response"  # nothing came back: next address
    UNAVAILABLE = "unavailable"  # 503: next address
    NO_ANSWER = "no_answer"  # it rang for no_answer_seconds: next call taker
    REFUSED = "refused"  # busy, decline, any other refusal: next call taker
    UNRESOLVED = "unresolved"  # DNS found no address: next call taker
    UNREGISTERED = "unregistered"  # an AOR of our registrar with no phone registered


#: Reasons that try the same call taker's next address (RFC 3263 §4.3).
NEXT_ADDRESS = frozenset({Failover.NO_RESPONSE, Failover.UNAVAILABLE})


def refusal(status: int) -> Failover:
    """Why a final non-2xx response to a call taker's INVITE moves the hunt on."""
    return Failover.UNAVAILABLE if status == 503 else Failover.REFUSED


def refusal_outcome(status: int) -> CallOutcome:
    """The call's outcome when the hunt ends on ``status``."""
    if status in (486, 600):
        return CallOutcome.CALLTAKER_BUSY
    if status in (603, 403):
        return CallOutcome.CALLTAKER_DECLINED
    if status in (408, 480):
        return CallOutcome.NO_ANSWER
    return CallOutcome.FAILED


NextEvent = Callable[[float | None], Awaitable[Event | None]]
Attempt = ResponseReceived | tuple[Failover, int]


class Hunt:
    """Rings one call's call takers; :meth:`ring` returns the 2xx that answered."""

    def __init__(
        self,
        call: Call,
        next_event: NextEvent,
        common: Callable[[Event], None],
        until: Callable[[asyncio.Future[None]], Awaitable[None]],
    ) -> None:
        """``next_event``, ``common`` and ``until`` are the call's: its next event (or
        None after a timeout), what it does with an event of any phase, and handling
        its events until a future is done."""
        self.call = call
        self._next = next_event
        self._common = common
        self._until = until
        self._invited = False

    async def ring(self) -> ResponseReceived:
        """The first call taker to answer; ``CallOver`` when none does in time."""
        call = self.call
        b2bua = call.b2bua
        health = b2bua.health
        routing = call.config.routing
        deadline = b2bua.now() + routing.ring_timeout_seconds
        status = 480
        group = {str(uri): uri for uri in call.plan.hunt_group}
        ringing = health.usable(list(group))
        for skipped in group.keys() - set(ringing):
            log.info("call %s: call taker %s is down (keepalives): skipped", call.id, skipped)
        for name in ringing:
            uri = group[name]
            aor = None if call.plan.outbound else b2bua.registrar.aor_of(uri)
            if aor is not None:  # its registered phones ring together
                result = await self._ring_aor(name, aor, deadline)
                if isinstance(result, ResponseReceived):
                    return result
                status = result[1] if result is not None else status
                if b2bua.now() >= deadline:
                    break
                continue
            targets = await self._resolve(uri, deadline)
            if not targets:
                self._moved_on(name, None, Failover.UNRESOLVED, None)
                continue
            for target in health.reachable(targets):
                result = await self._attempt(uri, target, deadline)
                if isinstance(result, ResponseReceived):
                    call.plan = replace(call.plan, target=uri)  # who answered (P9)
                    return result
                reason, status = result
                self._moved_on(name, target, reason, status)
                if reason not in NEXT_ADDRESS or b2bua.now() >= deadline:
                    break
            if b2bua.now() >= deadline:
                break
        call.sip.fail(status)
        raise CallOver(refusal_outcome(status), "call_taker", f"no call taker answered ({status})")

    async def _resolve(self, uri: Uri, deadline: float) -> list[Target]:
        """``uri``'s addresses, found by the ring deadline; the call's events are handled
        meanwhile (a caller who hangs up during a slow lookup is not kept waiting)."""
        if not isinstance(uri, SipUri):
            return []
        known = self.call.b2bua.resolver.known(uri)
        if known is not None:
            return known
        remaining = max(deadline - self.call.b2bua.now(), 0.01)
        lookup = asyncio.ensure_future(
            asyncio.wait_for(self.call.b2bua.resolver.resolve(uri), remaining)
        )
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lookup.add_done_callback(lambda _: _settle(done))
        try:
            await self._until(done)
        finally:
            lookup.cancel()
        if lookup.cancelled() or lookup.exception() is not None:
            return []  # the ring deadline passed first
        return lookup.result()

    async def _attempt(self, uri: Uri, target: Target, deadline: float) -> Attempt:
        """One INVITE to ``target``: its 2xx, or why to move on and the status to give."""
        call = self.call
        sip = call.sip
        await self._open_media(target)
        call.b.own_keys.clear()  # a fresh SRTP key: one we cancelled never learns the next's
        invite = call.call_taker_invite(uri, call.b)
        txn = sip.invite_b(invite, target=target)
        log.info("call %s: inviting %s at %s", call.id, uri, target)
        self._announce()
        until = self._no_answer_until(deadline)
        rang = False
        while (remaining := until - call.b2bua.now()) > 0:
            event = await self._next(remaining)
            if isinstance(event, ResponseReceived) and event.transaction is txn:
                status = event.response.status
                if status < 200:
                    rang = True
                    if event.dialog is not None:
                        sip.adopt(event.dialog)
                    continue
                if status < 300:
                    return event
                if status == 422 and call.timers.retry_after_422(event.response):
                    # the session interval asked again, at least the call taker's Min-SE
                    invite = call.call_taker_invite(uri, call.b)
                    txn = sip.invite_b(invite, target=target)
                    continue
                return refusal(status), status
            if isinstance(event, TransactionTimedOut) and event.transaction is txn:
                return Failover.NO_RESPONSE, 408
            if event is not None and not self._stray(event):
                self._common(event)
        sip.abandon_b()
        return (Failover.NO_ANSWER, 480) if rang else (Failover.NO_RESPONSE, 408)

    async def _ring_aor(self, name: str, aor: str, deadline: float) -> Attempt | None:
        """Every registered contact of ``aor`` at once (:meth:`_fork`): the 2xx that
        won, or why the hunt moves on; None (logged) when no phone is registered."""
        call = self.call
        branches: list[tuple[SipUri, Target]] = []
        contacts = call.b2bua.registrar.contacts_for(aor)
        for contact in contacts:
            targets = await self._resolve(contact.uri, deadline)
            if targets:  # a registered contact is where the phone is: its first address
                branches.append((contact.uri, targets[0]))
        if not branches:
            reason = Failover.UNRESOLVED if contacts else Failover.UNREGISTERED
            log.info("call %s: call taker %s (%s): no registered phone to ring", call.id, name, aor)
            self._moved_on(name, aor, reason, None)
            return None
        result = await self._fork(name, branches, deadline)
        if not isinstance(result, ResponseReceived):
            self._moved_on(name, aor, *result)
        return result

    async def _fork(
        self, name: str, branches: list[tuple[SipUri, Target]], deadline: float
    ) -> Attempt:
        """One INVITE to each contact, all with the same offer (RFC 3261 §16-style
        parallel fork, each its own client transaction): the first 2xx wins and the
        others are CANCELled; a refusal ends only its own branch.  When every branch
        failed, the best of their statuses (:func:`forked_status`); after
        ``no_answer_seconds``, all are CANCELled."""
        call = self.call
        sip = call.sip
        await self._open_media(branches[0][1])
        call.b.own_keys.clear()
        offer: sdp.SessionDescription | None = None
        pending: dict[ClientTransaction, SipUri] = {}
        for contact, target in branches:
            invite = call.call_taker_invite(contact, call.b, offer)
            offer = call.b.local
            pending[sip.fork_b(invite, target=target)] = contact
            log.info("call %s: inviting %s at %s (%s)", call.id, contact, target, name)
        self._announce()
        until = self._no_answer_until(deadline)
        rang = False
        statuses: list[int] = []
        while pending and (remaining := until - call.b2bua.now()) > 0:
            event = await self._next(remaining)
            if isinstance(event, ResponseReceived) and event.transaction in pending:
                txn = event.transaction
                status = event.response.status
                if status < 200:
                    rang = True
                    if event.dialog is not None:
                        sip.adopt(event.dialog)
                    continue
                if status < 300:
                    sip.won_b(txn)
                    call.plan = replace(call.plan, target=pending[txn])  # who answered
                    return event
                contact = pending.pop(txn)
                sip.dropped_b(txn)
                if status == 422 and call.timers.retry_after_422(event.response):
                    invite = call.call_taker_invite(contact, call.b, offer)
                    target = next(t for c, t in branches if c is contact)
                    pending[sip.fork_b(invite, target=target)] = contact
                    continue
                statuses.append(status)
            elif isinstance(event, TransactionTimedOut) and event.transaction in pending:
                pending.pop(event.transaction)
                sip.dropped_b(event.transaction)
                statuses.append(408)
            elif event is not None and not self._stray(event):
                self._common(event)
        if not pending:
            status = forked_status(statuses)
            return (refusal(status) if status != 408 or rang else Failover.NO_RESPONSE), status
        sip.abandon_b()
        return (Failover.NO_ANSWER, 480) if rang else (Failover.NO_RESPONSE, 408)

    def _announce(self) -> None:
        """The first INVITE of the hunt is a stage of the call's setup (published once)."""
        if not self._invited:
            self._invited = True
            call = self.call
            call.b2bua.publish(CallTakerInvited(call.id, call.setup_seconds()))

    def _no_answer_until(self, deadline: float) -> float:
        """When an INVITE that has not been answered is given up."""
        no_answer = self.call.config.routing.no_answer_seconds
        now = self.call.b2bua.now()
        return min(deadline, now + no_answer) if no_answer > 0 else deadline

    def _stray(self, event: Event) -> bool:
        """An answer to an INVITE the hunt moved on from: a 2xx is ACKed and ended."""
        sip = self.call.sip
        if not isinstance(event, ResponseReceived | TransactionTimedOut):
            return False
        if event.transaction not in sip.abandoned:
            return False
        if isinstance(event, ResponseReceived) and 200 <= event.response.status < 300:
            sip.ack_and_bye(event)
        return True

    async def _open_media(self, target: Target) -> None:
        """Leg B's RTP port, once, in the family of the first address tried."""
        call = self.call
        if call.media.b_leg is not None:
            return
        b_leg = await call.media.open_b(call.call_taker_media_host(SipUri(host=target.host)))
        call.b.port = b_leg.port
        call.b.address = b_leg.local_host

    def _moved_on(
        self, call_taker: str, target: Target | str | None, reason: Failover, status: int | None
    ) -> None:
        call = self.call
        log.info(
            "call %s: call taker %s at %s: %s (%s), moving on",
            call.id, call_taker, target or "no address", reason.value, status,
        )  # fmt: skip
        call.b2bua.publish(
            CallTakerFailedOver(call.id, call_taker, str(target or ""), reason.value, status)
        )


def forked_status(statuses: list[int]) -> int:
    """The status a failed fork ends with (RFC 3261 §16.7 step 6, simplified): a 6xx
    if any; else the lowest class, first come, a timeout (408) counted last."""
    if not statuses:
        return 480
    final = [s for s in statuses if s >= 600]
    if final:
        return final[0]
    heard = [s for s in statuses if s != 408] or statuses
    return min(heard, key=lambda s: s // 100)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
