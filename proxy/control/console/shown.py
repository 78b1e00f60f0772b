"""How the records pages show the catalog's times and durations: one way on every page,
in UTC as stored (the console shows no local time that a reader might take for
another's)."""

from __future__ import annotations

from datetime import datetime

from ...storage.catalog import parse_utc


def shown_time(value: str | datetime | None) -> str:
    """A catalog time (ISO 8601 UTC) as a person reads it."""
    if value is None:
        return ""
    at = parse_utc(value) if isinstance(value, str) else value
    return f"{at:%Y-%m-%d %H:%M:%S} UTC"


def shown_duration(ms: int | None) -> str:
    if ms is None:
        return ""
    minutes, seconds = divmod(round(ms / 1000), 60)
    return f"{minutes}:{seconds:02d}"
