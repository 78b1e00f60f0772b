"""A lock file held for a process's life: how a folder or a name is one process's alone.

``flock`` rather than a PID file: the kernel releases it when the process dies, however
it dies, so a crash never leaves a stale claim for an operator to clear, and a second
process learns at once (``LOCK_NB``) that the first still runs.  A shared claim lets
several processes of one kind in together (``serve`` nodes on one local recordings
folder) while keeping out one that needs the folder alone (an S3 node's spool, ``store
copy``)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class InUseError(OSError):
    """Another process holds the lock (``filename`` is the lock file)."""


class HeldLock:
    """A claimed lock file; :meth:`release` lets the next process in (idempotent)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # releases the flock


def claim(path: Path, *, shared: bool = False) -> HeldLock:
    """Take the flock on ``path`` (created owner-only if missing) without waiting:
    exclusive, or ``shared`` with other shared holders.  Raises :class:`InUseError` when
    another process holds it in a conflicting way."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise InUseError(0, "held by another process", str(path)) from None
    except BaseException:
        os.close(fd)
        raise
    return HeldLock(path, fd)
