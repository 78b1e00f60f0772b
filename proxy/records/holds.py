"""Holds: what a person does to keep a recording past its retention (P16, P4), whichever
shell asks — ``recproxy holds``, the records service's API.  The policy is here:

* the kind is one of the configured ``[holds] kinds``; a reference is required;
* the person placing or releasing it is named (``--by``, or the authenticated operator);
* a review date is a calendar date, ``YYYY-MM-DD`` (a past date makes it due at once);
* a release says why;
* when a shell decides who may (the records service asks the access gate), it is asked
  once the request is well formed and before anything is written: ``authorise`` gets
  the recording's id, and raises to refuse.

Values arrive as the person sent them (any JSON value) and are checked here; the
errors are :mod:`proxy.records.errors` types, each one line.  Nothing is written unless
every check passed.

Releasing the last active hold of a recording *re-arms its expiry* without any write
beyond the release itself: the retention sweeper deletes a recording that is expired
and has no hold with ``released_at IS NULL``, so a recording already past its expiry is
deleted by the next sweep.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime

from ..events import HoldPlaced, HoldReleased, Publish, discard
from ..storage.catalog import (
    SAR_HOLD_KIND,
    Hold,
    HoldRefusedError,
    HoldRepository,
    InvalidFieldError,
    NewHold,
    NotFoundError,
)
from ..storage.catalog.values import utc_now
from .errors import HoldRefused, InvalidHoldRequest, RecordNotFound

MAX_TEXT = 500  # characters of a reference, note or reason
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

#: Asked with the recording's id before a hold on it is placed or released; raises to
#: refuse (the records service: the gate's ``AccessDenied``).
Authorise = Callable[[str], Awaitable[object]]


async def anyone(recording_id: str) -> None:
    """No decision here: the command line's custodian may (``--by`` names the person)."""


def review_date(value: object) -> date | None:
    """``YYYY-MM-DD`` as a date; None for no review date."""
    if value is None:
        return None
    if not isinstance(value, str) or _DATE.fullmatch(value) is None:
        raise InvalidHoldRequest(f"review date must be YYYY-MM-DD, got {value!r}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidHoldRequest(f"review date {value!r} is not a calendar date") from None


def _required(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidHoldRequest(f"{name} is required")
    return _bounded(name, value)


def _bounded(name: str, value: str) -> str:
    value = " ".join(value.split())
    if len(value) > MAX_TEXT:
        raise InvalidHoldRequest(f"{name} is longer than {MAX_TEXT} characters")
    return value


def _optional(name: str, value: object) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise InvalidHoldRequest(f"{name} must be text")
    return _bounded(name, value)


class HoldDesk:
    """Place, release and list holds on ``holds`` with the configured ``kinds``.
    ``clock`` says when "now" is, for holds due for review; ``publish`` gets a
    ``HoldPlaced`` or ``HoldReleased`` once each is committed."""

    def __init__(
        self,
        holds: HoldRepository,
        kinds: Sequence[str],
        *,
        clock: Callable[[], datetime] = utc_now,
        publish: Publish = discard,
    ) -> None:
        self._holds = holds
        self.kinds = tuple(kinds)
        self._clock = clock
        self._publish = publish

    async def place(
        self,
        recording_id: str,
        *,
        kind: object,
        reference: object,
        by: object,
        review: object = None,
        note: object = None,
        authorise: Authorise = anyone,
    ) -> Hold:
        """Hold ``recording_id``; ``RecordNotFound`` for an unknown recording,
        ``HoldRefused`` for one whose audio is gone or going; ``authorise`` is asked
        once the request is well formed."""
        if not isinstance(kind, str) or kind not in self.kinds:
            raise InvalidHoldRequest(
                f"kind must be one of {', '.join(self.kinds)} (holds.kinds), got {kind!r}"
            )
        request = NewHold(
            recording_id,
            kind,
            _required("reference", reference),
            _required("by (who places the hold)", by),
            review_date(review),
            _optional("note", note),
        )
        await authorise(recording_id)
        hold = await self._call(self._holds.place(request))
        self._publish(HoldPlaced(hold.id, hold.recording_id, hold.kind, hold.placed_by))
        return hold

    async def release(
        self, hold_id: str, *, by: object, reason: object, authorise: Authorise = anyone
    ) -> Hold:
        """Release hold ``hold_id``; ``RecordNotFound`` for an unknown id, ``HoldRefused``
        for a hold already released; ``authorise`` is asked with its recording's id once
        the request is well formed."""
        who = _required("by (who releases the hold)", by)
        why = _required("reason", reason)
        held = await self._holds.get(hold_id)
        if held is None:
            raise RecordNotFound(f"hold {hold_id} does not exist")
        if held.kind == SAR_HOLD_KIND and held.active:  # retention must not take it meanwhile
            raise HoldRefused(
                f"hold {held.id} keeps the recording for subject access case {held.reference}:"
                " it is released when the case is closed (recproxy sar close)"
            )
        await authorise(held.recording_id)
        hold = await self._call(self._holds.release(hold_id, by=who, reason=why))
        self._publish(HoldReleased(hold.id, hold.recording_id, hold.kind, who, why))
        return hold

    async def listing(self, *, due_only: bool = False, active_only: bool = False) -> list[Hold]:
        """Every hold in the order placed, or only active ones, or only those due for
        review now."""
        due_as_of = self._clock() if due_only else None
        return await self._holds.holds(active_only=active_only, due_as_of=due_as_of)

    def due(self, hold: Hold) -> bool:
        """Whether ``hold`` is active and its review date has come."""
        return hold.due(self._clock())

    def describe(self, hold: Hold) -> dict[str, object]:
        """A hold for ``--json`` and the API, with ``due``: its review date has come."""
        return {**hold.as_dict(), "due": self.due(hold)}

    @staticmethod
    async def _call(operation: Awaitable[Hold]) -> Hold:
        """The catalog's refusals as the use case's errors."""
        try:
            return await operation
        except NotFoundError as exc:
            raise RecordNotFound(str(exc)) from None
        except HoldRefusedError as exc:
            raise HoldRefused(str(exc)) from None
        except InvalidFieldError as exc:
            raise InvalidHoldRequest(str(exc)) from None
