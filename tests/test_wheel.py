"""A wheel carries everything: installed into a fresh virtual environment outside the
checkout, ``recproxy serve`` with no arguments answers /healthz and records a call.

Issue 12: the wheel left the prompts out, so an installed recproxy could not start.  The
wheel is built from a copy of the working tree's files that git does not ignore (building
in place would leave ``build/`` behind), installed with its dependencies (from pip's
cache or the package index), and run in an empty folder inside a private network
namespace, so its default ports (SIP 5060, HTTP 8080, RTP 20000-20999) collide with
nothing else on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import wave
from importlib.metadata import PathDistribution
from pathlib import Path
from typing import Any

import pytest

from .e2e.netns import in_private_network

pytestmark = pytest.mark.sipp

ROOT = Path(__file__).resolve().parents[1]
SIPP_CALLER = ["sipp", "-sn", "uac", "127.0.0.1:5060", "-i", "127.0.0.1", "-p", "5091", "-m", "1"]
CALL_MS = 25_000  # the 18 s default notice, then about 7 s connected and recorded


def _env() -> dict[str, str]:
    """This environment without the checkout's virtual environment, and the (empty)
    passphrase of the development key pair that ``serve`` makes on first run."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["RECPROXY_KEY_PASSPHRASE"] = ""
    return env


def _run(args: list[str], *, cwd: Path, timeout: float) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout


def _install_the_wheel(tmp_path: Path) -> Path:
    """The bin folder of a new virtual environment holding only the wheel and its
    dependencies."""
    source = tmp_path / "source"
    listed = _run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, timeout=30)
    for name in listed.splitlines():
        if name and (ROOT / name).is_file():  # the working tree's files, not what git ignores
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", ".", "--no-deps", "-q", "-w", str(wheels)], cwd=source, timeout=300)
    (wheel,) = wheels.glob("recproxy-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "install", "-q", str(wheel)], cwd=tmp_path, timeout=600)
    return venv / "bin"


def _healthz() -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen("http://127.0.0.1:8080/healthz", timeout=1) as got:
            health: dict[str, Any] = json.loads(got.read())
            return health
    except OSError:
        return None


def _serve_and_call(bin_dir: Path, folder: Path) -> list[dict[str, Any]]:
    """Run ``recproxy serve`` (no arguments) in ``folder``, place one SIPp call through
    it, and return ``recordings list --json``."""
    env = _env()
    log = (folder / "serve.log").open("wb")
    serve = subprocess.Popen(
        [str(bin_dir / "recproxy"), "serve"],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    taker = subprocess.Popen(
        [str(bin_dir / "recproxy"), "test-uas", "--listen", "127.0.0.1:5070"],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        health = _healthz()
        while health is None and time.monotonic() < deadline and serve.poll() is None:
            time.sleep(0.2)
            health = _healthz()
        assert health is not None and health["ok"] is True, (folder / "serve.log").read_text()
        caller = subprocess.run(
            [*SIPP_CALLER, "-d", str(CALL_MS), "-nostdin", "-timeout", "60s", "-timeout_error"],
            cwd=folder,
            capture_output=True,
            timeout=90,
        )
        assert caller.returncode == 0, caller.stdout.decode(errors="replace")[-2000:]
        listing = [str(bin_dir / "recproxy"), "recordings", "list", "--json"]
        deadline = time.monotonic() + 10  # the recording is sealed just after the BYE
        while True:
            recordings: list[dict[str, Any]] = json.loads(_run(listing, cwd=folder, timeout=30))
            if any(r["state"] == "complete" for r in recordings) or time.monotonic() > deadline:
                return recordings
            time.sleep(0.2)
    finally:
        taker.terminate()
        os.killpg(serve.pid, signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
        taker.wait(timeout=10)
        log.close()


def test_an_installed_wheel_serves_and_records_with_no_arguments(tmp_path: Path) -> None:
    bin_dir = _install_the_wheel(tmp_path)
    site = Path(
        _run(
            [str(bin_dir / "python"), "-c", "import proxy; print(proxy.__file__)"],
            cwd=tmp_path,
            timeout=30,
        ).strip()
    ).parent
    assert site.is_relative_to(tmp_path / "venv"), f"recproxy imported from {site}"
    (dist_info,) = site.parent.glob("recproxy-*.dist-info")
    metadata = PathDistribution(dist_info).metadata
    assert metadata["License-Expression"] == "AGPL-3.0-or-later"
    licence = (dist_info / "licenses" / "LICENSE").read_text()
    assert "GNU AFFERO GENERAL PUBLIC LICENSE" in licence[:200]

    folder = tmp_path / "run"  # empty: no config, no prompts, no data
    folder.mkdir()
    # the namespace's bound lies beyond every bound inside it
    recordings = in_private_network(lambda: _serve_and_call(bin_dir, folder), timeout=240)

    assert [r["state"] for r in recordings] == ["complete"], recordings
    (recording,) = recordings
    assert recording["duration_ms"] > 3000, recording  # connected after the whole notice
    log = (folder / "serve.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    out = folder / "call.wav"
    export = [str(bin_dir / "recproxy"), "export", recording["id"], "--format", "wav"]
    _run([*export, "--out", str(out), "--reason", "wheel test"], cwd=folder, timeout=60)
    with wave.open(str(out)) as wav:  # decrypted with the development key made on first run
        assert (wav.getnchannels(), wav.getframerate()) == (2, 8000)
        assert abs(wav.getnframes() / 8 - recording["duration_ms"]) <= 200
