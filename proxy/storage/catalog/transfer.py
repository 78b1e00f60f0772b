"""``recproxy db copy``: a SQLite catalog copied whole into an empty PostgreSQL catalog,
so an installation moves to the shared catalog without losing its history.

- The source must be at this code's schema version (``recproxy db upgrade`` first); the
  target is migrated to it, and must hold no rows (a copy never merges).
- Every table is copied, parents before children (their foreign keys), each in SQLite's
  row order (its rowid): the audit chain keeps its sequence numbers, times and detail
  text byte for byte, so ``recproxy audit verify`` passes on the copy; insertion order,
  which some listings use, is kept.
- The copy is one write transaction on the target (PostgreSQL's ``COPY``, fast for
  millions of segment rows): all of it lands, or none.
- Identity columns (SQLite's INTEGER PRIMARY KEY) continue after the highest id copied.
"""

from __future__ import annotations

import sqlite3
from graphlib import TopologicalSorter

from .db import transaction
from .errors import CatalogError
from .migrations import MIGRATIONS, SCHEMA_VERSION, applied_version, migrate
from .pg_connection import PgConnection


class CopyRefusedError(CatalogError):
    """The source or the target is not fit for a copy (says which, and why)."""


def copy_catalog(source: sqlite3.Connection, target: PgConnection, now_ms: int) -> dict[str, int]:
    """Copy ``source`` into ``target`` (see the module docstring); rows copied by table."""
    version = applied_version(source)
    if version != SCHEMA_VERSION:
        raise CopyRefusedError(
            f"the SQLite catalog is at schema version {version}, this recproxy at"
            f" {SCHEMA_VERSION}: run recproxy db upgrade first"
        )
    migrate(target, MIGRATIONS, now_ms, "the target catalog")
    tables = _tables_in_order(source)
    copied: dict[str, int] = {}
    with transaction(target):
        for table in tables:
            if target.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
                raise CopyRefusedError(f"the target catalog is not empty ({table} has rows)")
        for table in tables:
            copied[table] = _copy_table(source, target, table)
        _continue_identities(target)
    return copied


def _tables_in_order(source: sqlite3.Connection) -> list[str]:
    names = [
        row[0]
        for row in source.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> 'schema_migrations'"
            " ORDER BY name"
        )
    ]
    parents = {
        name: {row[2] for row in source.execute(f"PRAGMA foreign_key_list({name})")} - {name}
        for name in names
    }
    return list(TopologicalSorter(parents).static_order())


def _copy_table(source: sqlite3.Connection, target: PgConnection, table: str) -> int:
    columns = [row[1] for row in source.execute(f"PRAGMA table_info({table})")]
    quoted = ", ".join(f'"{column}"' for column in columns)
    copied = 0
    cursor = target.raw.cursor()
    with cursor.copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:
        for row in source.execute(f"SELECT {quoted} FROM {table} ORDER BY rowid"):
            copy.write_row(row)
            copied += 1
    return copied


def _continue_identities(target: PgConnection) -> None:
    found = target.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'public' AND is_identity = 'YES'"
        " AND identity_generation = 'BY DEFAULT'"
    ).fetchall()
    for table, column in found:
        target.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
            f' COALESCE(MAX("{column}"), 0) + 1, false) FROM {table}'
        )
