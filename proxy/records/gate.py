"""The gate: the one place that asks the access policy (:func:`proxy.records.policy.decide`)
with facts from the catalog, and the one place that audits the answer (P5-P11).

Every HTTP handler and command that acts on recordings for a person asks
:meth:`Gate.check` (wrapped in :func:`require` to raise :class:`AccessDenied` on a
refusal).  The gate loads the recording's state and parts, the person's grants, decides,
writes **one** audit entry for the decision, allowed or refused (action
``access.allowed`` or ``access.refused``, object ``recording:ID``, the person's reason,
and as detail the policy action, the rule id, the purpose, the part asked for and each
part's rule), and then lets :class:`~proxy.records.flagging.Flagger` raise any anomaly
flag the access earns.

Recordings with several parts (a transferred call) are decided part by part:

* metadata (``search``, ``view_metadata``) is shown when *any* part may be seen: a staff
  member sees the whole call they took part in, a manager the call their team handled;
* everything else (playback, export, requests, approvals, holds) on the whole recording
  needs *every* part allowed, and the decision is the first part's refusal; a person who
  may hear only their own part names it (``part=N``), and only it is decided.

An unknown recording (or part) raises :class:`RecordNotFound` and is not audited: there
is no recording to decide about.  A recording that exists but that the person may not
see is a refusal (403, audited, counted towards ``repeated_refusals``): recording ids are
random UUIDs, so saying it exists tells a stranger nothing they could guess, while the
audit and the flag catch someone trying.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ..config import AccessSettings
from ..recording_state import RecordingState
from ..storage.catalog import (
    AccessRequest,
    Catalog,
    NotFoundError,
    RecordingPart,
    RequestState,
    User,
)
from ..storage.catalog.values import utc_now
from .errors import AccessDenied, InvalidAccessRequest, RecordNotFound
from .flagging import ALLOWED, REFUSED, Flagger
from .policy import (
    PART_ACTIONS,
    AccessQuery,
    Action,
    Actor,
    BulkApproval,
    Decision,
    Grant,
    Target,
    decide,
)

#: Whole-recording actions allowed when any part is: the rest need every part.
ANY_PART = frozenset({Action.SEARCH, Action.VIEW_METADATA})

_DELETED = frozenset({RecordingState.DELETING, RecordingState.DELETED})


def actor_for(user: User) -> Actor:
    """The policy's view of a signed-in user."""
    return Actor(user.name, user.role, frozenset(user.teams), user.operator, user.disabled)


def target(part: RecordingPart, state: RecordingState) -> Target:
    """One part, as the policy decides about it."""
    return Target(
        part.recording_id,
        part.part,
        part.operator,
        part.team,
        deleted=state in _DELETED,
        discarded=state is RecordingState.DISCARDED,
    )


def grants_of(requests: Iterable[AccessRequest]) -> tuple[Grant, ...]:
    """The approved ones of ``requests`` as the policy's grants (expired ones included:
    the policy tells an expired grant from none)."""
    return tuple(
        Grant(r.recording_id, r.purpose, r.expires_at, r.decided_by or "")
        for r in requests
        if r.state is RequestState.APPROVED and r.expires_at is not None
    )


def combine(action: Action, decisions: Sequence[tuple[int, Decision]]) -> Decision:
    """One decision for a whole recording from its parts' (see the module docstring)."""
    if action in ANY_PART:
        chosen = next((d for _, d in decisions if d.allowed), None)
    else:
        chosen = next((d for _, d in decisions if not d.allowed), None)
    return chosen if chosen is not None else decisions[0][1]


