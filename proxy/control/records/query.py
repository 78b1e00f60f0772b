"""Query parameters of the governance listings, checked as the person sent them: a
listing refuses a parameter it does not know, and an on/off switch is ``1``/``true``
or ``0``/``false`` (absent: off), so a typo is a 422, never a silently wider answer."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from ...records.errors import InvalidQuery

_ON, _OFF = frozenset({"1", "true"}), frozenset({"0", "false", ""})


def known_only(query: Mapping[str, str], known: Collection[str]) -> None:
    """``InvalidQuery`` naming the first parameter of ``query`` not in ``known``."""
    unknown = sorted(set(query) - set(known))
    if unknown:
        names = ", ".join(known) or "none"
        raise InvalidQuery(f"unknown parameter {unknown[0]!r} (known: {names})")


def switch(query: Mapping[str, str], name: str) -> bool:
    """Whether the switch ``name`` is on; ``InvalidQuery`` for a value that is neither."""
    value = query.get(name, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise InvalidQuery(f"{name} must be 1 or 0 (true or false), got {value[:40]!r}")


def switch_parameter(name: str, description: str) -> dict[str, object]:
    """The OpenAPI description of the switch ``name``."""
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": "string", "enum": ["1", "0", "true", "false"]},
    }
