"""How the next endpoints plug into the records service: a route added to the
``Routes`` registry is described in the OpenAPI document where it is defined, runs only
for a signed-in user unless it is public, and reads who that is as the access policy's
``Actor``.  Built on a real catalog and served on a real loopback socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from argon2 import PasswordHasher

from proxy.config import AccountsSettings
from proxy.control.http import HttpServer
from proxy.control.records import PROBLEM, build_records_app, current_actor, ok_json
from proxy.control.records.auth import csrf_token
from proxy.records.accounts import Accounts
from proxy.roles import Role
from proxy.storage.catalog import SqliteCatalog

CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # real argon2id, fast
PASSWORD = "a long enough password"
SECRET = b"k" * 32


async def whoami(request: web.Request) -> web.StreamResponse:
    actor = current_actor(request)
    return web.json_response(
        {
            "id": request.match_info["rid"],
            "name": actor.name,
            "role": actor.role.value,
            "teams": sorted(actor.teams),
            "operator": actor.operator,
            "disabled": actor.disabled,
        }
    )


async def touch(request: web.Request) -> web.StreamResponse:
    return web.json_response({"touched": True}, status=201)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[str]:
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        accounts = Accounts(catalog.users, AccountsSettings(), hasher=CHEAP)
        await accounts.add_user(
            "sam", role_name="staff", password=PASSWORD, by="t", teams=("b", "a"), operator="op-1"
        )
        app, routes = build_records_app(accounts, SECRET, lambda: {"ok": True})
        routes.add(
            "GET",
            "/api/v1/things/{rid}",
            whoami,
            summary="Who asks for a thing",
            responses={"200": ok_json("The asker"), "404": PROBLEM},
            parameters=({"name": "purpose", "in": "query", "schema": {"type": "string"}},),
        )
        routes.add(
            "POST",
            "/api/v1/things",
            touch,
            summary="Touch",
            request_body={"type": "object"},
            responses={"201": ok_json("Touched")},
        )
        server = HttpServer(app, "127.0.0.1", 0)
        await server.start()
        assert server.bound is not None
        try:
            yield f"http://127.0.0.1:{server.bound[1]}"
        finally:
            await server.stop()


async def test_a_route_module_describes_its_routes_and_reads_the_actor(served: str) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(f"{served}/api/v1/openapi.json") as answer:
            document = await answer.json()
        thing = document["paths"]["/api/v1/things/{rid}"]["get"]
        assert thing["summary"] == "Who asks for a thing"
        assert [p["name"] for p in thing["parameters"]] == ["rid", "purpose"]
        assert thing["parameters"][0] == {
            "name": "rid", "in": "path", "required": True, "schema": {"type": "string"}
        }  # fmt: skip
        assert set(thing["responses"]) == {"200", "401", "404"}
        assert thing["security"] == [{"bearer": []}, {"cookie": [], "csrf": []}]
        assert "requestBody" in document["paths"]["/api/v1/things"]["post"]

        async with http.get(f"{served}/api/v1/things/r1") as answer:
            assert answer.status == 401  # not signed in: the handler never ran
        async with http.post(
            f"{served}/api/v1/login", json={"username": "sam", "password": PASSWORD}
        ) as answer:
            session = await answer.json()
        assert session["csrf_token"] == csrf_token(SECRET, session["token"])
        cookie = {"Cookie": f"__Host-recproxy={session['token']}"}
        async with http.get(f"{served}/api/v1/things/r1", headers=cookie) as answer:
            assert await answer.json() == {
                "id": "r1", "name": "sam", "role": Role.STAFF.value, "teams": ["a", "b"],
                "operator": "op-1", "disabled": False,
            }  # fmt: skip
        async with http.post(f"{served}/api/v1/things", headers=cookie) as answer:
            assert answer.status == 403  # an unsafe request without the CSRF token
        csrf = {**cookie, "X-CSRF-Token": session["csrf_token"]}
        async with http.post(f"{served}/api/v1/things", headers=csrf) as answer:
            assert answer.status == 201
