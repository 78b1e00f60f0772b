"""OPTIONS keepalives to every address of every configured call taker.

Every ``options_interval_seconds`` each call taker's URI is resolved (RFC 3263, cached
by its TTL) and each of its addresses gets an OPTIONS.  A probe unanswered when the next
round starts has failed (Timer F would take 32 s); its late answer is ignored.  What each
probe showed goes to :class:`~.health.TargetHealth`, which the hunt (:mod:`.hunt`)
reads, and is published as :class:`~proxy.events.CallTakerProbed` for the metrics.

The TU (:class:`~.b2bua.B2bua`) hands the prober the responses and time-outs of its
own transactions (:meth:`Prober.owns`, :meth:`Prober.on_event`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..events import CallTakerProbed, Publish
from ..sip.core import SipCore
from ..sip.dialog import build_request
from ..sip.events import ResponseReceived, TransactionTimedOut
from ..sip.resolve import Target
from ..sip.transaction import Transaction
from ..sip.uri import SipUri
from .health import TargetHealth, alive
from .resolver import Resolver

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Probe:
    call_taker: str
    target: Target
    sent_at: float


class Prober:
    """Probes ``call_takers`` (parsed SIP URIs) through ``core``."""

    def __init__(
        self,
        core: SipCore,
        call_takers: Sequence[SipUri],
        resolver: Resolver,
        health: TargetHealth,
        *,
        interval: float,
        local_host: str,
        now: Callable[[], float],
        flush: Callable[[], None],
        publish: Publish,
    ) -> None:
        self.core = core
        self.call_takers = tuple(call_takers)
        self.resolver = resolver
        self.health = health
        self.interval = interval
        self.local_host = local_host
        self.now = now
        self.flush = flush
        self.publish = publish
        self._pending: dict[Transaction, _Probe] = {}

    async def run(self) -> None:
        """Probe every ``interval`` seconds until cancelled (nothing when it is 0)."""
        if self.interval <= 0:
            return
        while True:
            try:
                await self.probe_all()
            except Exception:  # a bad round must not end the keepalives
                log.exception("call taker keepalive round failed")
            await asyncio.sleep(self.interval)

    async def probe_all(self) -> None:
        """One round: the last round's unanswered probes fail, and each address of each
        call taker gets a new one."""
        for txn in list(self._pending):
            self._ended(txn, None)
        for uri in self.call_takers:
            targets = await self.resolver.resolve(uri)
            name = str(uri)
            self.health.forget(name, set(targets))
            for target in targets:
                self._send(uri, name, target)
        self.flush()

    def owns(self, transaction: Transaction) -> bool:
        return transaction in self._pending

    def on_event(self, event: ResponseReceived | TransactionTimedOut) -> None:
        """A response to, or the time-out of, one of our probes."""
        if isinstance(event, TransactionTimedOut):
            self._ended(event.transaction, None)
        elif event.response.status >= 200:
            self._ended(event.transaction, event.response.status)

    def _send(self, uri: SipUri, name: str, target: Target) -> None:
        request = build_request(
            "OPTIONS",
            uri,
            from_=f"<sip:recproxy@{self.local_host}>",
            to=f"<{uri}>",
            local_host=self.local_host,
            headers=[("Accept", "application/sdp")],
        )
        txn = self.core.send_request(
            request,
            self.now(),
            destination=(target.host, target.port),
            transport=target.transport,
            server_name=target.server_name,
        )
        self._pending[txn] = _Probe(name, target, self.now())

    def _ended(self, transaction: Transaction, status: int | None) -> None:
        probe = self._pending.pop(transaction, None)
        if probe is None:
            return
        was_up = self.health.is_up(probe.call_taker)
        self.health.probed(probe.call_taker, probe.target, status)
        up = self.health.is_up(probe.call_taker)
        if up != was_up:
            log.warning("call taker %s is %s", probe.call_taker, "up" if up else "down")
        seconds = self.now() - probe.sent_at if alive(status) else None
        self.publish(CallTakerProbed(probe.call_taker, str(probe.target), up, seconds))
