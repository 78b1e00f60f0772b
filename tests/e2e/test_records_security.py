"""Security of the records service (issue 15, "Done when"), end to end: one world of
real recordings (``records_world``) behind ``recproxy serve`` and its records child,
whose development key is protected by a passphrase (``records.passphrase_file``).

* SQL injection and path traversal in every text field, query parameter and path id:
  a clean 4xx problem document (or, for a free-text field, the text stored as it was
  sent), the catalog otherwise unchanged and the audit chain intact;
* session fixation, missing or wrong CSRF token, an expired bearer token
  (``token_minutes = 1``), a disabled user's token;
* brute force: the account locks (429) and even the right password is refused until
  the lock ends (``max_failures = 3``, ``lockout_seconds = 4``);
* constant-time comparisons of secrets, read from the source;
* no password, token, CSRF token or passphrase in any log line of the whole run (the
  last test, so that it sees every secret the others used).

The source-address throttle and the anomaly flags are set high here so that the many
refusals this module provokes change nothing but the audit log.
"""

from __future__ import annotations

import ast
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from proxy.records.accounts import token_digest

from .proxy_process import REPO_ROOT
from .records_world import BY_NAME, Answer, Person, World, audio_path, items, running_world

pytestmark = pytest.mark.sipp

PASSPHRASE = "correct horse battery staple " + secrets.token_hex(8)
TOKEN_MINUTES = 30  # outlives the module; expiry is tested by ageing one session
LOCKOUT_SECONDS = 4
SETTINGS = f"""
[accounts]
max_failures = 3
lockout_seconds = {LOCKOUT_SECONDS}
source_failures_per_minute = 1000000
token_minutes = {TOKEN_MINUTES}

[access]
playbacks_per_hour = 100000
refusals_per_hour = 100000
"""

LONG = "x" * 4000  # long, but within a request line aiohttp reads (8 KiB)
HOSTILE = ["' OR 1=1 --", "../../etc/passwd", "%2e%2e%2f", "a\x00b", LONG]
#: what the module must not see change (sessions and login failures are what signing in
#: writes, the audit log what deciding writes)
CHANGING = frozenset({"audit_log", "sessions", "login_failures", "users"})


