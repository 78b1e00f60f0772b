"""The configuration versions the proxy ran under (P22), and each change of version as
an audit entry.

A version is the SHA-256 of its settings' canonical JSON (sorted keys, no whitespace,
UTF-8: :func:`canonical_json`), and :meth:`ConfigVersionLog.record` refuses a pair that
does not match, so every stored row proves itself: anyone can recompute a version from
the settings ``config history`` shows.  The settings are flat (``key.path -> value``)
and already redacted by the caller (``proxy.config_version``): no secret reaches this
table or the audit log.

``record`` runs at each start.  In one transaction it stores the version if it is new,
marks it the latest seen, and — when it differs from the version seen last — appends a
``config.change`` audit entry with the keys changed, added and removed, so a change and
its entry commit together or not at all.  Going back to an earlier version is a change
too (the audit log has the whole sequence; the table has each version once).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from .audit import append
from .db import Connection, Database, Row, one, rows
from .errors import InvalidFieldError
from .values import at_or_now_ms, from_ms, text

CONFIG_CHANGE = "config.change"  # the audit action


def canonical_json(value: Mapping[str, Any]) -> str:
    """Sorted keys, no whitespace, non-ASCII kept: one text for one value."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def version_of_settings(settings: Mapping[str, Any]) -> str:
    """The version of ``settings``: the SHA-256 hex of their canonical JSON."""
    return hashlib.sha256(canonical_json(settings).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """From one version to the next: ``changed`` maps a key to ``[old, new]``,
    ``added`` and ``removed`` a key to its value."""

    old: str
    new: str
    changed: Mapping[str, list[Any]]
    added: Mapping[str, Any]
    removed: Mapping[str, Any]

    def detail(self) -> dict[str, Any]:
        """The audit entry's detail."""
        return {
            "from": self.old,
            "to": self.new,
            "changed": dict(self.changed),
            "added": dict(self.added),
            "removed": dict(self.removed),
        }

    @property
    def keys(self) -> list[str]:
        """Every key that differs, in order."""
        return sorted({*self.changed, *self.added, *self.removed})


def diff(
    old: str, old_settings: Mapping[str, Any], new: str, new_settings: Mapping[str, Any]
) -> ConfigChange:
    """What changed between two flat settings."""
    return ConfigChange(
        old,
        new,
        changed={
            key: [old_settings[key], value]
            for key, value in sorted(new_settings.items())
            if key in old_settings and old_settings[key] != value
        },
        added={k: v for k, v in sorted(new_settings.items()) if k not in old_settings},
        removed={k: v for k, v in sorted(old_settings.items()) if k not in new_settings},
    )


@dataclass(frozen=True, slots=True)
class ConfigVersion:
    """A version as stored: when it was first and last seen at start, its settings."""

    version: str
    first_seen_at: datetime
    last_seen_at: datetime
    settings: Mapping[str, Any]


class ConfigVersionLog(Protocol):
    """The versions of the configuration, recorded at each start."""

    async def record(
        self,
        version: str,
        settings: Mapping[str, Any],
        *,
        actor: str,
        at: datetime | None = None,
    ) -> ConfigChange | None: ...

    async def history(self) -> list[ConfigVersion]: ...


_LATEST = (
    "SELECT version, settings FROM config_versions"
    " ORDER BY last_seen_at DESC, first_seen_at DESC LIMIT 1"
)
_UPSERT = (
    "INSERT INTO config_versions (version, first_seen_at, last_seen_at, settings)"
    " VALUES (?, ?, ?, ?)"
    " ON CONFLICT (version) DO UPDATE SET last_seen_at = excluded.last_seen_at"
)


def _row(row: Row) -> ConfigVersion:
    return ConfigVersion(
        row["version"],
        from_ms(int(row["first_seen_at"])),
        from_ms(int(row["last_seen_at"])),
        json.loads(row["settings"]),
    )


class SqliteConfigVersions:
    """:class:`ConfigVersionLog` in the catalog's SQLite database."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock

    async def record(
        self,
        version: str,
        settings: Mapping[str, Any],
        *,
        actor: str,
        at: datetime | None = None,
    ) -> ConfigChange | None:
        """Record that the proxy runs under ``version`` now; the change from the
        version seen last (audited in the same transaction), or None when there was
        none (the first start, or the same version again).  Raises
        ``InvalidFieldError`` when ``version`` is not the hash of ``settings``."""
        try:
            expected = version_of_settings(settings)
        except (TypeError, ValueError) as exc:
            raise InvalidFieldError(f"settings must be plain JSON data: {exc}") from None
        if expected != version:
            raise InvalidFieldError(f"version {version!r} is not the SHA-256 of its settings")
        settings_json = canonical_json(settings)
        actor = text("actor", actor)
        at_ms = at_or_now_ms(self._clock, at)

        def body(conn: Connection) -> ConfigChange | None:
            latest = one(conn, _LATEST)
            conn.execute(_UPSERT, (version, at_ms, at_ms, settings_json))
            if latest is None or latest["version"] == version:
                return None
            change = diff(latest["version"], json.loads(latest["settings"]), version, settings)
            append(
                conn,
                at_ms=at_ms,
                actor=actor,
                action=CONFIG_CHANGE,
                object=f"config:{version}",
                detail=change.detail(),
            )
            return change

        return await self._db.write(body)

    async def history(self) -> list[ConfigVersion]:
        """Every version, in the order first seen."""
        sql = "SELECT * FROM config_versions ORDER BY first_seen_at, version"
        return await self._db.read(lambda conn: [_row(row) for row in rows(conn, sql)])
