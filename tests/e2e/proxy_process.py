"""A real ``recproxy serve`` process for the end-to-end tests, and the commands and
files that read its results back (``recordings list``, ``export``, the SQLite catalog).

Every test gets its own block of ports (``PortBlock``): found free on loopback and held
with a lock file while the test runs, so neither serial nor parallel runs (another
pytest process included) can pick the same ports.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

REPO_ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE_ENV = "RECPROXY_KEY_PASSPHRASE"

# ---------------------------------------------------------------------------------------
# Ports

BLOCK_SIZE = 300
_LOW, _HIGH = 10_000, 32_000  # below Linux's ephemeral range (32768-60999)
_AVOID = range(20_000, 21_000)  # recproxy's default RTP range
_LOCK_DIR = Path(tempfile.gettempdir()) / "recproxy-e2e-port-locks"


@dataclass
class PortBlock:
    """``BLOCK_SIZE`` consecutive ports on 127.0.0.1, free when found.

    +0 proxy SIP (UDP), +1 proxy HTTP, +2 caller SIP, +3 call taker SIP, +4..+9 spare
    SIP ports, +10 caller RTP, +20 call taker RTP, +30 spare RTP (+40..+90 more spare
    media ports), +99 the records service's HTTP (the child ``serve`` starts),
    +100..+299 the proxy's RTP range.
    """

    base: int
    _lock: TextIO | None = field(default=None, repr=False)

    @property
    def sip(self) -> int:
        return self.base

    @property
    def http(self) -> int:
        return self.base + 1

    @property
    def records_http(self) -> int:
        return self.base + 99

    @property
    def caller_sip(self) -> int:
        return self.base + 2

    @property
    def taker_sip(self) -> int:
        return self.base + 3

    def spare_sip(self, index: int) -> int:
        assert 0 <= index < 6
        return self.base + 4 + index

    @property
    def caller_rtp(self) -> int:
        return self.base + 10

    @property
    def taker_rtp(self) -> int:
        return self.base + 20

    @property
    def spare_rtp(self) -> int:
        return self.base + 30

    def spare_media(self, index: int) -> int:
        """More media ports for SIPp (+30, +40, ... +90; index 0 is ``spare_rtp``)."""
        assert 0 <= index < 7
        return self.base + 30 + 10 * index

    @property
    def rtp_range(self) -> tuple[int, int]:
        return self.base + 100, self.base + BLOCK_SIZE - 1

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _free(port: int) -> bool:
    kinds = (socket.SOCK_DGRAM, socket.SOCK_STREAM)
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def reserve_ports(attempts: int = 200) -> PortBlock:
    _LOCK_DIR.mkdir(exist_ok=True)
    bases = [
        base
        for base in range(_LOW, _HIGH - BLOCK_SIZE, BLOCK_SIZE)
        if not (base < _AVOID.stop and base + BLOCK_SIZE > _AVOID.start)
    ]
    random.shuffle(bases)
    for base in bases[:attempts]:
        lock = (_LOCK_DIR / f"{base}.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        if all(_free(port) for port in range(base, base + BLOCK_SIZE)):
            return PortBlock(base, lock)
        lock.close()
    raise AssertionError("no free block of loopback ports for the end-to-end test")


# ---------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class ProxySettings:
    mode: str = "answer"
    grace_seconds: float = 2.0
    segment_seconds: int = 10
    ring_timeout_seconds: float = 10.0
    jitter_ms: int = 60
    internal_peers: tuple[str, ...] = ()  # sip.internal_peers (outbound calls)
    trusted_peers: tuple[str, ...] = ("127.0.0.0/8",)  # sip.trusted_peers
    trunk: str | None = None  # routing.trunk
    no_record_prompt: Path | None = None  # notice.no_record_prompt
    records_child: str = "auto"  # records.child: does serve start the records service
    srtp: str = '"off"'  # media.srtp as TOML: '"require"', '{ caller = "offer" }'
    media: str = ""  # issue 19: more [media] lines as TOML (fast_path = "auto")
    # TOML appended as it is: [[routing.rules]], [services.NAME], [[operators]], [dtmf]
    extra: str = ""
    # issue 18: more [sip] keys, as TOML lines (session_expires, min_se, tls_listen, ...)
    sip: str = ""
    # issue 18: routing.call_takers in place of routing.call_taker, or a call taker other
    # than sip:calltaker@127.0.0.1:<taker_sip> (a sips: one, say), and more [routing]
    # lines (no_answer_seconds, options_*)
    call_takers: tuple[str, ...] = ()
    call_taker: str | None = None
    routing: str = ""
    recording: str = ""  # more [recording] lines (hold_seconds, ...)
    # issue 20: the folder of the catalog, the recordings and the keys (relative to the
    # config's folder, or absolute: one folder several nodes share)
    data: str = "data"
    catalog: str = ""  # issue 20: more [catalog] lines (url = "postgresql://...")
    # issue 20: [recording] dir when it is not {data}/recordings: a node's own spool
    # beside the data folder (keys) several nodes share
    recordings: str = ""


def write_config(folder: Path, ports: PortBlock, notice: Path, settings: ProxySettings) -> Path:
    low, high = ports.rtp_range
    internal = ", ".join(f'"{peer}"' for peer in settings.internal_peers)
    trusted = ", ".join(f'"{peer}"' for peer in settings.trusted_peers)
    trunk = f'trunk = "{settings.trunk}"\n' if settings.trunk else ""
    no_record = (
        f'no_record_prompt = "{settings.no_record_prompt}"\n' if settings.no_record_prompt else ""
    )
    call_taker = settings.call_taker or f"sip:calltaker@127.0.0.1:{ports.taker_sip}"
    call_takers = (
        "call_takers = [" + ", ".join(f'"{uri}"' for uri in settings.call_takers) + "]"
        if settings.call_takers
        else f'call_taker = "{call_taker}"'
    )
    text = f"""\
