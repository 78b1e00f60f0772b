"""Bulk export over the records service's real HTTP API (P11, P21), on real recordings
(AES-GCM segments written by the RecordingWriter, catalogued in SQLite), a real key
behind a passphrase, and ``recproxy export`` for the single exports to compare with.

Who may ask (records officers, the DPO) and approve (a DPO, never the requester), the ZIP
(one WAV per recording equal to the custodian's export of it, and a manifest whose hashes
match), a deleted recording reported not fatal, an expired approval refused, every
decision audited, and bad input refused with nothing changed."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sqlite3
import subprocess
import sys
import uuid
import zipfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from argon2 import PasswordHasher

from proxy.config import AccountsSettings, load_config
from proxy.media import g711
from proxy.media.g711 import wire_samples
from proxy.recording_state import RecordingState
from proxy.records.accounts import Accounts
from proxy.records_service import open_records_service
from proxy.storage.catalog import SqliteCatalog
from proxy.storage.crypto import generate_keypair, save_private_key, save_public_key
from proxy.storage.store import LocalDiskStore
from proxy.storage.writer import RecordingWriter
from tests.records.playback_world import START_MS, catalogue
from tests.storage.conftest import dialogue_call

PASSPHRASE = "bulk test passphrase"
PASSWORD = "a long enough password"
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # real argon2id, fast
SECONDS = 2.5
USERS = {
    "rita": "records_officer",
    "rory": "records_officer",
    "dora": "dpo",
    "dan": "dpo",
    "sam": "staff",
    "meg": "manager",
}
ASK = {"purpose": "legal", "reason": "disclosure to the court, case 9"}


@dataclass
class World:
    folder: Path
    config: Path
    catalog: Path
    url: str
    http: aiohttp.ClientSession
    ids: list[str]  # complete recordings
    deleted: str
    tokens: dict[str, str]

    async def call(
        self, who: str, method: str, path: str, body: Any = None, **params: str
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        async with self.http.request(
            method, f"{self.url}/api/v1/{path}", json=body, params=params, headers=headers
        ) as response:
            data = await response.read()
            if response.content_type in ("application/json", "application/problem+json"):
                return response.status, json.loads(data)
            return response.status, data

    def audit(self, *actions: str) -> list[tuple[str, str, str | None, dict[str, Any]]]:
        """(actor, action, object, detail) of the audit entries of ``actions``."""
        with sqlite3.connect(self.catalog) as conn:
            found = conn.execute(
                "SELECT actor, action, object, detail FROM audit_log ORDER BY seq"
            ).fetchall()
        return [(a, b, c, json.loads(d)) for a, b, c, d in found if b in actions]

    def count(self, table: str) -> int:
        with sqlite3.connect(self.catalog) as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def write_recordings(folder: Path, count: int) -> list[str]:
    """``count`` µ-law recordings of ``SECONDS`` under one key pair in ``folder``."""
    private, public = generate_keypair()
    save_private_key(folder / "recording.key", private, PASSPHRASE.encode())
    save_public_key(folder / "recording.pub", public)
    codes = np.frombuffer(g711.encode(dialogue_call(SECONDS), "PCMU"), dtype=np.uint8)
    wire = wire_samples(codes.reshape(-1, 2), "PCMU")
    ids = [str(uuid.uuid4()) for _ in range(count)]
    writer = RecordingWriter(LocalDiskStore(fsync="none"), chunk_seconds=1.0)
    try:
        for rid in ids:
            writer.open(
                uuid.UUID(rid), folder / "recordings", public, segment_seconds=2,
                start_time_ms=START_MS,
            )  # fmt: skip
            for start in range(0, len(wire), 160):
                assert writer.submit(uuid.UUID(rid), wire[start : start + 160],
                                     start + 160 >= len(wire))  # fmt: skip
    finally:
        writer.stop(timeout=30)
    return ids


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    monkeypatch.setenv("RECPROXY_KEY_PASSPHRASE", PASSPHRASE)
    ids = write_recordings(tmp_path, 3)
    async with running_world(tmp_path, ids, USERS, "[access]\nbulk_max_recordings = 3\n") as w:
        yield w


def write_config(folder: Path, more_config: str = "") -> Path:
    """A records host's configuration for ``folder``'s recordings and keys (written by
    :func:`write_recordings`), listening on a free port, and ``more_config``."""
    config = folder / "recproxy.toml"
    config.write_text(
        f'[catalog]\npath = "{folder}/catalog.sqlite3"\n'
        f'[recording]\ndir = "{folder}/recordings"\npublic_key = "{folder}/recording.pub"\n'
        f'private_key = "{folder}/recording.key"\n'
        '[records]\nhttp_listen = "127.0.0.1:0"\n'
        f"{more_config}"
    )
    return config


@contextlib.asynccontextmanager
async def running_world(
    folder: Path, ids: list[str], users: Mapping[str, str], more_config: str = ""
) -> AsyncIterator[World]:
    """The records service on ``folder``'s recordings ``ids`` (written by
    :func:`write_recordings`; the last one's retention has run out), with ``users``
    (name → role) each signed in, and ``more_config`` after the configuration's own."""
    config = write_config(folder, more_config)
    async with SqliteCatalog(folder / "catalog.sqlite3") as catalog:
        for rid in ids:
            await catalogue(catalog, rid)
        accounts = Accounts(catalog.users, AccountsSettings(), hasher=CHEAP)
        for name, role in users.items():
            await accounts.add_user(name, role_name=role, password=PASSWORD, by="test")
    with sqlite3.connect(folder / "catalog.sqlite3") as conn:  # its retention ran out
        conn.execute(
            "UPDATE recordings SET state = ?, deleted_at = ?, deleted_reason = 'retention'"
            " WHERE id = ?",
            (RecordingState.DELETED.value, START_MS + 86_400_000, ids[-1]),
        )
    async with (
        open_records_service(load_config(config)) as service,
        aiohttp.ClientSession() as http,
    ):
        tokens = {}
        for name in users:
            login = {"username": name, "password": PASSWORD, "kind": "bearer"}
            async with http.post(f"{service.url}/api/v1/login", json=login) as response:
                assert response.status == 200, await response.text()
                tokens[name] = (await response.json())["token"]
        yield World(folder, config, folder / "catalog.sqlite3", service.url, http,
                    ids[:-1], ids[-1], tokens)  # fmt: skip


