"""The privilege boundary (issue 15), end to end: the SIP-facing ``recproxy serve``
never opens the recording private key, and with the defaults it starts the records
service — the key holder — as its child, stops it on shutdown and survives its death."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request

import pytest

from .conftest import E2e
from .proxy_process import (
    ProxySettings,
    list_recordings,
    proxy_env,
    recproxy_command,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.sipp

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
PASSWORD = "a long enough password"


def test_the_call_proxy_records_a_call_without_ever_opening_the_private_key(e2e: E2e) -> None:
    """The private key is a FIFO: opening it for reading blocks until a writer comes,
    which never happens, so a proxy that opened it would never become healthy."""
    e2e.config = write_config(
        e2e.folder, e2e.ports, e2e.notice.path, ProxySettings(records_child="off")
    )
    made = subprocess.run(
        recproxy_command("keygen", "--out", "data/keys", "--no-passphrase",
                         "--config", str(e2e.config)),
        cwd=e2e.folder, env=proxy_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    key = e2e.folder / "data" / "keys" / "recording.key"
    key.rename(key.with_suffix(".kept"))
    os.mkfifo(key, 0o600)
    proxy = e2e.proxy(restart=True)  # healthy: it did not block on the FIFO
    taker = e2e.call_taker(ring_ms=200)
    caller = e2e.caller(pre_audio_ms=0, hold_ms=3000)
    caller.expect_success(timeout=30)
    taker.expect_success(timeout=10)
    proxy.wait_idle()
    [recording] = list_recordings(e2e.config_path)
    assert recording["state"] == "complete" and recording["segments"] >= 1, recording
    log = proxy.log_text()
    assert "records service started" not in log and "DEVELOPMENT KEY" not in log


def get_json(url: str) -> tuple[int, dict[str, object]]:
    try:
        with _DIRECT.open(url, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has exited
        return stat.read().split(") ")[1][0] != "Z"


def test_serve_starts_the_records_service_as_its_child_and_stops_it(e2e: E2e) -> None:
    proxy = e2e.proxy()  # records.child = "auto": the development key is on this host
    records = f"http://127.0.0.1:{e2e.ports.records_http}"
    wait_for("the records service", lambda: "records service listening" in proxy.log_text(), 20)
    found = re.search(
        rf"records service started as child pid (\d+) on {re.escape(records)}", proxy.log_text()
    )
    assert found, proxy.log_text()
    child = int(found.group(1))
    assert get_json(f"{records}/healthz") == (200, {"ok": True, "service": "records"})
    added = subprocess.run(
        recproxy_command("users", "add", "alice", "--role", "admin", "--password-stdin",
                         "--config", str(e2e.config_path)),
        cwd=e2e.folder, env=proxy_env(), input=PASSWORD + "\n", capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    request = urllib.request.Request(
        f"{records}/api/v1/login",
        data=json.dumps({"username": "alice", "password": PASSWORD, "kind": "bearer"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with _DIRECT.open(request, timeout=10) as answer:  # the shared catalog's user
        assert answer.status == 200
    assert proxy.stop(timeout=30) == 0
    wait_for("the child to exit", lambda: not alive(child), 5)
    assert PASSWORD not in proxy.log_text()


def test_a_dead_records_child_is_logged_and_the_call_proxy_goes_on(e2e: E2e) -> None:
    proxy = e2e.proxy()
    wait_for("the records service", lambda: "records service listening" in proxy.log_text(), 20)
    found = re.search(r"records service started as child pid (\d+)", proxy.log_text())
    assert found
    os.kill(int(found.group(1)), signal.SIGKILL)
    wait_for("the death logged", lambda: "exited with status -9" in proxy.log_text(), 10)
    time.sleep(0.2)
    assert proxy.health()["ok"] is True
    assert proxy.process.poll() is None
