"""``[access]``: purposes, grant length and the anomaly thresholds, validated with errors
naming the key."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from proxy.config import DEFAULT_PURPOSES, AccessSettings, ConfigError, build_config


def access(table: dict[str, object]) -> AccessSettings:
    return build_config({"access": table}, base=Path("/")).access


def test_the_defaults() -> None:
    settings = build_config({}, base=Path("/")).access
    assert settings.purposes == DEFAULT_PURPOSES
    assert "crime_prevention" in settings.purposes and len(settings.purposes) == 8
    assert settings.grant_days == 7
    assert (settings.playbacks_per_hour, settings.refusals_per_hour) == (20, 5)
    assert settings.working_hours == (time(8, 0), time(18, 30))
    assert settings.working_days == frozenset({0, 1, 2, 3, 4})
    assert settings.timezone == ZoneInfo("Europe/London")


def test_any_purpose_name_may_be_configured() -> None:
    assert access({"purposes": ["audit", "fraud-check"]}).purposes == ("audit", "fraud-check")


@pytest.mark.parametrize(
    "text, days",
    [
        ("mon-fri", {0, 1, 2, 3, 4}),
        ("mon,wed,fri", {0, 2, 4}),
        ("Mon-Thu, sat", {0, 1, 2, 3, 5}),
        ("sun", {6}),
        ("mon-sun", set(range(7))),
    ],
)
def test_working_days(text: str, days: set[int]) -> None:
    assert access({"working_days": text}).working_days == days


@pytest.mark.parametrize(
    "text, hours",
    [("07:30-16:00", (time(7, 30), time(16))), ("00:00 - 23:59", (time(0), time(23, 59)))],
)
def test_working_hours(text: str, hours: tuple[time, time]) -> None:
    assert access({"working_hours": text}).working_hours == hours


@pytest.mark.parametrize(
    "table, message",
    [
        ({"purposes": []}, "access.purposes: must be a non-empty list of purpose names"),
        ({"purposes": "legal"}, "access.purposes: must be a non-empty list"),
        ({"purposes": ["Legal"]}, "access.purposes: 'Legal' is not a purpose name"),
        ({"purposes": ["legal", "legal"]}, "access.purposes: 'legal' is listed twice"),
        ({"grant_days": 0}, "access.grant_days: must be an integer from 1 to 366, got 0"),
        ({"playbacks_per_hour": 0}, "access.playbacks_per_hour: must be an integer from 1"),
        ({"refusals_per_hour": "5"}, "access.refusals_per_hour: must be an integer"),
        ({"working_hours": "8-18"}, 'access.working_hours: must be "HH:MM-HH:MM"'),
        ({"working_hours": "08:00-24:00"}, 'access.working_hours: must be "HH:MM-HH:MM"'),
        ({"working_hours": "18:00-08:00"}, "access.working_hours: must start before it ends"),
        ({"working_hours": "08:00-08:00"}, "access.working_hours: must start before it ends"),
        ({"working_days": "fri-mon"}, "access.working_days: 'fri-mon' runs backwards"),
        ({"working_days": "weekdays"}, "access.working_days: 'weekdays' is not a day"),
        ({"working_days": ""}, 'access.working_days: must be days like "mon-fri"'),
        ({"timezone": "Europe/Atlantis"}, "access.timezone: must be an IANA time zone"),
        ({"timezone": "../../etc/passwd"}, "access.timezone: must be an IANA time zone"),
        ({"purpose": ["legal"]}, "access.purpose: unknown key"),
    ],
)
def test_a_bad_access_key_is_named(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        access(table)
    assert any(error.startswith(message) for error in caught.value.errors), caught.value.errors


def test_bulk_max_recordings_defaults_to_100_and_is_bounded() -> None:
    assert build_config({}, base=Path("/")).access.bulk_max_recordings == 100
    assert access({"bulk_max_recordings": 400}).bulk_max_recordings == 400
    for bad in (0, 401, "10"):
        with pytest.raises(ConfigError, match=r"access\.bulk_max_recordings"):
            access({"bulk_max_recordings": bad})