async def asked(world: World, who: str = "rita") -> dict[str, Any]:
    status, made = await world.call(
        who, "POST", "bulk-requests", {"recording_ids": [world.ids[0], world.deleted,
                                                         world.ids[1]], **ASK}
    )  # fmt: skip
    assert status == 201, made
    return made


async def approved(world: World, days: int = 1) -> dict[str, Any]:
    made = await asked(world)
    decision = {"decision": "approve", "reason": "court order seen", "days": days}
    status, decided = await world.call("dora", "POST", f"bulk-requests/{made['id']}/decision",
                                       decision)  # fmt: skip
    assert status == 200, decided
    return decided


def custodian_export(world: World, recording_id: str) -> bytes:
    """The recording as ``recproxy export`` writes it: the single export."""
    out = world.folder / f"{recording_id}.wav"
    done = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "export", recording_id, "--format", "wav",
         "--out", str(out), "--reason", "compare", "--config", str(world.config)],
        capture_output=True, text=True, timeout=60, cwd=world.folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out.read_bytes()


@pytest.mark.parametrize("who", ["sam", "meg"])
async def test_staff_and_managers_may_not_ask_by_rule_and_are_audited(
    world: World, who: str
) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    for ids in (world.ids, [world.ids[0], unknown]):  # nor learn which recordings exist
        status, body = await world.call(who, "POST", "bulk-requests", {"recording_ids": ids, **ASK})
        assert (status, body["rule"]) == (403, "bulk.not_permitted")
    assert world.count("bulk_requests") == 0
    refusals = [(a, d["action"], d["rule"]) for a, _, _, d in world.audit("access.refused")]
    assert refusals == [(who, "request_bulk", "bulk.not_permitted")] * 2


