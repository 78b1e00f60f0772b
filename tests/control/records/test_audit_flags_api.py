"""The audit log, its chain check, a recording's integrity check and the anomaly flags
over the real HTTP API of a real ``recproxy records serve``, on real recordings: the DPO
reads the log and the flags, integrity checks are maintenance's (and officers', admins',
the DPO's) and hand out no audio, everyone else is refused naming the rule, each
decision is audited, bad input is a 422 that audits nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from proxy.storage.catalog import NewFlag, SqliteCatalog

from .governance_world import World, make_world

UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    made = make_world(tmp_path_factory.mktemp("governance"))
    yield made
    assert made.service.stop() == 0


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# -- the audit log ------------------------------------------------------------------


async def test_the_dpo_pages_through_filtered_entries_and_the_reading_is_audited(
    world: World, http: aiohttp.ClientSession
) -> None:
    status, first = await world.call(http, "dee", "GET", "/api/v1/audit?limit=2")
    assert status == 200, first
    assert [e["seq"] for e in first["entries"]] == [1, 2] and first["more"] is True
    assert set(first["entries"][0]) == {
        "seq", "at", "actor", "action", "object", "reason", "detail", "prev", "sha256"
    }  # fmt: skip
    assert first["entries"][1]["prev"] == first["entries"][0]["sha256"]
    status, page = await world.call(http, "dee", "GET", "/api/v1/audit?after=2&limit=1")
    assert [e["seq"] for e in page["entries"]] == [3]
    status, mine = await world.call(
        http, "dee", "GET", "/api/v1/audit?actor=dee&action=access.allowed&limit=1000"
    )
    readings = [e for e in mine["entries"] if e["detail"]["action"] == "view_audit"]
    assert len(readings) == 3 and mine["more"] is False  # each reading, this one included
    assert readings[-1]["reason"].startswith("audit log read (")
    assert "actor=dee" in readings[-1]["reason"]
    status, about = await world.call(
        http, "dee", "GET", "/api/v1/audit?object=user:sam&since=2000-01-01&until=2999-01-01"
    )
    assert status == 200 and {e["object"] for e in about["entries"]} <= {"user:sam"}
    assert "user.add" in {e["action"] for e in about["entries"]}


@pytest.mark.parametrize("name", ["sam", "mia", "olive", "ada", "max"])
async def test_only_the_dpo_reads_the_log(
    world: World, http: aiohttp.ClientSession, name: str
) -> None:
    seq = world.audit_seq()
    status, problem = await world.call(http, name, "GET", "/api/v1/audit")
    assert (status, problem["rule"]) == (403, "audit.dpo_only"), problem
    assert [(e[0], e[1], e[3]["rule"]) for e in world.audit_after(seq)] == [
        (name, "access.refused", "audit.dpo_only")
    ]


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("since=yesterday", "since: not an ISO 8601"),
        ("until=2026-13-01", "until: not an ISO 8601"),
        ("since=2026-02-01&until=2026-01-01", "until must be after since"),
        ("limit=0", "limit must be a whole number from 1 to 1000"),
        ("limit=5000", "limit must be a whole number"),
        ("after=-1", "after must be a whole number"),
        ("actor=" + "x" * 300, "actor is longer than"),
        ("seq=1", "unknown query parameter 'seq'"),
    ],
)
async def test_bad_audit_filters_are_422_and_audit_nothing(
    world: World, http: aiohttp.ClientSession, query: str, words: str
) -> None:
    seq = world.audit_seq()
    status, problem = await world.call(http, "dee", "GET", f"/api/v1/audit?{query}")
    assert status == 422 and words in problem["detail"], problem
    assert world.audit_after(seq) == []


# -- the chain's check ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["max", "ada", "olive", "dee"])
async def test_integrity_roles_check_the_chain_and_see_no_entry(
    world: World, http: aiohttp.ClientSession, name: str
) -> None:
    status, check = await world.call(http, name, "GET", "/api/v1/audit/verify")
    assert status == 200, check
    assert set(check) == {"intact", "count", "head", "broken_at", "why"}
    assert check["intact"] is True and check["broken_at"] is None
    assert check["count"] == check["head"]["seq"] == world.audit_seq()  # its own entry too
    [(action, detail)] = world.rows(
        "SELECT action, detail FROM audit_log WHERE seq = ?", check["head"]["seq"]
    )
    assert action == "access.allowed" and '"verify_integrity"' in detail
    anchors = world.catalog_path.with_name(world.catalog_path.name + ".anchor")
    assert not anchors.exists()  # a check over HTTP reads; it does not anchor


@pytest.mark.parametrize("name", ["sam", "mia"])
async def test_staff_and_managers_do_not_check_integrity(
    world: World, http: aiohttp.ClientSession, name: str
) -> None:
    for path in ("/api/v1/audit/verify", f"/api/v1/recordings/{world.recording}/verify"):
        status, problem = await world.call(http, name, "GET", path)
        assert (status, problem["rule"]) == (403, "integrity.not_permitted"), problem


async def test_an_edited_entry_is_found_and_named(
    world: World, http: aiohttp.ClientSession
) -> None:
    with sqlite3.connect(world.catalog_path) as db:
        triggers = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'"
        ).fetchall()
        (original,) = db.execute("SELECT actor FROM audit_log WHERE seq = 2").fetchone()
        for name, _ in triggers:
            db.execute(f"DROP TRIGGER {name}")
        db.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    try:
        status, check = await world.call(http, "max", "GET", "/api/v1/audit/verify")
        assert status == 200, check
        assert (check["intact"], check["broken_at"]) == (False, 2)
        assert "edited" in check["why"]
    finally:
        with sqlite3.connect(world.catalog_path) as db:
            db.execute("UPDATE audit_log SET actor = ? WHERE seq = 2", (original,))
            for _, sql in triggers:
                db.execute(sql)
    status, check = await world.call(http, "max", "GET", "/api/v1/audit/verify")
    assert check["intact"] is True


# -- a recording's integrity check ------------------------------------------------------


async def test_maintenance_verifies_a_sound_recording_without_receiving_audio(
    world: World, http: aiohttp.ClientSession
) -> None:
    seq = world.audit_seq()
    status, report = await world.call(
        http, "max", "GET", f"/api/v1/recordings/{world.recording}/verify"
    )
    assert status == 200, report
    assert (report["ok"], report["problems"], report["audio_returned"]) == (True, [], False)
    assert [(s["index"], s["ok"]) for s in report["segments"]] == [(0, True), (1, True), (2, True)]
    assert sum(s["frames"] for s in report["segments"]) == 40_000
    assert set(report) == {"recording_id", "state", "ok", "segments", "problems", "audio_returned"}
    [(actor, action, obj, detail)] = world.audit_after(seq)
    assert (actor, action, obj) == ("max", "access.allowed", f"recording:{world.recording}")
    assert (detail["action"], detail["rule"]) == ("verify_integrity", "integrity.allowed")


async def test_an_altered_chunk_is_named_by_segment(
    world: World, http: aiohttp.ClientSession
) -> None:
    status, report = await world.call(
        http, "olive", "GET", f"/api/v1/recordings/{world.damaged}/verify"
    )
    assert status == 200, report
    assert report["ok"] is False
    assert [(s["index"], s["ok"]) for s in report["segments"]] == [(0, True), (1, False), (2, True)]
    assert report["segments"][1]["problems"] == ["its SHA-256 differs from the catalog's"]
    [problem] = report["problems"]
    assert problem.startswith("failed verification:") and "seg-000001.rec" in problem


@pytest.mark.parametrize(
    ("rid", "status"), [(UNKNOWN, 404), ("' OR 1=1 --", 404), ("..%2f..%2fetc", 404)]
)
async def test_an_unknown_recording_is_404_and_not_audited(
    world: World, http: aiohttp.ClientSession, rid: str, status: int
) -> None:
    seq = world.audit_seq()
    got, problem = await world.call(http, "max", "GET", f"/api/v1/recordings/{rid}/verify")
    assert got == status, problem
    assert world.audit_after(seq) == []


# -- anomaly flags ----------------------------------------------------------------------


async def raise_flag(world: World, user: str) -> int:
    async with SqliteCatalog(world.catalog_path) as catalog:
        flag = await catalog.flags.raise_flag(NewFlag("repeated_refusals", user, None, {"n": 6}))
    return flag.id


async def test_the_dpo_lists_and_clears_flags_with_a_reason(
    world: World, http: aiohttp.ClientSession
) -> None:
    flag_id = await raise_flag(world, "sam")
    status, listing = await world.call(http, "dee", "GET", "/api/v1/flags?open=1")
    assert status == 200, listing
    [shown] = [f for f in listing["flags"] if f["id"] == flag_id]
    assert (shown["kind"], shown["user"], shown["detail"], shown["cleared_at"]) == (
        "repeated_refusals", "sam", {"n": 6}, None,
    )  # fmt: skip
    seq = world.audit_seq()
    status, cleared = await world.call(
        http, "dee", "POST", f"/api/v1/flags/{flag_id}/clear", {"reason": "a training day"}
    )
    assert status == 200, cleared
    assert (cleared["cleared_by"], cleared["cleared_reason"]) == ("dee", "a training day")
    assert [(e[0], e[1], e[2]) for e in world.audit_after(seq)] == [
        ("dee", "access.allowed", None),
        ("dee", "flag.clear", "user:sam"),
    ]
    status, listing = await world.call(http, "dee", "GET", "/api/v1/flags?open=1")
    assert flag_id not in [f["id"] for f in listing["flags"]]
    status, listing = await world.call(http, "dee", "GET", "/api/v1/flags?limit=500")
    assert flag_id in [f["id"] for f in listing["flags"]]  # a cleared flag stays


@pytest.mark.parametrize("name", ["sam", "mia", "olive", "ada", "max"])
async def test_only_the_dpo_sees_and_clears_flags(
    world: World, http: aiohttp.ClientSession, name: str
) -> None:
    flag_id = await raise_flag(world, "mia")
    seq = world.audit_seq()
    for method, path, body in (
        ("GET", "/api/v1/flags", None),
        ("POST", f"/api/v1/flags/{flag_id}/clear", {"reason": "nothing to see"}),
    ):
        status, problem = await world.call(http, name, method, path, body)
        assert (status, problem["rule"]) == (403, "flags.dpo_only"), problem
    refusals = [e for e in world.audit_after(seq) if e[1] == "access.refused"]
    assert [(e[0], e[3]["action"]) for e in refusals] == [(name, "view_flags")] * 2
    assert world.rows("SELECT cleared_at FROM access_flags WHERE id = ?", flag_id) == [(None,)]


async def test_bad_flag_requests_are_problems_that_change_nothing(
    world: World, http: aiohttp.ClientSession
) -> None:
    flag_id = await raise_flag(world, "ada")
    cases = [
        ("POST", f"/api/v1/flags/{flag_id}/clear", {}, 422, "reason is required"),
        ("POST", f"/api/v1/flags/{flag_id}/clear", {"reason": "  "}, 422, "reason is required"),
        ("POST", f"/api/v1/flags/{flag_id}/clear", {"reason": "r" * 501}, 422, "longer than"),
        ("POST", f"/api/v1/flags/{flag_id}/clear", [1], 422, "JSON object"),
        ("POST", "/api/v1/flags/abc/clear", {"reason": "x"}, 404, "does not exist"),
        ("POST", "/api/v1/flags/1 OR 1=1/clear", {"reason": "x"}, 404, "does not exist"),
        ("GET", "/api/v1/flags?open=maybe", None, 422, "open must be 1 or 0"),
        ("GET", "/api/v1/flags?limit=0", None, 422, "limit must be a whole number"),
        ("GET", "/api/v1/flags?user=sam", None, 422, "unknown query parameter 'user'"),
    ]
    seq = world.audit_seq()
    for method, path, body, status, words in cases:
        got, problem = await world.call(http, "dee", method, path, body)
        assert (got, words in problem["detail"]) == (status, True), (path, problem)
    assert world.audit_after(seq) == []
    assert world.rows("SELECT cleared_at FROM access_flags WHERE id = ?", flag_id) == [(None,)]
    status, problem = await world.call(
        http, "dee", "POST", "/api/v1/flags/999999/clear", {"reason": "x"}
    )
    assert status == 404, problem  # decided (allowed, audited), then not found
    body = {"reason": "seen"}
    assert (await world.call(http, "dee", "POST", f"/api/v1/flags/{flag_id}/clear", body))[0] == 200
    status, problem = await world.call(http, "dee", "POST", f"/api/v1/flags/{flag_id}/clear", body)
    assert status == 409 and "already cleared" in problem["detail"], problem


async def test_the_records_service_serves_no_metrics(
    world: World, http: aiohttp.ClientSession
) -> None:
    status, problem = await world.call(http, None, "GET", "/metrics")
    assert status == 404, problem  # scraped from the call proxy (recproxy_access_flags_open)


async def test_the_openapi_document_describes_the_governance_routes(
    world: World, http: aiohttp.ClientSession
) -> None:
    status, document = await world.call(http, None, "GET", "/api/v1/openapi.json")
    assert status == 200
    paths = document["paths"]
    for path, method, statuses in (
        ("/api/v1/audit", "get", {"200", "401", "403", "422"}),
        ("/api/v1/audit/verify", "get", {"200", "401", "403", "500"}),
        ("/api/v1/recordings/{recording_id}/verify", "get", {"200", "401", "403", "404", "409"}),
        ("/api/v1/flags", "get", {"200", "401", "403", "422"}),
        ("/api/v1/flags/{flag_id}/clear", "post", {"200", "401", "403", "404", "409", "422"}),
    ):
        assert set(paths[path][method]["responses"]) >= statuses, path
    names = {p["name"] for p in paths["/api/v1/audit"]["get"]["parameters"]}
    assert names == {"since", "until", "actor", "action", "object", "after", "limit"}
