"""Call set-up and tear-down cost (issue 19): CPU per call with no RTP at all, and where
it goes.

recproxy alone in ``load.py``'s signalling-only mode: one ``recproxy serve`` (the call
proxy alone, ``[records] child = "off"``) with a 200 ms notice (the shortest start-up
accepts: ten packets), load.py's SIPp caller and call taker with their RTP taken out
(INVITE, 180 and 200 with PCMA, ACK, ``--hold-ms`` of silence, BYE).  The same figure
for Kamailio + rtpengine and sippy: ``load.py --signalling-only``.  Each call still
takes the whole path: admission, the caller's leg answered, the notice started and
finished, the call taker invited, the bridge, a recording opened (its key wrapped, its
first segment) and closed, the catalog rows and the consent receipt.  Reported: calls
completed, recproxy's CPU per call (all its threads, from /proc), peak RSS.

With ``--profile``, py-spy samples recproxy 250 times a second during the run — the
thread holding the GIL only (``--gil``), so that a thread blocked in ``fsync`` or
waiting for SQLite is not counted as work, and neither is C code that releases the GIL
— and the samples are attributed to the parts of the set-up path by the innermost
frame of recproxy's own code (or of the library it is in: asyncio, logging, sqlite3,
cryptography); the table says where the CPU of a call goes.  py-spy comes from PyPI
(``pip install py-spy``), and needs ptrace (root, or ``kernel.yama.ptrace_scope=0``).

    .venv/bin/python benchmarks/setup_cost.py --calls 400 --rate 20
    .venv/bin/python benchmarks/setup_cost.py --calls 400 --rate 20 --profile

Loopback only; bounded by ``--calls`` and a timeout.  Not part of the tests.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.load import Load, build_system, interrupt, report, run_system  # noqa: E402

#: Where a sample's innermost frame of interest puts it: the first rule whose path
#: fragment is in the frame's file wins (recproxy's modules first, then libraries).
PARTS: tuple[tuple[str, str], ...] = (
    ("proxy/sip/message.py", "SIP parsing and serialising"),
    ("proxy/sip/headers.py", "SIP parsing and serialising"),
    ("proxy/sip/uri.py", "SIP parsing and serialising"),
    ("proxy/sip/abnf.py", "SIP parsing and serialising"),
    ("proxy/sip/sdp.py", "SDP"),
    ("proxy/sip/transaction.py", "transactions, dialogs, SIP core"),
    ("proxy/sip/dialog.py", "transactions, dialogs, SIP core"),
    ("proxy/sip/core.py", "transactions, dialogs, SIP core"),
    ("proxy/sip/", "other SIP (transport, timers, PRACK, ...)"),
    ("proxy/calls/", "the call flow"),
    ("proxy/media/announcer.py", "notice and ringback"),
    ("proxy/media/", "media legs and clock (no RTP sent)"),
    ("proxy/storage/catalog/", "catalog (SQLite thread)"),
    ("proxy/storage/", "recording files and crypto"),
    ("proxy/events.py", "domain events and subscribers"),
    ("proxy/control/", "metrics, API, webhook"),
    ("proxy/", "other recproxy code"),
    ("/logging/", "logging"),
    ("/asyncio/", "asyncio (tasks, callbacks, selectors)"),
    ("uvloop", "asyncio (tasks, callbacks, selectors)"),
    ("/sqlite3/", "catalog (SQLite thread)"),
    ("cryptography", "recording files and crypto"),
    ("/threading.py", "thread hand-offs"),
    ("/concurrent/", "thread hand-offs"),
    ("/queue.py", "thread hand-offs"),
)


#: Frames of a thread waiting for work (the loop's selector, a queue, a lock).
IDLE = ("select (selectors.py", "epoll", "wait (threading.py", "get (queue.py", "_worker (")


def part_of(stack: str) -> str:
    """The part a collapsed py-spy stack (``frame;frame;...``, outermost first) counts
    toward: its innermost frame that a rule names, else "idle or elsewhere"."""
    for frame in reversed(stack.split(";")):
        for fragment, part in PARTS:
            if fragment in frame:
                return part
    return "other (interpreter, C code)"


def attribute(collapsed: Path) -> dict[str, float]:
    """Per part, the share of recproxy's busy samples (idle waits left out)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        waiting = any(idle in stack for idle in IDLE)
        if waiting and "proxy/" not in stack.split(";")[-1]:
            continue  # a thread waiting: not set-up work
        counts[part_of(stack)] += int(n)
    total = sum(counts.values()) or 1
    return {part: round(100 * n / total, 1) for part, n in counts.most_common()}


def py_spy(pids: list[int], work: Path) -> Callable[[], dict[str, object]]:
    """Start py-spy on recproxy (load.py's ``Watch``); the callable it returns stops it
    and gives each part's share of the samples."""
    collapsed = work / "profile.txt"
    spy = shutil.which("py-spy") or str(ROOT / ".venv/bin/py-spy")
    profiler = subprocess.Popen(
        [spy, "record", "--pid", str(pids[0]), "--rate", "250", "--format", "raw",
         "--output", str(collapsed), "--threads", "--nonblocking", "--gil"],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.0)

    def finish() -> dict[str, object]:
        interrupt(profiler, 30)
        if not collapsed.exists():
            return {}
        return {"profile_share_percent": attribute(collapsed), "profile_file": str(collapsed)}

    return finish


def run(args: argparse.Namespace) -> dict[str, object]:
    load = Load(
        rate=args.rate,
        calls=args.calls,
        limit=args.limit,
        duration=args.hold_ms / 1000,
        signalling_only=True,
        timeout=args.timeout,
    )
    system = build_system("recproxy", load)
    try:
        result = run_system(system, load, py_spy if args.profile else None)
    finally:
        system.stop()
    return {**result, "hold_ms": args.hold_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rate", type=float, default=20.0, help="new calls per second")
    parser.add_argument("--limit", type=int, default=200, help="most calls at once")
    parser.add_argument("--hold-ms", type=int, default=500, help="from the ACK to the BYE")
    parser.add_argument("--timeout", type=int, default=300, help="seconds")
    parser.add_argument("--profile", action="store_true", help="sample recproxy with py-spy")
    parser.add_argument("--out", type=Path, help="write the result as JSON here too")
    args = parser.parse_args()
    report(run(args), args.out)


if __name__ == "__main__":
    main()