async def test_an_officer_asks_and_only_another_dpo_approves(world: World) -> None:
    made = await asked(world)
    assert made["state"] == "pending" and made["requester"] == "rita"
    assert made["recording_ids"] == [world.ids[0], world.deleted, world.ids[1]]
    path = f"bulk-requests/{made['id']}/decision"
    decision = {"decision": "approve", "reason": "fine"}
    for who in ("rita", "rory"):  # the requester, another records officer: not DPOs
        status, body = await world.call(who, "POST", path, decision)
        assert (status, body["rule"]) == (403, "bulk.approve_dpo_only")
    status, body = await world.call("rita", "GET", f"bulk-requests/{made['id']}/export")
    assert (status, body["rule"]) == (403, "bulk.no_approval")  # not approved yet
    before = datetime.now(UTC)
    status, decided = await world.call("dora", "POST", path, {**decision, "days": 2})
    assert status == 200 and decided["state"] == "approved" and decided["decided_by"] == "dora"
    expires = datetime.fromisoformat(decided["expires_at"].replace("Z", "+00:00"))
    assert before + timedelta(days=2) - timedelta(seconds=1) <= expires
    assert expires <= datetime.now(UTC) + timedelta(days=2)
    status, body = await world.call("dan", "POST", path, decision)
    assert status == 409  # decided once
    listed = {who: (await world.call(who, "GET", "bulk-requests"))[1]["bulk_requests"]
              for who in ("rita", "rory", "dan")}  # fmt: skip
    assert [r["id"] for r in listed["rita"]] == [made["id"]]  # the requester's own
    assert listed["rory"] == []  # another officer's: not theirs, not to decide
    assert [r["state"] for r in listed["dan"]] == ["approved"]  # a DPO sees all
    status, body = await world.call("dan", "GET", "bulk-requests", state="pending")
    assert (status, body) == (200, {"bulk_requests": []})
    own = await asked(world, "dan")  # a DPO may ask too, but not approve their own
    status, body = await world.call("dan", "POST", f"bulk-requests/{own['id']}/decision",
                                    decision)  # fmt: skip
    assert (status, body["rule"]) == (403, "approve.own_request")
    decisions = [(a, d["action"], d["rule"]) for a, _, _, d in world.audit(
        "access.allowed", "access.refused")]  # fmt: skip
    assert decisions == [
        ("rita", "request_bulk", "bulk.request_allowed"),
        ("rita", "approve_bulk", "bulk.approve_dpo_only"),
        ("rory", "approve_bulk", "bulk.approve_dpo_only"),
        ("rita", "bulk_export", "bulk.no_approval"),
        ("dora", "approve_bulk", "bulk.approve_allowed"),
        ("dan", "approve_bulk", "bulk.approve_allowed"),  # allowed, then 409: decided
        ("dan", "request_bulk", "bulk.request_allowed"),
        ("dan", "approve_bulk", "approve.own_request"),
    ]
    changes = [(a, b, c) for a, b, c, _ in world.audit("bulk.request", "bulk.approve")]
    assert changes == [
        ("rita", "bulk.request", f"bulk:{made['id']}"),
        ("dora", "bulk.approve", f"bulk:{made['id']}"),
        ("dan", "bulk.request", f"bulk:{own['id']}"),
    ]


