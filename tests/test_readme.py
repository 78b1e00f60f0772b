"""The README is the truth: its two commands work on a clean checkout, as CI runs them.

The set-up-and-run command is run for real in a fresh clone (its own virtual
environment, installed from the package registry), and the proxy it starts must answer
/healthz and a SIP OPTIONS, record the README's own SIPp test call (which sits through
the 18 s notice, so this test takes about 30 s more than the set-up), then stop cleanly
on SIGTERM.  The set-up-and-test command is the one `.ci/run` calls (running the suite
from inside itself would recurse).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# the README's proxy and call use fixed ports (5060, 8080, 5070, 5091): one such test at a
# time on this machine, whichever checkout it runs from
DEFAULT_PORTS_LOCK = Path(tempfile.gettempdir()) / "recproxy-e2e-port-locks" / "readme.lock"


def readme_commands() -> tuple[str, str]:
    """(set up and run, set up and test): the first two shell blocks of the README."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2, "the README must open with its two commands"
    return blocks[0].strip(), blocks[1].strip()


def readme_test_call() -> str:
    """The shell block that places the README's SIPp test call."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    calls = [block.strip() for block in blocks if "sipp -sn uac" in block]
    assert len(calls) == 1, "the README has one SIPp test call"
    return calls[0]


def readme_line(command: str) -> str:
    """``command`` as the README spells it in a shell block (its comment cut off)."""
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), re.S):
        for line in block.splitlines():
            if line.split("#")[0].strip() == command:
                return command
    raise AssertionError(f"the README no longer shows {command!r}")


def test_ci_runs_the_readmes_test_command() -> None:
    _, test_command = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()


def _free(port: int, kind: int) -> bool:
    """Whether a server could bind ``port`` now.  TCP servers set SO_REUSEADDR, so the
    probe does too: a connection lingering in TIME-WAIT does not take the port."""
    with socket.socket(socket.AF_INET, kind) as probe:
        if kind == socket.SOCK_STREAM:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def default_ports() -> Iterator[None]:
    """Held while this test uses the default ports; waits (bounded) for another holder."""
    DEFAULT_PORTS_LOCK.parent.mkdir(exist_ok=True)
    with DEFAULT_PORTS_LOCK.open("w") as lock:
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                assert time.monotonic() < deadline, f"{DEFAULT_PORTS_LOCK} held for 10 minutes"
                time.sleep(1)
        yield


@pytest.mark.sipp
@pytest.mark.usefixtures("default_ports")
def test_the_readmes_run_command_starts_a_working_proxy_on_a_clean_clone(
    tmp_path: Path,
) -> None:
    run_command, _ = readme_commands()
    assert run_command.endswith("recproxy serve"), "the README runs the proxy on its defaults"
    for port, kind in ((5060, socket.SOCK_DGRAM), (5060, socket.SOCK_STREAM)):
        assert _free(port, kind), f"port {port} is taken: the defaults need it"
    assert _free(8080, socket.SOCK_STREAM), "port 8080 is taken: the defaults need it"
    assert _free(8081, socket.SOCK_STREAM), "port 8081 is taken: the records service needs it"
    for port in (5070, 5091):
        assert _free(port, socket.SOCK_DGRAM), f"port {port} is taken: the README's call needs it"
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=60)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["RECPROXY_KEY_PASSPHRASE"] = ""
    proc = subprocess.Popen(
        ["bash", "-c", run_command],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        health = None
        deadline = time.monotonic() + 420  # set-up installs the package into a new venv
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen("http://127.0.0.1:8080/healthz", timeout=1) as got:
                    health = json.loads(got.read())
                    break
            except OSError:
                time.sleep(1)
        assert health is not None, (proc.stdout.read() if proc.stdout else b"").decode()[-3000:]
        assert health["ok"] is True and health["sip"]["port"] == 5060
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sip:
            sip.settimeout(5)
            sip.bind(("127.0.0.1", 0))
            port = sip.getsockname()[1]
            sip.sendto(
                (
                    "OPTIONS sip:recproxy@127.0.0.1 SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-readme;rport\r\n"
                    "Max-Forwards: 70\r\nFrom: <sip:t@127.0.0.1>;tag=1\r\n"
                    "To: <sip:recproxy@127.0.0.1>\r\nCall-ID: readme@127.0.0.1\r\n"
                    "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                ).encode(),
                ("127.0.0.1", 5060),
            )
            assert sip.recv(4096).startswith(b"SIP/2.0 200 ")
        # the embedded defaults made the development key pair and the catalog under ./data
        assert (clone / "data" / "keys" / "recording.pub").exists()
        assert (clone / "data" / "catalog.sqlite3").exists()
        _place_the_readmes_test_call(clone, env)
        listing = readme_line(".venv/bin/recproxy recordings list --json")
        listed = subprocess.run(
            ["bash", "-c", listing], cwd=clone, env=env, capture_output=True, timeout=60
        )
        assert listed.returncode == 0, listed.stderr.decode(errors="replace")
        recordings = json.loads(listed.stdout)
        assert [r["state"] for r in recordings] == ["complete"], recordings
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = (proc.stdout.read() if proc.stdout else b"").decode()
    assert "Traceback" not in output, output[-3000:]
    assert "DEVELOPMENT KEY" in output


def _place_the_readmes_test_call(clone: Path, env: dict[str, str]) -> None:
    """Run the README's call-taker-and-caller block as it is; its background call taker
    is stopped with the block's process group.  Output goes to a file: the call taker
    would hold a pipe open."""
    log_path = clone.parent / "test-call.log"
    with log_path.open("wb") as log:
        call = subprocess.Popen(
            ["bash", "-c", readme_test_call()],
            cwd=clone,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            call.wait(timeout=90)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(call.pid, signal.SIGTERM)
            call.wait()
    assert call.returncode == 0, log_path.read_text(errors="replace")[-3000:]
