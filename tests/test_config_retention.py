"""``[retention]``: its keys validated with errors naming the key, and the period in
calendar months plus days (a day the month lacks becomes its last day)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from proxy.config import ConfigError, RetentionSettings, add_months, build_config


def test_the_defaults_keep_36_months_and_sweep_hourly() -> None:
    retention = build_config({}, base=Path("/")).retention
    assert retention == RetentionSettings(36, 0, 3600.0, 100)
    ended = datetime(2026, 3, 15, 9, 30, tzinfo=UTC)
    assert retention.expires(ended) == datetime(2029, 3, 15, 9, 30, tzinfo=UTC)


def test_days_are_added_to_months() -> None:
    retention = build_config({"retention": {"months": 1, "days": 2}}, base=Path("/")).retention
    ended = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    assert retention.expires(ended) == datetime(2027, 2, 2, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "when, months, expected",
    [
        (datetime(2028, 1, 31, tzinfo=UTC), 1, datetime(2028, 2, 29, tzinfo=UTC)),
        (datetime(2027, 1, 31, tzinfo=UTC), 1, datetime(2027, 2, 28, tzinfo=UTC)),
        (datetime(2026, 11, 30, tzinfo=UTC), 3, datetime(2027, 2, 28, tzinfo=UTC)),
        (datetime(2029, 3, 31, tzinfo=UTC), -36, datetime(2026, 3, 31, tzinfo=UTC)),
        (datetime(2029, 2, 28, tzinfo=UTC), -12, datetime(2028, 2, 28, tzinfo=UTC)),
        (datetime(2026, 12, 5, tzinfo=UTC), 0, datetime(2026, 12, 5, tzinfo=UTC)),
    ],
)
def test_calendar_months_clamp_to_the_last_day(
    when: datetime, months: int, expected: datetime
) -> None:
    assert add_months(when, months) == expected


def test_ended_by_is_the_latest_end_expired_at_a_time() -> None:
    retention = RetentionSettings(months=36, days=10)
    as_of = datetime(2030, 6, 11, tzinfo=UTC)
    ended_by = retention.ended_by(as_of)
    assert ended_by == datetime(2027, 6, 1, tzinfo=UTC)
    assert retention.expires(ended_by) == as_of


@pytest.mark.parametrize(
    "table, message",
    [
        ({"months": -1}, "retention.months: must be an integer from 0 to 1200, got -1"),
        ({"days": 1.5}, "retention.days: must be an integer"),
        ({"sweep_interval_seconds": 0}, "retention.sweep_interval_seconds: must be"),
        ({"batch_size": 0}, "retention.batch_size: must be an integer from 1 to 10000"),
        ({"years": 3}, "retention.years: unknown key"),
        (
            {"months": 0, "days": 0},
            "retention: months and days are both 0; recordings would be deleted as they end",
        ),
    ],
)
def test_a_bad_retention_key_is_named(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config({"retention": table}, base=Path("/"))
    assert any(error.startswith(message) for error in caught.value.errors), caught.value.errors
