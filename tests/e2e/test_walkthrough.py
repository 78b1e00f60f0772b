"""The README's walk-through is the truth: "make the first admin, log in, request,
approve, listen" is run exactly as the README spells it — one ``bash`` run of its shell
block, the passwords typed on stdin — against a real ``recproxy serve`` and the records
service it starts as its child, after a real SIPp call.  Only the records service's port
is the test's own (the README's 8081 becomes the port block's), and ``.venv/bin/recproxy``
in the test's folder runs this checkout's ``recproxy``.  So the docs cannot drift from
the API: a renamed field, a new required parameter or a changed status breaks this test.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from .conftest import E2e
from .proxy_process import REPO_ROOT, proxy_env, query
from .recorded_call import record_a_call

pytestmark = pytest.mark.sipp

README = REPO_ROOT / "README.md"
PASSWORDS = {
    "admin": "the admin's own long password",
    "olive": "olive's records officer password",
    "sam": "sam's staff password, long enough",
}


def walkthrough() -> str:
    """The README's shell block that makes the first admin."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    [block] = [b for b in blocks if "users add admin --role admin --password-stdin" in b]
    return block


def recproxy_script(folder: Path) -> None:
    """``.venv/bin/recproxy`` in ``folder``: this checkout's command."""
    script = folder / ".venv" / "bin" / "recproxy"
    script.parent.mkdir(parents=True)
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m proxy.cli "$@"\n')
    script.chmod(0o755)


def test_the_readmes_walkthrough_runs_from_the_first_admin_to_listening(e2e: E2e) -> None:
    proxy = e2e.proxy()  # the embedded development key: serve starts the records service
    recording = record_a_call(e2e, proxy)

    block = walkthrough()
    assert "127.0.0.1:8081" in block
    block = block.replace("127.0.0.1:8081", f"127.0.0.1:{e2e.ports.records_http}")
    recproxy_script(e2e.folder)
    typed = [PASSWORDS[n] for n in ("admin", "olive", "sam", "olive", "sam")]
    run = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block],
        cwd=e2e.folder,
        env=proxy_env(),
        input="".join(f"{password}\n" for password in typed),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, f"stdout: {run.stdout}\nstderr: {run.stderr}"
    assert run.stdout.splitlines() == [
        "user admin added (admin)",
        "user olive added (records_officer)",
        "user sam added (staff)",
        '"approved"',  # step 5 prints the request's state
    ]

    with wave.open(str(e2e.folder / "call.wav")) as heard:
        assert (heard.getnchannels(), heard.getframerate()) == (2, 8000)
        seconds = heard.getnframes() / heard.getframerate()
    assert abs(seconds * 1000 - recording["duration_ms"]) < 100, (seconds, recording)

    entries = query(
        e2e.folder / "data" / "catalog.sqlite3",
        "SELECT actor, action, object, detail FROM audit_log ORDER BY seq",
    )
    steps = [
        (actor, action, json.loads(detail).get("action"), json.loads(detail).get("rule"))
        for actor, action, _, detail in entries
        if actor in PASSWORDS
    ]
    added = [(actor, obj) for actor, action, obj, _ in entries if action == "user.add"]
    assert [obj for _, obj in added] == ["user:admin", "user:olive", "user:sam"]
    assert [actor.endswith("(by admin)") for actor, _ in added] == [False, True, True]
    decisions = [s for s in steps if s[1] in ("access.allowed", "access.refused")]
    assert decisions == [
        ("sam", "access.allowed", "request_access", "request.allowed"),
        ("olive", "access.allowed", "approve_access", "approve.allowed"),
        ("sam", "access.allowed", "play", "audio.granted"),
    ], steps
    done = [(actor, action) for actor, action, _, _ in steps if action.startswith("access.")]
    assert ("sam", "access.request") in done and ("olive", "access.approve") in done, steps
    assert ("olive", "recordings.search", None, None) in steps
    log = proxy.log_text()
    assert not [p for p in PASSWORDS.values() if p in log + run.stdout + run.stderr]
