"""Unusual access, flagged for the DPO (issue 15, P11, P21): pure rules over one user's
recent accesses and the ``[access]`` thresholds.

The caller (the records service, the export command) records each playback, export and
refusal, and asks ``anomalies(latest, earlier, settings)`` with the access just made and
that user's accesses of the hour before it.  Each flag names the rule the latest access
broke, so a flag is raised by the access that crossed a line and by every one past it:

- ``too_many_playbacks``: a playback that makes more than ``playbacks_per_hour``
  within the last hour (a rolling hour: ``(at - 1 h, at]``);
- ``outside_working_hours``: an export outside ``working_hours`` on ``working_days``,
  local time in ``timezone`` (so the working day moves with summer time);
- ``repeated_refusals``: a refusal that makes more than ``refusals_per_hour``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..config import AccessSettings

WINDOW = timedelta(hours=1)


class AccessKind(enum.Enum):
    PLAYBACK = "playback"
    EXPORT = "export"
    REFUSAL = "refusal"


class Anomaly(enum.Enum):
    TOO_MANY_PLAYBACKS = "too_many_playbacks"
    OUTSIDE_WORKING_HOURS = "outside_working_hours"
    REPEATED_REFUSALS = "repeated_refusals"


@dataclass(frozen=True)
class Access:
    """One access by the user, at an aware time."""

    kind: AccessKind
    at: datetime


def anomalies(
    latest: Access, earlier: Iterable[Access], settings: AccessSettings
) -> frozenset[Anomaly]:
    """The flags ``latest`` raises, given the same user's ``earlier`` accesses (older ones
    than an hour before ``latest`` are ignored, so the caller may pass more)."""
    if latest.at.tzinfo is None:
        raise ValueError("an access time must be aware (UTC), not naive")
    in_hour = 1 + sum(
        1
        for access in earlier
        if access.kind is latest.kind and latest.at - WINDOW < access.at <= latest.at
    )
    flags: set[Anomaly] = set()
    if latest.kind is AccessKind.PLAYBACK and in_hour > settings.playbacks_per_hour:
        flags.add(Anomaly.TOO_MANY_PLAYBACKS)
    if latest.kind is AccessKind.REFUSAL and in_hour > settings.refusals_per_hour:
        flags.add(Anomaly.REPEATED_REFUSALS)
    if latest.kind is AccessKind.EXPORT and not within_working_hours(latest.at, settings):
        flags.add(Anomaly.OUTSIDE_WORKING_HOURS)
    return frozenset(flags)


def within_working_hours(at: datetime, settings: AccessSettings) -> bool:
    """Whether ``at`` (aware) falls in the working week, in the configured time zone."""
    local = at.astimezone(settings.timezone)
    start, end = settings.working_hours
    return local.weekday() in settings.working_days and start <= local.time() < end