@pytest.fixture(scope="module")
def world(
    tools: None, dialogue: bytes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("records-security")
    with running_world(folder, dialogue, extra=SETTINGS, passphrase=PASSPHRASE) as built:
        yield built


def fresh(world: World, name: str) -> str:
    """A new bearer token for ``name`` (tokens here live a minute), remembered as a
    secret the logs must not hold."""
    token = world.api.bearer(BY_NAME[name])
    world.secrets.add(token)
    return token


def browser(world: World, person: Person, **kwargs: Any) -> tuple[str, str]:
    """A browser login: the session cookie's value and the CSRF token."""
    answer = world.api.request(
        "POST", "/api/v1/login",
        body={"username": person.name, "password": person.password}, **kwargs,
    )  # fmt: skip
    assert answer.status == 200, answer
    cookie, csrf = answer.cookies["__Host-recproxy"], answer.json["csrf_token"]
    world.secrets |= {cookie, csrf, answer.json["token"]}
    return cookie, csrf


def assert_problem(answer: Answer, where: object) -> None:
    assert 400 <= answer.status < 500, (where, answer)
    assert answer.is_problem, (where, answer.headers, answer)
    body = answer.json
    assert body["status"] == answer.status and body["detail"], (where, body)
    assert b"root:" not in answer.body and b"Traceback" not in answer.body, where


def chain_intact(world: World, dpo: str) -> None:
    done = world.run("audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    answer = world.api.get("/api/v1/audit/verify", dpo)
    assert answer.status == 200, answer


# ---------------------------------------------------------------------------------------
# Injection and traversal


def test_hostile_strings_in_ids_query_parameters_and_login_change_nothing(world: World) -> None:
    officer, dpo = fresh(world, "officer"), fresh(world, "dpo")
    api, rid = world.api, world.recordings.ann
    before = world.catalog.dump(leave_out=CHANGING)
    users_before = world.catalog.rows("SELECT name, role, disabled_at, password_hash FROM users")
    for text in HOSTILE:
        ident = quote(text, safe="")
        unknown: list[tuple[str, str, dict[str, Any] | None]] = [
            ("GET", f"/api/v1/recordings/{ident}", None),
            ("GET", audio_path(ident, purpose="complaint", reason="r"), None),
            ("GET", f"/api/v1/recordings/{ident}/verify", None),
            ("POST", f"/api/v1/recordings/{ident}/access-requests",
             {"purpose": "complaint", "reason": "r"}),
            ("POST", f"/api/v1/access-requests/{ident}/decision",
             {"decision": "approve", "reason": "r"}),
            ("POST", f"/api/v1/recordings/{ident}/holds", {"kind": "complaint", "reference": "r"}),
            ("POST", f"/api/v1/holds/{ident}/release", {"reason": "r"}),
            ("POST", f"/api/v1/flags/{ident}/clear", {"reason": "r"}),
        ]  # fmt: skip
        for method, path, body in unknown:  # an id is looked up, never interpreted: 404
            token = dpo if path.startswith("/api/v1/flags") else officer
            answer = api.request(method, path, token=token, body=body)
            assert_problem(answer, (method, path))
            assert answer.status == 404, (method, path, answer)
        # query parameters with a closed set of values: refused (422, or 403 naming
        # purpose.unknown: the policy's own check of a purpose)
        asked = [
            audio_path(rid, purpose=text, reason="r"),
            f"/api/v1/recordings/{rid}/audio?"
            + urlencode({"purpose": "complaint", "reason": "r", "format": text}),
            f"/api/v1/recordings/{rid}/audio?"
            + urlencode({"purpose": "complaint", "reason": "r", "channels": text}),
            f"/api/v1/recordings/{rid}/audio?"
            + urlencode({"purpose": "complaint", "reason": "r", "part": text}),
            "/api/v1/access-requests?" + urlencode({"state": text}),
        ]
        asked += ["/api/v1/recordings?" + urlencode({name: text})
                  for name in ("from", "to", "state", "page", "size")]  # fmt: skip
        asked += ["/api/v1/audit?" + urlencode({name: text})
                  for name in ("since", "until", "limit")]  # fmt: skip
        for path in asked:
            token = dpo if path.startswith("/api/v1/audit") else officer
            assert_problem(api.get(path, token), path)
        # filters over free text: either refused, or nothing found (never "everything")
        free_text = [("recordings", name, officer) for name in ("number", "operator", "team")]
        free_text += [("audit", name, dpo) for name in ("actor", "action", "object")]
        for listing, name, token in free_text:
            answer = api.get(f"/api/v1/{listing}?" + urlencode({name: text}), token)
            if answer.status != 200:
                assert_problem(answer, name)
            else:
                key = "recordings" if listing == "recordings" else "entries"
                assert items(answer, key) == [], (name, text, answer)
        # signing in with it, as the name or as a real user's password (admin, whom
        # this locks after three: 401, then 429)
        for body in ({"username": text, "password": text},
                     {"username": "admin", "password": text}):  # fmt: skip
            answer = api.post("/api/v1/login", body={**body, "kind": "bearer"})
            assert answer.status in (401, 429) and answer.is_problem, (body, answer)
            assert "token" not in answer.json
    # the path itself, not an id: ``..`` segments never reach a file
    for path in ("/api/v1/recordings/../../../../etc/passwd", "/api/v1/%2e%2e/%2e%2e/etc/passwd",
                 "/../../etc/passwd"):  # fmt: skip
        answer = api.get(path, officer)
        assert 400 <= answer.status < 500 and b"root:" not in answer.body, (path, answer)
    assert world.catalog.dump(leave_out=CHANGING) == before
    assert world.catalog.rows("SELECT name, role, disabled_at, password_hash FROM users") == (
        users_before
    )
    chain_intact(world, dpo)


def test_hostile_strings_in_request_bodies_are_refused_or_kept_as_text(world: World) -> None:
    officer, dpo = fresh(world, "officer"), fresh(world, "dpo")
    api, rid = world.api, world.recordings.ann
    made = api.post(f"/api/v1/recordings/{rid}/access-requests", fresh(world, "staff_bob"),
                    {"purpose": "complaint", "reason": "for the injection test"})  # fmt: skip
    assert made.status == 201, made
    pending = made.json["id"]
    before = world.catalog.dump(leave_out=CHANGING)
    oversized = "y" * 20_000  # past the 16 KiB a body may carry
    for text in [*HOSTILE, oversized]:
        refused: list[tuple[str, dict[str, Any]]] = [
            (f"/api/v1/recordings/{rid}/access-requests", {"purpose": text, "reason": "r"}),
            (f"/api/v1/access-requests/{pending}/decision", {"decision": text, "reason": "r"}),
            (f"/api/v1/access-requests/{pending}/decision",
             {"decision": "approve", "reason": "r", "days": text}),
            (f"/api/v1/recordings/{rid}/holds", {"kind": text, "reference": "r"}),
            (f"/api/v1/recordings/{rid}/holds",
             {"kind": "complaint", "reference": "r", "review_at": text}),
        ]  # fmt: skip
        if text in (LONG, oversized):  # a free-text field too long to be a reason
            refused.append(
                (f"/api/v1/recordings/{rid}/access-requests",
                 {"purpose": "complaint", "reason": oversized})
            )  # fmt: skip
        for path, body in refused:
            assert_problem(api.post(path, officer, body), (path, body))
    assert world.catalog.dump(leave_out=CHANGING) == before
    # a reason is free text: an injection string is kept exactly as sent, and adds one
    # request, nothing more
    for text in ("' OR 1=1 --", "../../etc/passwd", "%2e%2e%2f"):
        answer = api.post(f"/api/v1/recordings/{rid}/access-requests", officer,
                          {"purpose": "complaint", "reason": text})  # fmt: skip
        assert answer.status == 201, answer
        stored = world.catalog.rows(
            "SELECT reason, requester FROM access_requests WHERE id = ?", answer.json["id"]
        )
        assert stored == [{"reason": text, "requester": "officer"}]
    after = world.catalog.dump(leave_out=CHANGING)
    assert len(after["access_requests"]) == len(before["access_requests"]) + 3
    assert {k: v for k, v in after.items() if k != "access_requests"} == {
        k: v for k, v in before.items() if k != "access_requests"
    }
    chain_intact(world, dpo)


# ---------------------------------------------------------------------------------------
# Sessions


def test_a_cookie_set_before_login_is_not_the_session_after(world: World) -> None:
    planted = secrets.token_urlsafe(32)
    cookie, _ = browser(world, BY_NAME["staff_ann"], cookie=planted)
    assert cookie != planted
    assert world.api.get("/api/v1/me", cookie=planted).status == 401
    me = world.api.get("/api/v1/me", cookie=cookie)
    assert me.status == 200 and me.json["name"] == "staff_ann", me


def test_a_missing_or_wrong_csrf_token_is_403_and_changes_nothing(world: World) -> None:
    cookie, csrf = browser(world, BY_NAME["officer"])
    _, other_csrf = browser(world, BY_NAME["dpo"])  # a real token, of another session
    path = f"/api/v1/recordings/{world.recordings.bob}/access-requests"
    body = {"purpose": "complaint", "reason": "csrf test"}
    before, seq = world.catalog.dump(leave_out=frozenset()), world.catalog.last_seq()
    for wrong in (None, "", other_csrf, csrf[:-1] + ("0" if csrf[-1] != "0" else "1")):
        answer = world.api.post(path, body=body, cookie=cookie, csrf=wrong)
        assert answer.status == 403 and answer.is_problem, (wrong, answer)
        logout = world.api.post("/api/v1/logout", cookie=cookie, csrf=wrong)
        assert logout.status == 403, logout
    assert world.catalog.last_seq() == seq
    assert world.catalog.dump(leave_out=frozenset()) == before
    # the same request with its token goes through: the refusals were the CSRF check's
    assert world.api.post(path, body=body, cookie=cookie, csrf=csrf).status == 201
    assert world.api.get("/api/v1/me", cookie=cookie).status == 200


def test_a_disabled_users_token_is_refused_at_once(world: World) -> None:
    person = Person("leaver", "staff", ("red",), "ann")
    done = world.run(
        "users", "add", person.name, "--role", "staff", "--team", "red", "--operator", "ann",
        "--password-stdin", stdin=person.password + "\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    world.secrets.add(person.password)
    token = world.api.bearer(person)
    world.secrets.add(token)
    assert world.api.get(f"/api/v1/recordings/{world.recordings.ann}", token).status == 200
    done = world.run("users", "disable", person.name)
    assert done.returncode == 0, done.stderr
    for path in ("/api/v1/me", f"/api/v1/recordings/{world.recordings.ann}"):
        answer = world.api.get(path, token)
        assert answer.status == 401 and answer.is_problem, (path, answer)
    assert world.api.login(person).status == 401


def test_brute_force_locks_the_account_even_for_the_right_password(world: World) -> None:
    person = Person("target", "records_officer")
    done = world.run("users", "add", person.name, "--role", person.role, "--password-stdin",
                     stdin=person.password + "\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    world.secrets.add(person.password)
    wrong = {"username": person.name, "password": "not the password at all", "kind": "bearer"}
    for _ in range(3):  # max_failures
        answer = world.api.post("/api/v1/login", body=wrong)
        assert answer.status == 401 and answer.is_problem, answer
    locked_at = time.monotonic()
    for body in (wrong, {**wrong, "password": person.password}):
        answer = world.api.post("/api/v1/login", body=body)
        assert answer.status == 429 and answer.is_problem, answer
        assert 1 <= int(answer.headers["retry-after"]) <= LOCKOUT_SECONDS, answer.headers
        assert "token" not in answer.json
    deadline = locked_at + LOCKOUT_SECONDS + 5
    while True:  # bounded by the deadline: the lock ends after lockout_seconds
        answer = world.api.login(person)
        if answer.status != 429 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert answer.status == 200, answer
    assert time.monotonic() - locked_at >= LOCKOUT_SECONDS - 1
    world.secrets.add(answer.json["token"])


# ---------------------------------------------------------------------------------------
# Constant time


SECRET_WORDS = ("token", "csrf", "password", "digest", "secret", "hash", "expected", "given")
#: comparisons that name a secret but compare nothing stored: a new password is checked
#: against the (public) user name when it is set, never when someone signs in
NOT_A_SECRET_CHECK = frozenset({"accounts.py: password.strip().lower() == name.lower()"})


def _secret_comparisons(path: Path) -> list[str]:
    """``==``/``!=``/``in`` comparisons in ``path`` with an operand whose name speaks of
    a secret (those must go through ``hmac.compare_digest`` or argon2)."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        if not any(isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in node.ops):
            continue
        names = [
            n.id if isinstance(n, ast.Name) else n.attr
            for operand in [node.left, *node.comparators]
            for n in ast.walk(operand)
            if isinstance(n, ast.Name | ast.Attribute)
        ]
        if any(word in name.lower() for name in names for word in SECRET_WORDS):
            found.append(f"{path.name}: {ast.unparse(node)}")
    return [each for each in found if each not in NOT_A_SECRET_CHECK]


def _calls(path: Path) -> set[str]:
    return {
        ast.unparse(node.func)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
    }


def test_secrets_are_compared_in_constant_time() -> None:
    auth = REPO_ROOT / "proxy" / "control" / "records" / "auth.py"
    accounts = REPO_ROOT / "proxy" / "records" / "accounts.py"
    assert _secret_comparisons(auth) == []
    assert _secret_comparisons(accounts) == []
    # the CSRF token and the stored token digest are checked with compare_digest ...
    assert "hmac.compare_digest" in _calls(auth)
    assert "hmac.compare_digest" in _calls(accounts)
    # ... and a password only by argon2 (against a dummy hash for an unknown name)
    assert "self._hasher.verify" in _calls(accounts)
    source = accounts.read_text()
    assert "from argon2 import PasswordHasher" in source and "_dummy_hash" in source


# ---------------------------------------------------------------------------------------
# Last: the expired token, and the logs of the whole run


def test_an_expired_bearer_token_is_401(world: World) -> None:
    """A bearer token past its expiry is refused by the running service: a fresh token's
    session is aged in the catalog (as ``token_minutes`` of waiting would), so the rest
    of the module keeps tokens that outlive a slow machine."""
    token = world.api.bearer(BY_NAME["dpo"])
    world.secrets.add(token)
    assert world.api.get("/api/v1/me", token).status == 200
    aged = world.catalog.write(
        "UPDATE sessions SET expires_at = created_at + 1 WHERE token_sha256 = ?",
        token_digest(token),
    )
    assert aged == 1
    answer = world.api.get("/api/v1/me", token)
    assert answer.status == 401 and answer.is_problem, answer
    assert "expired" in answer.json["detail"], answer.json
    assert world.api.get("/api/v1/me", world.token("dpo")).status == 200  # only that one


def test_no_password_token_csrf_token_or_passphrase_in_any_log_line(world: World) -> None:
    logs = world.logs()
    assert "records service listening" in logs and "passphrase-protected" in logs
    assert PASSPHRASE in world.secrets
    assert len(world.secrets) > 20, len(world.secrets)
    leaked = sorted(s[:6] + "…" for s in world.secrets if s and s in logs)
    assert leaked == [], leaked
