"""Session timers (RFC 4028) on a call's legs: refreshes sent and answered, and a dead
leg's call torn down.

Each dialog of the call (the caller's, the call taker's) gets its interval whenever a
2xx to a dialog-forming or refreshing request (INVITE, re-INVITE, UPDATE) crosses it:
ours to the party (``answering``: the interval we grant goes in the 2xx) or the party's
to us (``answered``).  One loop timer per dialog then waits for the next deadline
(:class:`~proxy.sip.session_timer.Interval`): as refresher we send an UPDATE (or, when
the party does not allow UPDATE, a re-INVITE with the SDP it already has) at half the
interval (a 491 sends it again after 2.1-4 s, a 405 or 501 to an UPDATE as a re-INVITE,
any other error at the next refresh point); otherwise — or when our refresh gets no
answer by the interval's end, or 408 or 481 — the expiry ends the call: a
:class:`~proxy.events.SessionTimerExpired` event, then BYE on both legs and the
recording closed like any other end, with outcome ``session_expired``.  The pure rules
are in :mod:`proxy.sip.session_timer`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..events import SessionTimerExpired
from ..sip import session_timer as st
from ..sip.dialog import Dialog, DialogState
from ..sip.errors import RemoteSipError
from ..sip.events import ResponseReceived
from ..sip.message import Message, Request, Response
from ..sip.transaction import Transaction
from ..storage.catalog import CallOutcome

if TYPE_CHECKING:
    from .call import Call

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Leg:
    """One dialog's session interval, since its last refresh."""

    dialog: Dialog
    interval: st.Interval
    allows_update: bool
    handle: asyncio.TimerHandle | None = None
    refreshing: bool = False  # our refresh is out; the expiry is what is left


