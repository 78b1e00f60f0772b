"""What ``recproxy db check`` reads of a catalog, on either engine: the schema version
applied, and what the engine itself says of the database's integrity."""

from __future__ import annotations

from dataclasses import dataclass

from .db import Connection, dialect, one, rows
from .migrations import SCHEMA_VERSION, applied_version

_HAS_MIGRATIONS = {
    "sqlite": "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
    "postgresql": "SELECT 1 WHERE to_regclass('schema_migrations') IS NOT NULL",
}
# SQLite: its own page-level check, and every foreign key (it enforces them only on
# connections that ask); PostgreSQL enforces constraints always, so: any constraint
# added NOT VALID and never validated, and any index a failed build left invalid.
_PROBLEMS = {
    "sqlite": (
        "SELECT integrity_check FROM pragma_integrity_check WHERE integrity_check <> 'ok'",
        "SELECT 'foreign key: ' || \"table\" || ' row ' || rowid || ' names a missing '"
        " || parent FROM pragma_foreign_key_check",
    ),
    "postgresql": (
        "SELECT 'constraint ' || conname || ' on ' || conrelid::regclass::text"
        " || ' is not validated' FROM pg_constraint"
        " WHERE NOT convalidated AND connamespace = 'public'::regnamespace",
        "SELECT 'index ' || indexrelid::regclass::text || ' is invalid' FROM pg_index"
        " JOIN pg_class ON pg_class.oid = indrelid"
        " WHERE NOT indisvalid AND relnamespace = 'public'::regnamespace",
    ),
}


@dataclass(frozen=True, slots=True)
class CatalogCheck:
    """The schema version applied (0: none), the version this code knows, and the
    integrity problems found (none: ``ok``)."""

    version: int
    known: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.version == self.known and not self.problems


def check(conn: Connection) -> CatalogCheck:
    engine = dialect(conn)
    version = applied_version(conn) if one(conn, _HAS_MIGRATIONS[engine]) else 0
    problems = tuple(str(row[0]) for sql in _PROBLEMS[engine] for row in rows(conn, sql))
    return CatalogCheck(version, SCHEMA_VERSION, problems)
