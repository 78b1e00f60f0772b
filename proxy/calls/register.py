"""REGISTER's transaction user (issue 18): the registrar for call takers' phones.

The decisions are the sans-IO :class:`~proxy.sip.registrar.Registrar`'s; this module
looks a user's SIP credentials up in the catalog (off the loop: the catalog has its own
thread) between its two steps, answers, and logs.  With ``[registrar] enabled = false``
every REGISTER gets 403 "registrar disabled": a 405 would say the method is unknown
here, while recproxy does implement it and only the configuration turns it off, and
phones treat a 403 as final rather than retrying another method.

Protection: a REGISTER opens a server transaction like any request from outside a
dialog, so it is counted against the source's token bucket first (``flood.py``); failed
digest answers are throttled per source and per account by the core; and at most
:data:`MAX_LOOKUPS` catalog look-ups are pending at once (past it: 503 at once), so a
flood of well-formed Authorization headers cannot queue unbounded work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..config import Config
from ..ratelog import RateLimitedLog
from ..sip.core import SipCore
from ..sip.digest import Algorithm
from ..sip.events import RequestReceived
from ..sip.registrar import (
    Answer,
    Contact,
    Lookup,
    Outcome,
    Registrar,
    RegistrarRules,
    RegistrarSnapshot,
    Secrets,
)
from ..sip.uri import SipUri, Uri
from ..storage.catalog import Catalog, CatalogError

log = logging.getLogger(__name__)
rate_log = RateLimitedLog(log, window=60.0)

#: Catalog look-ups of credentials in flight at most; past it REGISTER gets 503.
MAX_LOOKUPS = 64


def registrar_rules(config: Config) -> RegistrarRules:
    """The registrar's rules from ``[registrar]``; an AOR may name the realm or one of
    the addresses recproxy advertises."""
    r = config.registrar
    domains = {r.realm.lower(), config.sip.advertise.lower()}
    if config.sip.advertise6:
        domains.add(config.sip.advertise6.lower())
    return RegistrarRules(
        realm=r.realm,
        domains=frozenset(d for d in domains if d),
        algorithms=tuple(Algorithm(a) for a in r.algorithms),
        min_expires=r.min_expires,
        max_expires=r.max_expires,
        default_expires=r.default_expires,
        max_contacts_per_aor=r.max_contacts_per_aor,
        nonce_seconds=r.nonce_seconds,
        source_failures=r.source_failures,
        account_failures=r.account_failures,
        failure_window=r.failure_window_seconds,
    )


class RegisterDesk:
    """Answers REGISTER for the B2BUA: ``flush`` sends what the core queued, ``now`` is
    the loop's clock."""

    def __init__(
        self,
        config: Config,
        core: SipCore,
        catalog: Catalog,
        *,
        flush: Callable[[], None],
        now: Callable[[], float],
    ) -> None:
        self.enabled = config.registrar.enabled
        tls = config.sip.tls_listen
        self.ports = {config.sip.listen[1], *([tls[1]] if tls is not None else [])}
        self.registrar = Registrar(registrar_rules(config)) if self.enabled else None
        self.core = core
        self.catalog = catalog
        self.flush = flush
        self.now = now
        self._lookups: set[asyncio.Task[None]] = set()

    def contacts_for(self, aor: str) -> list[Contact]:
        """The registered contacts of ``aor`` (``sip:NAME@realm``), best ``q`` first;
        none when the registrar is disabled.  The hunt rings them all (:mod:`.fork`)."""
        if self.registrar is None:
            return []
        return self.registrar.bindings.contacts_for(aor, self.now())

    def aor_of(self, uri: Uri) -> str | None:
        """The canonical AOR ``sip:NAME@realm`` when ``uri`` (a hunt group's entry) is
        one of this registrar's: a user at the realm or at an address we advertise, as
        a REGISTER may name it, and at no port or our own (``sip:ann@10.0.0.5:5070`` is
        a phone at 10.0.0.5 even when recproxy advertises 10.0.0.5).  None when the
        registrar is disabled."""
        if self.registrar is None or not isinstance(uri, SipUri) or not uri.user:
            return None
        if uri.host.lower() not in self.registrar.rules.domains:
            return None
        if uri.port is not None and uri.port not in self.ports:
            return None
        return self.registrar.aor(uri.user)

    def snapshot(self) -> RegistrarSnapshot | None:
        """For the metrics; None when the registrar is disabled."""
        return None if self.registrar is None else self.registrar.snapshot(self.now())

    def on_register(self, event: RequestReceived) -> None:
        if self.registrar is None:
            self._answer(event, Answer(403, "Forbidden (registrar disabled)", (), Outcome.REFUSED))
            return
        step = self.registrar.screen(event.request, event.source[0], self.now())
        if isinstance(step, Answer):
            self._answer(event, step)
        elif len(self._lookups) >= MAX_LOOKUPS:
            retry = (("Retry-After", "5"),)
            self._answer(event, Answer(503, "Service Unavailable (busy)", retry, Outcome.REFUSED))
        else:
            task = asyncio.get_running_loop().create_task(self._complete(event, step))
            self._lookups.add(task)
            task.add_done_callback(self._lookups.discard)

    async def _complete(self, event: RequestReceived, lookup: Lookup) -> None:
        """Look up, decide and answer.  Every REGISTER that gets here is answered whatever
        goes wrong: an unanswered one would hold its server transaction (and a place in
        the core's table) for ever."""
        try:
            answer = await self._decide(event, lookup)
        except CatalogError as exc:
            rate_log.error("catalog", "REGISTER: SIP credentials not readable: %s", exc)
            retry = (("Retry-After", "30"),)
            answer = Answer(503, "Service Unavailable", retry, Outcome.REFUSED)
        except Exception as exc:  # a bug must not leave the REGISTER unanswered
            rate_log.error(
                "unexpected",
                "REGISTER from %s:%s not completed (answered 500): %s: %s",
                *event.source,
                type(exc).__name__,
                exc,
            )
            answer = Answer(500, "Server Internal Error", (), Outcome.REFUSED)
        self._answer(event, answer)

    async def _decide(self, event: RequestReceived, lookup: Lookup) -> Answer:
        assert self.registrar is not None
        secrets, aor_is_user = await self._look_up(lookup)
        source = event.source[0]
        answer = self.registrar.complete(
            lookup, event.request, source, secrets, aor_is_user=aor_is_user, now=self.now()
        )
        if answer.blocked is not None:
            log.warning(
                "REGISTER throttled: %s had too many failed digest answers; refused "
                "without checking for up to %d s",
                answer.blocked,
                self.registrar.rules.failure_window,
            )
        elif answer.outcome is Outcome.REGISTERED:
            aor = self.registrar.aor(lookup.aor_user)
            log.info(
                "REGISTER %s from %s:%s (digest %s): %d binding(s)",
                aor,
                *event.source,
                lookup.credentials.algorithm.value,
                len(answer.headers),
            )
        return answer

    async def _look_up(self, lookup: Lookup) -> tuple[Secrets | None, bool]:
        """The user's secrets (None: no such enabled user, or no SIP password), and
        whether the AOR's user is a user (only asked when it is another)."""
        assert self.registrar is not None
        found = await self.catalog.sip_credentials.lookup(lookup.username)
        realm = self.registrar.rules.realm
        if found is not None and found.realm != realm:
            rate_log.warning(
                f"realm {found.user}",
                "REGISTER by %s: its SIP password was set for realm %r, not registrar.realm "
                "%r; set it again with recproxy users sip-password",
                found.user,
                found.realm,
                realm,
            )
        secrets = None if found is None else Secrets(found.realm, found.ha1_sha256, found.ha1_md5)
        aor_is_user = lookup.aor_user == lookup.username.lower()
        if not aor_is_user:
            aor_is_user = await self.catalog.users.get(lookup.aor_user) is not None
        return secrets, aor_is_user

    def _answer(self, event: RequestReceived, answer: Answer) -> None:
        self.core.respond(
            event.transaction,
            answer.status,
            answer.reason,
            now=self.now(),
            headers=answer.headers,
        )
        self.flush()
