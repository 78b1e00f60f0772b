"""Access requests and grants (P7, P8): what a person does to hear a recording that is
not theirs, and what a records officer or the DPO does about it, whichever shell asks
(the records service's HTTP API, a command).

* Anyone active may ask, for one recording, with a configured purpose and a reason
  (policy ``request_access``); an officer approves or refuses it with a reason
  (``approve_access``: nobody decides their own request).
* A grant lasts ``days`` days, from 1 to ``[access] grant_days`` (the default): the
  approver may shorten it, never lengthen it past what the configuration allows.
* Every decision of the policy goes through the gate and is audited there; the request,
  the approval and the refusal are audited again by the catalog with what changed.

Values arrive as the person sent them and are checked here before anything is asked or
written; errors are :mod:`proxy.records.errors` types (``InvalidAccessRequest`` 422,
``RecordNotFound`` 404, ``AccessDenied`` 403 with the rule, ``AccessRequestConflict``
409), each one line.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, TypeVar

from ..storage.catalog import (
    AccessRequest,
    AccessRequestRepository,
    InvalidFieldError,
    NewAccessRequest,
    NotFoundError,
    RequestState,
    RequestStateError,
)
from .errors import AccessRequestConflict, InvalidAccessRequest, RecordNotFound
from .gate import Gate, require, whole_number
from .policy import AccessQuery, Action, Actor, Target

MAX_TEXT = 500  # characters of a purpose or a reason

T = TypeVar("T")


def given_text(name: str, value: object, *, required: bool = True) -> str:
    """Text as given, whitespace runs made one space; "" when optional and absent."""
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise InvalidAccessRequest(f"{name} must be text, got {type(value).__name__}")
    value = " ".join(value.split())
    if len(value) > MAX_TEXT:
        raise InvalidAccessRequest(f"{name} is longer than {MAX_TEXT} characters")
    return value


def decision_terms(
    approve: object, reason: object, days: object, longest: int
) -> tuple[bool, str, int | None]:
    """A decision as a person sent it, checked (``InvalidAccessRequest`` otherwise):
    approve or refuse, its reason, and an approval's days (1 to ``longest``, the default;
    a refusal lasts none).  Access requests and bulk requests are decided alike."""
    if not isinstance(approve, bool):
        raise InvalidAccessRequest("the decision must be approve or refuse")
    why = given_text("reason", reason)
    if not why:
        raise InvalidAccessRequest("a decision needs a reason")
    length = (longest if days is None else whole_number("days", days, longest)) if approve else None
    if not approve and days is not None:
        raise InvalidAccessRequest("a refusal lasts no days: leave days out")
    return approve, why, length


class AccessDesk:
    """Requests and grants on ``requests``, every policy decision through ``gate``."""

    def __init__(self, gate: Gate, requests: AccessRequestRepository) -> None:
        self._gate = gate
        self._requests = requests

    async def request(
        self, actor: Actor, recording_id: str, purpose: object, reason: object
    ) -> AccessRequest:
        """Ask for ``recording_id`` (pending until decided)."""
        why = given_text("reason", reason, required=False)
        what = given_text("purpose", purpose, required=False)
        decision = await self._gate.check(
            actor, Action.REQUEST_ACCESS, recording_id=recording_id, purpose=what, reason=why
        )
        require(decision)
        return await mapped(
            self._requests.request(
                NewAccessRequest(recording_id, actor.name, what, why), at=self._gate.now()
            )
        )

    async def decide(
        self,
        actor: Actor,
        request_id: str,
        approve: object,
        reason: object,
        days: object = None,
    ) -> AccessRequest:
        """Approve (for ``days``, default ``[access] grant_days``) or refuse a request."""
        approve, why, length = decision_terms(approve, reason, days, self._gate.settings.grant_days)
        found = await self._requests.get(request_id)
        if found is None:
            raise RecordNotFound(f"access request {request_id} does not exist")
        decision = await self._gate.check(
            actor,
            Action.APPROVE_ACCESS,
            recording_id=found.recording_id,
            purpose=found.purpose,
            reason=why,
            requester=found.requester,
        )
        require(decision)
        if found.state is not RequestState.PENDING:
            raise AccessRequestConflict(f"access request {found.id} is {found.state.value}")
        now = self._gate.now()
        expires = None if length is None else now + timedelta(days=length)
        return await mapped(
            self._requests.decide(
                found.id, approve=approve, by=actor.name, reason=why, expires_at=expires, at=now
            )
        )

    async def withdraw(self, actor: Actor, request_id: str) -> AccessRequest:
        """The requester withdraws their pending request; another's is not found (it
        is none of theirs to know about)."""
        found = await self._requests.get(request_id)
        if found is None or found.requester != actor.name:
            raise RecordNotFound(f"no access request of yours has the id {request_id}")
        return await mapped(self._requests.withdraw(found.id, by=actor.name, at=self._gate.now()))

    async def pending(self, actor: Actor) -> list[AccessRequest]:
        """The pending requests ``actor`` may decide (none for those who decide none),
        in the order made; one audit entry for the listing."""
        now = self._gate.now()
        shown = [
            found
            for found in await self._requests.requests(state=RequestState.PENDING)
            if self._gate.decide(
                AccessQuery(
                    actor,
                    Action.APPROVE_ACCESS,
                    now,
                    Target(found.recording_id),
                    requester=found.requester,
                )
            ).allowed
        ]
        await self._gate.record(
            actor, "access_requests.list", {"state": "pending", "shown": len(shown)}, at=now
        )
        return shown

    async def mine(self, actor: Actor) -> list[dict[str, Any]]:
        """``actor``'s own requests, in the order made, each with ``live``: whether it
        is a grant in force now (its ``expires_at`` says until when)."""
        now = self._gate.now()
        return [
            {**found.as_dict(), "live": found.live(now)}
            for found in await self._requests.requests(requester=actor.name)
        ]


async def mapped(operation: Awaitable[T]) -> T:
    """The catalog's refusals as the use case's errors."""
    try:
        return await operation
    except NotFoundError as exc:
        raise RecordNotFound(str(exc)) from None
    except RequestStateError as exc:
        raise AccessRequestConflict(str(exc)) from None
    except InvalidFieldError as exc:
        raise InvalidAccessRequest(str(exc)) from None
