"""The anomaly rules at their thresholds: just under, at and over the hourly counts, the
rolling hour's edges, and the working day's edges in winter and summer time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proxy.config import AccessSettings, build_config
from proxy.records.anomaly import Access, AccessKind, Anomaly, anomalies, within_working_hours

SETTINGS = AccessSettings()  # 20 playbacks, 5 refusals an hour; 08:00-18:30 mon-fri London
MONDAY = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)  # winter: London is on UTC


def spaced(kind: AccessKind, count: int, before: datetime) -> list[Access]:
    """``count`` accesses spread over the hour before ``before`` (all within it)."""
    return [
        Access(kind, before - timedelta(minutes=59) + timedelta(seconds=i)) for i in range(count)
    ]


@pytest.mark.parametrize(
    "kind, earlier, flags",
    [
        (AccessKind.PLAYBACK, 18, set()),  # the 19th
        (AccessKind.PLAYBACK, 19, set()),  # the 20th: at the threshold
        (AccessKind.PLAYBACK, 20, {Anomaly.TOO_MANY_PLAYBACKS}),  # the 21st
        (AccessKind.PLAYBACK, 40, {Anomaly.TOO_MANY_PLAYBACKS}),
        (AccessKind.REFUSAL, 3, set()),
        (AccessKind.REFUSAL, 4, set()),  # the 5th
        (AccessKind.REFUSAL, 5, {Anomaly.REPEATED_REFUSALS}),  # the 6th
    ],
)
def test_counts_are_flagged_past_the_threshold(
    kind: AccessKind, earlier: int, flags: set[Anomaly]
) -> None:
    latest = Access(kind, MONDAY)
    assert anomalies(latest, spaced(kind, earlier, MONDAY), SETTINGS) == flags


def test_only_accesses_of_the_same_kind_count() -> None:
    refusals = spaced(AccessKind.REFUSAL, 30, MONDAY)
    exports = spaced(AccessKind.EXPORT, 30, MONDAY)
    latest = Access(AccessKind.PLAYBACK, MONDAY)
    assert anomalies(latest, refusals + exports, SETTINGS) == frozenset()


def test_the_hour_rolls() -> None:
    latest = Access(AccessKind.PLAYBACK, MONDAY)
    inside = [Access(AccessKind.PLAYBACK, MONDAY - timedelta(minutes=30))] * 19
    exactly_an_hour_ago = Access(AccessKind.PLAYBACK, MONDAY - timedelta(hours=1))
    just_inside = Access(AccessKind.PLAYBACK, MONDAY - timedelta(minutes=59, seconds=59))
    assert anomalies(latest, [*inside, exactly_an_hour_ago], SETTINGS) == frozenset()
    assert anomalies(latest, [*inside, just_inside], SETTINGS) == {Anomaly.TOO_MANY_PLAYBACKS}


def test_later_accesses_do_not_count_for_an_earlier_one() -> None:
    latest = Access(AccessKind.REFUSAL, MONDAY)
    later = [Access(AccessKind.REFUSAL, MONDAY + timedelta(seconds=1))] * 10
    assert anomalies(latest, later, SETTINGS) == frozenset()


def test_the_thresholds_come_from_the_configuration() -> None:
    settings = build_config({"access": {"playbacks_per_hour": 2}}, base=Path("/")).access
    latest = Access(AccessKind.PLAYBACK, MONDAY)
    assert anomalies(latest, spaced(AccessKind.PLAYBACK, 1, MONDAY), settings) == frozenset()
    assert anomalies(latest, spaced(AccessKind.PLAYBACK, 2, MONDAY), settings) == {
        Anomaly.TOO_MANY_PLAYBACKS
    }


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "at, working",
    [
        # winter (GMT = UTC), Monday 7 December 2026
        ("2026-12-07 07:59:59", False),
        ("2026-12-07 08:00:00", True),
        ("2026-12-07 18:29:59", True),
        ("2026-12-07 18:30:00", False),
        # summer (BST = UTC+1), Monday 30 March 2026, the day after the clocks went forward
        ("2026-03-30 06:59:59", False),
        ("2026-03-30 07:00:00", True),  # 08:00 in London
        ("2026-03-30 17:29:59", True),
        ("2026-03-30 17:30:00", False),  # 18:30 in London
        # the last Friday of summer time, and the Monday after the clocks went back
        ("2026-10-23 17:29:59", True),
        ("2026-10-23 17:30:00", False),
        ("2026-10-26 07:59:59", False),
        ("2026-10-26 08:00:00", True),
        # the weekend: Saturday noon, and Sunday 29 March at the change itself
        ("2026-12-05 12:00:00", False),
        ("2026-03-29 01:00:00", False),
        # Friday 23:30 UTC in winter is still Friday in London, but after hours
        ("2026-12-11 23:30:00", False),
    ],
)
def test_the_working_day_is_local_time(at: str, working: bool) -> None:
    assert within_working_hours(utc(at), SETTINGS) is working
    flags = anomalies(Access(AccessKind.EXPORT, utc(at)), [], SETTINGS)
    assert flags == (set() if working else {Anomaly.OUTSIDE_WORKING_HOURS})


def test_a_playback_outside_working_hours_is_no_anomaly_by_itself() -> None:
    night = utc("2026-12-07 23:00:00")
    assert anomalies(Access(AccessKind.PLAYBACK, night), [], SETTINGS) == frozenset()


def test_the_working_week_and_time_zone_come_from_the_configuration() -> None:
    access = {"working_days": "sat-sun", "working_hours": "10:00-12:00", "timezone": "Asia/Tokyo"}
    settings = build_config({"access": access}, base=Path("/")).access
    assert within_working_hours(utc("2026-12-05 01:00:00"), settings)  # Sat 10:00 Tokyo
    assert not within_working_hours(utc("2026-12-05 03:00:00"), settings)  # Sat 12:00
    assert not within_working_hours(utc("2026-12-07 01:00:00"), settings)  # Monday


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        anomalies(Access(AccessKind.EXPORT, datetime(2026, 12, 7, 10)), [], SETTINGS)
