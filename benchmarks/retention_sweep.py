"""Retention sweep benchmark: how fast expired recordings are crypto-shredded, and that a
sweep inside ``recproxy serve`` does not disturb live recorded calls.

Two modes, each on a fresh folder of synthetic catalogued recordings (real catalog rows
made by the real migrations; per recording a small wrapped-key file and one small
segment file, all expired and unheld):

* ``rate`` (default): ``recproxy retention sweep`` — the real command — deletes
  ``--recordings`` of them (100,000 by default); reported: the sweep's wall time and
  recordings per second, and a check that every one ended ``deleted`` with no file left.
* ``calls``: ``recproxy serve`` (``benchmarks/load.py``'s ``Recproxy``) starts on a
  catalog holding ``--recordings`` expired ones, so its start-up sweep runs while SIPp
  drives ``--calls`` recorded calls at ``--rate`` (up to ``--limit`` at once, 50 by
  default); reported: RTP packets dropped inside the proxy (its /metrics), every live
  recording's length against its bridged time (within ±20 ms), and the sweep's own
  time and count — it must still be running when the calls end to count as "during".

    python benchmarks/retention_sweep.py                                  # rate, 100,000
    python benchmarks/retention_sweep.py --mode calls --recordings 30000 --calls 150

Loopback only; bounded by --recordings, --calls and a timeout.  Not part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import Load, Recproxy, _metrics, report, run_system  # noqa: E402

from proxy.storage.catalog import SqliteCatalog  # noqa: E402

DAY_MS = 86_400_000
METRICS = "http://127.0.0.1:18281/metrics"  # load.py's recproxy
SWEEPS = "recproxy_retention_sweep_seconds_count"
KEY_BYTES = 120  # about a wrapped data key
SEGMENT_BYTES = 2048  # a small segment


def populate(data: Path, count: int, *, now_ms: int) -> None:
    """``count`` expired recordings (ended 40 days before ``now_ms``, ``expires_at`` 10
    days before it), each with a call, a segment row and its two files."""
    catalog_path = data / "catalog.sqlite3"
    recordings = data / "recordings"
    recordings.mkdir(parents=True, exist_ok=True)

    async def migrate() -> None:
        async with SqliteCatalog(catalog_path):
            pass

    asyncio.run(migrate())
    ended = now_ms - 40 * DAY_MS
    calls, recs, segs = [], [], []
    for n in range(count):
        rid = str(uuid.uuid4())
        cid = str(uuid.uuid4())
        calls.append((cid, f"{cid}@bench", "+441234567890", "+441234000000", "inbound",
                      ended - 60_000, ended))  # fmt: skip
        recs.append((rid, cid, "complete", rid, "g711", 8000, 2, ended - 55_000, ended, 55_000,
                     ended - 10 * DAY_MS + n % 1000))  # fmt: skip
        segs.append((rid, 0, "seg-000000.rec", 1, 0, 8000, SEGMENT_BYTES, "0" * 64, 1))
        folder = recordings / rid
        folder.mkdir(mode=0o700)
        (folder / "key").write_bytes(os.urandom(KEY_BYTES))
        (folder / "seg-000000.rec").write_bytes(os.urandom(SEGMENT_BYTES))
    conn = sqlite3.connect(catalog_path)
    with conn:
        conn.executemany(
            "INSERT INTO calls (id, sip_call_id, caller, callee, direction, started_at,"
            " ended_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            calls,
        )
        conn.executemany(
            "INSERT INTO recordings (id, call_id, state, directory, encoding, sample_rate,"
            " channels, started_at, ended_at, duration_ms, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            recs,
        )
        conn.executemany(
            "INSERT INTO segments (recording_id, segment_index, file_name, chunks,"
            " first_frame, frames, size_bytes, sha256, closed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            segs,
        )
    conn.close()


def states(catalog_path: Path) -> dict[str, int]:
    conn = sqlite3.connect(catalog_path)
    found = dict(conn.execute("SELECT state, COUNT(*) FROM recordings GROUP BY state").fetchall())
    conn.close()
    return found


def run_rate(args: argparse.Namespace, work: Path) -> dict[str, object]:
    data = work / "data"
    started = time.monotonic()
    populate(data, args.recordings, now_ms=int(time.time() * 1000))
    populated = time.monotonic() - started
    config = work / "recproxy.toml"
    config.write_text(
        f'[recording]\ndir = "data/recordings"\nfsync = "{args.fsync}"\n'
        f'[catalog]\npath = "data/catalog.sqlite3"\n'
        f"[retention]\nbatch_size = {args.batch_size}\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [str(ROOT / ".venv/bin/recproxy"), "retention", "sweep", "--config", str(config)],
        cwd=work, capture_output=True, text=True, timeout=args.timeout,
    )  # fmt: skip
    seconds = time.monotonic() - started
    left = sum(1 for _ in (data / "recordings").iterdir())
    return {
        "mode": "rate",
        "recordings": args.recordings,
        "batch_size": args.batch_size,
        "populate_seconds": round(populated, 1),
        "sweep_rc": done.returncode,
        "sweep_summary": done.stdout.strip(),
        "sweep_seconds": round(seconds, 2),
        "recordings_per_second": round(args.recordings / seconds, 1),
        "states_after": states(data / "catalog.sqlite3"),
        "recording_folders_left": left,
    }


class SweepingRecproxy(Recproxy):
    """``load.py``'s recproxy, started on a catalog of expired recordings: its start-up
    sweep runs while the calls do."""

    recordings_to_sweep = 0
    batch_size = 100
    sweep: dict[str, object] = {}  # set by stop()

    def start(self) -> None:
        populate(self.workdir / "data", self.recordings_to_sweep, now_ms=int(time.time() * 1000))
        self.extra_config = f"[retention]\nbatch_size = {self.batch_size}\n"
        super().start()

    def extras(self) -> dict[str, object]:
        """Read as the calls have ended: the sweep must still be running then."""
        found = super().extras()
        after = _metrics(METRICS)
        found["sweep_deleted_when_calls_ended"] = int(
            after.get("recproxy_recordings_deleted_total", 0)
        )
        found["sweep_finished_when_calls_ended"] = after.get(SWEEPS, 0) >= 1
        return found

    def stop(self) -> None:
        """Let the sweep finish (bounded) before stopping, so every synthetic recording
        is gone when the live ones are measured."""
        deadline = time.monotonic() + 900
        after = _metrics(METRICS)
        while after.get(SWEEPS, 0) < 1 and time.monotonic() < deadline:
            time.sleep(1)
            after = _metrics(METRICS)
        self.sweep = {
            "sweep_seconds": round(after.get("recproxy_retention_sweep_seconds_sum", 0), 1),
            "sweep_deleted": int(after.get("recproxy_recordings_deleted_total", 0)),
        }
        super().stop()


def run_calls(args: argparse.Namespace, work: Path) -> dict[str, object]:
    system = SweepingRecproxy("recproxy", 5160, work)
    system.recordings_to_sweep = args.recordings
    system.batch_size = args.batch_size
    system.fsync = args.fsync
    load = Load(rate=args.rate, calls=args.calls, limit=args.limit, duration=5.0,
                timeout=args.timeout)  # fmt: skip
    result = run_system(system, load)
    return {"mode": "calls", "recordings_to_sweep": args.recordings, **result, **system.sweep}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("rate", "calls"), default="rate")
    parser.add_argument("--recordings", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--fsync", choices=("chunk", "segment", "none"), default="chunk")
    parser.add_argument("--calls", type=int, default=150, help="calls mode: SIPp calls")
    parser.add_argument("--rate", type=float, default=10.0, help="calls mode: calls a second")
    parser.add_argument("--limit", type=int, default=50, help="calls mode: most at once")
    parser.add_argument("--timeout", type=int, default=900, help="seconds")
    parser.add_argument("--out", type=Path, help="write the result as JSON here too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="recproxy-retention-") as folder:
        work = Path(folder)
        result = run_rate(args, work) if args.mode == "rate" else run_calls(args, work)
    report(result, args.out)


if __name__ == "__main__":
    main()
