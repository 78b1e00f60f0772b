"""The call takers' HTTP API on a real aiohttp server: auth, ownership, validation."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.config import OperatorSettings
from proxy.control.api import MAX_BODY, add_routes, token_hash
from proxy.control.http import HttpServer
from proxy.records.errors import RecordingActionError


class StandInCall:
    """An active call as the API sees it (the real Call is exercised end to end)."""

    def __init__(self, call_id: str, operator: str | None) -> None:
        self.id = call_id
        self.caller = "+441234567890"
        self.callee = "surgery"
        self._operator = operator
        self.actions: list[tuple[str, str, str, str]] = []
        self.recording = "recording"

    @property
    def operator(self) -> str | None:
        return self._operator

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "operator": self._operator, "recording": self.recording}

    async def recording_action(
        self, action: str, *, actor: str, channel: str, reason: str
    ) -> dict[str, Any]:
        if action == "resume" and self.recording != "stopped":
            raise RecordingActionError("the recording is not stopped")
        self.actions.append((action, actor, channel, reason))
        self.recording = {"stop": "stopped", "discard": "discarded", "resume": "recording"}[action]
        return {"id": self.id, "recording": self.recording}


OPERATORS = (
    OperatorSettings("alice", token_hash("alice-token")),
    OperatorSettings("bob", token_hash("bob-token")),
)


@pytest.fixture
async def api() -> AsyncIterator[tuple[str, dict[str, StandInCall]]]:
    calls = {"c1": StandInCall("c1", "alice"), "c2": StandInCall("c2", "bob")}
    app = web.Application()
    add_routes(app, lambda: calls, OPERATORS)
    server = HttpServer(app, "127.0.0.1", 0)  # the service's own server, as in app.py
    await server.start()
    assert server.bound is not None
    yield f"http://127.0.0.1:{server.bound[1]}", calls
    await server.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_stop_by_the_calls_own_operator_works(
    api: tuple[str, dict[str, StandInCall]],
) -> None:
    base, calls = api
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"{base}/api/calls/c1/recording",
            json={"action": "stop", "reason": "caller distressed"},
            headers=bearer("alice-token"),
        )
        assert response.status == 200
        assert (await response.json())["recording"] == "stopped"
    assert calls["c1"].actions == [("stop", "alice", "api", "caller distressed")]


async def test_another_operators_token_gets_403(api: tuple[str, dict[str, StandInCall]]) -> None:
    base, calls = api
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"{base}/api/calls/c1/recording",
            json={"action": "stop", "reason": "x"},
            headers=bearer("bob-token"),
        )
        assert response.status == 403
    assert calls["c1"].actions == []


@pytest.mark.parametrize("headers", [{}, bearer("wrong"), {"Authorization": "Basic abc"}])
async def test_no_or_bad_token_gets_401(
    api: tuple[str, dict[str, StandInCall]], headers: dict[str, str]
) -> None:
    base, calls = api
    async with aiohttp.ClientSession() as http:
        for method, url in (("GET", "/api/calls"), ("POST", "/api/calls/c1/recording")):
            response = await http.request(
                method, base + url, json={"action": "stop", "reason": "x"}, headers=headers
            )
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert calls["c1"].actions == []


async def test_unknown_call_is_404(api: tuple[str, dict[str, StandInCall]]) -> None:
    base, _ = api
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"{base}/api/calls/nope/recording",
            json={"action": "stop", "reason": "x"},
            headers=bearer("alice-token"),
        )
        assert response.status == 404


@pytest.mark.parametrize(
    "body",
    [
        {"action": "stop"},
        {"action": "stop", "reason": "   "},
        {"action": "stop", "reason": 7},
        {"action": "pause", "reason": "x"},
        {"action": "stop", "reason": "x" * 501},
        ["stop"],
    ],
)
async def test_missing_reason_or_bad_action_is_422(
    api: tuple[str, dict[str, StandInCall]], body: object
) -> None:
    base, calls = api
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"{base}/api/calls/c1/recording", json=body, headers=bearer("alice-token")
        )
        assert response.status == 422
    assert calls["c1"].actions == []


async def test_not_json_is_422(api: tuple[str, dict[str, StandInCall]]) -> None:
    base, _ = api
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"{base}/api/calls/c1/recording", data=b"stop!", headers=bearer("alice-token")
        )
        assert response.status == 422


async def test_an_impossible_action_is_409(api: tuple[str, dict[str, StandInCall]]) -> None:
    base, _ = api
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"{base}/api/calls/c1/recording",
            json={"action": "resume", "reason": "x"},
            headers=bearer("alice-token"),
        )
        assert response.status == 409


async def test_listing_shows_only_your_own_calls(
    api: tuple[str, dict[str, StandInCall]],
) -> None:
    base, _ = api
    async with aiohttp.ClientSession() as http:
        response = await http.get(f"{base}/api/calls", headers=bearer("bob-token"))
        assert response.status == 200
        assert [c["id"] for c in (await response.json())["calls"]] == ["c2"]


# ---------------------------------------------------------------------------------------
# Hostile requests: bounded parsing, problem documents, no tracebacks


async def _problem(response: aiohttp.ClientResponse) -> dict[str, Any]:
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = json.loads(await response.read())
    assert body["status"] == response.status and body["detail"]
    return body


async def test_errors_are_problem_documents(api: tuple[str, dict[str, StandInCall]]) -> None:
    base, _ = api
    async with aiohttp.ClientSession() as http:
        response = await http.get(f"{base}/api/calls")
        assert response.status == 401
        assert (await _problem(response))["title"] == "Unauthorized"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "larger"),  # the body: too large first
        (b'{"action": "stop", "reason": ' + b"[" * 1000 + b"]" * 1000 + b"}", "nested"),
        (json.dumps({"action": "stop", "reason": "x" * MAX_BODY}).encode(), "larger"),
    ],
    ids=["100000-deep", "1000-deep", "oversized"],
)
async def test_a_deep_or_large_json_body_is_400_not_a_crash(
    api: tuple[str, dict[str, StandInCall]],
    body: bytes,
    says: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    base, calls = api
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"{base}/api/calls/c1/recording",
            data=body,
            headers={**bearer("alice-token"), "Content-Type": "application/json"},
        )
        assert response.status == 400
        assert says in (await _problem(response))["detail"]
    assert calls["c1"].actions == []
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_an_oversized_header_is_431_without_a_token_or_a_traceback(
    api: tuple[str, dict[str, StandInCall]], caplog: pytest.LogCaptureFixture
) -> None:
    base, _ = api
    host, port = base.removeprefix("http://").split(":")
    caplog.set_level(logging.DEBUG)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /api/calls HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].endswith(b" 431 Request Header Fields Too Large"), head
    assert b"application/problem+json" in head
    assert json.loads(body)["status"] == 431
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


@pytest.mark.parametrize(("call_id", "status"), [("c2", 403), ("nope", 404)])
async def test_a_request_about_a_call_not_yours_is_refused_before_its_body_is_read(
    api: tuple[str, dict[str, StandInCall]], call_id: str, status: int
) -> None:
    base, calls = api
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"{base}/api/calls/{call_id}/recording",
            data=b"[" * 100_000,  # would be 400 if it were read
            headers={**bearer("alice-token"), "Content-Type": "application/json"},
        )
        assert response.status == status
    assert all(not call.actions for call in calls.values())
