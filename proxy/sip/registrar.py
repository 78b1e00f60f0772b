"""The registrar's sans-IO core (RFC 3261 §10.3), time passed in.

:class:`Bindings` keeps each address of record's contacts with their expiry, applying
a REGISTER all or nothing: ``Contact: *`` with ``Expires: 0`` removes every binding;
a contact's ``expires`` parameter wins over the ``Expires`` header, which wins over the
default; an interval shorter than the minimum (but not 0) is refused with 423 and
``Min-Expires``, a longer one shortened to the maximum; a REGISTER with the Call-ID of a
binding and a CSeq not above it is out of order (500) and changes nothing.

:class:`Registrar` puts the digest check in front (:mod:`.digest`) and the failure
throttles (:mod:`.auth_throttle`).  It cannot look credentials up itself (they are in
the catalog), so a REGISTER takes two steps: :meth:`Registrar.screen` answers what it
can from the request alone (malformed, not our domain, throttled, no credentials: a 401
challenge) or says whose credentials it needs (:class:`Lookup`); the transaction user
looks them up off the loop and calls :meth:`Registrar.complete`.

Bindings are soft state in memory: a restart forgets them and phones register again
within their interval.  Memory is bounded: only an authenticated user's own AOR gets
bindings, at most ``max_contacts_per_aor`` each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from . import abnf
from .auth_throttle import FailureThrottle, ProvenSources
from .digest import Algorithm, Credentials, DigestAuthority, Verdict, parse_credentials
from .errors import RemoteSipError
from .headers import NameAddr
from .message import Request
from .uri import SipUri

#: The largest delta-seconds taken as given (RFC 3261 §25: up to 2**32-1).
MAX_DELTA = 2**32 - 1


@dataclass(frozen=True)
class RegistrarRules:
    """What the registrar accepts (``[registrar]`` in the configuration)."""

    realm: str
    domains: frozenset[str]  # hosts an AOR may name: the realm and our own addresses
    algorithms: tuple[Algorithm, ...] = (Algorithm.SHA256, Algorithm.MD5)  # offered, in order
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    max_contacts_per_aor: int = 5
    nonce_seconds: float = 300.0
    source_failures: int = 10
    account_failures: int = 20
    failure_window: float = 300.0


@dataclass(frozen=True, slots=True)
class Contact:
    """One binding of an AOR: where to reach a registered phone until ``expires_at``."""

    uri: SipUri
    q: float
    expires_at: float
    call_id: str
    cseq: int

    def header(self, now: float) -> str:
        """The Contact value a 200 to REGISTER lists it as (RFC 3261 §10.3 step 8)."""
        q = "" if self.q == 1.0 else f";q={self.q:g}"
        return f"<{self.uri}>;expires={max(round(self.expires_at - now), 0)}{q}"


def _delta(text: str, what: str) -> int:
    """delta-seconds, capped at :data:`MAX_DELTA` (RFC 3261 §25, §20.19: a larger value
    means the largest); digits past ten are not converted (Python refuses to convert
    over 4,300 digits, and nothing that long is below the cap)."""
    digits = text.strip(abnf.WSP)
    if abnf.DIGITS.fullmatch(digits) is None:
        raise RemoteSipError(400, f"Bad Request ({what} is not delta-seconds)")
    digits = digits.lstrip("0") or "0"
    if len(digits) > 10:
        return MAX_DELTA
    return min(int(digits), MAX_DELTA)


def _q(value: str | None) -> float:
    if value is None:
        return 1.0
    try:
        q = float(value)
    except ValueError:
        q = -1.0
    if not 0.0 <= q <= 1.0 or len(value) > 5:
        raise RemoteSipError(400, "Bad Request (Contact q is not a qvalue)")
    return q


def address_of_record(request: Request, domains: frozenset[str]) -> tuple[str, str]:
    """The AOR a REGISTER is for (its To) as ``(user, host)``; 404 for one that is not
    ``sip:user@`` one of our ``domains``."""
    uri = request.to.uri
    if not isinstance(uri, SipUri) or not uri.user:
        raise RemoteSipError(404, "Not Found (no user in the address of record)")
    if uri.host.lower() not in domains:
        raise RemoteSipError(404, "Not Found (not a domain of this registrar)")
    return uri.user, uri.host.lower()


class Bindings:
    """The contacts of every AOR, keyed by its canonical ``sip:user@realm``."""

    def __init__(self, rules: RegistrarRules) -> None:
        self.rules = rules
        self._bindings: dict[str, list[Contact]] = {}

    def contacts_for(self, aor: str, now: float) -> list[Contact]:
        """The AOR's live contacts, highest ``q`` first (ringing them is a later step)."""
        live = [c for c in self._bindings.get(aor, ()) if c.expires_at > now]
        return sorted(live, key=lambda c: -c.q)

    def count(self, now: float) -> int:
        """Live bindings of all AORs (expired ones are forgotten here)."""
        for aor in list(self._bindings):
            live = self.contacts_for(aor, now)
            if live:
                self._bindings[aor] = live
            else:
                del self._bindings[aor]
        return sum(len(c) for c in self._bindings.values())

    def update(self, aor: str, request: Request, now: float) -> list[Contact]:
        """Apply a REGISTER to ``aor``'s bindings (an authenticated one); its contacts
        after.  ``RemoteSipError`` (400, 403, 423, 500), and nothing changed, when the
        request cannot be applied whole."""
        call_id, cseq = request.call_id, request.cseq.number
        header = request.headers.get("expires")
        default = self.rules.default_expires if header is None else _delta(header, "Expires")
        contacts = request.contacts
        current = {str(c.uri): c for c in self.contacts_for(aor, now)}
        if any(c.display == "*" for c in contacts):
            if len(contacts) != 1 or header is None or default != 0:
                raise RemoteSipError(400, "Bad Request (Contact: * needs Expires: 0 alone)")
            self._check_order(current.values(), call_id, cseq)
            self._bindings.pop(aor, None)
            return []
        wanted = [(c, self._expiry(c, default)) for c in contacts]
        too_brief = [e for _, e in wanted if 0 < e < self.rules.min_expires]
        if too_brief:
            raise RemoteSipError(
                423,
                "Interval Too Brief",
                extra_headers=(("Min-Expires", str(self.rules.min_expires)),),
            )
        for contact, expires in wanted:
            if not isinstance(contact.uri, SipUri):
                raise RemoteSipError(400, "Bad Request (Contact is not a SIP URI)")
            known = next((c for c in current.values() if c.uri.matches(contact.uri)), None)
            if known is not None:
                self._check_order((known,), call_id, cseq)
                del current[str(known.uri)]
            if expires:
                expires = min(expires, self.rules.max_expires)
                uri = contact.uri
                current[str(uri)] = Contact(
                    uri, _q(contact.param("q")), now + expires, call_id, cseq
                )
        if len(current) > self.rules.max_contacts_per_aor:
            raise RemoteSipError(
                403,
                f"Forbidden (more than {self.rules.max_contacts_per_aor} contacts "
                "for one address of record)",
            )
        if current:
            self._bindings[aor] = list(current.values())
        else:
            self._bindings.pop(aor, None)
        return self.contacts_for(aor, now)

    def _expiry(self, contact: NameAddr, default: int) -> int:
        param = contact.param("expires")
        return default if param is None else _delta(param, "Contact expires")

    @staticmethod
    def _check_order(bindings: Iterable[Contact], call_id: str, cseq: int) -> None:
        if any(b.call_id == call_id and cseq <= b.cseq for b in bindings):
            raise RemoteSipError(500, "Server Internal Error (REGISTER CSeq out of order)")


