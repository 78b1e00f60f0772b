"""A PostgreSQL server for the benchmarks that put recproxy's catalog on one (issue 20),
and the CPU its processes spend, which the figures state beside recproxy's own.

The server is ``tests/pg_server.py``'s (Debian's ``initdb``/``pg_ctl`` in a temporary
folder) on a fixed port, with fsync and synchronous commit on, as in production.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.pg_server import PgServer, running_server  # noqa: E402

__all__ = ["PORT", "PgServer", "running_server", "server_cpu", "watch_server"]

PORT = 55420  # benchmarks use fixed ports; run them under one flock


def server_cpu(server: PgServer | None) -> float:
    """CPU seconds used so far by the PostgreSQL server's processes (0 for none): the
    postmaster and its children, reaped children's time included."""
    if server is None:
        return 0.0
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster or ppid == postmaster:
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / tick


def watch_server(server: PgServer) -> Callable[[list[int], Path], Callable[[], dict[str, object]]]:
    """A ``load.py`` watch: the server's CPU from the start of the load to its end."""

    def watch(pids: list[int], work: Path) -> Callable[[], dict[str, object]]:
        before, started = server_cpu(server), time.monotonic()

        def finish() -> dict[str, object]:
            return {
                "catalog_server_cpu_seconds": round(server_cpu(server) - before, 2),
                "catalog_server_watched_seconds": round(time.monotonic() - started, 1),
            }

        return finish

    return watch
