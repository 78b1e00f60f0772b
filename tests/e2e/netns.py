"""Run a piece of a test in a private network namespace that has only loopback.

Some RFC 4475 messages offer media at documentation addresses (192.0.2.x), which on
some hosts is the real local network.  A proxy that answers them starts its notice
towards that address; in a namespace of its own that traffic cannot leave loopback.

``unshare(CLONE_NEWNET)`` moves only the calling thread, so the piece runs in a new
thread: every socket it opens and every process it starts (they inherit the thread's
namespace) lives there; the rest of the test process is untouched.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


def in_private_network(body: Callable[[], T], timeout: float = 120.0) -> T:
    """``body()``'s result (or its exception), run in a thread in a new network
    namespace with loopback up."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWNET) != 0:
                error = ctypes.get_errno()
                raise AssertionError(
                    f"unshare(CLONE_NEWNET) failed: {os.strerror(error)} (run as root)"
                )
            subprocess.run(
                ["ip", "link", "set", "lo", "up"], check=True, timeout=10, capture_output=True
            )
            outcome.append(body())
        except BaseException as exc:  # handed to the test's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="private-network", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(f"the part run in a private network namespace took over {timeout} s")
    if failure:
        raise failure[0]
    return outcome[0]
