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
from ..sip.events import Event, ResponseReceived, TransactionTimedOut
from ..sip.resolve import Target
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
        if not self._invited:
            self._invited = True
            call.b2bua.publish(CallTakerInvited(call.id, call.setup_seconds()))
        no_answer = call.config.routing.no_answer_seconds
        now = call.b2bua.now()
        until = min(deadline, now + no_answer) if no_answer > 0 else deadline
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
        self, call_taker: str, target: Target | None, reason: Failover, status: int | None
    ) -> None:
        call = self.call
        log.info(
            "call %s: call taker %s at %s: %s (%s), moving on",
            call.id, call_taker, target or "no address", reason.value, status,
        )  # fmt: skip
        call.b2bua.publish(
            CallTakerFailedOver(call.id, call_taker, str(target or ""), reason.value, status)
        )


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