def whole_number(name: str, value: object, highest: int = 2**31 - 1) -> int:
    """A whole number from 1 to ``highest`` as a person sent it (a JSON number or the text
    of a query parameter); ``InvalidAccessRequest`` naming ``name`` otherwise."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= highest:
        raise InvalidAccessRequest(f"{name} must be a whole number from 1 to {highest}")
    return value


def part_number(value: object) -> int | None:
    """A part as the person gave it: None (the whole recording) or a number from 1."""
    return None if value is None else whole_number("part", value)


def _text(value: str | None) -> str | None:
    return value if value is not None and value.strip() else None


class Gate:
    """Decide and audit; see the module docstring.  ``clock`` says when "now" is."""

    def __init__(
        self,
        catalog: Catalog,
        settings: AccessSettings,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._catalog = catalog
        self._settings = settings
        self._clock = clock
        self._flagger = Flagger(catalog.audit, catalog.flags, settings)

    @property
    def settings(self) -> AccessSettings:
        return self._settings

    def now(self) -> datetime:
        return self._clock()

    async def check(
        self,
        actor: Actor,
        action: Action,
        *,
        recording_id: str | None = None,
        part: object = None,
        purpose: str | None = None,
        reason: str | None = None,
        requester: str | None = None,
        bulk_approval: BulkApproval | None = None,
        continuation: bool = False,
        waveform: bool = False,
    ) -> Decision:
        """The decision for ``actor`` doing ``action`` (on ``recording_id``, or only its
        ``part``), audited.  ``RecordNotFound`` for an unknown recording or part,
        ``InvalidAccessRequest`` for a malformed part or a recording action without a
        recording; neither is audited.  ``continuation``: a later request of one
        listening (a media player's byte range past the start), decided and audited like
        any other but marked so, for the flags not to count it as another playback.
        ``waveform``: a ``play`` decision for the console's drawing of the audio beside
        its player, audited like any other but marked so: the drawing is no listening,
        and the page's one playback is counted once, by the player's own request."""
        number = part_number(part)
        if action in PART_ACTIONS and recording_id is None:
            raise InvalidAccessRequest(f"{action.value} is about a recording: name one")
        now = self._clock()
        targets: list[Target | None] = [None]
        grants: tuple[Grant, ...] = ()
        if recording_id is not None:
            targets = list(await self._targets(recording_id, number))
            grants = await self._grants(actor, recording_id)
        decisions = [
            (
                0 if each is None else each.part,
                self.decide(
                    AccessQuery(
                        actor, action, now, each, purpose, reason, grants, requester, bulk_approval
                    )
                ),
            )
            for each in targets
        ]
        decision = combine(action, decisions)
        detail: dict[str, Any] = {
            "action": action.value,
            "rule": decision.rule,
            "purpose": _text(purpose),
            "part": number,
        }
        if recording_id is not None:
            detail["parts"] = {str(n): d.rule for n, d in decisions}
        if continuation:
            detail["continuation"] = True
        if waveform:
            detail["waveform"] = True
        entry = await self._catalog.audit.append(
            actor=actor.name,
            action=ALLOWED if decision.allowed else REFUSED,
            object=None if recording_id is None else f"recording:{recording_id}",
            reason=_text(reason),
            detail=detail,
            at=now,
        )
        await self._flagger.after(entry)
        return decision

    def decide(self, query: AccessQuery) -> Decision:
        """The policy's answer with the configured purposes, *not* audited: for callers
        that check many rows and audit once for all of them (a search, a listing)."""
        return decide(query, self._settings.purposes)

    async def record(
        self, actor: Actor, action: str, detail: Mapping[str, Any], *, at: datetime | None = None
    ) -> None:
        """One audit entry for an action that shows many rows, each checked with
        :meth:`decide` (``recordings.search``, ``access_requests.list``)."""
        await self._catalog.audit.append(
            actor=actor.name, action=action, detail=detail, at=self._clock() if at is None else at
        )

    async def _targets(self, recording_id: str, number: int | None) -> list[Target]:
        recording = await self._catalog.recordings.get_recording(recording_id)
        if recording is None:
            raise RecordNotFound(f"recording {recording_id} does not exist")
        try:
            parts = await self._catalog.parts.parts(recording_id)
        except NotFoundError as exc:  # deleted between the two reads
            raise RecordNotFound(str(exc)) from None
        if number is not None:
            parts = [p for p in parts if p.part == number]
            if not parts:
                raise RecordNotFound(f"recording {recording_id} has no part {number}")
        return [target(p, recording.state) for p in parts]

    async def _grants(self, actor: Actor, recording_id: str) -> tuple[Grant, ...]:
        approved = await self._catalog.access_requests.requests(
            state=RequestState.APPROVED, requester=actor.name, recording_id=recording_id
        )
        return grants_of(approved)


def require(decision: Decision) -> Decision:
    """``decision`` if it allows; else :class:`AccessDenied` carrying it (the HTTP layer
    answers 403 naming its rule): ``require(await gate.check(...))``."""
    if not decision.allowed:
        raise AccessDenied(decision)
    return decision
