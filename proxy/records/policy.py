"""Who may do what with a recording: the one access decision (issue 15, P5-P11).

A pure function of its inputs, like the SIP cores: a frozen ``AccessQuery`` (the actor,
the action, the recording part, the stated purpose and reason, the actor's grants, and
``now``) and the configured purposes go in; a ``Decision`` comes out, allowed or refused,
with a stable rule id from ``RULES`` that the HTTP layer puts in a 403 body and the audit
chain records.  No I/O, no clock, no catalog: every caller (HTTP endpoint, CLI command)
asks the same question and gets the same answer, and the role matrix is tested here
without sockets.

Decisions that are not spelt out in the issue, kept simple on purpose:

- ``admin`` manages users and configuration but sees no recording, metadata included,
  without a grant for it; ``maintenance`` likewise, and verifies integrity.  A grant
  (whatever its purpose) opens that one recording's metadata; its audio needs a grant for
  the purpose stated.
- Only a ``staff`` user's operator link counts as "a call they took part in"; a manager
  hears their team's parts; everyone else, records officers and the DPO included, hears
  audio through a grant.
- The audit log and the anomaly flags are the DPO's alone.
- Holds are placed, released and listed by records officers and the DPO.
- A bulk export or listening is asked for by a records officer or the DPO and approved
  by a DPO other than the one who asked (a records officer approves single requests,
  never bulk ones).
- Subject access cases are opened, read, exported and closed by records officers and
  the DPO; only the DPO decides what a case releases.  Exporting a released call needs
  no grant: the DPO's decision in the case is the authority, checked by the use case.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from ..roles import Role


class Action(enum.Enum):
    SEARCH = "search"  # a search result row: asked once per part found
    VIEW_METADATA = "view_metadata"
    PLAY = "play"
    EXPORT = "export"
    REQUEST_ACCESS = "request_access"
    APPROVE_ACCESS = "approve_access"
    PLACE_HOLD = "place_hold"
    RELEASE_HOLD = "release_hold"
    VIEW_HOLDS = "view_holds"  # the list of every hold (a recording's own show with it)
    VIEW_AUDIT = "view_audit"
    VIEW_FLAGS = "view_flags"
    VERIFY_INTEGRITY = "verify_integrity"
    MANAGE_USERS = "manage_users"
    MANAGE_CONFIG = "manage_config"
    BULK_EXPORT = "bulk_export"
    BULK_PLAY = "bulk_play"
    REQUEST_BULK = "request_bulk"  # ask the DPO to approve a bulk export or listening
    APPROVE_BULK = "approve_bulk"
    OPEN_SAR = "open_sar"  # open a subject access case: its search attaches the calls
    VIEW_SAR = "view_sar"  # the cases, their calls and decisions (metadata only)
    DECIDE_SAR = "decide_sar"  # release both parties, the caller only, or refuse, a call
    EXPORT_SAR = "export_sar"  # a released call's audio into the case's bundle
    CLOSE_SAR = "close_sar"


_OFFICERS = (Role.RECORDS_OFFICER, Role.DPO)  # approve, hold, see all metadata, bulk

#: Actions about one recording part: their query must name a target.
PART_ACTIONS = frozenset(
    {
        Action.SEARCH,
        Action.VIEW_METADATA,
        Action.PLAY,
        Action.EXPORT,
        Action.REQUEST_ACCESS,
        Action.APPROVE_ACCESS,
        Action.PLACE_HOLD,
        Action.RELEASE_HOLD,
    }
)
#: Actions that hand out audio: a configured purpose and a reason, always.
AUDIO_ACTIONS = frozenset({Action.PLAY, Action.EXPORT, Action.BULK_EXPORT, Action.BULK_PLAY})

#: Every rule id a decision may carry, with what it means.  The ids are an interface:
#: 403 bodies, audit entries and docs/operations.md name them.
RULES: Mapping[str, str] = {
    "account.disabled": "a disabled account may do nothing",
    "recording.deleted": "the recording was deleted; no audio is left",
    "recording.discarded": "the recording was discarded; no audio is left",
    "purpose.missing": "playback, export and access requests state a purpose",
    "purpose.unknown": "the purpose is not one of [access] purposes",
    "reason.missing": "playback, export and access requests give a reason",
    "metadata.own_call": "staff see the calls they took part in",
    "metadata.team_call": "managers see their team's calls",
    "metadata.all": "records officers and the DPO see all metadata",
    "metadata.granted": "a grant for a recording shows its metadata",
    "metadata.not_yours": "not a call of yours or your team's, and no grant for it",
    "audio.own_call": "staff hear the parts they handled",
    "audio.team_call": "managers hear the parts their team handled",
    "audio.granted": "an unexpired grant for this recording and purpose",
    "grant.none": "no grant for this recording and purpose: request access",
    "grant.expired": "the grant for this recording and purpose has expired",
    "request.allowed": "any active user may request access, with a purpose and reason",
    "approve.allowed": "records officers and the DPO approve others' requests",
    "approve.not_officer": "only records officers and the DPO approve requests",
    "approve.own_request": "nobody approves their own request",
    "holds.allowed": "records officers and the DPO place, release and list holds",
    "holds.not_officer": "only records officers and the DPO place, release and list holds",
    "audit.allowed": "the DPO reads the audit log",
    "audit.dpo_only": "only the DPO reads the audit log",
    "flags.allowed": "the DPO sees the anomaly flags",
    "flags.dpo_only": "only the DPO sees the anomaly flags",
    "integrity.allowed": "maintenance, admins, records officers and the DPO verify integrity",
    "integrity.not_permitted": "staff and managers do not run integrity checks",
    "users.allowed": "admins manage users",
    "users.admin_only": "only admins manage users",
    "config.allowed": "admins manage the configuration",
    "config.admin_only": "only admins manage the configuration",
    "bulk.approved": "bulk export or listening with a DPO's unexpired approval",
    "bulk.not_permitted": "only records officers and the DPO export or listen in bulk",
    "bulk.no_approval": "bulk export or listening needs a DPO's unexpired approval",
    "bulk.request_allowed": "records officers and the DPO ask for bulk export, with a purpose"
    " and reason",
    "bulk.approve_allowed": "a DPO approves others' bulk requests",
    "bulk.approve_dpo_only": "only the DPO approves bulk export or listening",
    "sar.allowed": "records officers and the DPO open, read, export and close subject access cases",
    "sar.not_officer": "only records officers and the DPO handle subject access cases",
    "sar.decide_allowed": "the DPO decides what a subject access case releases",
    "sar.decide_dpo_only": "only the DPO decides what a subject access case releases",
}


@dataclass(frozen=True)
class Actor:
    """The signed-in user.  ``operator`` is the identity the call proxy records for the
    calls a staff user takes; ``teams`` the teams they belong to (managers: they manage)."""

    name: str
    role: Role
    teams: frozenset[str] = frozenset()
    operator: str | None = None
    disabled: bool = False


@dataclass(frozen=True)
class Target:
    """One part of a recording (a transferred call has one part per call taker)."""

    recording_id: str
    part: int = 0
    operator: str | None = None
    team: str | None = None
    deleted: bool = False
    discarded: bool = False


@dataclass(frozen=True)
class Grant:
    """An approved access request: one recording, one purpose, until ``expires_at``."""

    recording_id: str
    purpose: str
    expires_at: datetime
    approved_by: str


@dataclass(frozen=True)
class BulkApproval:
    """A DPO's approval of one bulk export or listening; the caller checks that
    ``approved_by`` is a DPO when it records the approval."""

    approved_by: str
    expires_at: datetime


@dataclass(frozen=True)
class AccessQuery:
    """May ``actor`` do ``action`` on ``target`` for ``purpose`` at ``now``?
    ``requester`` is the access request's author (for ``approve_access``)."""

    actor: Actor
    action: Action
    now: datetime
    target: Target | None = None
    purpose: str | None = None
    reason: str | None = None
    grants: tuple[Grant, ...] = ()
    requester: str | None = None
    bulk_approval: BulkApproval | None = None

    def __post_init__(self) -> None:
        if self.action in PART_ACTIONS and self.target is None:
            raise ValueError(f"{self.action.value} is about a recording part: give a target")
        if self.action in (Action.APPROVE_ACCESS, Action.APPROVE_BULK) and self.requester is None:
            raise ValueError(f"{self.action.value} needs the request's requester")