class Outcome(StrEnum):
    """What became of a REGISTER (for the counters and the log)."""

    REGISTERED = "registered"  # 200: bindings applied or listed
    CHALLENGED = "challenged"  # 401 to a REGISTER without credentials, or stale
    FAILED = "failed"  # a wrong digest answer: counted against source and account
    THROTTLED = "throttled"  # refused without checking: too many failures
    REFUSED = "refused"  # malformed, not ours, another's AOR, too brief...


@dataclass(frozen=True, slots=True)
class Answer:
    """The response to send, and what it came to.  ``blocked``: a key (source or
    account) that has just become throttled, to be logged once."""

    status: int
    reason: str | None
    headers: tuple[tuple[str, str], ...]
    outcome: Outcome
    blocked: str | None = None


@dataclass(frozen=True, slots=True)
class Lookup:
    """:meth:`Registrar.screen` needs the credentials of ``username`` (and whether
    ``aor_user`` is a user, when another)."""

    credentials: Credentials
    aor_user: str

    @property
    def username(self) -> str:
        return self.credentials.username


@dataclass(frozen=True, slots=True)
class Secrets:
    """A user's stored HA1 values and the realm they were made for."""

    realm: str
    ha1_sha256: str
    ha1_md5: str

    def ha1(self, algorithm: Algorithm) -> str:
        return self.ha1_sha256 if algorithm is Algorithm.SHA256 else self.ha1_md5


@dataclass(frozen=True, slots=True)
class RegistrarSnapshot:
    """For the metrics at scrape: live bindings, and REGISTERs answered by outcome."""

    bindings: int
    outcomes: Mapping[str, int]


