"""Media worker scaling (issue 19): calls carried at zero loss against the number of
media worker processes.

For each ``--workers`` count (0: the call process relays, as without workers) and each
``--concurrent`` level, one ``load.py`` run of recproxy alone: calls of ``--duration``
seconds ramped at ``--rate`` a second up to the level and held there until twice the
level have been placed.  A run carries its level at zero loss when every call completed,
the proxy dropped no packet, every recording is complete and within 20 ms of its bridged
time, and no recorded frame was lost or late.  Printed: one row per run (CPU per
recorded call-second, the call process's and the workers' CPU, loss), then per worker
count the highest level carried at zero loss.  On a box with more cores, pass more
counts and levels (``--workers 0,1,2,4,8 --concurrent 200,400,800,1600``); SIPp's own CPU
sits on the same box and is not counted, so leave it cores of its own.

    flock /tmp/i20-bench.lock .venv/bin/python benchmarks/workers_scaling.py \\
        --workers 0,1,2 --concurrent 100,200,300 --duration 20 --out results.json

Loopback only; every run is bounded by load.py's timeout.  Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.load import Load, build_system, run_system  # noqa: E402


def zero_loss(result: dict[str, object], calls: int) -> bool:
    """Every call carried whole: see the module docstring."""
    return (
        result["completed"] == calls
        and result["failed"] == 0
        and result.get("rtp_packets_dropped") == 0
        and result.get("recording_states") == {"complete": calls}
        and result.get("within_20ms") == calls
        and result.get("recorded_lost_frames") == 0
        and result.get("recorded_late_frames") == 0
    )


def split_cpu(result: dict[str, object]) -> tuple[float, float]:
    """(the call process's CPU seconds, all workers' together)."""
    processes = result.get("cpu_by_process")
    assert isinstance(processes, dict)
    call = sum(seconds for label, seconds in processes.items() if label.endswith(" recproxy"))
    return call, sum(processes.values()) - call


def row(result: dict[str, object], ok: bool) -> str:
    call, workers = split_cpu(result)
    seconds = float(result["recorded_seconds"])  # type: ignore[arg-type]
    per = 1000 / max(seconds, 1)
    return (
        f"| {result['media_workers']} | {result['limit']} | {result['peak_concurrent']} "
        f"| {result['completed']}/{result['completed'] + result['failed']} "  # type: ignore[operator]
        f"| {result['cpu_ms_per_recorded_second']} | {call * per:.3f} | {workers * per:.3f} "
        f"| {result.get('rtp_packets_dropped')} | {result.get('recorded_lost_frames')}"
        f"/{result.get('recorded_late_frames')} | {result.get('recording_states')} "
        f"| {'yes' if ok else 'no'} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="0,1,2", help="worker counts, comma separated")
    parser.add_argument("--concurrent", default="100,200", help="levels, comma separated")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds a call")
    parser.add_argument("--rate", type=float, default=20.0, help="new calls a second")
    parser.add_argument("--out", type=Path, help="write every run's result as JSON here")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    levels = [int(n) for n in args.concurrent.split(",")]
    if not all(0 <= n <= 64 for n in counts) or not all(1 <= n <= 2500 for n in levels):
        parser.error("--workers 0-64, --concurrent 1-2500")
    results: list[dict[str, object]] = []
    lines = [
        "| workers | level | peak | completed | CPU ms / recorded s | call process | workers "
        "| dropped | lost/late frames | recordings | zero loss |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    carried: dict[int, int] = {}
    for count in counts:
        for level in levels:
            calls = 2 * level
            paced = min(args.rate, level / args.duration)
            load = Load(
                rate=args.rate, calls=calls, limit=level, duration=args.duration,
                timeout=int(calls / paced + args.duration + 120),
            )  # fmt: skip
            system = build_system("recproxy", load, "chunk", count)
            print(f"{count} worker(s), {level} at once … ({system.workdir})", file=sys.stderr)
            try:
                result = run_system(system, load)
            finally:
                system.stop()
            ok = zero_loss(result, calls)
            results.append({**result, "zero_loss": ok})
            lines.append(row(result, ok))
            print(lines[-1], file=sys.stderr)
            if ok:
                carried[count] = max(carried.get(count, 0), level)
    print("\n".join(lines))
    for count in counts:
        print(f"{count} worker(s): carried at zero loss up to {carried.get(count, 0)} calls")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
