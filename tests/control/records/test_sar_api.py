"""Subject access cases over the records service's real HTTP API (P8, P17-P19), on real
recordings (AES-GCM segments by the RecordingWriter, catalogued in SQLite), a real key
behind a passphrase and a real listener: a records officer opens a case and its search
attaches the caller's calls (held while it is open), the DPO alone decides, the case is
closed; staff are refused by rule; bad input is one line that changes nothing, not even
the audit chain; and the export jobs (``sar_exports``)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.control.records.auth import COOKIE, CSRF_HEADER
from proxy.records.bundle import TrustedKey, verify_bundle
from proxy.storage import crypto

from .test_bulk import PASSPHRASE, PASSWORD, World, running_world, write_recordings

USERS = {"rita": "records_officer", "rory": "records_officer", "dora": "dpo", "sam": "staff",
         "meg": "manager"}  # fmt: skip
CALLER = "+441234567890"  # the caller of every call catalogued by ``catalogue``
WINDOW = {"from": "2023-11-01T00:00:00Z", "to": "2023-12-01T00:00:00Z"}
NO_SIGNING_KEY = "no signing key"
OPEN = {"requester": "Pat Caller", "identity_check": "passport seen", "number": "01234 567890",
        **WINDOW}  # fmt: skip


@pytest.fixture
async def world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> AsyncIterator[World]:
    """Two complete recordings of calls from ``CALLER`` and one whose retention ran
    out; the signing key beside the recording key, both behind the passphrase (none
    when the test's parameter is ``NO_SIGNING_KEY``; another parameter is more config).
    When the service has stopped, no export is left on its disk."""
    monkeypatch.setenv("RECPROXY_KEY_PASSPHRASE", PASSPHRASE)
    more = getattr(request, "param", "")
    ids = write_recordings(tmp_path, 3)
    if more != NO_SIGNING_KEY:
        crypto.save_private_key(
            tmp_path / "signing.key", crypto.generate_signing_key(), PASSPHRASE.encode()
        )
    config = f'[export]\nsigning_key = "{tmp_path}/signing.key"\n'
    async with running_world(tmp_path, ids, USERS, config + more.replace(NO_SIGNING_KEY, "")) as w:
        yield w
    assert files_in(tmp_path / "exports") == []  # running jobs cancelled too


def files_in(folder: Path) -> list[Path]:
    """The files under ``folder`` (its node's folder stays: issue 20)."""
    return [path for path in folder.rglob("*") if not path.is_dir()]


async def opened(world: World, **more: Any) -> dict[str, Any]:
    status, case = await world.call("rita", "POST", "sar-cases", {**OPEN, **more})
    assert status == 201, case
    return case


def audit_count(world: World) -> int:
    return world.count("audit_log")


def sar_tables(world: World) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(world.catalog) as conn:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
            for table in ("sar_cases", "sar_case_recordings", "sar_exports", "holds")
        }


async def test_a_case_is_opened_decided_by_the_dpo_and_closed_over_http(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.tokens['rita']}"}
    async with world.http.post(f"{world.url}/api/v1/sar-cases", json=OPEN,
                               headers=headers) as response:  # fmt: skip
        assert response.status == 201, await response.text()
        case = await response.json()
        assert response.headers["Location"] == f"/api/v1/sar-cases/{case['id']}"
    assert case["state"] == "open" and case["requester"] == "Pat Caller"
    assert case["numbers"] == ["01234 567890"] and case["opened_by"] == "rita"
    assert case["deadline"].startswith("due ") and "days left" in case["deadline"]
    attached = {each["recording_id"]: each for each in case["recordings"]}
    assert set(attached) == {*world.ids, world.deleted}  # the number in another form
    for rid in world.ids:
        assert attached[rid]["call"]["caller"] == CALLER and attached[rid]["hold_id"]
        assert attached[rid]["release"] is None
    assert attached[world.deleted]["hold_id"] is None  # nothing left to hold

    status, listed = await world.call("rita", "GET", "sar-cases")
    assert status == 200 and [c["id"] for c in listed["cases"]] == [case["id"]]
    status, listed = await world.call("dora", "GET", "sar-cases", state="closed")
    assert status == 200 and listed["cases"] == []

    path = f"sar-cases/{case['id']}"
    decision = {"recording_id": world.ids[0], "release": "caller", "reason": "the caller's own"}
    status, refused = await world.call("rita", "POST", f"{path}/decisions", decision)
    assert (status, refused["rule"]) == (403, "sar.decide_dpo_only"), refused
    status, decided = await world.call("dora", "POST", f"{path}/decisions", decision)
    assert status == 200, decided
    refuse = {"recording_id": world.ids[1], "release": "refuse", "reason": "their privacy"}
    status, decided = await world.call("dora", "POST", f"{path}/decisions", refuse)
    assert status == 200, decided
    status, conflict = await world.call("dora", "POST", f"{path}/decisions", {
        "recording_id": world.deleted, "release": "both", "reason": "asked for"})  # fmt: skip
    assert status == 409 and "no audio" in conflict["detail"], conflict

    status, shown = await world.call("rita", "GET", path)
    assert status == 200, shown
    releases = {each["recording_id"]: each["release"] for each in shown["recordings"]}
    assert releases == {world.ids[0]: "caller", world.ids[1]: "refuse", world.deleted: None}
    assert all(each["call"] is not None for each in shown["recordings"])
    by = {each["recording_id"]: each["decided_by"] for each in shown["recordings"]}
    assert by[world.ids[0]] == "dora"

    status, closed = await world.call("rita", "POST", f"{path}/close", {"reason": "answered"})
    assert status == 200 and closed["state"] == "closed" and closed["deadline"] == "closed"
    with sqlite3.connect(world.catalog) as conn:
        active = conn.execute(
            "SELECT COUNT(*) FROM holds WHERE kind = 'subject_access' AND released_at IS NULL"
        ).fetchone()[0]
    assert active == 0
    status, conflict = await world.call("dora", "POST", f"{path}/decisions", decision)
    assert status == 409 and "closed" in conflict["detail"]
    status, conflict = await world.call("rita", "POST", f"{path}/close", {"reason": "again"})
    assert status == 409
    actions = [entry[1] for entry in world.audit("sar.open", "sar.decide", "sar.close")]
    assert actions == ["sar.open", "sar.decide", "sar.decide", "sar.close"]


@pytest.mark.parametrize("who", ["sam", "meg"])
async def test_staff_and_managers_are_refused_by_rule_and_audited(world: World, who: str) -> None:
    case = await opened(world)
    before = sar_tables(world)
    for method, path, body in [
        ("POST", "sar-cases", OPEN),
        ("GET", "sar-cases", None),
        ("GET", f"sar-cases/{case['id']}", None),
        ("POST", f"sar-cases/{case['id']}/close", {"reason": "done"}),
        ("POST", f"sar-cases/{case['id']}/decisions",
         {"recording_id": world.ids[0], "release": "both", "reason": "r"}),
    ]:  # fmt: skip
        status, refused = await world.call(who, method, path, body)
        assert status == 403, (path, refused)
        assert refused["rule"] in ("sar.not_officer", "sar.decide_dpo_only"), refused
    assert sar_tables(world) == before
    refusals = [e for e in world.audit("access.refused") if e[0] == who]
    assert len(refusals) == 5


BAD_OPENS: list[tuple[dict[str, Any], str]] = [
    ({**OPEN, "requester": ""}, "requester"),
    ({k: v for k, v in OPEN.items() if k != "identity_check"}, "identity_check"),
    ({**OPEN, "number": 1234}, "number"),
    ({**OPEN, "number": []}, "number"),
    ({**OPEN, "number": ["1"] * 11}, "at most 10"),
    ({**OPEN, "from": "yesterday"}, "from"),
    ({**OPEN, "to": "2023-10-01T00:00:00Z"}, "after from"),
    ({**OPEN, "received": "2999-01-01T00:00:00Z"}, "future"),
    ({**OPEN, "operater": "alice"}, "unknown field 'operater'"),
]


async def test_bad_input_is_one_line_and_changes_nothing(world: World) -> None:
    case = await opened(world)
    path = f"sar-cases/{case['id']}"
    before, audited = sar_tables(world), audit_count(world)
    for body, words in BAD_OPENS:
        status, problem = await world.call("rita", "POST", "sar-cases", body)
        assert (status, problem["status"]) == (422, 422), (body, problem)
        assert words in problem["detail"] and "\n" not in problem["detail"], (body, problem)
    for body, status_wanted, words in [
        ({"recording_id": world.ids[0], "release": "all", "reason": "r"}, 422, "release"),
        ({"recording_id": world.ids[0], "release": "both"}, 422, "reason"),
        ({"release": "both", "reason": "r"}, 422, "recording_id"),
        ({"recording_id": "not-in-case", "release": "both", "reason": "r"}, 404, "not in case"),
    ]:
        status, problem = await world.call("dora", "POST", f"{path}/decisions", body)
        assert status == status_wanted and words in problem["detail"], (body, problem)
    for method, where, body, status_wanted in [
        ("GET", "sar-cases/SAR-1999-0001", None, 404),
        ("POST", "sar-cases/SAR-1999-0001/close", {"reason": "r"}, 404),
        ("POST", "sar-cases/SAR-1999-0001/decisions",
         {"recording_id": world.ids[0], "release": "both", "reason": "r"}, 404),
        ("POST", f"{path}/close", {}, 422),
        ("POST", f"{path}/close", {"reason": "r", "why": "x"}, 422),
    ]:  # fmt: skip
        status, problem = await world.call("dora", method, where, body)
        assert status == status_wanted, (where, body, problem)
    for params in ({"state": "lost"}, {"sort": "id"}):
        status, problem = await world.call("rita", "GET", "sar-cases", **params)
        assert status == 422, problem
    headers = {"Authorization": f"Bearer {world.tokens['rita']}",
               "Content-Type": "application/json"}  # fmt: skip
    async with world.http.post(f"{world.url}/api/v1/sar-cases", data=b"[1, 2",
                               headers=headers) as response:  # fmt: skip
        assert response.status == 422
    assert sar_tables(world) == before
    assert audit_count(world) == audited


async def test_a_cookie_session_needs_its_csrf_token(world: World) -> None:
    login = {"username": "rita", "password": PASSWORD}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as browser:
        async with browser.post(f"{world.url}/api/v1/login", json=login) as response:
            assert response.status == 200, await response.text()
            session = await response.json()
        cookie = {"Cookie": f"{COOKIE}={session['token']}"}
        async with browser.post(f"{world.url}/api/v1/sar-cases", json=OPEN,
                                headers=cookie) as response:  # fmt: skip
            assert response.status == 403, await response.text()
        assert world.count("sar_cases") == 0
        with_token = cookie | {CSRF_HEADER: session["csrf_token"]}
        async with browser.post(f"{world.url}/api/v1/sar-cases", json=OPEN,
                                headers=with_token) as response:  # fmt: skip
            assert response.status == 201, await response.text()


async def test_the_openapi_document_describes_the_case_endpoints(world: World) -> None:
    async with world.http.get(f"{world.url}/api/v1/openapi.json") as response:
        paths = (await response.json())["paths"]
    assert set(paths["/api/v1/sar-cases"]) == {"get", "post"}
    assert set(paths["/api/v1/sar-cases/{id}"]) == {"get"}
    for action in ("decisions", "close"):
        operation = paths[f"/api/v1/sar-cases/{{id}}/{action}"]["post"]
        assert {"403", "404", "409", "422"} <= set(operation["responses"])


# --- export jobs ---------------------------------------------------------------------------


async def released_case(world: World) -> str:
    """A case releasing the first call caller-only and refusing the others."""
    case = await opened(world)
    path = f"sar-cases/{case['id']}/decisions"
    for rid, release in [(world.ids[0], "caller"), (world.ids[1], "refuse"),
                         (world.deleted, "refuse")]:  # fmt: skip
        status, decided = await world.call("dora", "POST", path, {
            "recording_id": rid, "release": release, "reason": "balanced"})  # fmt: skip
        assert status == 200, decided
    return str(case["id"])


async def finished(world: World, who: str, location: str) -> dict[str, Any]:
    """The job at ``location`` once it is no longer running (60 s at most)."""
    seen = set()
    for _ in range(600):
        status, job = await world.call(who, "GET", location.removeprefix("/api/v1/"))
        assert status == 200, job
        seen.add(job["stage"])
        if job["state"] != "running":
            job["seen"] = seen
            return dict(job)
        await asyncio.sleep(0.1)
    raise AssertionError(f"export job {location} still running after 60 s")


async def test_an_export_job_runs_to_done_and_its_zip_verifies(world: World) -> None:
    case_id = await released_case(world)
    headers = {"Authorization": f"Bearer {world.tokens['rita']}"}
    # no body at all: every field is optional
    async with world.http.post(f"{world.url}/api/v1/sar-cases/{case_id}/exports",
                               headers=headers) as response:  # fmt: skip
        assert response.status == 202, await response.text()
        started = await response.json()
        location = response.headers["Location"]
    assert location == f"/api/v1/sar-cases/{case_id}/exports/{started['id']}"
    assert started["state"] in ("running", "done") and started["total"] == 1
    assert started["transcripts"] is True and started["started_by"] == "rita"
    job = await finished(world, "rita", location)
    assert job["state"] == "done" and job["error"] is None, job
    assert (job["stage"], job["done"], job["total"]) == ("done", 1, 1)
    names = {each["name"] for each in job["files"]}
    wanted = {"recording.wav", "recording.mp3", "transcript.txt", "transcript.vtt", "README.txt"}
    assert {n.rsplit("/", 1)[-1] for n in names} >= wanted
    assert len(job["manifest_sha256"]) == 64

    job_path = location.removeprefix("/api/v1/")
    for who in ("rory", "sam"):  # another officer, staff: no such job for them
        status, problem = await world.call(who, "GET", job_path)
        assert status == 404, problem
        status, problem = await world.call(who, "GET", f"{job_path}/bundle.zip")
        assert status == 404, problem
    status, seen_by_dpo = await world.call("dora", "GET", job_path)
    assert status == 200 and seen_by_dpo["manifest_sha256"] == job["manifest_sha256"]

    status, data = await world.call("rita", "GET", f"{job_path}/bundle.zip")
    assert status == 200 and isinstance(data, bytes)
    zipped = world.folder / f"{case_id}.zip"
    zipped.write_bytes(data)
    signing = crypto.load_signing_key(world.folder / "signing.key", PASSPHRASE.encode())
    verdict = verify_bundle(zipped, TrustedKey.of(signing.public_key()))
    assert verdict.intact and verdict.pinned, verdict.fault
    assert verdict.signing_key_sha256 == job["signing_key_sha256"]
    downloads = world.audit("sar.download")
    assert [(actor, obj) for actor, _, obj, _ in downloads] == [("rita", f"sar:{case_id}")]
    assert downloads[0][3]["job"] == job["id"]
    status, shown = await world.call("rita", "GET", f"sar-cases/{case_id}")
    assert shown["state"] == "answered"
    assert [e["manifest_sha256"] for e in shown["exports"]] == [job["manifest_sha256"]]


async def test_exports_are_refused_at_the_post_and_leave_no_job(world: World) -> None:
    case = await opened(world)
    exports = world.folder / "exports"
    for who, case_id, body, status_wanted in [
        ("sam", case["id"], {}, 403),
        ("rita", "SAR-1999-0001", {}, 404),
        ("rita", "..", {}, 404),
        ("rita", case["id"], {}, 422),  # nothing released yet
        ("rita", case["id"], {"transcripts": "yes"}, 422),
        ("rita", case["id"], {"zip": True}, 422),
    ]:
        status, problem = await world.call(who, "POST", f"sar-cases/{case_id}/exports", body)
        assert status == status_wanted, (who, case_id, body, problem)
        assert "\n" not in problem["detail"]
    case_id = await released_case(world)
    status, _ = await world.call("rita", "POST", f"sar-cases/{case_id}/close", {"reason": "r"})
    assert status == 200
    status, problem = await world.call("rita", "POST", f"sar-cases/{case_id}/exports", {})
    assert status == 409 and "closed" in problem["detail"], problem
    assert files_in(exports) == []
    assert world.count("sar_exports") == 0
    status, problem = await world.call("rita", "GET", f"sar-cases/{case_id}/exports/abc")
    assert status == 404


async def test_one_export_runs_at_a_time_and_a_second_is_429(world: World) -> None:
    case_id = await released_case(world)
    path = f"sar-cases/{case_id}/exports"
    status, first = await world.call("rita", "POST", path, {"transcripts": True})
    assert status == 202, first
    status, busy = await world.call("dora", "POST", path, {"transcripts": False})
    assert status == 429 and "already running" in busy["detail"], busy
    status, running = await world.call("rita", "GET", f"{path}/{first['id']}")
    if running["state"] == "running":  # (it almost always is: it has a call to transcribe)
        status, problem = await world.call("rita", "GET", f"{path}/{first['id']}/bundle.zip")
        assert status == 409 and "running" in problem["detail"], problem
    job = await finished(world, "rita", f"/api/v1/{path}/{first['id']}")
    assert job["state"] == "done", job
    status, second = await world.call("dora", "POST", path, {"transcripts": False})
    assert status == 202, second
    job = await finished(world, "dora", f"/api/v1/{path}/{second['id']}")
    names = {each["name"].rsplit("/", 1)[-1] for each in job["files"]}
    assert "transcript.txt" not in names and "recording.wav" in names


async def test_the_openapi_document_describes_the_export_endpoints(world: World) -> None:
    async with world.http.get(f"{world.url}/api/v1/openapi.json") as response:
        paths = (await response.json())["paths"]
    start = paths["/api/v1/sar-cases/{id}/exports"]["post"]
    assert {"202", "429", "503"} <= set(start["responses"])
    assert set(paths["/api/v1/sar-cases/{id}/exports/{job}"]) == {"get"}
    download = paths["/api/v1/sar-cases/{id}/exports/{job}/bundle.zip"]["get"]
    assert "application/zip" in download["responses"]["200"]["content"]


@pytest.mark.parametrize(
    ("world", "words"),
    [
        (NO_SIGNING_KEY, "recproxy keygen --signing"),
        ('[transcripts]\nmodel_path = "/nonexistent/model"', "--no-transcripts"),
    ],
    indirect=["world"],
)
async def test_an_export_this_host_cannot_make_is_503_naming_what_to_do(
    world: World, words: str
) -> None:
    case_id = await released_case(world)
    status, problem = await world.call("rita", "POST", f"sar-cases/{case_id}/exports", {})
    assert status == 503 and words in problem["detail"], problem
    assert "\n" not in problem["detail"]
    assert world.count("sar_exports") == 0
    assert files_in(world.folder / "exports") == []
    status, started = await world.call(  # the audio alone still exports, with a model or not
        "rita", "POST", f"sar-cases/{case_id}/exports", {"transcripts": False}
    )
    if words == "--no-transcripts":
        assert status == 202, started
        job = await finished(world, "rita", f"/api/v1/sar-cases/{case_id}/exports/{started['id']}")
        assert job["state"] == "done", job
    else:
        assert status == 503
