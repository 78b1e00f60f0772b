"""Subject access requests (P8, P17-P19): a caller asks for copies of their own calls.

The steps, each through the gate (so each is decided by the policy and audited), and
each recorded in the catalog with its own audit entry (:mod:`proxy.storage.catalog.sar`):

1. **Open** (``open_sar``: a records officer or the DPO) with the requester's name, how
   their identity was checked, the number or numbers they call from, the window and
   optionally an operator.  The catalog is searched — each number in E.164 and as given,
   as caller or callee — and every recording found is attached, and held while the case
   is open.  The deadline is ``[sar] deadline_months`` calendar months from the day the
   request was received (:func:`deadline_for`).
2. **Decide** (``decide_sar``: the DPO alone), per call: release ``both`` parties, the
   ``caller`` only (the call taker's channel is left out of every file), or ``refuse``,
   each with a reason.
3. **Export** the released calls as a signed bundle (:mod:`proxy.records.sar_export`).
4. **Close** when the requester has their answer; the holds are released.

Values arrive as the person sent them (the API's JSON, the command line's text) and are
checked before anything is asked or written, so bad input changes nothing, not even the
audit chain.  Errors are those of :mod:`proxy.records.errors`, each one line.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..config import NumberSettings, SarSettings
from ..storage.catalog import (
    Catalog,
    NewSarCase,
    Release,
    SarCase,
    SarCaseError,
    SarState,
    Scope,
    SearchFilters,
    SearchHit,
    SearchQuery,
    format_utc,
)
from .access import given_text, mapped
from .errors import AccessRequestConflict, InvalidAccessRequest, RecordNotFound
from .gate import Gate, require
from .policy import AccessQuery, Action, Actor
from .search import filter_text, filter_time

#: The most numbers one case searches for, and the most recordings it attaches (a
#: window that finds more is too wide to decide call by call: narrow it).
MAX_NUMBERS = 10
MAX_RECORDINGS = 500
_PAGE = 200
RELEASES = tuple(r.value for r in Release)


def deadline_for(received: datetime, months: int, timezone: ZoneInfo) -> datetime:
    """The end (local midnight, as UTC) of the day ``months`` calendar months after the
    local day ``received`` (the ICO's rule: received 15 January, due 15 February; a day
    the month lacks becomes its last day: 31 January → 28 or 29 February)."""
    day = received.astimezone(timezone).date()
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    due = date(year, month, min(day.day, calendar.monthrange(year, month)[1]))
    end = datetime.combine(due + timedelta(days=1), time(0, 0), tzinfo=timezone)
    return end.astimezone(UTC)


def parse_release(value: object) -> Release:
    """``both``, ``caller`` or ``refuse`` as a person sent it."""
    given = filter_text("release", value)
    try:
        return Release(given or "")
    except ValueError:
        raise InvalidAccessRequest(
            f"release must be one of {', '.join(RELEASES)}, got {value!r}"
        ) from None


def _numbers(value: object, numbers: NumberSettings) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The numbers as given (one text or a list of 1 to ``MAX_NUMBERS``), and every form
    to search for (E.164 first, then as given)."""
    given = [value] if isinstance(value, str) else value
    if not isinstance(given, list | tuple) or not given:
        raise InvalidAccessRequest("number must be a telephone number or a list of them")
    if len(given) > MAX_NUMBERS:
        raise InvalidAccessRequest(f"a case searches at most {MAX_NUMBERS} numbers")
    texts = []
    for each in given:
        text = filter_text("number", each)
        if text is None:
            raise InvalidAccessRequest("each number must be a telephone number (text)")
        texts.append(text)
    forms = [form for text in texts for form in (numbers.normalise(text), text)]
    return tuple(dict.fromkeys(texts)), tuple(dict.fromkeys(forms))


@dataclass(frozen=True, slots=True)
class CaseView:
    """A case and the metadata of each attached call (None: no longer in the catalog's
    search, which cannot happen while recordings are never removed, but is shown)."""

    case: SarCase
    calls: dict[str, SearchHit | None]

    def as_dict(self) -> dict[str, Any]:
        document = self.case.as_dict()
        for attached in document["recordings"]:
            hit = self.calls.get(attached["recording_id"])
            attached["call"] = None if hit is None else hit.as_dict()
        return document


