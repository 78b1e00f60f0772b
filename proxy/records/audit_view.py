"""The DPO's view of the audit log, and the integrity check of its chain (P5, P10, P20),
as the records service serves them.

Reading entries is the DPO's alone (``Action.VIEW_AUDIT``); checking the chain is an
integrity check (``Action.VERIFY_INTEGRITY``: maintenance, admins, records officers and
the DPO), which shows no entry.  Each asks the gate, so each reading and each check is
itself an audit entry, written before the log is read: the reader sees their own
reading.

Filters arrive as a person sent them (query parameters) and are checked before the gate
is asked: a malformed one is a 422 that writes nothing.  Entries come oldest first, at
most ``limit`` (default 100, at most 1000) a page; ``more`` says another page follows,
read with ``after`` set to the last ``seq`` seen.

The check walks the whole chain and holds it against the anchor file beside the
catalog, as ``recproxy audit verify`` does, but only reads: the call proxy (``serve``)
and the custodian's command anchor the head, and a check asked for over HTTP — which
itself moves the head — must not grow the anchor file with every request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..storage.catalog.audit import AuditEntry, AuditLog
from .audit import AuditCheck, check_and_anchor
from .errors import InvalidQuery
from .gate import Gate, require, whole_number
from .policy import Action, Actor
from .search import filter_text, filter_time

FILTERS = ("since", "until", "actor", "action", "object", "after", "limit")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class AuditFilters:
    """Which entries: at or after ``since``, before ``until``, by ``actor``, of
    ``action``, about ``object`` (``recording:ID``, ``user:NAME``...), after sequence
    number ``after``; at most ``limit``."""

    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    action: str | None = None
    object: str | None = None
    after: int | None = None
    limit: int = DEFAULT_LIMIT

    def as_dict(self) -> dict[str, Any]:
        """The filters as the reading's audit entry keeps them."""
        return {
            "since": None if self.since is None else self.since.isoformat(),
            "until": None if self.until is None else self.until.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "object": self.object,
            "after": self.after,
            "limit": self.limit,
        }


def parse_audit_filters(raw: Mapping[str, object]) -> AuditFilters:
    """The filters a person sent (by :data:`FILTERS` names); ``InvalidQuery`` or
    ``InvalidAccessRequest`` names the first bad one."""
    unknown = sorted(set(raw) - set(FILTERS))
    if unknown:
        raise InvalidQuery(f"unknown filter {unknown[0]!r} (known: {', '.join(FILTERS)})")
    since, until = filter_time("since", raw.get("since")), filter_time("until", raw.get("until"))
    if since and until and until <= since:
        raise InvalidQuery("until must be after since")
    after, limit = raw.get("after"), raw.get("limit")
    return AuditFilters(
        since,
        until,
        filter_text("actor", raw.get("actor")),
        filter_text("action", raw.get("action")),
        filter_text("object", raw.get("object")),
        None if after is None else whole_number("after", after),
        DEFAULT_LIMIT if limit is None else whole_number("limit", limit, MAX_LIMIT),
    )


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of entries, and whether more follow."""

    entries: tuple[AuditEntry, ...]
    more: bool

    def as_dict(self) -> dict[str, Any]:
        return {"entries": [e.as_dict() for e in self.entries], "more": self.more}


class AuditView:
    """Read and check ``audit`` for a person, through ``gate``; ``anchors_file`` is the
    anchor file beside the catalog (``proxy.storage.catalog.anchor.anchor_path``)."""

    def __init__(self, gate: Gate, audit: AuditLog, anchors_file: Path) -> None:
        self._gate = gate
        self._audit = audit
        self._anchors_file = anchors_file

    async def entries(self, actor: Actor, raw: Mapping[str, object]) -> AuditPage:
        """The entries ``raw`` asks for, if ``actor`` may read the log (``AccessDenied``
        otherwise, audited)."""
        filters = parse_audit_filters(raw)
        require(
            await self._gate.check(actor, Action.VIEW_AUDIT, reason=_reading(filters.as_dict()))
        )
        found = await self._audit.entries(
            since=filters.since,
            until=filters.until,
            actor=filters.actor,
            action=filters.action,
            object=filters.object,
            after=filters.after,
            limit=filters.limit + 1,
        )
        return AuditPage(tuple(found[: filters.limit]), len(found) > filters.limit)

    async def verify(self, actor: Actor) -> AuditCheck:
        """Walk the chain and hold it against the anchors, if ``actor`` may run integrity
        checks.  Raises :class:`~proxy.storage.catalog.anchor.AnchorFileError` when the
        anchor file cannot be read."""
        require(await self._gate.check(actor, Action.VERIFY_INTEGRITY, reason="audit chain"))
        return await check_and_anchor(
            self._audit, self._anchors_file, self._gate.now(), anchor=False
        )


def _reading(filters: Mapping[str, Any]) -> str:
    """The filters of a reading, as its audit entry's reason: what the DPO looked at."""
    shown = ", ".join(f"{k}={v}" for k, v in filters.items() if v is not None)
    return f"audit log read ({shown})"
