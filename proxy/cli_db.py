"""``recproxy db upgrade|check|copy``: the catalog's schema and integrity, on the
configured engine (the SQLite file at ``[catalog] path`` or the server at ``[catalog]
url``), and the move of a SQLite catalog to PostgreSQL (issue 20).

- ``upgrade`` applies the migrations this recproxy knows (``serve`` does so at start
  too); run it once, before starting nodes that share a server, to see what it did.
- ``check`` changes nothing: the schema version against this recproxy's, and the
  engine's integrity checks.  Exit 1 when either is wrong.
- ``copy --to postgresql://...`` copies the configured SQLite catalog, audit chain
  included, into an empty PostgreSQL database (:mod:`proxy.storage.catalog.transfer`);
  then set ``[catalog] url`` to it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from .catalog_setup import catalog_missing, catalog_name, make_catalog

if TYPE_CHECKING:
    from .config import Config
    from .storage.catalog import SqlCatalog

Options = Callable[[argparse.ArgumentParser], None]


class DbCommandError(Exception):
    """One line for the person: ``recproxy`` prints it and exits 1 (see ``cli_sar``'s
    ``SarCommandError`` for why it is not the command's own ``CliError``)."""


def add_db_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], config_option: Options
) -> None:
    db = commands.add_parser("db", help="the catalog's schema: upgrade, check, copy")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply the schema migrations")
    config_option(upgrade)
    check = db_commands.add_parser("check", help="schema version and integrity (no changes)")
    config_option(check)
    copy = db_commands.add_parser(
        "copy", help="copy the SQLite catalog, audit chain included, to PostgreSQL"
    )
    copy.add_argument("--to", required=True, metavar="URL", help="postgresql://user@host/db")
    config_option(copy)


async def run_db(args: argparse.Namespace, config: Config) -> int:
    if args.db_command == "upgrade":
        return await _upgrade(config)
    if args.db_command == "check":
        return await _check(config)
    return await _copy(config, args.to)


async def _upgrade(config: Config) -> int:
    name = catalog_name(config.catalog)
    before = 0
    if not catalog_missing(config.catalog):
        async with _opened(config, upgrade=False) as catalog:
            before = (await catalog.check()).version
    else:
        config.catalog.path.parent.mkdir(parents=True, exist_ok=True)
    async with _opened(config, upgrade=True) as catalog:
        after = await catalog.schema_version()
    done = "already up to date" if before == after else f"upgraded from version {before}"
    print(f"catalog {name}: schema version {after} ({done})")
    return 0


async def _check(config: Config) -> int:
    name = catalog_name(config.catalog)
    if catalog_missing(config.catalog):
        raise DbCommandError(f"no catalog at {name} (has the proxy run yet?)")
    async with _opened(config, upgrade=False) as catalog:
        found = await catalog.check()
    print(f"catalog {name}: schema version {found.version} (this recproxy: {found.known})")
    for problem in found.problems:
        print(f"integrity: {problem}")
    if found.version < found.known:
        print("run recproxy db upgrade")
    if found.ok:
        print("integrity: ok")
    return 0 if found.ok else 1


async def _copy(config: Config, url: str) -> int:
    from .storage.catalog.errors import CatalogError
    from .storage.catalog.pg_connection import UNAVAILABLE, connect
    from .storage.catalog.postgres import check_url
    from .storage.catalog.transfer import copy_catalog
    from .storage.catalog.values import to_ms, utc_now

    if config.catalog.url:
        raise DbCommandError("db copy copies the SQLite catalog: remove [catalog] url first")
    if catalog_missing(config.catalog):
        raise DbCommandError(f"no catalog at {config.catalog.path}")
    try:
        check_url(url)
    except CatalogError as exc:
        raise DbCommandError(f"--to: {exc}") from None

    def run() -> dict[str, int]:
        source = sqlite3.connect(f"{config.catalog.path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            target = connect(url, lock_timeout_ms=5000)
            try:
                return copy_catalog(source, target, to_ms("now", utc_now()))
            finally:
                target.close()
        finally:
            source.close()

    try:
        copied = await asyncio.to_thread(run)
    except (CatalogError, *UNAVAILABLE) as exc:
        raise DbCommandError(f"db copy: {exc}") from None
    for table, rows in copied.items():
        print(f"{table}: {rows} rows")
    print(f"copied to {url}; set [catalog] url = {url!r} and run recproxy audit verify")
    return 0


@contextlib.asynccontextmanager
async def _opened(config: Config, *, upgrade: bool) -> AsyncIterator[SqlCatalog]:
    """The configured catalog, opened with or without its migrations; a catalog error
    (an unreachable server, a schema too new) said in one line."""
    from .storage.catalog.errors import CatalogError

    catalog = make_catalog(config.catalog, synchronous="FULL")
    try:
        await catalog.open(upgrade=upgrade)
    except CatalogError as exc:
        raise DbCommandError(str(exc)) from None
    try:
        yield catalog
    finally:
        await catalog.close()
