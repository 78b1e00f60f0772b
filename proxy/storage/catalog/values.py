"""Checking and converting what callers give the catalog, before any SQL runs.

Every check raises :class:`InvalidFieldError` naming the field, so a caller's bug is
reported as such and never reaches the database as a constraint failure.  Times become
INTEGER milliseconds since the Unix epoch, UTC; naive datetimes are refused and
precision below a millisecond is dropped.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import PurePosixPath
from typing import TypeVar

from .errors import InvalidFieldError
from .model import format_utc

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_SHA256_RE = re.compile(r"[0-9a-f]{64}")

E = TypeVar("E", bound=StrEnum)


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_ms(name: str, value: object) -> int:
    if not isinstance(value, datetime):
        raise InvalidFieldError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidFieldError(f"{name} must be timezone-aware (UTC), got naive {value}")
    return (value - EPOCH) // _ONE_MS


def opt_ms(name: str, value: object) -> int | None:
    return None if value is None else to_ms(name, value)


def from_ms(value: int) -> datetime:
    return EPOCH + timedelta(milliseconds=value)


def opt_dt(value: int | None) -> datetime | None:
    return None if value is None else from_ms(value)


def text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidFieldError(f"{name} must be a non-empty string, got {value!r}")
    return value


def opt_text(name: str, value: object) -> str | None:
    return None if value is None else text(name, value)


def count(name: str, value: object, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidFieldError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidFieldError(f"{name} must be a bool, got {value!r}")
    return value


def sha256(name: str, value: object) -> str:
    if not isinstance(value, str) or not _SHA256_RE.fullmatch(value):
        raise InvalidFieldError(f"{name} must be 64 lowercase hex digits, got {value!r}")
    return value


def uuid_or_new(name: str, value: str | None) -> str:
    """``value`` if it is a canonical UUID; a new random one if it is None."""
    if value is None:
        return str(uuid.uuid4())
    try:
        canonical = str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise InvalidFieldError(f"{name} must be a UUID, got {value!r}") from None
    if canonical != value:
        raise InvalidFieldError(f"{name} must be a lowercase hyphenated UUID, got {value!r}")
    return value


def relative_dir(value: object) -> str:
    """A recording's directory: relative to the recordings root, never leaving it."""
    given = text("directory", value)
    path = PurePosixPath(given)
    if path.is_absolute() or ".." in path.parts or "\\" in given or str(path) == ".":
        raise InvalidFieldError(
            f"directory must be a path relative to the recordings directory, got {given!r}"
        )
    return str(path)


def file_name(value: object) -> str:
    given = text("file_name", value)
    if "/" in given or "\\" in given or given in {".", ".."}:
        raise InvalidFieldError(f"file_name must be a bare file name, got {given!r}")
    return given


def member(kind: type[E], name: str, value: object) -> E:
    """``value`` as a member of ``kind`` (a member or its text)."""
    try:
        if isinstance(value, str):
            return kind(value)
    except ValueError:
        pass
    allowed = ", ".join(item.value for item in kind)
    raise InvalidFieldError(f"{name} must be one of {allowed}; got {value!r}")


def not_before(later_name: str, later: int | None, earlier_name: str, earlier: int | None) -> None:
    if later is not None and earlier is not None and later < earlier:
        raise InvalidFieldError(
            f"{later_name} ({format_utc(from_ms(later))}) is before "
            f"{earlier_name} ({format_utc(from_ms(earlier))})"
        )


def only_fields(operation: str, given: set[str], allowed: frozenset[str], hint: str = "") -> None:
    """Refuse an update naming a field it may not set."""
    unknown = given - allowed
    if unknown:
        raise InvalidFieldError(
            f"{operation} cannot set {', '.join(sorted(unknown))}; "
            f"settable fields: {', '.join(sorted(allowed))}{hint}"
        )


def at_or_now_ms(clock: Callable[[], datetime], at: datetime | None) -> int:
    """When an event happened: ``at`` if given, else the catalog's clock."""
    return to_ms("at", clock() if at is None else at)


def of_node(node: str | None, alias: str = "") -> tuple[str, tuple[str, ...]]:
    """A ``WHERE`` clause's tail (`` AND ...``) and its parameters for the rows of
    ``node``: its own and those no node is named on (written before nodes had names).
    No condition when ``node`` is None (every row: one process on the catalog)."""
    if node is None:
        return "", ()
    column = f"{alias}node"
    return f" AND ({column} = ? OR {column} IS NULL)", (text("node", node),)
