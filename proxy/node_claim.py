"""A running node's claim on its ``[node] name`` (issue 20).

Every call and recording row names the node that wrote it, and a node's start-up
recovery marks ``interrupted`` the recordings its name left ``recording``.  Two live
processes with one name (two nodes on one box both left at the host-name default) would
each take the other's calls in progress for its own crash's leftovers.  So ``serve``
claims its name before recovery, for its whole life, and a second process with the
same name fails start-up naming ``node.name``:

- on SQLite, an ``flock`` on a lock file beside the catalog, named for the node (the
  nodes sharing a SQLite catalog share its folder, on one machine);
- on PostgreSQL, a session-level advisory lock keyed by the name, on a connection of
  its own held open for the process's life: the catalog's connection reconnects after
  an outage, and a session lock does not outlive the session it was taken on.  If the
  server restarts, the claim goes with that session (a later start with the same name
  is then let in); the claim guards start-up recovery, which runs only at start.  The
  key is PostgreSQL's ``hashtext`` of the name: two different names that hash alike
  would refuse each other (one in four billion), never let a duplicate in.
"""

from __future__ import annotations

from typing import Protocol

import psycopg

from .config import Config
from .startup import StartupError
from .storage.file_lock import InUseError, claim

#: The advisory lock's first key ("node"): apart from the catalog's writers' lock.
NODE_LOCK_SPACE = 0x6E6F6465


class Claim(Protocol):
    def release(self) -> None: ...


class _PgClaim:
    def __init__(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        self._conn = conn

    def release(self) -> None:
        self._conn.close()  # the session ends: its advisory lock with it


def claim_node_name(config: Config) -> Claim:
    """Claim ``config.node.name`` for this process (see the module docstring); raises
    ``StartupError`` naming ``node.name`` when another live process holds it.  Blocking:
    call it in a thread."""
    name = config.node.name
    taken = StartupError(
        f"node.name {name!r} is in use by another running recproxy node on this catalog: "
        "each node needs its own [node] name"
    )
    if not config.catalog.url:
        path = config.catalog.path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return claim(path.with_name(f"{path.name}.node-{name}.lock"))
        except InUseError:
            raise taken from None
    try:
        conn = psycopg.connect(
            config.catalog.url, autocommit=True, connect_timeout=5, application_name="recproxy"
        )
    except psycopg.Error as exc:
        raise StartupError(f"catalog.url: cannot claim node.name {name!r}: {exc}") from None
    row = conn.execute(
        "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (NODE_LOCK_SPACE, name)
    ).fetchone()
    if row is None or not row[0]:
        conn.close()
        raise taken
    return _PgClaim(conn)
