"""A node's name is one live process's (issue 20): a second ``serve`` with the same
``[node] name`` on the same catalog fails start-up naming ``node.name`` (its start-up
recovery would mark the first one's live recordings interrupted); another name, or the
same name once the first has stopped, starts.  On SQLite (a lock file beside the
catalog) and on a real PostgreSQL server (an advisory lock on a session of its own)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import Config, build_config
from proxy.node_claim import claim_node_name
from proxy.startup import StartupError
from tests.pg_server import PgServer


def node(tmp_path: Path, name: str, url: str = "") -> Config:
    return build_config({"node": {"name": name}, "catalog": {"url": url}}, base=tmp_path)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_second_process_with_the_same_node_name_fails_start_up(
    tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    url = ""
    if engine == "postgresql":
        url = request.getfixturevalue("pg_server").fresh_database()
    first = claim_node_name(node(tmp_path, "node-a", url))
    try:
        with pytest.raises(StartupError, match=r"^node\.name 'node-a' is in use by another"):
            claim_node_name(node(tmp_path, "node-a", url))
        claim_node_name(node(tmp_path, "node-b", url)).release()  # another name: fine
    finally:
        first.release()
    claim_node_name(node(tmp_path, "node-a", url)).release()  # the first one stopped


def test_the_postgresql_claim_is_apart_from_the_catalogs_database(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """Advisory locks are per database: two catalogs on one server never collide."""
    one, other = pg_server.fresh_database(), pg_server.fresh_database()
    first = claim_node_name(node(tmp_path, "node-a", one))
    try:
        claim_node_name(node(tmp_path, "node-a", other)).release()
    finally:
        first.release()
