"""Kamailio as a test's own process, in front of recproxy nodes (issue 20).

It runs the shipped ``config/kamailio/kamailio.cfg`` with the test's ports put in
through its preprocessor defines (``-A LISTEN=...``): its own ``dispatcher.list``, its
control socket and every runtime file in the test's folder, loopback only, probing every
second so a dead node is marked down within a couple of seconds.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .proxy_process import REPO_ROOT

CONFIG = REPO_ROOT / "config" / "kamailio" / "kamailio.cfg"
START_SECONDS = 10.0


def kamailio_binary() -> str:
    path = shutil.which("kamailio")
    if path is None:
        raise AssertionError("kamailio is not installed: apt-get install kamailio (Debian)")
    return path


class Kamailio:
    """``kamailio -DD -E`` on 127.0.0.1:``port``, dispatching to ``nodes`` (name → SIP
    port), its log in ``folder/kamailio.log``."""

    def __init__(self, folder: Path, port: int, nodes: dict[str, int]) -> None:
        self.folder = folder / "kamailio"
        self.folder.mkdir()
        self.port = port
        self.nodes = nodes
        self.ctl = self.folder / "ctl"
        dispatchers = self.folder / "dispatcher.list"
        dispatchers.write_text(
            "".join(f"1 sip:127.0.0.1:{p} 0 0 name={name}\n" for name, p in nodes.items())
        )
        self.log_path = self.folder / "kamailio.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                kamailio_binary(), "-f", str(CONFIG), "-DD", "-E", "-m", "64", "-M", "8",
                "-A", f"LISTEN=udp:127.0.0.1:{port}",
                "-A", f'DISPATCHER_LIST="{dispatchers}"',
                "-A", f'CTL_SOCKET="unix:{self.ctl}"',
                "-A", "PING_INTERVAL=1",
                "-A", "FR_TIMER=1500",
                "-P", str(self.folder / "kamailio.pid"), "-Y", str(self.folder),
                "-w", str(self.folder),
            ],
            cwd=self.folder,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def fail(self, message: str) -> AssertionError:
        return AssertionError(f"{message}\n--- kamailio log:\n{self.log_text()[-4000:]}")

    def states(self) -> dict[str, str]:
        """Each node's dispatcher state by name: ``AP`` up, ``IP``/``IX`` down..."""
        done = subprocess.run(
            ["kamcmd", "-s", f"unixs:{self.ctl}", "dispatcher.list"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if done.returncode != 0:
            raise self.fail(f"kamcmd dispatcher.list failed: {done.stderr}")
        states: dict[str, str] = {}
        uri = flags = None
        for line in done.stdout.splitlines():
            key, _, value = line.strip().partition(":")
            if key == "URI":
                uri = value.strip()
            elif key == "FLAGS":
                flags = value.strip()
            if uri is not None and flags is not None:
                port = int(uri.rsplit(":", 1)[1])
                states[next(n for n, p in self.nodes.items() if p == port)] = flags
                uri = flags = None
        return states

    def wait_state(self, node: str, up: bool, timeout: float) -> None:
        """Until the dispatcher has ``node`` up (``A``ctive) or down; fails otherwise."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self.fail(f"kamailio exited {self.process.returncode}")
            with contextlib.suppress(AssertionError):
                state = self.states().get(node)
                if state is not None and state.startswith("A") == up:
                    return
            time.sleep(0.1)
        raise self.fail(f"node {node} not {'up' if up else 'down'} after {timeout} s: {state}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()
