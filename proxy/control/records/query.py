"""On/off switches of the governance listings (``?active=1``, ``?open=1``): ``1`` or
``true`` is on, ``0``, ``false`` or absent is off, and anything else is a 422 — a typo
never silently widens or narrows a listing.  The parameters themselves are read with
:func:`.params.query_values` (known ones only, each once)."""

from __future__ import annotations

from collections.abc import Mapping

from ...records.errors import InvalidQuery
from .params import query_parameter
from .routes import Schema

_ON, _OFF = frozenset({"1", "true"}), frozenset({"0", "false", ""})


def switch(values: Mapping[str, str], name: str) -> bool:
    """Whether the switch ``name`` is on; ``InvalidQuery`` for a value that is neither."""
    value = values.get(name, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise InvalidQuery(f"{name} must be 1 or 0 (true or false), got {value[:40]!r}")


def switch_parameter(name: str, description: str) -> Schema:
    """The OpenAPI description of the switch ``name``."""
    return query_parameter(
        name, description, {"type": "string", "enum": ["1", "0", "true", "false"]}
    )