async def test_the_export_is_a_zip_of_single_exports_with_a_manifest_of_their_hashes(
    world: World,
) -> None:
    made = await approved(world)
    status, body = await world.call("dora", "GET", f"bulk-requests/{made['id']}/export")
    assert (status, body["rule"]) == (403, "bulk.no_approval")  # the requester's alone
    status, data = await world.call("rita", "GET", f"bulk-requests/{made['id']}/export")
    assert status == 200, data
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    (world.folder / "bulk.zip").write_bytes(data)  # and an independent reader takes it
    tested = subprocess.run(["unzip", "-tq", str(world.folder / "bulk.zip")],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert tested.returncode == 0 and "No errors" in tested.stdout, tested
    names = [f"{world.ids[0]}.wav", f"{world.ids[1]}.wav", "manifest.json"]
    assert archive.namelist() == names
    manifest = json.loads(archive.read("manifest.json"))
    for rid, name in zip(world.ids, names, strict=False):
        wav = archive.read(name)
        assert wav == custodian_export(world, rid)
        [row] = [f for f in manifest["files"] if f["recording_id"] == rid]
        assert (row["file"], row["bytes"]) == (name, len(wav))
        assert row["sha256"] == hashlib.sha256(wav).hexdigest()
    assert manifest["refused"] == [
        {"recording_id": world.deleted, "rule": "recording.deleted",
         "detail": "the recording was deleted; no audio is left"}
    ]  # fmt: skip
    assert manifest["recording_ids"] == made["recording_ids"]
    assert (manifest["exported_by"], manifest["approved_by"]) == ("rita", "dora")
    assert (manifest["purpose"], manifest["reason"]) == (ASK["purpose"], ASK["reason"])
    assert manifest["bulk_request"] == made["id"] and manifest["format"] == "wav"
    decided = world.audit("access.allowed", "access.refused")
    rows = [
        (a, o, d["action"], d["rule"]) for a, _, o, d in decided if d["action"] == "bulk_export"
    ]
    assert rows == [
        ("dora", None, "bulk_export", "bulk.no_approval"),
        ("rita", None, "bulk_export", "bulk.approved"),  # the request as a whole
        ("rita", f"recording:{world.ids[0]}", "bulk_export", "bulk.approved"),
        ("rita", f"recording:{world.deleted}", "bulk_export", "recording.deleted"),
        ("rita", f"recording:{world.ids[1]}", "bulk_export", "bulk.approved"),
    ]
    [(actor, _, _, detail)] = world.audit("bulk.export")
    assert actor == "rita" and detail["request"] == made["id"]
    assert detail["files"] == [
        {"recording_id": f["recording_id"], "sha256": f["sha256"]} for f in manifest["files"]
    ]
    assert detail["manifest_sha256"] == hashlib.sha256(archive.read("manifest.json")).hexdigest()


async def test_an_expired_approval_is_refused(world: World) -> None:
    made = await approved(world)
    with sqlite3.connect(world.catalog) as conn:  # a day later
        conn.execute("UPDATE bulk_requests SET expires_at = expires_at - 86400001")
    status, body = await world.call("rita", "GET", f"bulk-requests/{made['id']}/export")
    assert (status, body["rule"]) == (403, "bulk.no_approval")
    assert "expired" in body["detail"]
    assert world.audit("bulk.export") == []


async def test_a_refused_request_exports_nothing(world: World) -> None:
    made = await asked(world)
    path = f"bulk-requests/{made['id']}"
    status, body = await world.call("dan", "POST", f"{path}/decision",
                                    {"decision": "refuse", "reason": "too broad"})  # fmt: skip
    assert (status, body["state"], body["expires_at"]) == (200, "refused", None)
    status, body = await world.call("rita", "GET", f"{path}/export")
    assert (status, body["rule"]) == (403, "bulk.no_approval")
    status, body = await world.call("rita", "POST", f"{path}/withdraw")
    assert status == 409


async def test_the_requester_withdraws_a_pending_request(world: World) -> None:
    made = await asked(world)
    path = f"bulk-requests/{made['id']}/withdraw"
    status, body = await world.call("rory", "POST", path)
    assert status == 404  # none of theirs
    status, body = await world.call("rita", "POST", path)
    assert (status, body["state"]) == (200, "withdrawn")
    assert [a for a, *_ in world.audit("bulk.withdraw")] == ["rita"]


BAD_ASKS: list[tuple[dict[str, Any], int, str]] = [
    ({"recording_ids": [], **ASK}, 422, "one or more"),
    ({"recording_ids": "all", **ASK}, 422, "a list"),
    ({"recording_ids": [1, 2], **ASK}, 422, "recording id"),
    ({"purpose": "legal", "reason": "r"}, 422, "a list"),
    ({"recording_ids": ["x", "y", "z", "w"], **ASK}, 422, "at most 3"),
    ({"recording_ids": ["SAME", "SAME"], **ASK}, 422, "more than once"),
    ({"recording_ids": ["00000000-0000-4000-8000-000000000000"], **ASK}, 404, "does not exist"),
    ({"recording_ids": ["../../etc/passwd"], **ASK}, 404, "does not exist"),
    ({"recording_ids": "IDS", "purpose": "browsing", "reason": "r"}, 422, "not one of"),
    ({"recording_ids": "IDS", "purpose": 7, "reason": "r"}, 422, "purpose must be text"),
    ({"recording_ids": "IDS", "purpose": "legal", "reason": "  "}, 422, "a reason"),
    ({"recording_ids": "IDS", "purpose": "legal"}, 422, "reason must be text"),
]


async def test_bad_input_is_refused_in_one_line_and_changes_nothing(world: World) -> None:
    audited = len(world.audit("access.allowed", "access.refused"))
    for body, status, words in BAD_ASKS:
        if body.get("recording_ids") == "IDS":
            body = {**body, "recording_ids": world.ids}
        got, problem = await world.call("rita", "POST", "bulk-requests", body)
        assert (got, problem["status"]) == (status, status), (body, problem)
        assert words in problem["detail"] and "\n" not in problem["detail"], (body, problem)
    made = await asked(world)
    path = f"bulk-requests/{made['id']}"
    for decision, words in [
        ({"decision": "yes", "reason": "r"}, "approve or refuse"),
        ({"decision": "approve"}, "reason must be text"),
        ({"decision": "approve", "reason": "r", "days": 0}, "days"),
        ({"decision": "approve", "reason": "r", "days": 8}, "days"),
        ({"decision": "refuse", "reason": "r", "days": 1}, "no days"),
    ]:
        got, problem = await world.call("dora", "POST", f"{path}/decision", decision)
        assert (got, words in problem["detail"]) == (422, True), (decision, problem)
    for path, params, status in [
        ("bulk-requests", {"state": "lost"}, 422),
        ("bulk-requests", {"sort": "id"}, 422),
        (f"bulk-requests/{made['id']}/export", {"format": "flac"}, 422),
        ("bulk-requests/no-such-request/export", {}, 404),
    ]:
        got, problem = await world.call("rita", "GET", path, **params)
        assert (got, problem["status"]) == (status, status), (path, problem)
    got, problem = await world.call("dora", "POST", "bulk-requests/nope/decision",
                                    {"decision": "approve", "reason": "r"})  # fmt: skip
    assert got == 404
    assert world.count("bulk_requests") == 1 and world.count("bulk_request_recordings") == 3
    assert len(world.audit("access.allowed", "access.refused")) == audited + 1  # the ask
    assert [e[1] for e in world.audit("bulk.request", "bulk.approve", "bulk.refuse")] == [
        "bulk.request"
    ]


async def test_the_openapi_document_describes_the_bulk_endpoints(world: World) -> None:
    async with world.http.get(f"{world.url}/api/v1/openapi.json") as response:
        paths = (await response.json())["paths"]
    assert set(paths["/api/v1/bulk-requests"]) == {"get", "post"}
    assert set(paths["/api/v1/bulk-requests/{id}/decision"]) == {"post"}
    export = paths["/api/v1/bulk-requests/{id}/export"]["get"]
    assert "application/zip" in export["responses"]["200"]["content"]
    assert "403" in export["responses"] and "manifest.json" in export["summary"]


async def test_an_mp3_export_holds_one_mp3_per_recording(world: World) -> None:
    made = await approved(world)
    status, data = await world.call(
        "rita", "GET", f"bulk-requests/{made['id']}/export", format="mp3"
    )
    assert status == 200, data
    archive = zipfile.ZipFile(io.BytesIO(data))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["format"] == "mp3"
    assert archive.namelist() == [f"{rid}.mp3" for rid in world.ids] + ["manifest.json"]
    for row in manifest["files"]:
        mp3 = archive.read(row["file"])
        assert mp3[:3] == b"ID3" or mp3[:2] in (b"\xff\xfb", b"\xff\xf3"), mp3[:4]
        assert row["sha256"] == hashlib.sha256(mp3).hexdigest()


async def test_the_zip_is_streamed_not_stored(world: World) -> None:
    made = await approved(world)
    headers = {"Authorization": f"Bearer {world.tokens['rita']}"}
    url = f"{world.url}/api/v1/bulk-requests/{made['id']}/export"
    async with world.http.get(url, headers=headers) as response:
        assert response.status == 200
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert "Content-Length" not in response.headers
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Content-Disposition"] == (
            f'attachment; filename="bulk-{made["id"]}.zip"'
        )
        await response.read()
    leftovers = [p.name for p in world.folder.rglob("*") if p.suffix in (".wav", ".zip", ".mp3")]
    assert leftovers == []  # nothing decrypted was written beside the recordings


async def test_an_unreadable_recording_is_a_row_of_its_own_and_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    made = await approved(world)
    for segment in (world.folder / "recordings" / world.ids[1]).iterdir():
        segment.write_bytes(segment.read_bytes()[:100])  # cut short: fails verification
    status, data = await world.call("rita", "GET", f"bulk-requests/{made['id']}/export")
    assert status == 200
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.namelist() == [f"{world.ids[0]}.wav", "manifest.json"]
    manifest = json.loads(archive.read("manifest.json"))
    assert [(r["recording_id"], r["rule"]) for r in manifest["refused"]] == [
        (world.deleted, "recording.deleted"),
        (world.ids[1], "unreadable"),
    ]
    assert "recordings/" not in json.dumps(manifest)  # no path for the person
    assert any("integrity: bulk export" in r.getMessage() for r in caplog.records)
