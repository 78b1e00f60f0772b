"""``PostgresCatalog``: the catalog on a PostgreSQL server, shared by several recproxy
nodes; the same repositories and migrations as SQLite (:mod:`.pg_connection`,
:mod:`.pg_schema`).

- Every write transaction takes one advisory lock first, so writers are serialised as
  on SQLite (the audit chain never forks with two nodes appending); a read sees one
  snapshot (REPEATABLE READ).
- A server that is down, or a connection that broke, raises ``CatalogUnavailableError``
  (callers journal the write and retry); the next operation connects again.
- The password never comes from the URL (so never from the TOML): libpq reads
  ``PGPASSWORD``, ``PGPASSFILE`` or ``~/.pgpass``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from psycopg.conninfo import conninfo_to_dict

from .errors import InvalidFieldError
from .migrations import MIGRATIONS, Migration
from .pg_connection import PgDatabase
from .sql_catalog import SqlCatalog
from .values import count, utc_now

SCHEMES = ("postgresql://", "postgres://")
#: libpq parameters that are secrets (besides ``password``): refused in the URL.
SECRETS = frozenset({"sslpassword", "oauth_client_secret"})


def check_url(url: str) -> str:
    """``url`` if it is a PostgreSQL URL without a password; else ``InvalidFieldError``
    saying why (the message never repeats the password)."""
    if not url.startswith(SCHEMES):
        raise InvalidFieldError("a catalog URL starts with postgresql://")
    try:
        parts = conninfo_to_dict(url)
    except Exception as exc:  # psycopg.ProgrammingError, with the URL in it
        raise InvalidFieldError(f"not a PostgreSQL URL ({type(exc).__name__})") from None
    if "password" in parts:
        raise InvalidFieldError(
            "a catalog URL must not hold a password: use PGPASSWORD, PGPASSFILE or ~/.pgpass"
        )
    secrets = sorted(SECRETS & parts.keys())
    if secrets:
        raise InvalidFieldError(
            f"a catalog URL must not hold a secret ({', '.join(secrets)}): the TOML and "
            "the logs would carry it (for sslpassword, use a client key without a "
            "passphrase, readable by the service's user only)"
        )
    return url


class PostgresCatalog(SqlCatalog):
    """``async with PostgresCatalog("postgresql://user@host:5432/db") as catalog: ...``.
    One instance holds one connection.  A write waits for other nodes' writes at most
    ``lock_timeout_ms``, then is refused as unavailable."""

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], datetime] = utc_now,
        lock_timeout_ms: int = 5000,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self.url = check_url(url)
        db = PgDatabase(url, lock_timeout_ms=count("lock_timeout_ms", lock_timeout_ms))
        super().__init__(db, name=db.name, clock=clock, migrations=migrations)
