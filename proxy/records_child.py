"""``recproxy serve``'s records service child (issue 15): with the embedded defaults the
call proxy and the records service run from the one command, yet in two processes —
only the child ever loads the private key.

The child is ``recproxy records serve --until-stdin-closes`` with the same configuration
file, working directory and environment (the passphrase too), its log lines on the same
output.  Its stdin is a pipe from this process, so it stops when this process goes, even
if it was killed and could not stop it.  On shutdown it gets SIGTERM, then SIGKILL if it
has not exited within ``STOP_SECONDS``.  A child that dies is logged, never fatal: calls
go on being recorded; only playback waits until it runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

from .config import Config

log = logging.getLogger("recproxy")

STOP_SECONDS = 10.0


def wanted(config: Config) -> bool:
    """Whether ``serve`` starts the records service (``records.child``; ``auto``: when
    the private key is on this host — a stat, never an open)."""
    choice = config.records.child
    return choice == "on" or (choice == "auto" and config.recording.private_key.exists())


class RecordsChild:
    """The records service as a child process: started, watched, stopped."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._process: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def start(self) -> None:
        source = self._config.source
        command = [
            sys.executable,
            "-m",
            "proxy.cli",
            "records",
            "serve",
            "--until-stdin-closes",
            *(["--config", str(source)] if source is not None else []),
        ]
        try:
            self._process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.PIPE
            )
        except OSError as exc:  # as if it died at once: the call proxy goes on
            log.error("records service could not be started: %s", exc.strerror or exc)
            return
        host, port = self._config.records.http_listen
        log.info(
            "records service started as child pid %d on http://%s:%d",
            self._process.pid,
            host,
            port,
        )
        self._watch = asyncio.create_task(self._watch_exit(self._process), name="records child")

    async def _watch_exit(self, process: asyncio.subprocess.Process) -> None:
        status = await process.wait()
        if not self._stopping:
            log.error(
                "records service (child pid %d) exited with status %d: recordings cannot "
                "be searched or played back until it runs again (calls are still recorded)",
                process.pid,
                status,
            )

    async def stop(self) -> None:
        """SIGTERM, wait up to ``STOP_SECONDS``, then SIGKILL."""
        process, self._stopping = self._process, True
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_SECONDS)
            except TimeoutError:
                log.warning("records service (child pid %d) ignored SIGTERM: killed", process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if process.stdin is not None:
            process.stdin.close()
        if self._watch is not None:
            await self._watch
