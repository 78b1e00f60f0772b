"""Holds end to end (issues 14, 15): a real SIPp call recorded by a real ``recproxy
serve``, then a hold placed with the command and one over the HTTP API of the records
service ``serve`` started as its child, by a signed-in records officer; the listings,
the audit log and the call proxy's metrics show them, and releasing them leaves the
recording unheld.  The call proxy's own API has no hold route."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from typing import Any

import pytest

from .conftest import E2e
from .proxy_process import (
    ProxySettings,
    list_recordings,
    proxy_env,
    query,
    recproxy_command,
    run_cli,
    wait_for,
)

pytestmark = pytest.mark.sipp

HOLDS = """
[holds]
kinds = ["complaint", "training", "conduct", "safeguarding"]
"""
PASSWORD = "olive's long enough password"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post(
    port: int, path: str, body: dict[str, Any], token: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers=headers,
        method="POST",
    )
    try:
        with _DIRECT.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def add_officer(e2e: E2e) -> str:
    """``olive``, a records officer made with ``recproxy users add``, signed in: her
    bearer token."""
    added = subprocess.run(
        recproxy_command("users", "add", "olive", "--role", "records_officer",
                         "--password-stdin", "--config", str(e2e.config_path)),
        cwd=e2e.folder, env=proxy_env(), input=PASSWORD + "\n", capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    body = {"username": "olive", "password": PASSWORD, "kind": "bearer"}
    status, session = post(e2e.ports.records_http, "/api/v1/login", body)
    assert status == 200, session
    return str(session["token"])


def test_holds_on_a_recorded_call_by_command_and_api(e2e: E2e) -> None:
    proxy = e2e.proxy(ProxySettings(extra=HOLDS))
    wait_for("the records service", lambda: "records service listening" in proxy.log_text(), 20)
    taker = e2e.call_taker(ring_ms=200)
    caller = e2e.caller(pre_audio_ms=0, hold_ms=4000)  # notice 2 s, then bridged
    caller.expect_success(timeout=30)
    taker.expect_success(timeout=10)
    proxy.wait_idle()
    [recording] = list_recordings(e2e.config_path)
    rec_id = recording["id"]
    assert recording["holds"] == []
    olive = add_officer(e2e)
    records = e2e.ports.records_http

    by_command = run_cli(
        e2e.config_path, "holds", "place", rec_id, "--kind", "safeguarding",
        "--reference", "S-1", "--by", "dr_smith", "--review", "2000-01-01",
    ).strip()  # fmt: skip
    body = {"kind": "complaint", "reference": "C-9"}
    status, by_api = post(records, f"/api/v1/recordings/{rec_id}/holds", body, olive)
    assert status == 201, by_api
    assert by_api["placed_by"] == "olive"
    status, problem = post(records, f"/api/v1/recordings/{rec_id}/holds", {"kind": "x"}, olive)
    assert status == 422, problem
    try:  # the call proxy's API has no holds
        _DIRECT.open(
            urllib.request.Request(
                f"http://127.0.0.1:{e2e.ports.http}/api/recordings/{rec_id}/holds",
                data=json.dumps(body).encode(),
                method="POST",
            ),
            timeout=10,
        )
        raise AssertionError("the call proxy accepted a hold")
    except urllib.error.HTTPError as error:
        assert error.code == 404

    [recording] = list_recordings(e2e.config_path)
    assert recording["holds"] == [
        {"id": by_command, "kind": "safeguarding", "reference": "S-1"},
        {"id": by_api["id"], "kind": "complaint", "reference": "C-9"},
    ]
    due = json.loads(run_cli(e2e.config_path, "holds", "list", "--json", "--due"))
    assert [h["id"] for h in due] == [by_command]
    request = urllib.request.Request(
        f"http://127.0.0.1:{records}/api/v1/holds?due=1",
        headers={"Authorization": f"Bearer {olive}"},
    )
    with _DIRECT.open(request, timeout=10) as answer:
        assert [h["id"] for h in json.loads(answer.read())["holds"]] == [by_command]
    # counted when serve started (and every 30 s): every configured kind has a series
    with _DIRECT.open(f"http://127.0.0.1:{e2e.ports.http}/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    assert 'recproxy_holds_active{kind="safeguarding"}' in metrics
    assert "recproxy_holds_due_for_review " in metrics

    release = f"/api/v1/holds/{by_api['id']}/release"
    status, released = post(records, release, {"reason": "ok"}, olive)
    assert status == 200 and released["released_by"] == "olive", released
    run_cli(e2e.config_path, "holds", "release", by_command, "--by", "dr_smith", "--reason", "done")
    [recording] = list_recordings(e2e.config_path)
    assert recording["holds"] == []
    audit = query(
        e2e.folder / "data" / "catalog.sqlite3",
        "SELECT actor, action, detail FROM audit_log ORDER BY seq",
    )
    assert [tuple(row[:2]) for row in audit if str(row[1]).startswith("hold.")] == [
        ("dr_smith", "hold.place"),
        ("olive", "hold.place"),
        ("olive", "hold.release"),
        ("dr_smith", "hold.release"),
    ]
    decisions = [json.loads(row[2])["action"] for row in audit if row[0] == "olive"
                 and str(row[1]).startswith("access.")]  # fmt: skip
    assert decisions == ["place_hold", "view_holds", "release_hold"]
