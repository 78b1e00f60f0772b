"""Catalog benchmark (issue 20): catalog operations per second, and the CPU they cost,
on SQLite against PostgreSQL, through the real catalog API.

For each engine, on a fresh catalog:

- **calls**: ``--calls`` calls written as ``serve`` writes them (issue 19): one
  ``CallBatch`` at set-up (call, consent receipt, recording, part 1, the bridge) and
  one at the end (segment, quality, the recording complete, the call's end): two
  transactions a call, one after the other.
- **search**: ``--searches`` searches for one caller's number as a records officer
  (one page and its parts), on the catalog those calls made.
- **audit**: ``--appends`` audit entries appended one after the other.

Reported per operation kind: operations per second (wall clock), and CPU per
operation, in this process (the caller and the catalog thread) and, for PostgreSQL, in
the server's processes too (read from /proc).  SQLite runs in WAL mode with
``synchronous=NORMAL`` (the default); PostgreSQL on this machine, over loopback TCP,
with ``fsync`` and synchronous commit on: both durable to a crash of the process.

    flock /tmp/i20-bench.lock .venv/bin/python benchmarks/catalog_ops.py
    flock /tmp/i20-bench.lock .venv/bin/python benchmarks/catalog_ops.py --calls 200 \\
        --out /dev/null

Fixed port: the PostgreSQL server listens on 127.0.0.1:``--port`` (55420).  Bounded by
--calls, --searches, --appends.  Not part of the tests: speed is measured, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.catalog_server import PORT, PgServer, running_server, server_cpu  # noqa: E402
from proxy.recording_state import RecordingState  # noqa: E402
from proxy.storage.catalog import (  # noqa: E402
    Attribution,
    CallBatch,
    CallDirection,
    CallOutcome,
    CallUpdate,
    ChannelQuality,
    ConsentReceipt,
    FirstPart,
    NewCall,
    NewRecording,
    NewSegment,
    NoticeMode,
    RecordingEnd,
    Scope,
    SearchFilters,
    SearchQuery,
    SegmentFacts,
    SqlCatalog,
    SqliteCatalog,
)
from proxy.storage.catalog.postgres import PostgresCatalog  # noqa: E402

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
QUALITY = (
    ChannelQuality("caller", 100, 1, 0, 0, 20),
    ChannelQuality("call_taker", 100, 0, 0, 0, 0),
)


def batches(n: int) -> tuple[CallBatch, CallBatch]:
    """Call ``n``'s set-up and end, as the recording service writes them."""
    call_id, rid = f"{n:08d}-0000-4000-8000-000000000000", f"{n:08d}-0000-4000-8000-00000000000f"
    start = T0 + timedelta(seconds=n)
    set_up = CallBatch(
        call_id,
        new_call=NewCall(
            f"sip-{n}", f"+4412345{n % 5000:05d}", "surgery", CallDirection.INBOUND, start,
            service="surgery", config_version="v1", call_id=call_id,
        ),
        receipt=ConsentReceipt(
            call_id, NoticeMode.ANSWER, "ef" * 32, "notice", start, 3000, 3000,
            completed=True, caller_left_during_notice=False, do_not_record=False,
        ),
        recording=NewRecording(call_id, rid, "ulaw", 8000, 2, start, recording_id=rid),
        first_part=FirstPart("alice", "front desk"),
        changes=CallUpdate(answered_at=start, bridged_at=start, operator="alice"),
    )  # fmt: skip
    end = start + timedelta(seconds=30)
    segment = NewSegment(rid, 0, "000000.seg", 0, SegmentFacts(30, 240_000, 4096, "cd" * 32, True))
    ending = CallBatch(
        call_id,
        recording_end=RecordingEnd(
            rid, RecordingState.COMPLETE, Attribution(at=end), QUALITY, duration_ms=30_000,
            wrapped_key_sha256="ab" * 32, segments=(segment,),
            expires=lambda ended: ended + timedelta(days=30),
        ),
        changes=CallUpdate(ended_at=end, outcome=CallOutcome.COMPLETED),
    )  # fmt: skip
    return set_up, ending


async def measure(
    count: int, server: PgServer | None, operation: Callable[[int], Awaitable[object]]
) -> dict[str, float]:
    wall, cpu, served = time.perf_counter(), time.process_time(), server_cpu(server)
    for n in range(count):
        await operation(n)
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    served = server_cpu(server) - served
    return {
        "operations": count,
        "per_second": round(count / wall, 1),
        "ms_wall_each": round(1000 * wall / count, 3),
        "ms_cpu_each_process": round(1000 * cpu / count, 3),
        "ms_cpu_each_server": round(1000 * served / count, 3),
    }


async def run(
    catalog: SqlCatalog, server: PgServer | None, args: argparse.Namespace
) -> dict[str, Any]:
    async with catalog:

        async def call(n: int) -> None:
            set_up, ending = batches(n)
            await catalog.call_writes.write(set_up)
            await catalog.call_writes.write(ending)

        async def search(n: int) -> None:
            number = f"+4412345{n % 5000:05d}"
            query = SearchQuery(
                Scope(T0 + timedelta(days=1), everything=True), SearchFilters(numbers=(number,))
            )
            await catalog.search.search(query)

        async def append(n: int) -> None:
            await catalog.audit.append(actor="alice", action="search", detail={"n": n})

        return {
            "call (two CallBatch writes)": await measure(args.calls, server, call),
            "search (a number, one page)": await measure(args.searches, server, search),
            "audit append": await measure(args.appends, server, append),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--searches", type=int, default=500)
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results-catalog-ops.json"
    )
    args = parser.parse_args()

    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {"calls": args.calls, "searches": args.searches, "appends": args.appends},
    }
    with tempfile.TemporaryDirectory(prefix="catalog-ops-") as folder:
        sqlite = SqliteCatalog(Path(folder) / "catalog.sqlite3", synchronous="NORMAL")
        results["sqlite (WAL, synchronous NORMAL)"] = asyncio.run(run(sqlite, None, args))
    with running_server(args.port, durable=True) as server:
        url = server.fresh_database()
        results["postgresql 15 (loopback TCP, fsync on)"] = asyncio.run(
            run(PostgresCatalog(url), server, args)
        )
    text = json.dumps(results, indent=2)
    print(text)
    if str(args.out) != "/dev/null":
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