@dataclass(frozen=True)
class Decision:
    """The answer: allowed or not, by which rule (a key of ``RULES``), and a sentence for
    the person asking."""

    allowed: bool
    rule: str
    reason: str = ""

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown rule id {self.rule!r}")


def decide(query: AccessQuery, purposes: Collection[str]) -> Decision:
    """The decision for ``query``, with ``purposes`` the configured ones."""
    if query.actor.disabled:
        return _refuse("account.disabled")
    return _BY_ACTION[query.action](query, purposes)


def _allow(rule: str) -> Decision:
    return Decision(True, rule, RULES[rule])


def _refuse(rule: str, reason: str = "") -> Decision:
    return Decision(False, rule, reason or RULES[rule])


def _part(query: AccessQuery) -> Target:
    assert query.target is not None  # AccessQuery checks PART_ACTIONS have one
    return query.target


def _gone(target: Target) -> Decision | None:
    if target.deleted:
        return _refuse("recording.deleted")
    if target.discarded:
        return _refuse("recording.discarded")
    return None


def _stated(query: AccessQuery, purposes: Collection[str]) -> Decision | None:
    """Refusal when the purpose or the reason is missing, or the purpose unknown."""
    purpose = (query.purpose or "").strip()
    if not purpose:
        return _refuse("purpose.missing")
    if purpose not in purposes:
        known = ", ".join(purposes)
        return _refuse("purpose.unknown", f"{purpose!r} is not a purpose (known: {known})")
    if not (query.reason or "").strip():
        return _refuse("reason.missing")
    return None


