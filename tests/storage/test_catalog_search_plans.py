"""Every common search shape (a number, a window, an operator, a team, a service, with
each role's scope) reads calls, recordings and parts through an index: SQLite's own
``EXPLAIN QUERY PLAN`` of the statement the search runs must hold no full scan of a
table, and a windowed search never sorts the whole window (it reads calls newest first
and stops at the page's end).  Speed itself is measured in
``benchmarks/search_index.py``, not here."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proxy.storage.catalog import CallDirection, Scope, SearchFilters, SearchQuery, SqliteCatalog
from proxy.storage.catalog.search import statement

NOW = datetime(2025, 6, 1, tzinfo=UTC)
FROM = datetime(2025, 5, 1, tzinfo=UTC)
TO = FROM + timedelta(days=30)
WINDOW = SearchFilters(started_from=FROM, started_before=TO)
NUMBER = ("+441234567890", "01234 567890")

SHAPES = {
    "number + window": SearchFilters(numbers=NUMBER, started_from=FROM, started_before=TO),
    "number": SearchFilters(numbers=NUMBER),
    "window": WINDOW,
    "from only": SearchFilters(started_from=FROM),
    "operator + window": SearchFilters(operator="alice", started_from=FROM, started_before=TO),
    "team + window": SearchFilters(team="nurses", started_from=FROM, started_before=TO),
    "service + direction + window": SearchFilters(
        started_from=FROM, started_before=TO, service="triage", direction=CallDirection.INBOUND
    ),
    "operator": SearchFilters(operator="alice"),
    "team": SearchFilters(team="nurses"),
}
SCOPES = {
    "records officer": Scope(NOW, everything=True),
    "manager": Scope(NOW, teams=frozenset({"nurses", "reception"}), granted_to="mona"),
    "staff": Scope(NOW, operator="alice", granted_to="alice"),
    "anyone else": Scope(NOW, granted_to="max"),
}


@pytest.fixture(scope="module")
def catalog_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plans") / "catalog.sqlite3"

    async def migrate() -> None:
        async with SqliteCatalog(path):
            pass

    asyncio.run(migrate())
    return path


def plan(path: Path, query: SearchQuery) -> list[str]:
    sql, params = statement(query)
    with sqlite3.connect(path) as db:
        found = [str(row[3]) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    db.close()
    return found


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_each_search_shape_reads_through_indexes(
    catalog_path: Path, shape: str, scope: str
) -> None:
    steps = plan(catalog_path, SearchQuery(SCOPES[scope], SHAPES[shape]))
    scans = [step for step in steps if step.startswith("SCAN")]
    assert scans == [], f"{shape} as {scope} scans a table: {steps}"
    searched = {step.split()[1] for step in steps if step.startswith("SEARCH")}
    assert {"c", "r"} <= searched, steps


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("shape", ["window", "from only", "service + direction + window"])
def test_a_windowed_search_never_sorts_the_whole_window(
    catalog_path: Path, shape: str, scope: str
) -> None:
    steps = plan(catalog_path, SearchQuery(SCOPES[scope], SHAPES[shape]))
    assert steps[0].startswith("SEARCH c USING INDEX calls_by_"), steps
    assert "USE TEMP B-TREE FOR ORDER BY" not in steps, steps  # only "RIGHT PART OF"


def test_the_newest_page_of_everything_walks_the_start_index(catalog_path: Path) -> None:
    steps = plan(catalog_path, SearchQuery(SCOPES["records officer"], SearchFilters()))
    assert steps[0] == "SCAN c USING INDEX calls_by_started_at", steps
    assert "USE TEMP B-TREE FOR ORDER BY" not in steps, steps


def test_a_full_scan_would_fail_the_plan_test(catalog_path: Path) -> None:
    """The check itself can fail: without migration 13's callee index a number search
    scans every call."""
    with sqlite3.connect(catalog_path) as db:
        db.execute("DROP INDEX calls_by_callee")
    db.close()
    try:
        steps = plan(catalog_path, SearchQuery(SCOPES["records officer"], SHAPES["number"]))
        assert any(step.startswith("SCAN") for step in steps), steps
    finally:
        with sqlite3.connect(catalog_path) as db:
            db.execute("CREATE INDEX calls_by_callee ON calls (callee, started_at)")
        db.close()
