"""Diagnostic: the cyclic collector's passes in a process run with this folder on
``PYTHONPATH`` and ``RECPROXY_GC_PROBE`` naming a file (``load.py`` and
``setup_cost.py`` pass their environment on to ``recproxy serve``).

One JSON line per full (generation 2) pass: when, how long, what it freed and how many
objects the oldest generation holds after it — which levels off when nothing leaks —
and, at exit, the passes and their time per generation.  Counting the oldest generation
walks it, so only after a full pass (every few seconds), never per young pass.

With ``RECPROXY_TASK_PROBE`` set too, ``asyncio.Task`` is replaced (before uvloop takes
its reference to it) by a subclass that counts the tasks made; the count is in the exit
line.  That slows every task a little: a diagnostic run of its own, not a CPU figure.
With ``RECPROXY_GC_GARBAGE`` set, the collector keeps what it frees (``DEBUG_SAVEALL``)
and the exit line counts it by type: the objects that only the cyclic collector frees
(reference cycles), another diagnostic run of its own.  With ``RECPROXY_GC_TYPES`` set,
each full pass's line names the oldest generation's most common types.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import time
from collections import Counter

_PATH = os.environ.get("RECPROXY_GC_PROBE")


def _count_tasks() -> list[int]:
    import asyncio

    made = [0]

    class CountedTask(asyncio.Task):  # type: ignore[type-arg]
        def __init__(self, *args: object, **kwargs: object) -> None:
            made[0] += 1
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    asyncio.Task = CountedTask  # type: ignore[misc]
    return made


def _install(path: str) -> None:
    tasks = _count_tasks() if os.environ.get("RECPROXY_TASK_PROBE") else None
    garbage: Counter[str] | None = Counter() if os.environ.get("RECPROXY_GC_GARBAGE") else None
    if garbage is not None:
        gc.set_debug(gc.DEBUG_SAVEALL)
    started: list[float] = [0.0]
    totals = {str(g): {"passes": 0, "seconds": 0.0, "longest": 0.0} for g in range(3)}
    out = open(path, "a", buffering=1)  # noqa: SIM115 - closed at exit
    t0 = time.monotonic()

    def probe(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        took = time.perf_counter() - started[0]
        if garbage is not None:
            garbage.update(type(o).__qualname__ for o in gc.garbage)
            gc.garbage.clear()
        total = totals[str(info["generation"])]
        total["passes"] += 1
        total["seconds"] += took
        total["longest"] = max(total["longest"], took)
        if info["generation"] == 2:
            oldest = gc.get_objects(2)
            line: dict[str, object] = {
                "pid": os.getpid(),
                "t": round(time.monotonic() - t0, 2),
                "ms": round(took * 1000, 1),
                "collected": info["collected"],
                "oldest": len(oldest),
            }
            if os.environ.get("RECPROXY_GC_TYPES"):
                kinds = Counter(type(o).__qualname__ for o in oldest)
                line["types"] = dict(kinds.most_common(25))
            del oldest
            out.write(json.dumps(line) + "\n")

    def report() -> None:
        gc.callbacks.remove(probe)
        end = {
            "pid": os.getpid(),
            "totals": totals,
            "tasks": tasks[0] if tasks else None,
            "garbage": dict(garbage.most_common(40)) if garbage is not None else None,
        }
        out.write(json.dumps(end) + "\n")
        out.close()

    gc.callbacks.append(probe)
    atexit.register(report)


if _PATH:
    _install(_PATH)