[sip]
listen = "127.0.0.1:{ports.sip}"
advertise = "127.0.0.1"
trusted_peers = [{trusted}]
internal_peers = [{internal}]
transports = ["udp"]
{settings.sip}
[routing]
{call_takers}
ring_timeout_seconds = {settings.ring_timeout_seconds}
{settings.routing}
{trunk}
[notice]
prompt = "{notice}"
{no_record}mode = "{settings.mode}"

[media]
rtp_ports = "{low}-{high}"
jitter_ms = {settings.jitter_ms}
srtp = {settings.srtp}
{settings.media}

[recording]
dir = "{settings.recordings or settings.data + "/recordings"}"
segment_seconds = {settings.segment_seconds}
public_key = "{settings.data}/keys/recording.pub"
private_key = "{settings.data}/keys/recording.key"
{settings.recording}
[catalog]
path = "{settings.data}/catalog.sqlite3"
{settings.catalog}

[http]
listen = "127.0.0.1:{ports.http}"

[records]
http_listen = "127.0.0.1:{ports.records_http}"
child = "{settings.records_child}"

[shutdown]
grace_seconds = {settings.grace_seconds}
""" + (f"\n{settings.extra}" if settings.extra else "")
    path = folder / "recproxy.toml"
    path.write_text(text)
    return path


def proxy_env() -> dict[str, str]:
    """The environment for recproxy commands: the package importable, no passphrase
    (so the first run makes an unprotected development key pair, and export reads it)."""
    env = {k: v for k, v in os.environ.items() if k != PASSPHRASE_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def recproxy_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "proxy.cli", *args]


# ---------------------------------------------------------------------------------------
# The server process

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no http_proxy


class ProxyProcess:
    """``recproxy serve --config CONFIG``, its output in ``log_path``."""

    def __init__(self, config: Path, ports: PortBlock, log_path: Path) -> None:
        self.config = config
        self.ports = ports
        self.log_path = log_path
        self.folder = config.parent
        self.killed = False
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            recproxy_command("serve", "--config", str(config)),
            cwd=self.folder,
            env=proxy_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's ^C reaches pytest, not the proxy
        )

    @property
    def catalog_path(self) -> Path:
        return self.folder / "data" / "catalog.sqlite3"

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def fail(self, message: str) -> AssertionError:
        return AssertionError(
            f"{message}\n--- recproxy log ({self.log_path}):\n{self.log_text()[-6000:]}"
        )

    def health(self, timeout: float = 1.0) -> dict[str, Any]:
        """GET /healthz: its JSON, whether the status is 200 (ok) or 503 (not ok)."""
        url = f"http://127.0.0.1:{self.ports.http}/healthz"
        try:
            with _DIRECT.open(url, timeout=timeout) as answer:
                body = answer.read()
        except urllib.error.HTTPError as error:
            if error.code != 503:
                raise
            body = error.read()
        result: dict[str, Any] = json.loads(body)
        return result

    def wait_healthy(self, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self.fail(f"recproxy exited {self.process.returncode} while starting")
            with contextlib.suppress(OSError, ValueError, urllib.error.URLError):
                health = self.health(timeout=0.5)
                if health.get("ok"):
                    return health
            time.sleep(0.05)
        raise self.fail(f"recproxy not healthy after {timeout} s")

    def wait_idle(self, timeout: float = 10.0) -> dict[str, Any]:
        """/healthz once no call is left and no RTP port is in use; fails otherwise."""
        deadline = time.monotonic() + timeout
        health = self.health()
        while time.monotonic() < deadline:
            health = self.health()
            if health["calls"] == 0 and health["rtp"]["in_use"] == 0:
                return health
            time.sleep(0.05)
        raise self.fail(f"calls or RTP ports still in use after {timeout} s: {health}")

    def send_signal(self, sig: signal.Signals) -> None:
        if sig is signal.SIGKILL:
            self.killed = True
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise self.fail(f"recproxy still running {timeout} s later") from None

    def stop(self, timeout: float) -> int:
        """SIGTERM, and its exit status (SIGKILL and a failure if it does not exit)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.process.kill()
                self.process.wait(timeout=10)
                raise self.fail(f"recproxy did not exit within {timeout} s of SIGTERM") from None
        return self.process.returncode

    def check_clean_exit(self) -> None:
        """Exited 0 (unless the test killed it) and logged no traceback."""
        self._log.flush()
        status = self.process.returncode
        if not self.killed and status != 0:
            raise self.fail(f"recproxy exited {status}")
        if "Traceback" in self.log_text():
            raise self.fail("recproxy logged a traceback")

    def close(self) -> None:
        self._log.close()


