"""``python -m proxy.media.workers.main FD``: a media worker process, started by the
call process's :class:`~proxy.media.workers.pool.WorkerPool` with its end of the control
socket as descriptor ``FD``.  It runs until that socket closes."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys

from .worker import Worker


async def _run(fd: int) -> None:
    control = socket.socket(fileno=fd)
    worker = Worker(control, asyncio.get_running_loop())
    await worker.done
    control.close()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m proxy.media.workers.main FD", file=sys.stderr)
        return 64
    logging.basicConfig(level=logging.WARNING, format="media worker: %(message)s")
    # the call process ends its workers by closing their sockets, once its calls have
    # ended; a Ctrl-C in a terminal (the process group) or systemd's SIGTERM to the
    # whole unit must not beat it to it, or every call would end as if the worker died
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(_run(int(argv[1])))
    else:
        uvloop.run(_run(int(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