async def refuse_early(gate: Gate, actor: Actor, action: Action, reason: str) -> None:
    """Refuse (audited, ``AccessDenied``) before a case is looked up when ``actor``'s
    role may never do ``action``: whether a case exists, or a call is in one, is told
    only to those who handle cases.  Nothing is written when the role may."""
    if not gate.decide(AccessQuery(actor, action, gate.now(), reason=reason)).allowed:
        require(await gate.check(actor, action, reason=reason))


class SarDesk:
    """Subject access cases; see the module docstring."""

    def __init__(
        self, gate: Gate, catalog: Catalog, numbers: NumberSettings, settings: SarSettings
    ) -> None:
        self._gate = gate
        self._catalog = catalog
        self._numbers = numbers
        self._settings = settings

    @property
    def settings(self) -> SarSettings:
        return self._settings

    async def open(
        self,
        actor: Actor,
        *,
        requester: object,
        identity_check: object,
        number: object,
        window_from: object,
        window_to: object,
        operator: object = None,
        contact: object = None,
        received: object = None,
    ) -> CaseView:
        """Open a case and attach the calls its search finds (see the module
        docstring); ``received`` (ISO 8601) defaults to now."""
        who = given_text("requester", requester)
        how = given_text("identity_check", identity_check)
        if not who:
            raise InvalidAccessRequest("requester: name the person asking")
        if not how:
            raise InvalidAccessRequest(
                "identity_check: say how the requester's identity was checked"
            )
        numbers, forms = _numbers(number, self._numbers)
        start, end = filter_time("from", window_from), filter_time("to", window_to)
        if start is None or end is None:
            raise InvalidAccessRequest("from and to: the window to search, both required")
        if end <= start:
            raise InvalidAccessRequest("to must be after from")
        now = self._gate.now()
        received_at = filter_time("received", received) or now
        if received_at > now:
            raise InvalidAccessRequest("received is in the future")
        who_else = filter_text("operator", operator)
        reach = given_text("contact", contact, required=False) or None
        reason = f"subject access request from {who}"
        found: list[SearchHit] = []
        if self._gate.decide(AccessQuery(actor, Action.OPEN_SAR, now, reason=reason)).allowed:
            # searched before the audit, so a search finding too many changes nothing; one
            # who may not open a case learns of no call
            found = await self._find(SearchFilters(forms, start, end, operator=who_else), now)
        require(await self._gate.check(actor, Action.OPEN_SAR, reason=reason))
        deadline = deadline_for(
            received_at, self._settings.deadline_months, self._gate.settings.timezone
        )
        new = NewSarCase(
            requester=who,
            identity_check=how,
            numbers=numbers,
            window_from=start,
            window_to=end,
            received_at=received_at,
            deadline_at=deadline,
            opened_by=actor.name,
            recording_ids=tuple(hit.recording_id for hit in found),
            operator=who_else,
            contact=reach,
        )
        case = await mapped(self._catalog.sar.open(new, at=now))
        return CaseView(case, {hit.recording_id: hit for hit in found})

    async def _find(self, filters: SearchFilters, now: datetime) -> list[SearchHit]:
        """Every recording the filters find, oldest call first (a case lists them in
        the order they happened)."""
        found: list[SearchHit] = []
        scope = Scope(now, everything=True)
        while True:
            page = await self._catalog.search.search(
                SearchQuery(scope, filters, limit=_PAGE, offset=len(found))
            )
            found += page
            if len(found) > MAX_RECORDINGS:
                raise InvalidAccessRequest(
                    f"the search finds more than {MAX_RECORDINGS} recordings: narrow the window"
                    " or name the operator"
                )
            if len(page) < _PAGE:
                return sorted(found, key=lambda hit: (hit.call_started_at, hit.recording_id))

    async def cases(self, actor: Actor, state: object = None) -> list[SarCase]:
        """Every case (or those in ``state``), soonest deadline first."""
        given = filter_text("state", state)
        try:
            wanted = None if given is None else SarState(given)
        except ValueError:
            known = ", ".join(s.value for s in SarState)
            raise InvalidAccessRequest(f"state must be one of {known}, got {given!r}") from None
        require(await self._gate.check(actor, Action.VIEW_SAR))
        return await self._catalog.sar.cases(state=wanted)

    async def show(self, actor: Actor, case_id: str) -> CaseView:
        """One case, with the metadata of each of its calls (an unknown case is a 404
        that writes nothing, as it is for ``decide`` and ``close``)."""
        await refuse_early(self._gate, actor, Action.VIEW_SAR, f"case {case_id}")
        case = await self._get(case_id)
        require(await self._gate.check(actor, Action.VIEW_SAR, reason=f"case {case.id}"))
        calls = {
            r.recording_id: await self._catalog.search.hit(r.recording_id) for r in case.recordings
        }
        return CaseView(case, calls)

    async def decide(
        self, actor: Actor, case_id: str, recording_id: str, release: object, reason: object
    ) -> SarCase:
        """The DPO's decision on one call of the case."""
        chosen = parse_release(release)
        why = given_text("reason", reason)
        if not why:
            raise InvalidAccessRequest("a decision needs a reason")
        await refuse_early(self._gate, actor, Action.DECIDE_SAR, f"case {case_id}")
        case = await self._get(case_id)
        if case.recording(recording_id) is None:
            raise RecordNotFound(f"recording {recording_id} is not in case {case.id}")
        if case.state is SarState.CLOSED:  # before the gate: a refusal, not an access
            raise AccessRequestConflict(f"case {case.id} is closed; nothing in it changes")
        decision = await self._gate.check(
            actor,
            Action.DECIDE_SAR,
            recording_id=recording_id,
            purpose="subject_access",
            reason=f"case {case.id}: {chosen.value}: {why}",
        )
        require(decision)
        return await _sar_mapped(
            self._catalog.sar.decide(
                case.id,
                recording_id,
                release=chosen,
                by=actor.name,
                reason=why,
                at=self._gate.now(),
            )
        )

    async def close(self, actor: Actor, case_id: str, reason: object) -> SarCase:
        """Close the case (its holds are released)."""
        why = given_text("reason", reason)
        if not why:
            raise InvalidAccessRequest("closing a case needs a reason")
        await refuse_early(self._gate, actor, Action.CLOSE_SAR, f"case {case_id}")
        case = await self._get(case_id)
        require(await self._gate.check(actor, Action.CLOSE_SAR, reason=f"case {case.id}: {why}"))
        return await _sar_mapped(
            self._catalog.sar.close(case.id, by=actor.name, reason=why, at=self._gate.now())
        )

    async def _get(self, case_id: str) -> SarCase:
        case = await self._catalog.sar.get(case_id)
        if case is None:
            raise RecordNotFound(f"no subject access case {case_id}")
        return case