def _own_call(actor: Actor, target: Target) -> bool:
    linked = actor.role is Role.STAFF and actor.operator is not None
    return linked and target.operator == actor.operator


def _team_call(actor: Actor, target: Target) -> bool:
    return actor.role is Role.MANAGER and target.team is not None and target.team in actor.teams


def _grants(query: AccessQuery, target: Target) -> list[Grant]:
    """The actor's grants for this recording, not approved by themselves."""
    return [
        grant
        for grant in query.grants
        if grant.recording_id == target.recording_id and grant.approved_by != query.actor.name
    ]


def _live_grants(query: AccessQuery, target: Target) -> list[Grant]:
    """Those of ``_grants`` not yet expired."""
    return [grant for grant in _grants(query, target) if query.now < grant.expires_at]


def _metadata(query: AccessQuery, _purposes: Collection[str]) -> Decision:
    actor, target = query.actor, _part(query)
    if actor.role in _OFFICERS:
        return _allow("metadata.all")
    if _own_call(actor, target):
        return _allow("metadata.own_call")
    if _team_call(actor, target):
        return _allow("metadata.team_call")
    if _live_grants(query, target):
        return _allow("metadata.granted")
    return _refuse("metadata.not_yours")


def _audio(query: AccessQuery, purposes: Collection[str]) -> Decision:
    actor, target = query.actor, _part(query)
    refusal = _gone(target) or _stated(query, purposes)
    if refusal is not None:
        return refusal
    if _own_call(actor, target):
        return _allow("audio.own_call")
    if _team_call(actor, target):
        return _allow("audio.team_call")
    purpose = (query.purpose or "").strip()
    if any(grant.purpose == purpose for grant in _live_grants(query, target)):
        return _allow("audio.granted")
    expired = any(grant.purpose == purpose for grant in _grants(query, target))
    return _refuse("grant.expired" if expired else "grant.none")


def _request(query: AccessQuery, purposes: Collection[str]) -> Decision:
    refusal = _gone(_part(query)) or _stated(query, purposes)
    return refusal or _allow("request.allowed")


def _approve(query: AccessQuery, _purposes: Collection[str]) -> Decision:
    if query.actor.role not in _OFFICERS:
        return _refuse("approve.not_officer")
    if query.requester == query.actor.name:
        return _refuse("approve.own_request")
    return _gone(_part(query)) or _allow("approve.allowed")


