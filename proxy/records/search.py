"""Finding recordings by their metadata (P6): search returns metadata only (who called
whom, when, who took each part, its state), never an audio path or a key.

Scope follows the policy's ``search`` rule: staff find the calls they took part in,
managers their teams' calls, records officers and the DPO every call, everyone else only
recordings a live grant opens.  The scope is pushed into SQL (:class:`Scope`) so a page
holds only what the person may see and pagination is right; each row is then checked
with the policy too (any part the person may see shows the row).  One search is one
audit entry (``recordings.search``, with the filters and how many rows it showed), not
one per row.

``recording_detail`` is the page of one recording: its metadata and parts, its holds,
and the person's access to it — for which purposes they may hear each part now, and
their own grants and requests for it.  Seeing it is a ``view_metadata`` decision through
the gate (audited; refused → :class:`AccessDenied`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..config import NumberSettings
from ..recording_state import RecordingState
from ..roles import Role
from ..storage.catalog import (
    CallDirection,
    Catalog,
    Scope,
    SearchFilters,
    SearchHit,
    SearchQuery,
    parse_utc,
)
from .errors import InvalidAccessRequest, RecordNotFound
from .gate import Gate, combine, grants_of, require, target, whole_number
from .policy import AccessQuery, Action, Actor, Decision, Grant, Target

#: The filters a search takes, by the names the API gives them.
FILTERS = ("number", "from", "to", "operator", "team", "state", "service", "direction")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
_MAX_FILTER = 200  # characters


@dataclass(frozen=True)
class Page:
    """Which page (from 1) of ``size`` rows."""

    number: int = 1
    size: int = DEFAULT_PAGE_SIZE


@dataclass(frozen=True)
class SearchPage:
    """The rows of one page, newest call first; ``more``: a next page exists."""

    rows: tuple[SearchHit, ...]
    page: Page
    more: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "recordings": [row.as_dict() for row in self.rows],
            "page": self.page.number,
            "size": self.page.size,
            "more": self.more,
        }


def filter_text(name: str, value: object) -> str | None:
    """A text filter as a person sent it, trimmed (None when absent or empty);
    ``InvalidAccessRequest`` when it is no text or too long."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidAccessRequest(f"{name} must be text")
    value = value.strip()
    if len(value) > _MAX_FILTER:
        raise InvalidAccessRequest(f"{name} is longer than {_MAX_FILTER} characters")
    return value or None


def filter_time(name: str, value: object) -> datetime | None:
    """A time filter (ISO 8601, UTC when no zone is given), None when absent."""
    given = filter_text(name, value)
    if given is None:
        return None
    try:
        return parse_utc(given)
    except ValueError as exc:
        raise InvalidAccessRequest(f"{name}: {exc}") from None


def parse_filters(raw: Mapping[str, object], numbers: NumberSettings) -> SearchFilters:
    """The filters a person sent (the API's query parameters, by :data:`FILTERS`
    names); ``InvalidAccessRequest`` names the first bad one."""
    unknown = sorted(set(raw) - set(FILTERS))
    if unknown:
        raise InvalidAccessRequest(f"unknown filter {unknown[0]!r} (known: {', '.join(FILTERS)})")
    number = filter_text("number", raw.get("number"))
    forms = () if number is None else tuple(dict.fromkeys((numbers.normalise(number), number)))
    started_from, started_before = (
        filter_time("from", raw.get("from")),
        filter_time("to", raw.get("to")),
    )
    if started_from and started_before and started_before <= started_from:
        raise InvalidAccessRequest("to must be after from")
    state_text = filter_text("state", raw.get("state"))
    try:
        state = None if state_text is None else RecordingState(state_text)
    except ValueError:
        known = ", ".join(s.value for s in RecordingState)
        raise InvalidAccessRequest(f"state must be one of {known}, got {state_text!r}") from None
    return SearchFilters(
        forms,
        started_from,
        started_before,
        filter_text("operator", raw.get("operator")),
        filter_text("team", raw.get("team")),
        state,
        filter_text("service", raw.get("service")),
        filter_direction(raw.get("direction")),
    )


