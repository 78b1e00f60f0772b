"""Signing in and out of a real records service (``recproxy records serve``) over real
HTTP: browser sessions with their cookie and CSRF token, bearer tokens, what ends a
session (logout, expiry, a disabled account), lockout and throttling, session fixation,
bad bodies, and no secret in the service's log."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .service import PASSPHRASE, PASSWORD, RecordsProcess, add_user, make_folder, recproxy

COOKIE = "__Host-recproxy"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordsProcess]:
    folder = tmp_path_factory.mktemp("records")
    config = make_folder(folder, accounts="max_failures = 3\nlockout_seconds = 600\n")
    add_user(config, "alice", "admin")
    add_user(config, "sam", "staff", "--team", "north", "--operator", "op-1")
    add_user(config, "lock.me", "records_officer")
    add_user(config, "gone", "dpo")
    running = RecordsProcess(config)
    yield running
    assert running.stop() == 0
    assert "Traceback" not in running.log_text()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # cookies are sent by hand: the test says exactly which cookie goes with a request
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def login(
    http: aiohttp.ClientSession, url: str, name: str, password: str = PASSWORD, **more: Any
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    async with http.post(
        f"{url}/api/v1/login", json={"username": name, "password": password, **more}
    ) as answer:
        return answer.status, await answer.json(content_type=None), answer


async def call(
    http: aiohttp.ClientSession, method: str, url: str, **headers: str
) -> tuple[int, dict[str, Any] | None, aiohttp.ClientResponse]:
    async with http.request(method, url, headers=headers) as answer:
        text = await answer.text()
        return answer.status, (json.loads(text) if text else None), answer


def catalog(service: RecordsProcess) -> Path:
    return service.log_path.parent / "data" / "catalog.sqlite3"


async def test_a_browser_login_sets_a_strict_secure_cookie_and_answers_the_csrf_token(
    service: RecordsProcess, http: aiohttp.ClientSession
) -> None:
    status, body, answer = await login(http, service.url, "sam")
    assert status == 200, body
    assert set(body) == {"token", "expires_at", "csrf_token", "user"}
    assert body["user"] == {"name": "sam", "role": "staff", "teams": ["north"], "operator": "op-1"}
    assert answer.headers["Cache-Control"] == "no-store"
    (header,) = answer.headers.getall("Set-Cookie")
    morsel = SimpleCookie(header)[COOKIE]
    assert morsel.value == body["token"]
    assert morsel["secure"] and morsel["httponly"]
    assert morsel["samesite"] == "Strict" and morsel["path"] == "/"
    assert not morsel["domain"]
    cookie = f"{COOKIE}={body['token']}"
    status, me, _ = await call(http, "GET", f"{service.url}/api/v1/me", Cookie=cookie)
    assert (status, me) == (200, body["user"])


async def test_a_cookie_sessions_unsafe_request_needs_its_csrf_token(
    service: RecordsProcess, http: aiohttp.ClientSession
) -> None:
    _, body, _ = await login(http, service.url, "sam")
    cookie, logout = f"{COOKIE}={body['token']}", f"{service.url}/api/v1/logout"
    status, problem, answer = await call(http, "POST", logout, Cookie=cookie)
    assert status == 403 and "X-CSRF-Token" in problem["detail"]  # type: ignore[index]
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    wrong = "0" * 64
    status, _, _ = await call(http, "POST", logout, Cookie=cookie, **{"X-CSRF-Token": wrong})
    assert status == 403
    # another session's CSRF token is wrong for this one
    _, other, _ = await login(http, service.url, "sam")
    status, _, _ = await call(
        http, "POST", logout, Cookie=cookie, **{"X-CSRF-Token": other["csrf_token"]}
    )
    assert status == 403
    status, _, _ = await call(http, "GET", f"{service.url}/api/v1/me", Cookie=cookie)
    assert status == 200  # still signed in: every refused logout changed nothing
    status, _, answer = await call(
        http, "POST", logout, Cookie=cookie, **{"X-CSRF-Token": body["csrf_token"]}
    )
    assert status == 204
    cleared = SimpleCookie(answer.headers["Set-Cookie"])[COOKIE]
    assert cleared.value == "" and cleared["max-age"] == "0"
    status, problem, answer = await call(http, "GET", f"{service.url}/api/v1/me", Cookie=cookie)
    assert status == 401 and "ended" in problem["detail"]  # type: ignore[index]
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_bearer_login_sets_no_cookie_and_needs_no_csrf_token(
    service: RecordsProcess, http: aiohttp.ClientSession
) -> None:
    status, body, answer = await login(http, service.url, "alice", kind="bearer")
    assert status == 200 and body["csrf_token"] is None
    assert "Set-Cookie" not in answer.headers
    bearer = f"Bearer {body['token']}"
    status, me, _ = await call(http, "GET", f"{service.url}/api/v1/me", Authorization=bearer)
    assert (status, me["role"]) == (200, "admin")  # type: ignore[index]
    status, _, _ = await call(http, "POST", f"{service.url}/api/v1/logout", Authorization=bearer)
    assert status == 204
    status, _, _ = await call(http, "GET", f"{service.url}/api/v1/me", Authorization=bearer)
    assert status == 401


async def test_not_signed_in_or_a_made_up_token_is_401(
    service: RecordsProcess, http: aiohttp.ClientSession
) -> None:
    me = f"{service.url}/api/v1/me"
    for headers in ({}, {"Authorization": "Bearer made-up"}, {"Cookie": f"{COOKIE}=made-up"},
                    {"Authorization": "Basic YWxpY2U6eA=="}):  # fmt: skip
        status, problem, answer = await call(http, "GET", me, **headers)
        assert status == 401, headers
        assert problem["status"] == 401  # type: ignore[index]
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="recproxy records"'


async def test_wrong_password_and_unknown_user_are_the_same_401(
    service: RecordsProcess, http: aiohttp.ClientSession
) -> None:
    wrong = await login(http, service.url, "alice", "not the password at all")
    unknown = await login(http, service.url, "nobody", "not the password at all")
    assert wrong[0] == unknown[0] == 401
    assert wrong[1] == unknown[1]
    assert "Set-Cookie" not in wrong[2].headers


async def test_an_expired_session_is_401(
    service: RecordsProcess, http: aiohttp.ClientSession
) -> None:
    _, body, _ = await login(http, service.url, "sam", kind="bearer")
    digest = hashlib.sha256(body["token"].encode()).hexdigest()
    with sqlite3.connect(catalog(service)) as db:
        db.execute("UPDATE sessions SET expires_at = 0 WHERE token_sha256 = ?", (digest,))
    bearer = f"Bearer {body['token']}"
    status, problem, _ = await call(http, "GET", f"{service.url}/api/v1/me", Authorization=bearer)
    assert status == 401 and "expired" in problem["detail"]  # type: ignore[index]


async def test_a_disabled_users_token_is_401_and_they_cannot_log_in(
    service: RecordsProcess, http: aiohttp.ClientSession
) -> None:
    _, body, _ = await login(http, service.url, "gone", kind="bearer")
    config = service.log_path.parent / "recproxy.toml"
    disabled = recproxy(config.parent, "users", "disable", "gone", "--by", "tests",
                        "--config", str(config))  # fmt: skip
    assert disabled.returncode == 0, disabled.stderr
    bearer = f"Bearer {body['token']}"
    status, _, _ = await call(http, "GET", f"{service.url}/api/v1/me", Authorization=bearer)
    assert status == 401
    status, problem, _ = await login(http, service.url, "gone")
    assert status == 401 and "disabled" in problem["detail"]


async def test_repeated_failures_lock_the_account_429_with_retry_after(
    service: RecordsProcess, http: aiohttp.ClientSession
) -> None:
    for _ in range(3):  # accounts.max_failures
        status, _, _ = await login(http, service.url, "lock.me", "wrong wrong wrong")
        assert status == 401
    status, problem, answer = await login(http, service.url, "lock.me")  # the right password
    assert status == 429 and "locked" in problem["detail"]
    assert 590 <= int(answer.headers["Retry-After"]) <= 600


async def test_login_never_adopts_a_session_cookie_it_is_sent(
    service: RecordsProcess, http: aiohttp.ClientSession
) -> None:
    """Session fixation: whatever cookie comes with a login, a new token is made."""
    _, planted, _ = await login(http, service.url, "sam")  # the attacker's own session
    async with http.post(
        f"{service.url}/api/v1/login",
        json={"username": "alice", "password": PASSWORD},
        headers={"Cookie": f"{COOKIE}={planted['token']}"},
    ) as answer:
        body = await answer.json()
        cookie = SimpleCookie(answer.headers["Set-Cookie"])[COOKIE].value
    assert body["token"] == cookie != planted["token"]
    planted_cookie = f"{COOKIE}={planted['token']}"
    _, me, _ = await call(http, "GET", f"{service.url}/api/v1/me", Cookie=planted_cookie)
    assert me["name"] == "sam"  # type: ignore[index]  # the planted one is still only sam's
    second = await login(http, service.url, "alice")
    assert second[1]["token"] != body["token"]  # and each login gets its own


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"[1, 2]", 422),
        (b"not json", 422),
        (b'{"username": "alice"}', 422),
        (b'{"username": 1, "password": 2}', 422),
        (b'{"username": "alice", "password": "x", "kind": "admin"}', 422),
        (b"[" * 40 + b"]" * 40, 400),
        (b'{"username": "' + b"a" * 20_000 + b'"}', 400),
    ],
)
async def test_a_bad_login_body_is_a_problem_and_changes_nothing(
    service: RecordsProcess, http: aiohttp.ClientSession, data: bytes, status: int
) -> None:
    with sqlite3.connect(catalog(service)) as db:
        before = db.execute("SELECT count(*) FROM sessions").fetchone()
        failures = db.execute("SELECT count(*) FROM login_failures").fetchone()
    async with http.post(
        f"{service.url}/api/v1/login", data=data, headers={"Content-Type": "application/json"}
    ) as answer:
        problem = await answer.json(content_type=None)
        assert answer.status == status, problem
        assert answer.headers["Content-Type"].startswith("application/problem+json")
    assert problem["status"] == status and problem["detail"]
    with sqlite3.connect(catalog(service)) as db:
        assert db.execute("SELECT count(*) FROM sessions").fetchone() == before
        assert db.execute("SELECT count(*) FROM login_failures").fetchone() == failures


async def test_unknown_paths_and_methods_are_problems(
    service: RecordsProcess, http: aiohttp.ClientSession
) -> None:
    status, problem, _ = await call(http, "GET", f"{service.url}/api/v1/nothing-here")
    assert status == 404 and problem["status"] == 404  # type: ignore[index]
    status, problem, answer = await call(http, "DELETE", f"{service.url}/api/v1/login")
    assert status == 405 and "POST" in answer.headers["Allow"]


async def test_the_openapi_document_lists_every_route(
    service: RecordsProcess, http: aiohttp.ClientSession
) -> None:
    status, document, _ = await call(http, "GET", f"{service.url}/api/v1/openapi.json")
    assert status == 200 and document is not None
    assert document["openapi"] == "3.1.0"
    paths = document["paths"]
    # the foundation's routes (each records module's test checks its own)
    listed = {path: sorted(ops) for path, ops in paths.items()}
    assert {
        "/api/v1/login": ["post"],
        "/api/v1/logout": ["post"],
        "/api/v1/me": ["get"],
        "/api/v1/openapi.json": ["get"],
        "/healthz": ["get"],
    }.items() <= listed.items()
    assert "security" not in paths["/api/v1/login"]["post"]
    assert "401" in paths["/api/v1/me"]["get"]["responses"]
    assert paths["/api/v1/login"]["post"]["requestBody"]["required"] is True
    status, health, _ = await call(http, "GET", f"{service.url}/healthz")
    assert (status, health) == (200, {"ok": True, "service": "records"})


async def test_no_password_token_csrf_token_or_passphrase_reaches_the_log(
    service: RecordsProcess, http: aiohttp.ClientSession
) -> None:
    _, browser, _ = await login(http, service.url, "alice")
    _, bearer, _ = await login(http, service.url, "alice", kind="bearer")
    await login(http, service.url, "alice", "a wrong password here")
    log = service.log_text()
    assert "listening" in log
    for secret in (PASSWORD, "a wrong password here", PASSPHRASE, browser["token"],
                   browser["csrf_token"], bearer["token"]):  # fmt: skip
        assert secret not in log
