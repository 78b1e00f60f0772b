"""Search benchmark: how fast the records search answers on a catalog of a million calls.

Builds (once, in a temporary folder unless ``--catalog`` names a file to keep) a catalog
made by the real migrations and filled straight through SQLite: ``--calls`` calls over
two years, each with one recording; part 1 taken by one of 200 operators in 10 teams,
one call in ten transferred to a second operator (part 2), one in fifty never bridged
(no part, no operator); 200,000 distinct caller numbers, 90 % inbound, five services.
Then times each query shape (a number within a month, a month alone, an operator within
a month, a team within a month, a service and direction within a month, the newest page
with no filter, page 20 of the month) as each role — a records officer (every call), a
manager (one team), a staff member (their own parts) — through the real
``catalog.search.search`` (one page of 50 rows plus its parts), ``--runs`` times each,
and prints the median and p95.  The number is one that called within the month.

    .venv/bin/python benchmarks/search_index.py                     # 1,000,000 calls
    .venv/bin/python benchmarks/search_index.py --calls 100000 --runs 10

Bounded by --calls and --runs.  Not part of the tests: speed is measured, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxy.storage.catalog import (  # noqa: E402
    CallDirection,
    Scope,
    SearchFilters,
    SearchQuery,
    SqliteCatalog,
)

START = datetime(2024, 1, 1, tzinfo=UTC)
SPAN_MS = 2 * 365 * 86_400_000  # two years of calls
OPERATORS, TEAMS, NUMBERS = 200, 10, 200_000
SERVICES = ("triage", "appointments", "results", "prescriptions", "reception")
BATCH = 50_000
DEEP, DEEP_OFFSET = ", page 20", 19 * 50  # pages are offsets: how a deep one costs


def operator(n: int) -> str:
    return f"op{n:03d}"


def team(n: int) -> str:
    return f"team{n % TEAMS}"


def number(n: int) -> str:
    return f"+447700{n:06d}"


def rows(count: int, seed: int) -> Iterator[tuple[list[tuple[object, ...]], ...]]:
    """Batches of (calls, recordings, parts) rows, calls in time order."""
    rnd = random.Random(seed)
    step = SPAN_MS // count
    start_ms = int(START.timestamp() * 1000)
    calls: list[tuple[object, ...]] = []
    recordings: list[tuple[object, ...]] = []
    parts: list[tuple[object, ...]] = []
    for n in range(count):
        started = start_ms + n * step + rnd.randrange(step)
        inbound = rnd.random() < 0.9
        caller = number(rnd.randrange(NUMBERS))
        service = SERVICES[n % len(SERVICES)]
        bridged = rnd.random() >= 0.02
        first = rnd.randrange(OPERATORS)
        taker = operator(first) if bridged else None
        cid, rid = f"c{n:07d}", f"r{n:07d}"
        calls.append(
            (cid, f"{cid}@bench", caller if inbound else "+441234000000",
             "+441234000000" if inbound else caller, "inbound" if inbound else "outbound",
             service, taker, started, started + 180_000)
        )  # fmt: skip
        recordings.append(
            (rid, cid, "complete", rid, "g711", 8000, 2, started + 1_000, started + 180_000,
             179_000)
        )  # fmt: skip
        if bridged:
            parts.append((rid, 1, taker, team(first), started + 1_000, started + 90_000))
            if rnd.random() < 0.1:
                second = rnd.randrange(OPERATORS)
                parts.append(
                    (rid, 2, operator(second), team(second), started + 90_000, started + 180_000)
                )
        if len(calls) == BATCH:
            yield calls, recordings, parts
            calls, recordings, parts = [], [], []
    if calls:
        yield calls, recordings, parts


def populate(path: Path, count: int) -> float:
    """The catalog at ``path`` with ``count`` calls; seconds it took."""
    started = time.monotonic()

    async def migrate() -> None:
        async with SqliteCatalog(path):
            pass

    asyncio.run(migrate())
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    with conn:
        for calls, recordings, parts in rows(count, seed=16):
            conn.executemany(
                "INSERT INTO calls (id, sip_call_id, caller, callee, direction, service,"
                " operator, started_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                calls,
            )
            conn.executemany(
                "INSERT INTO recordings (id, call_id, state, directory, encoding,"
                " sample_rate, channels, started_at, ended_at, duration_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                recordings,
            )
            conn.executemany(
                "INSERT INTO recording_parts (recording_id, part, operator, team, started_at,"
                " ended_at) VALUES (?, ?, ?, ?, ?, ?)",
                parts,
            )
        # a staff member's and a manager's live grants to a few recordings of others
        until = int((datetime.now(UTC) + timedelta(days=30)).timestamp() * 1000)
        conn.executemany(
            "INSERT INTO access_requests (id, recording_id, requester, purpose, reason,"
            " state, requested_at, decided_by, decided_at, expires_at)"
            " VALUES (?, ?, ?, 'complaint', 'bench', 'approved', 0, 'dpo', 0, ?)",
            [
                (f"g{who}{n}", f"r{n * (count // 7):07d}", who, until)
                for who in ("staff", "manager")
                for n in range(5)
            ],
        )
    conn.close()
    return time.monotonic() - started


ROLES: dict[str, Callable[[datetime], Scope]] = {
    "records officer": lambda now: Scope(now, everything=True),
    "manager": lambda now: Scope(now, teams=frozenset({team(3)}), granted_to="manager"),
    "staff": lambda now: Scope(now, operator=operator(42), granted_to="staff"),
}


def month_start() -> datetime:
    return START + timedelta(days=400)


def shapes(caller: str) -> dict[str, SearchFilters]:
    """The query shapes: a month in the middle of the two years, and what narrows it."""
    month_from = month_start()
    month = SearchFilters(started_from=month_from, started_before=month_from + timedelta(days=30))
    return {
        "number + month": replace(month, numbers=(caller,)),
        "month alone": month,
        "operator + month": replace(month, operator=operator(42)),
        "team + month": replace(month, team=team(3)),
        "service + direction + month": replace(
            month, service="results", direction=CallDirection.OUTBOUND
        ),
        "newest page, no filter": SearchFilters(),
        "number, all time": SearchFilters(numbers=(caller,)),
        "operator, all time": SearchFilters(operator=operator(42)),
        f"month alone{DEEP}": month,
    }


async def measure(path: Path, runs: int) -> list[tuple[str, str, int, float, float]]:
    """(shape, role, rows, median ms, p95 ms) of each shape as each role."""
    results = []
    with sqlite3.connect(path) as db:
        since = int(month_start().timestamp() * 1000)
        [caller] = db.execute(
            "SELECT caller FROM calls WHERE started_at >= ? AND direction = 'inbound' LIMIT 1",
            (since,),
        ).fetchone()
    db.close()
    async with SqliteCatalog(path) as catalog:
        now = datetime.now(UTC)
        for shape, filters in shapes(caller).items():
            for role, scope in ROLES.items():
                offset = DEEP_OFFSET if shape.endswith(DEEP) else 0
                query = SearchQuery(scope(now), filters, limit=51, offset=offset)
                times, found = [], 0
                for _ in range(runs):
                    began = time.perf_counter()
                    found = len(await catalog.search.search(query))
                    times.append((time.perf_counter() - began) * 1000)
                times.sort()
                p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
                results.append((shape, role, found, statistics.median(times), p95))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--catalog", type=Path, help="keep (or reuse) the catalog here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="recproxy-search-") as work:
        path = args.catalog or Path(work) / "catalog.sqlite3"
        if not path.exists():
            print(f"building {args.calls:,} calls ...", flush=True)
            print(f"built in {populate(path, args.calls):.1f} s", flush=True)
        results = asyncio.run(measure(path, args.runs))
    print("\n| shape | role | rows (≤ 51) | median ms | p95 ms |\n|---|---|---|---|---|")
    for shape, role, found, median, p95 in results:
        print(f"| {shape} | {role} | {found} | {median:.1f} | {p95:.1f} |")


if __name__ == "__main__":
    main()