class Registrar:
    """REGISTER's decisions for one realm; ``authority`` checks digest answers."""

    def __init__(self, rules: RegistrarRules, *, authority: DigestAuthority | None = None) -> None:
        self.rules = rules
        self.authority = authority or DigestAuthority(
            rules.realm, lifetime=rules.nonce_seconds, algorithms=rules.algorithms
        )
        self.bindings = Bindings(rules)
        self.sources = FailureThrottle(rules.source_failures, rules.failure_window)
        self.accounts = FailureThrottle(rules.account_failures, rules.failure_window)
        self.proven = ProvenSources()
        self.outcomes: Counter[str] = Counter({o.value: 0 for o in Outcome})

    def snapshot(self, now: float) -> RegistrarSnapshot:
        return RegistrarSnapshot(self.bindings.count(now), dict(self.outcomes))

    def aor(self, user: str) -> str:
        """The canonical AOR of user ``user``: ``sip:user@realm``."""
        return f"sip:{user.lower()}@{self.rules.realm}"

    def screen(self, request: Request, source: str, now: float) -> Answer | Lookup:
        """What can be answered before the credentials are looked up."""
        step = self._screen(request, source, now)
        if isinstance(step, Answer):
            self.outcomes[step.outcome.value] += 1
        return step

    def _screen(self, request: Request, source: str, now: float) -> Answer | Lookup:
        try:
            user, _ = address_of_record(request, self.rules.domains)
            request.contacts  # noqa: B018 - a malformed Contact is a 400 before any check
        except RemoteSipError as exc:
            return _refusal(exc)
        wait = self.sources.blocked_for(source, now)
        if wait:
            return self._throttled(wait)
        value = request.headers.get("authorization")
        if value is None:
            return self._challenge(now)
        try:
            credentials = parse_credentials(value)
        except RemoteSipError as exc:
            return _refusal(exc)
        account = credentials.username.lower()
        wait = self.accounts.blocked_for(account, now)
        if wait and not self._owner_of(account, source, now):
            return self._throttled(wait)
        return Lookup(credentials, user.lower())

    def _owner_of(self, account: str, source: str, now: float) -> bool:
        """Whether ``source`` is one of ``account``'s own phones: it proved the password
        within the failure window, or a live binding of the account's AOR names it.  The
        account's block (which any source's failures, even spoofed ones, can cause) does
        not apply to it; its own source's block still does."""
        if self.proven.proved(account, source, now):
            return True
        host = source.strip("[]").lower()
        return any(
            c.uri.host.strip("[]").lower() == host
            for c in self.bindings.contacts_for(self.aor(account), now)
        )

    def complete(
        self,
        lookup: Lookup,
        request: Request,
        source: str,
        secrets: Secrets | None,
        *,
        aor_is_user: bool,
        now: float,
    ) -> Answer:
        """Check the digest answer against ``secrets`` (None: no such user, or no SIP
        password) and apply the REGISTER to the user's own AOR."""
        credentials = lookup.credentials
        stored = None
        if secrets is not None and secrets.realm == self.rules.realm:
            stored = secrets.ha1(credentials.algorithm)
        verdict = self.authority.check(credentials, method="REGISTER", stored_ha1=stored, now=now)
        answer = self._answer(verdict, lookup, request, source, aor_is_user=aor_is_user, now=now)
        self.outcomes[answer.outcome.value] += 1
        return answer

    def _answer(
        self,
        verdict: Verdict,
        lookup: Lookup,
        request: Request,
        source: str,
        *,
        aor_is_user: bool,
        now: float,
    ) -> Answer:
        """What a digest answer's ``verdict`` comes to."""
        if verdict in (Verdict.STALE, Verdict.BAD_NONCE):
            return self._challenge(now, stale=verdict is Verdict.STALE)
        if verdict is not Verdict.OK:
            account = lookup.username.lower()
            source_blocked = self.sources.record(source, now)
            account_blocked = self.accounts.record(account, now)
            blocked = (
                f"source {source}"
                if source_blocked
                else (f"account {account}" if account_blocked else None)
            )
            challenge = self._challenge(now)
            return Answer(401, None, challenge.headers, Outcome.FAILED, blocked)
        self.proven.prove(lookup.username.lower(), source, now + self.rules.failure_window)
        if lookup.aor_user != lookup.username.lower():
            if aor_is_user:
                return Answer(
                    403, "Forbidden (another user's address of record)", (), Outcome.REFUSED
                )
            return Answer(404, "Not Found (no such user)", (), Outcome.REFUSED)
        try:
            contacts = self.bindings.update(self.aor(lookup.aor_user), request, now)
        except RemoteSipError as exc:
            return _refusal(exc)
        headers = tuple(("Contact", c.header(now)) for c in contacts)
        return Answer(200, None, headers, Outcome.REGISTERED)

    def _challenge(self, now: float, *, stale: bool = False) -> Answer:
        headers = tuple(
            ("WWW-Authenticate", c) for c in self.authority.challenges(now, stale=stale)
        )
        return Answer(401, None, headers, Outcome.CHALLENGED)

    def _throttled(self, wait: float) -> Answer:
        retry = ("Retry-After", str(max(int(wait + 0.999), 1)))
        return Answer(
            503, "Service Unavailable (too many failed attempts)", (retry,), Outcome.THROTTLED
        )


def _refusal(exc: RemoteSipError) -> Answer:
    return Answer(exc.status, exc.reason, exc.extra_headers, Outcome.REFUSED)