# ---------------------------------------------------------------------------------------
# Reading the results back


def run_cli(config: Path, *args: str, timeout: float = 30.0) -> str:
    """A ``recproxy`` command's stdout; fails with its output unless it exits 0."""
    result = subprocess.run(
        recproxy_command(*args, "--config", str(config)),
        cwd=config.parent,
        env=proxy_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, (
        f"recproxy {' '.join(args)} exited {result.returncode}\n"
        f"stdout: {result.stdout}\nstderr: {result.stderr}"
    )
    return result.stdout


def list_recordings(config: Path) -> list[dict[str, Any]]:
    rows = json.loads(run_cli(config, "recordings", "list", "--json"))
    assert isinstance(rows, list)
    return rows


def export_command(config: Path, recording_id: str, out: Path) -> list[str]:
    return recproxy_command(
        "export", recording_id, "--format", "wav", "--out", str(out),
        "--reason", "recproxy end-to-end test", "--config", str(config),
    )  # fmt: skip


def export_wav(config: Path, recording_id: str, out: Path) -> Path:
    run_cli(
        config, "export", recording_id, "--format", "wav", "--out", str(out),
        "--reason", "recproxy end-to-end test",
    )  # fmt: skip
    return out


def export_many(
    config: Path, recording_ids: list[str], folder: Path, parallel: int = 4
) -> dict[str, Path]:
    """Export several recordings, a few commands at a time."""
    results: dict[str, Path] = {}
    pending = list(recording_ids)
    running: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
    deadline = time.monotonic() + 60
    while pending or running:
        while pending and len(running) < parallel:
            rid = pending.pop()
            out = folder / f"{rid}.wav"
            process = subprocess.Popen(
                export_command(config, rid, out),
                cwd=config.parent,
                env=proxy_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            running.append((rid, out, process))
        rid, out, process = running.pop(0)
        try:
            output, _ = process.communicate(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            for _, _, other in [*running, (rid, out, process)]:
                other.kill()
            raise AssertionError("recproxy export took more than 60 s") from None
        assert process.returncode == 0, f"export {rid} exited {process.returncode}: {output!r}"
        results[rid] = out
    return results


@contextlib.contextmanager
def catalog(path: Path) -> Iterator[sqlite3.Connection]:
    """The proxy's SQLite catalog, read-only, rows as ``sqlite3.Row``."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    connection.row_factory = sqlite3.Row
    try:
        yield connection
    finally:
        connection.close()


def query(path: Path, sql: str, *params: object) -> list[sqlite3.Row]:
    with catalog(path) as connection:
        return list(connection.execute(sql, params))


def wait_for(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