def _bulk(query: AccessQuery, purposes: Collection[str]) -> Decision:
    if query.actor.role not in _OFFICERS:
        return _refuse("bulk.not_permitted")
    gone = None if query.target is None else _gone(query.target)  # no audio is left
    refusal = gone or _stated(query, purposes)
    if refusal is not None:
        return refusal
    approval = query.bulk_approval
    if approval is None or approval.approved_by == query.actor.name:
        return _refuse("bulk.no_approval")
    if query.now >= approval.expires_at:
        return _refuse("bulk.no_approval", "the DPO's approval has expired")
    return _allow("bulk.approved")


def _request_bulk(query: AccessQuery, purposes: Collection[str]) -> Decision:
    if query.actor.role not in _OFFICERS:
        return _refuse("bulk.not_permitted")
    return _stated(query, purposes) or _allow("bulk.request_allowed")


def _approve_bulk(query: AccessQuery, _purposes: Collection[str]) -> Decision:
    if query.actor.role is not Role.DPO:
        return _refuse("bulk.approve_dpo_only")
    if query.requester == query.actor.name:
        return _refuse("approve.own_request")
    return _allow("bulk.approve_allowed")


def _export_sar(query: AccessQuery, _purposes: Collection[str]) -> Decision:
    """A released call of a case into its bundle: the DPO's release decision is the
    authority (the use case checks it), so no grant and no configured purpose are
    asked for; only that the audio still exists."""
    if query.actor.role not in _OFFICERS:
        return _refuse("sar.not_officer")
    gone = None if query.target is None else _gone(query.target)
    return gone or _allow("sar.allowed")


def _roles(
    allowed: str, refused: str, *roles: Role
) -> Callable[[AccessQuery, Collection[str]], Decision]:
    """A rule that asks only the actor's role: ``allowed`` for ``roles``, else ``refused``."""

    def rule(query: AccessQuery, _purposes: Collection[str]) -> Decision:
        return _allow(allowed) if query.actor.role in roles else _refuse(refused)

    return rule


_BY_ACTION: Mapping[Action, Callable[[AccessQuery, Collection[str]], Decision]] = {
    Action.SEARCH: _metadata,
    Action.VIEW_METADATA: _metadata,
    Action.PLAY: _audio,
    Action.EXPORT: _audio,
    Action.REQUEST_ACCESS: _request,
    Action.APPROVE_ACCESS: _approve,
    Action.PLACE_HOLD: _roles("holds.allowed", "holds.not_officer", *_OFFICERS),
    Action.RELEASE_HOLD: _roles("holds.allowed", "holds.not_officer", *_OFFICERS),
    Action.VIEW_HOLDS: _roles("holds.allowed", "holds.not_officer", *_OFFICERS),
    Action.VIEW_AUDIT: _roles("audit.allowed", "audit.dpo_only", Role.DPO),
    Action.VIEW_FLAGS: _roles("flags.allowed", "flags.dpo_only", Role.DPO),
    Action.VERIFY_INTEGRITY: _roles(
        "integrity.allowed", "integrity.not_permitted", Role.MAINTENANCE, Role.ADMIN, *_OFFICERS
    ),
    Action.MANAGE_USERS: _roles("users.allowed", "users.admin_only", Role.ADMIN),
    Action.MANAGE_CONFIG: _roles("config.allowed", "config.admin_only", Role.ADMIN),
    Action.BULK_EXPORT: _bulk,
    Action.BULK_PLAY: _bulk,
    Action.REQUEST_BULK: _request_bulk,
    Action.APPROVE_BULK: _approve_bulk,
    Action.OPEN_SAR: _roles("sar.allowed", "sar.not_officer", *_OFFICERS),
    Action.VIEW_SAR: _roles("sar.allowed", "sar.not_officer", *_OFFICERS),
    Action.DECIDE_SAR: _roles("sar.decide_allowed", "sar.decide_dpo_only", Role.DPO),
    Action.EXPORT_SAR: _export_sar,
    Action.CLOSE_SAR: _roles("sar.allowed", "sar.not_officer", *_OFFICERS),
}
