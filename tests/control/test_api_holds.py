"""The operators' hold routes on a real aiohttp server and a real catalog: any operator
places and releases holds as themselves; bad input is a problem document and changes
nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.config import OperatorSettings
from proxy.control.api import add_routes, token_hash
from proxy.control.http import HttpServer
from proxy.control.problem import PROBLEM_JSON
from proxy.recording_state import RecordingState
from proxy.records.holds import HoldDesk
from proxy.storage.catalog import Attribution, SqliteCatalog

from ..storage.test_catalog import FakeClock, at, new_call, new_recording

OPERATORS = (
    OperatorSettings("alice", token_hash("alice-token")),
    OperatorSettings("bob", token_hash("bob-token")),
)
UNKNOWN = "00000000-0000-4000-8000-000000000000"


@dataclass
class Api:
    base: str
    catalog: SqliteCatalog
    recording_id: str


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with SqliteCatalog(tmp_path / "catalog.db", clock=FakeClock(at(3600))) as catalog:
        rec_id = await new_recording(catalog, await new_call(catalog))
        await catalog.recordings.set_recording_state(
            rec_id, RecordingState.COMPLETE, Attribution(at=at(30))
        )
        app = web.Application()
        desk = HoldDesk(catalog.holds, ("complaint", "training", "conduct"), clock=lambda: at(0))
        add_routes(app, dict, OPERATORS, desk)
        server = HttpServer(app, "127.0.0.1", 0)
        await server.start()
        assert server.bound is not None
        yield Api(f"http://127.0.0.1:{server.bound[1]}", catalog, rec_id)
        await server.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(
    method: str, url: str, token: str | None = "alice-token", body: Any = None
) -> tuple[int, str, Any]:
    headers = bearer(token) if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, json=body, headers=headers) as response,
    ):
        return response.status, response.content_type, await response.json(content_type=None)


async def test_place_list_release_as_the_operator(api: Api) -> None:
    status, _, hold = await call(
        "POST",
        f"{api.base}/api/recordings/{api.recording_id}/holds",
        body={"kind": "conduct", "reference": "HR-3", "review_at": "1969-12-31", "note": "x"},
    )
    assert status == 201, hold
    assert (hold["placed_by"], hold["kind"], hold["reference"], hold["due"]) == (
        "alice",
        "conduct",
        "HR-3",
        True,
    )
    status, _, listing = await call("GET", f"{api.base}/api/holds?due=1", token="bob-token")
    assert status == 200 and [h["id"] for h in listing["holds"]] == [hold["id"]]
    status, _, released = await call(
        "POST", f"{api.base}/api/holds/{hold['id']}/release", "bob-token", {"reason": "closed"}
    )
    assert status == 200, released
    assert (released["released_by"], released["release_reason"]) == ("bob", "closed")
    status, _, listing = await call("GET", f"{api.base}/api/holds?active=1")
    assert listing == {"holds": []}
    entries = await api.catalog.audit.entries()
    assert [(e.actor, e.action) for e in entries] == [
        ("alice", "hold.place"),
        ("bob", "hold.release"),
    ]


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/api/recordings/REC/holds", {"kind": "gossip", "reference": "r"}, 422, "kind"),
        ("/api/recordings/REC/holds", {"kind": "complaint"}, 422, "reference is required"),
        (
            "/api/recordings/REC/holds",
            {"kind": "complaint", "reference": "r", "review_at": "tomorrow"},
            422,
            "YYYY-MM-DD",
        ),
        ("/api/recordings/REC/holds", ["kind"], 422, "JSON object"),
        (
            f"/api/recordings/{UNKNOWN}/holds",
            {"kind": "complaint", "reference": "r"},
            404,
            "does not exist",
        ),
        (f"/api/holds/{UNKNOWN}/release", {"reason": "x"}, 404, "does not exist"),
    ],
)
async def test_bad_requests_are_problems_and_change_nothing(
    api: Api, path: str, body: Any, status: int, words: str
) -> None:
    got, content_type, problem = await call(
        "POST", api.base + path.replace("REC", api.recording_id), body=body
    )
    assert (got, content_type) == (status, PROBLEM_JSON)
    assert words in problem["detail"]
    assert await api.catalog.holds.holds() == []
    assert await api.catalog.audit.entries() == []


async def test_release_twice_is_409_and_no_token_is_401(api: Api) -> None:
    url = f"{api.base}/api/recordings/{api.recording_id}/holds"
    status, _, hold = await call("POST", url, body={"kind": "training", "reference": "T"})
    assert status == 201
    release = f"{api.base}/api/holds/{hold['id']}/release"
    assert (await call("POST", release, body={"reason": "done"}))[0] == 200
    status, _, problem = await call("POST", release, body={"reason": "again"})
    assert status == 409 and "already released" in problem["detail"]
    status, _, problem = await call("POST", release, body={}, token=None)
    assert status == 401
    body = {"kind": "training", "reference": "T"}
    status, _, problem = await call("POST", url, body=body, token="mallory")
    assert status == 401
    assert len(await api.catalog.holds.holds()) == 1