class SessionRefresh:
    """The session timers of one call's dialogs."""

    def __init__(self, call: Call) -> None:
        self.call = call
        sip = call.config.sip
        self.policy = (
            st.TimerPolicy(sip.session_expires, sip.min_se) if sip.session_expires else None
        )
        self._legs: dict[Dialog, _Leg] = {}
        self._refreshes: dict[Transaction, _Leg] = {}  # our refresh requests
        self._retried_422 = False

    def invite_headers(self) -> list[tuple[str, str]]:
        """What our INVITE to a call taker asks for (RFC 4028 §7.1)."""
        return st.uac_headers(self.policy) if self.policy is not None else []

    def retry_after_422(self, response: Response) -> bool:
        """A 422 to our INVITE: True if it is worth one more INVITE, asking at least its
        ``Min-SE`` (RFC 4028 §7.3) — once per call, and only for a Min-SE above ours."""
        policy = self.policy
        if policy is None or self._retried_422:
            return False
        try:
            floor = st.min_se_of(response)
        except RemoteSipError:
            return False
        if floor is None or floor <= policy.min_se:
            return False
        self._retried_422 = True
        self.policy = st.TimerPolicy(max(floor, policy.session_expires), floor)
        return True

    # -- 2xx crossing a dialog: the interval (re)starts --------------------------------

    def answering(self, request: Request, dialog: Dialog) -> list[tuple[str, str]]:
        """Our 2xx to the party's INVITE or UPDATE: the interval we grant, in its headers."""
        if self.policy is None:
            return []
        try:
            interval = st.as_uas(request, self.policy)
        except RemoteSipError:  # the core answers such a request 400 before we see it
            return []
        self._start(dialog, interval, request)
        return st.uas_headers(request, interval)

    def answered(self, event: ResponseReceived) -> bool:
        """A response in the call: True if it answers one of our refreshes (the 2xx
        restarts the interval; 408 or 481 end the call, RFC 4028 §10; any other error
        keeps it, the refresh tried again: :meth:`_refused`)."""
        leg = self._refreshes.pop(event.transaction, None)
        status = event.response.status
        if leg is None:
            if 200 <= status < 300 and event.transaction.method == "INVITE":
                self.confirmed(event)  # leg B's answer, a transfer target's, a re-offer's
            return False
        if status < 200:
            self._refreshes[event.transaction] = leg
            return True
        if event.transaction.method == "INVITE" and status < 300:
            self.call.sip.ack(event)
        if self._legs.get(leg.dialog) is not leg:
            return True  # a newer interval (the party refreshed meanwhile), or forgotten
        if 200 <= status < 300:
            leg.refreshing = False
            interval = st.as_uac(event.response, self._min_se())
            if interval is None:
                self._stop(leg)
            else:
                self._start(leg.dialog, interval, None, leg.allows_update)
        elif status in (408, 481):
            self._expired(leg, f"the refresh got {status}")
        else:
            self._refused(leg, event.transaction.method, status)
        return True

    def confirmed(self, event: ResponseReceived) -> None:
        """A 2xx to one of our INVITEs: the interval the party answered, if any."""
        if self.policy is None or event.dialog is None:
            return
        interval = st.as_uac(event.response, self.policy.min_se)
        if interval is not None:
            self._start(event.dialog, interval, event.response)

    def reinviting(self, dialog: Dialog | None) -> bool:
        """A refresh re-INVITE of ours is out in ``dialog`` (a re-INVITE or UPDATE offer
        from the party meanwhile is glare: 491)."""
        return any(
            leg.dialog is dialog and txn.method == "INVITE" for txn, leg in self._refreshes.items()
        )

    def timed_out(self, transaction: Transaction) -> bool:
        """No answer at all to our refresh: the party is gone (RFC 4028 §10)."""
        leg = self._refreshes.pop(transaction, None)
        if leg is None:
            return False
        if self._legs.get(leg.dialog) is leg:  # not a newer interval, nor forgotten
            self._expired(leg, "the refresh got no answer")
        return True

    def forget(self, dialog: Dialog) -> None:
        """``dialog`` has left the call (a transferred call's first call taker): its
        expiry, or a 408 or 481 to a refresh still out, no longer ends the call."""
        leg = self._legs.get(dialog)
        if leg is not None:
            self._stop(leg)

    def stop(self) -> None:
        for leg in self._legs.values():
            if leg.handle is not None:
                leg.handle.cancel()
        self._legs.clear()
        self._refreshes.clear()

    def _min_se(self) -> int:
        return self.policy.min_se if self.policy is not None else st.RFC_MIN_SE

    # -- timers ----------------------------------------------------------------------------

    def _start(
        self,
        dialog: Dialog,
        interval: st.Interval,
        message: Message | None,
        allows_update: bool | None = None,
    ) -> None:
        previous = self._legs.get(dialog)
        if allows_update is None:
            allows_update = (
                _allows_update(message)
                if message is not None
                else previous is not None and previous.allows_update
            )
        if previous is not None and previous.handle is not None:
            previous.handle.cancel()
        leg = _Leg(dialog, interval, allows_update)
        self._legs[dialog] = leg
        now = self.call.b2bua.now()
        self._arm(leg, interval.next_deadline(now))

    def _arm(self, leg: _Leg, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        leg.handle = loop.call_at(deadline, self._due, leg)

    def _stop(self, leg: _Leg) -> None:
        if leg.handle is not None:
            leg.handle.cancel()
        if self._legs.get(leg.dialog) is leg:  # not a newer interval of the same dialog
            del self._legs[leg.dialog]

    def _due(self, leg: _Leg) -> None:
        leg.handle = None
        if self.call.finished or self._legs.get(leg.dialog) is not leg:
            return
        if leg.dialog.state is DialogState.TERMINATED:
            self._legs.pop(leg.dialog, None)
            return
        if leg.interval.we_refresh and not leg.refreshing:
            self._refresh(leg)
            # sent at half the interval: without a 2xx by its end the session is over
            self._arm(leg, self.call.b2bua.now() + leg.interval.seconds / 2)
            return
        self._expired(leg, "no session refresh came")

    def _refresh(self, leg: _Leg) -> None:
        """An UPDATE without a body if the party allows it, else a re-INVITE with the
        description it already has (same o= version: nothing changes, RFC 4028 §7.4)."""
        assert self.policy is not None
        call, sip = self.call, self.call.sip
        dialog = leg.dialog
        headers = st.uac_headers(
            st.TimerPolicy(leg.interval.seconds, self.policy.min_se), refresher="uac"
        )
        side = call.offers.side_of(dialog)
        leg.refreshing = True
        if side is not None and side in sip.offers.values():
            return  # a re-INVITE of ours is out: its 2xx refreshes the session
        if leg.allows_update or side is None or side.local is None:
            request = dialog.create_request("UPDATE", headers=headers)
        else:
            request = dialog.create_request(
                "INVITE",
                body=side.local.serialize(),
                headers=[("Allow", sip.core.allow), *headers],
            )
        self._refreshes[sip.send(request, dialog=dialog)] = leg
        log.info("call %s: session refresh (%s) sent", call.id, request.method)

    def _refused(self, leg: _Leg, method: str, status: int) -> None:
        """Our refresh got a final error other than 408 or 481: the refresh failed, not
        the dialog, so the session goes on (RFC 4028 §10 ends it only on those or no
        answer).  491 (glare): again after 2.1-4 s (RFC 3261 §14.1); 405 or 501 to an
        UPDATE (refused despite its Allow): the party gets re-INVITEs from now on, one
        at once; anything else: again at the next refresh point."""
        call = self.call
        leg.refreshing = False
        if leg.handle is not None:
            leg.handle.cancel()
        now = call.b2bua.now()
        side = call.offers.side_of(leg.dialog)
        if status == 491:
            delay = 2.1 + secrets.randbelow(1900) / 1000
            log.info("call %s: session refresh met glare (491), again in %.1f s", call.id, delay)
            self._arm(leg, now + delay)
        elif (
            status in (405, 501)
            and method == "UPDATE"
            and leg.allows_update
            and side is not None
            and side.local is not None
        ):
            log.info("call %s: session refresh by UPDATE refused (%s), by re-INVITE", call.id,
                     status)  # fmt: skip
            leg.allows_update = False
            self._arm(leg, now)
        else:
            log.warning("call %s: session refresh (%s) got %s, again at the next refresh",
                        call.id, method, status)  # fmt: skip
            self._arm(leg, leg.interval.refresh_due(now))

    def _expired(self, leg: _Leg, why: str) -> None:
        call = self.call
        self._stop(leg)
        side = call.offers.side_of(leg.dialog)
        party = side.party if side is not None else "call taker"
        log.warning("call %s: session timer expired on the %s's leg (%s)", call.id, party, why)
        call.b2bua.publish(SessionTimerExpired(call.id, party, leg.interval.seconds))
        call.hang_up("session timer expired", CallOutcome.SESSION_EXPIRED)


def _allows_update(message: Message) -> bool:
    """The party's Allow lists UPDATE (a garbled Allow: it does not)."""
    try:
        return "UPDATE" in (m.upper() for m in message.headers.get_all("allow"))
    except RemoteSipError:
        return False
