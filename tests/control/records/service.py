"""A real ``recproxy records serve`` process for the records service's tests: its own
folder with a key pair made by ``recproxy keygen`` (passphrase-protected), a catalog
whose users are made by ``recproxy users add``, and an HTTP listener on a free port
(``records.http_listen`` port 0; the port is read from its start-up line)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

PASSPHRASE = "test passphrase of the records key"
PASSWORD = "a long enough password"
LISTENING = re.compile(r"records service listening on (http://127\.0\.0\.1:\d+)/api/v1/")


def recproxy(
    folder: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", *args],
        cwd=folder,
        input=stdin,
        env=env if env is not None else with_passphrase(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def with_passphrase(passphrase: str | None = PASSPHRASE) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RECPROXY_KEY_PASSPHRASE"}
    if passphrase is not None:
        env["RECPROXY_KEY_PASSPHRASE"] = passphrase
    return env


def make_folder(folder: Path, *, accounts: str = "", records: str = "") -> Path:
    """The config file of a records host in ``folder``, its key pair and catalog."""
    config = folder / "recproxy.toml"
    config.write_text(
        '[catalog]\npath = "data/catalog.sqlite3"\n'
        '[recording]\npublic_key = "data/keys/recording.pub"\n'
        'private_key = "data/keys/recording.key"\n'
        f'[records]\nhttp_listen = "127.0.0.1:0"\n{records}\n'
        f"[accounts]\n{accounts}\n"
    )
    made = recproxy(folder, "keygen", "--out", "data/keys", "--config", str(config))
    assert made.returncode == 0, made.stderr
    return config


def add_user(config: Path, name: str, role: str, *more: str) -> None:
    added = recproxy(
        config.parent, "users", "add", name, "--role", role, *more, "--password-stdin",
        "--config", str(config), stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr


class RecordsProcess:
    """``recproxy records serve --config CONFIG``, its output in ``log``."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = config.parent / "records.log"
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "records", "serve", "--config", str(config)],
            cwd=config.parent,
            env=env if env is not None else with_passphrase(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.url = self._wait_listening(20.0)

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def _wait_listening(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = LISTENING.search(self.log_text())
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                raise AssertionError(f"records serve exited {self.process.returncode}:\n"
                                     f"{self.log_text()}")  # fmt: skip
            time.sleep(0.05)
        raise AssertionError(f"records serve not listening after {timeout} s:\n{self.log_text()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                raise AssertionError("records serve ignored SIGTERM") from None
        self._log.close()
        return self.process.returncode
