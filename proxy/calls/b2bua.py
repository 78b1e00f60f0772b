"""The transaction user: receives the SIP core's events and hands each to its call;
admits, starts and stops calls.

A request outside a dialog is an INVITE (a new :class:`~proxy.calls.call.Call`, after
admission), a REGISTER (:mod:`.register`), OPTIONS or a method we refuse with its
reason; everything else is routed to its call through the TU's own map of transactions
and dialogs (:class:`CallRoutes`), so the SIP core carries no pointers back to calls.
Calls publish their domain events through ``publish`` (:mod:`proxy.events`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Config
from ..events import Publish, discard
from ..media.clock import MediaClock
from ..media.relay import MediaSession, PortAllocator
from ..ratelog import RateLimitedLog
from ..sip.core import Refusal, SipCore
from ..sip.dialog import Dialog
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
from ..sip.message import Request
from ..sip.uri import SipUri, parse_uri
from ..storage.catalog import Catalog
from .call import Call
from .health import TargetHealth
from .media_wiring import KernelForwarding, MediaWorkers, Player, SessionFactory
from .phases import CallPhase
from .probe import Prober
from .prompt import Prompt
from .register import RegisterDesk
from .resolver import Resolver
from .routes import CallRoutes
from .siprec import RecordingSession
from .siprec_offer import is_siprec

if TYPE_CHECKING:
    from .recording import RecordingService

__all__ = ["REFUSED_METHODS", "B2bua", "Call", "CallPhase", "Prompt"]

log = logging.getLogger(__name__)
flood_log = RateLimitedLog(log)  # for what a flood of INVITEs would log once each

#: Methods refused with a reason that says why, in a dialog or outside one alike:
#: SUBSCRIBE (no event package, so not ``refer``: RFC 6665 §4.2.2) and NOTIFY (we never
#: subscribe, so no subscription exists: RFC 6665 §4.1.3).  REFER is a call's
#: (:mod:`.transfer`); outside a call there is nothing to transfer (481).
REFUSED_METHODS: Mapping[str, tuple[int, str]] = {
    "SUBSCRIBE": (489, "Bad Event (no event packages are supported)"),
    "NOTIFY": (481, "Subscription Does Not Exist"),
}


def resolver_transports(config: Config) -> list[str]:
    """The transports RFC 3263 resolution may pick, in order: ``[sip] transports``, then
    TLS when ``tls_listen`` turns it on (without it a ``sips:`` URI resolves to nothing)."""
    transports = [t.upper() for t in config.sip.transports]
    return [*transports, "TLS"] if config.sip.tls_listen is not None else transports


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
        *,
        publish: Publish = discard,
        flush: Callable[[], None] = lambda: None,
        player: Player | None = None,
        sessions: SessionFactory | None = None,
        config_version: str | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        """``publish`` gets the calls' domain events; ``flush`` sends what the SIP core
        has queued (the transport's, which is built after this, as it delivers to
        ``on_event``); ``player`` (default: ``clock``)
        plays prompts on legs and ``sessions`` makes each call's pair of RTP legs
        (default: sockets from ``allocator``) — both replaceable so the call flow can be
        driven without sockets.  ``config_version`` is the configuration's version
        (``proxy.config_version``), recorded on each call's catalog row (P22)."""
        self.config = config
        self.config_version = config_version
        self.core = core
        self.allocator = allocator
        self.clock: Player = player or clock
        self.publish = publish
        advertise, grace = config.sip.advertise, config.media.nat_latch_seconds
        self.new_session: SessionFactory = sessions or (
            lambda: MediaSession(allocator, advertise, nat_grace=grace)
        )
        self.kernel: KernelForwarding | None = None  # the fast path, when app.py found it
        self.workers: MediaWorkers | None = None  # media worker processes, if configured
        self.catalog = catalog
        self.recordings = recordings
        self.notice = notice
        # every prompt the configuration names (notice, do-not-record, per service)
        self.prompts: dict[Path, Prompt] = dict(prompts or {})
        self.prompts.setdefault(config.notice.prompt, notice)
        self.flush = flush
        self.calls: dict[str, Call] = {}
        self.recording_sessions: dict[str, RecordingSession] = {}  # SIPREC (RFC 7866)
        self.routes: CallRoutes[Call | RecordingSession] = CallRoutes()
        self.accepting = True
        # whether this node can take calls now, for OPTIONS from outside a dialog (a
        # dispatcher's probe, issue 20); app.py makes it the health check
        self.available: Callable[[], bool] = lambda: self.accepting
        self.stats: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # -- routing (issue 18): DNS, the call takers' health and their keepalives --
        self.resolver = resolver or Resolver(
            config.dns.nameservers,
            timeout=config.dns.timeout_seconds,
            transports=resolver_transports(config),
            families=(4, 6) if config.sip.media_host(6) else (4,),
        )
        # REGISTER (issue 18): the registrar, or 403 when it is disabled
        self.registrar = RegisterDesk(
            config, core, catalog, flush=lambda: self.flush(), now=self.now
        )
        self.health = TargetHealth(config.routing.options_failures)
        self.prober = Prober(
            core,
            [  # an AOR of ours is not probed: its phones registered (RFC 3261 §10)
                u
                for u in map(parse_uri, config.routing.every_call_taker)
                if isinstance(u, SipUri) and self.registrar.aor_of(u) is None
            ],
            self.resolver,
            self.health,
            interval=config.routing.options_interval_seconds,
            local_host=advertise,
            now=self.now,
            flush=lambda: self.flush(),
            publish=publish,
        )

    # -- SIP plumbing -------------------------------------------------------------------

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def prompt(self, path: Path) -> Prompt:
        return self.prompts.get(path) or self.notice

    def count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    def on_event(self, event: Event) -> None:
        """The SipTransport's event handler."""
        if isinstance(event, RequestReceived):
            if event.dialog is not None:
                self._to_call(self.routes.for_dialog(event.dialog), event)
            elif event.request.method == "INVITE":
                self._new_call(event)
            else:
                self._out_of_dialog(event)
        elif isinstance(event, ResponseReceived | TransactionTimedOut) and self.prober.owns(
            event.transaction
        ):
            self.prober.on_event(event)
        elif isinstance(event, ResponseReceived | TransactionTimedOut | RequestCancelled):
            self._to_call(self.routes.for_transaction(event.transaction), event)
        elif isinstance(event, AckReceived):
            self._to_call(self.routes.for_dialog(event.dialog), event)
        elif isinstance(event, AckTimedOut):
            owner = self.routes.for_dialog(event.dialog) or self.routes.for_transaction(
                event.transaction
            )
            self._to_call(owner, event)
        elif isinstance(event, MessageDropped):
            self.count("sip_dropped")

    def _to_call(self, owner: Call | RecordingSession | None, event: Event) -> None:
        if owner is not None and not owner.finished:
            owner.events.put_nowait(event)
        elif isinstance(event, RequestReceived):
            # a request in a dialog whose call has already ended
            self.core.respond(event.transaction, 481, now=self.now(), dialog=event.dialog)

    def _out_of_dialog(self, event: RequestReceived) -> None:
        method = event.request.method
        if method == "REGISTER":
            self.registrar.on_register(event)
        elif method in ("BYE", "INFO", "UPDATE", "REFER"):
            self.core.respond(event.transaction, 481, now=self.now())
        else:
            self.answer_other(event)

    def answer_other(self, event: RequestReceived, dialog: Dialog | None = None) -> None:
        """OPTIONS, the refused methods and anything else the call flow does not handle,
        answered the same in a dialog and outside one — but an OPTIONS outside a dialog
        while this node cannot take calls (not started, draining, its media clock
        stalled: ``available``) gets 503."""
        method = event.request.method
        now = self.now()
        if method == "OPTIONS" and dialog is None and not self.available():
            # Kamailio's dispatcher marks a node that answers a probe so down and sends
            # new calls to the others until it answers 200 again
            self.core.respond(
                event.transaction,
                503,
                "Service Unavailable (not taking calls)",
                now=now,
                headers=[("Retry-After", "5")],
            )
        elif method == "OPTIONS":
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
        if is_siprec(request):
            # a recording session is judged by [siprec] alone: a trusted call peer is
            # not a recording client (it would skip the notice and leave a receipt
            # saying the SRC gave it)
            siprec = self.config.siprec
            if not siprec.enabled:
                self.count("rejected_siprec")
                return Refusal(403, "Forbidden (SIPREC is not enabled)")
            if not siprec.is_source(host):
                self.count("rejected_siprec")
                flood_log.warning("siprec", "SIPREC INVITE from %s:%s refused", *source)
                return Refusal(403, "Forbidden (not a SIPREC source)")
        elif not self.config.sip.is_trusted(host):
            self.count("rejected_untrusted")
            flood_log.warning("untrusted", "INVITE from untrusted %s:%s refused", *source)
            return Refusal(403, "Forbidden (not a trusted peer)")
        limits = self.config.limits
        # a SIPREC recording session holds ports and a recording as a call does
        active: list[Call | RecordingSession] = [
            *self.calls.values(),
            *self.recording_sessions.values(),
        ]
        if len(active) >= limits.max_calls or (
            len(active) >= limits.max_calls_per_source
            and sum(c.invite.source[0] == host for c in active) >= limits.max_calls_per_source
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
        if is_siprec(event.request):
            session = RecordingSession(self, event)
            self.recording_sessions[session.id] = session
            self._start(session.run(), f"siprec-{session.id}")
            return
        call = Call(self, event)
        self.calls[call.id] = call
        self._start(call.run(), f"call-{call.id}")

    def _start(self, flow: Coroutine[None, None, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(flow, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call task failed", exc_info=task.exception())

    def call_over(self, call: Call) -> None:
        """A call ended: it is no longer active and nothing routes to it any more."""
        self.calls.pop(call.id, None)
        self.routes.forget(call)

    def siprec_over(self, session: RecordingSession) -> None:
        """A SIPREC recording session ended: nothing routes to it any more."""
        self.recording_sessions.pop(session.id, None)
        self.routes.forget(session)

    # -- life cycle ------------------------------------------------------------------------

    async def shutdown(self, grace: float) -> None:
        """Refuse new calls (503); let active calls finish for ``grace`` seconds; then end
        the rest with BYE and close their recordings."""
        self.accepting = False
        deadline = self.now() + grace
        while (self.calls or self.recording_sessions) and self.now() < deadline:
            await asyncio.sleep(min(0.1, max(deadline - self.now(), 0)))
        for call in list(self.calls.values()):
            call.hang_up("shutdown")
        for session in list(self.recording_sessions.values()):
            session.hang_up()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=10)
