"""The call proxy's own HTTP server answers every error as a problem document, as the
records service does: an unknown path, a wrong method."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from proxy.control.http import HttpServer, build_app
from proxy.control.problem import PROBLEM_JSON


@pytest.fixture
async def base() -> AsyncIterator[str]:
    server = HttpServer(build_app(lambda: {"ok": True}, lambda: b"up 1\n"), "127.0.0.1", 0)
    await server.start()
    assert server.bound is not None
    yield f"http://127.0.0.1:{server.bound[1]}"
    await server.stop()


async def test_an_unknown_path_is_a_404_problem(base: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/no/such/page") as response:
        assert response.status == 404
        assert response.content_type == PROBLEM_JSON
        body = await response.json(content_type=PROBLEM_JSON)
        assert body["status"] == 404 and body["title"] == "Not Found"


async def test_a_wrong_method_is_a_405_problem_naming_the_allowed_ones(base: str) -> None:
    async with aiohttp.ClientSession() as http, http.post(f"{base}/healthz") as response:
        assert response.status == 405
        assert response.content_type == PROBLEM_JSON
        assert "GET" in response.headers["Allow"]
        assert (await response.json(content_type=PROBLEM_JSON))["status"] == 405


async def test_the_pages_that_exist_are_unchanged(base: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as response:
            assert response.status == 200 and (await response.json()) == {"ok": True}
        async with http.get(f"{base}/metrics") as response:
            assert response.status == 200 and (await response.read()) == b"up 1\n"
