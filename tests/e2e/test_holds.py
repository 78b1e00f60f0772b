"""Holds end to end (issue 14): a real SIPp call recorded by a real ``recproxy serve``,
then a hold placed with the command and one over the running proxy's HTTP API as an
operator; the listings, the audit log and the metrics show them, and releasing them
leaves the recording unheld."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from proxy.control.api import token_hash

from .conftest import E2e
from .proxy_process import ProxySettings, list_recordings, query, run_cli

pytestmark = pytest.mark.sipp

OPERATOR = f"""
[[operators]]
name = "alice"
token_sha256 = "{token_hash("alice-token")}"

[holds]
kinds = ["complaint", "training", "conduct", "safeguarding"]
"""
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post(port: int, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": "Bearer alice-token", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with _DIRECT.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_holds_on_a_recorded_call_by_command_and_api(e2e: E2e) -> None:
    proxy = e2e.proxy(ProxySettings(extra=OPERATOR))
    taker = e2e.call_taker(ring_ms=200)
    caller = e2e.caller(pre_audio_ms=0, hold_ms=4000)  # notice 2 s, then bridged
    caller.expect_success(timeout=30)
    taker.expect_success(timeout=10)
    proxy.wait_idle()
    [recording] = list_recordings(e2e.config_path)
    rec_id = recording["id"]
    assert recording["holds"] == []

    by_command = run_cli(
        e2e.config_path, "holds", "place", rec_id, "--kind", "safeguarding",
        "--reference", "S-1", "--by", "dr_smith", "--review", "2000-01-01",
    ).strip()  # fmt: skip
    status, by_api = post(
        e2e.ports.http, f"/api/recordings/{rec_id}/holds", {"kind": "complaint", "reference": "C-9"}
    )
    assert status == 201, by_api
    assert by_api["placed_by"] == "alice"
    status, problem = post(e2e.ports.http, f"/api/recordings/{rec_id}/holds", {"kind": "x"})
    assert status == 422, problem

    [recording] = list_recordings(e2e.config_path)
    assert recording["holds"] == [
        {"id": by_command, "kind": "safeguarding", "reference": "S-1"},
        {"id": by_api["id"], "kind": "complaint", "reference": "C-9"},
    ]
    due = json.loads(run_cli(e2e.config_path, "holds", "list", "--json", "--due"))
    assert [h["id"] for h in due] == [by_command]
    # counted when serve started (and every 30 s): every configured kind has a series
    with _DIRECT.open(f"http://127.0.0.1:{e2e.ports.http}/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    assert 'recproxy_holds_active{kind="safeguarding"}' in metrics
    assert "recproxy_holds_due_for_review " in metrics

    status, released = post(e2e.ports.http, f"/api/holds/{by_api['id']}/release", {"reason": "ok"})
    assert status == 200 and released["released_by"] == "alice", released
    run_cli(e2e.config_path, "holds", "release", by_command, "--by", "dr_smith", "--reason", "done")
    [recording] = list_recordings(e2e.config_path)
    assert recording["holds"] == []
    audit = query(
        e2e.folder / "data" / "catalog.sqlite3", "SELECT actor, action FROM audit_log ORDER BY seq"
    )
    assert [tuple(row) for row in audit if str(row[1]).startswith("hold.")] == [
        ("dr_smith", "hold.place"),
        ("alice", "hold.place"),
        ("alice", "hold.release"),
        ("dr_smith", "hold.release"),
    ]