async def _sar_mapped(operation: Awaitable[SarCase]) -> SarCase:
    """The catalog's refusals as the use case's errors (a closed case, a release of a
    recording with no audio: 409)."""
    try:
        return await mapped(operation)
    except SarCaseError as exc:
        raise AccessRequestConflict(str(exc)) from None


def describe_deadline(case: SarCase, now: datetime) -> str:
    """``due 2027-01-07T00:00:00Z (31 days left)``, ``OVERDUE by 3 days (due ...)``,
    ``answered (was due ...)``, ``closed``."""
    if case.state is SarState.CLOSED:
        return "closed"
    if case.state is SarState.ANSWERED:
        return f"answered (was due {format_utc(case.deadline_at)})"
    days = (case.deadline_at - now).total_seconds() / 86400
    if days < 0:
        late = math.ceil(-days)  # a whole day late is 1 day, a minute more is 2
        return (
            f"OVERDUE by {late} day{'s' if late != 1 else ''} (due {format_utc(case.deadline_at)})"
        )
    whole = int(days)
    return f"due {format_utc(case.deadline_at)} ({whole} day{'s' if whole != 1 else ''} left)"


def attached_ids(case: SarCase, *, released_only: bool = False) -> Sequence[str]:
    """The case's recording ids, in order (released ones only, if asked)."""
    return [r.recording_id for r in case.recordings if r.released or not released_only]