def filter_direction(value: object) -> CallDirection | None:
    """``inbound`` or ``outbound`` (None when absent)."""
    given = filter_text("direction", value)
    try:
        return None if given is None else CallDirection(given)
    except ValueError:
        known = ", ".join(d.value for d in CallDirection)
        raise InvalidAccessRequest(f"direction must be one of {known}, got {given!r}") from None


def parse_page(number: object = None, size: object = None) -> Page:
    """A page from what a person sent (text or numbers; absent: the first, 50 rows)."""
    return Page(
        1 if number is None else whole_number("page", number),
        DEFAULT_PAGE_SIZE if size is None else whole_number("size", size, MAX_PAGE_SIZE),
    )


def scope_of(actor: Actor, now: datetime) -> Scope:
    """The SQL scope of the policy's ``search`` rule for ``actor``."""
    if actor.disabled:
        return Scope(now)
    if actor.role in (Role.RECORDS_OFFICER, Role.DPO):
        return Scope(now, everything=True)
    operator = actor.operator if actor.role is Role.STAFF else None
    teams = actor.teams if actor.role is Role.MANAGER else frozenset()
    return Scope(now, operator=operator, teams=teams, granted_to=actor.name)


class RecordSearch:
    """Search and the detail of one recording; see the module docstring."""

    def __init__(self, gate: Gate, catalog: Catalog) -> None:
        self._gate = gate
        self._catalog = catalog

    async def search(self, actor: Actor, filters: SearchFilters, page: Page) -> SearchPage:
        """One page of what ``actor`` may find with ``filters``; one audit entry."""
        now = self._gate.now()
        query = SearchQuery(
            scope_of(actor, now), filters, limit=page.size + 1, offset=(page.number - 1) * page.size
        )
        found = await self._catalog.search.search(query)
        grants = grants_of(await self._catalog.access_requests.grants_for(actor.name, now))
        shown = tuple(
            hit
            for hit in found[: page.size]
            if self._row(actor, Action.SEARCH, hit, grants, now).allowed
        )
        await self._gate.record(
            actor,
            "recordings.search",
            {"filters": filters.as_dict(), "page": page.number, "shown": len(shown)},
            at=now,
        )
        return SearchPage(shown, page, more=len(found) > page.size)

    async def recording_detail(self, actor: Actor, recording_id: str) -> dict[str, Any]:
        """Metadata, parts, holds and ``actor``'s access to ``recording_id`` (see the
        module docstring)."""
        require(await self._gate.check(actor, Action.VIEW_METADATA, recording_id=recording_id))
        hit = await self._catalog.search.hit(recording_id)
        if hit is None:  # the gate found it: only a catalog that lost it since
            raise RecordNotFound(f"recording {recording_id} does not exist")
        now = self._gate.now()
        requests = await self._catalog.access_requests.requests(
            requester=actor.name, recording_id=recording_id
        )
        grants = grants_of(requests)
        purposes = self._gate.settings.purposes
        listen = [
            {
                "part": part.part,
                "purposes": [
                    purpose
                    for purpose in purposes
                    if self._audio(actor, target(part, hit.state), grants, now, purpose).allowed
                ],
            }
            for part in hit.parts
        ]
        holds = await self._catalog.holds.holds(recording_id=recording_id)
        return {
            **hit.as_dict(),
            "holds": [hold.as_dict() for hold in holds],
            "access": {
                "listen": listen,
                "may_place_hold": self._row(actor, Action.PLACE_HOLD, hit, grants, now).allowed,
                "requests": [
                    {**request.as_dict(), "live": request.live(now)} for request in requests
                ],
            },
        }

    def _row(
        self, actor: Actor, action: Action, hit: SearchHit, grants: tuple[Grant, ...], now: datetime
    ) -> Decision:
        decisions = [
            (
                part.part,
                self._gate.decide(
                    AccessQuery(actor, action, now, target(part, hit.state), grants=grants)
                ),
            )
            for part in hit.parts
        ]
        return combine(action, decisions)

    def _audio(
        self, actor: Actor, part: Target, grants: tuple[Grant, ...], now: datetime, purpose: str
    ) -> Decision:
        """Whether ``actor`` may hear ``part`` for ``purpose`` (a reason given)."""
        query = AccessQuery(actor, Action.PLAY, now, part, purpose, "(asked)", grants)
        return self._gate.decide(query)
