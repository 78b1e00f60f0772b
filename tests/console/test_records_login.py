"""Signing in to the records console in a real browser (issue 17): Debian's chromium,
driven by Playwright, against a real ``recproxy records serve``.

The login form, its errors next to the fields, the landing page per role, sign-out,
an expired session taken back to the login page saying so, a form POST without its CSRF
token refused with nothing changed, ``next`` never leading off the site, and axe-core
finding no serious or critical violation on the pages."""

from __future__ import annotations

import hashlib
import sqlite3
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.control.records.service import PASSWORD, RecordsProcess, add_user, make_folder

from .browser import assert_accessible, screenshot


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordsProcess]:
    config = make_folder(tmp_path_factory.mktemp("records-console"))
    add_user(config, "olive", "records_officer")
    add_user(config, "sam", "staff", "--operator", "sam")
    add_user(config, "dee", "dpo")
    process = RecordsProcess(config)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def sign_in(page: Any, url: str, name: str, password: str = PASSWORD) -> None:
    page.goto(f"{url}/")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


OPEN_SESSIONS = "SELECT count(*) FROM sessions WHERE revoked_at IS NULL"


def catalog(service: RecordsProcess) -> sqlite3.Connection:
    return sqlite3.connect(service.log_path.parent / "data" / "catalog.sqlite3", timeout=10)


def test_the_console_asks_for_a_sign_in_and_shows_each_role_its_sections(
    service: RecordsProcess, page: Any
) -> None:
    page.goto(f"{service.url}/")
    assert page.url == f"{service.url}/login?next=/console"
    assert page.get_by_role("heading", name="Sign in").is_visible()
    assert_accessible(page)
    screenshot(page, "login")
    sign_in(page, service.url, "olive")
    assert page.url == f"{service.url}/console"
    menu = page.get_by_role("navigation", name="Main")
    assert menu.get_by_role("link", name="Approvals").is_visible()
    assert menu.get_by_role("link", name="Audit log").count() == 0  # the DPO's alone
    assert_accessible(page)
    page.get_by_role("button", name="Sign out").click()
    assert page.url.startswith(f"{service.url}/login")
    page.goto(f"{service.url}/console")  # the session is over
    assert page.url.startswith(f"{service.url}/login")


def test_bad_sign_ins_say_what_is_wrong_next_to_the_field(
    service: RecordsProcess, page: Any
) -> None:
    page.goto(f"{service.url}/login")
    page.get_by_role("button", name="Sign in").click()
    assert page.locator("#username-error").inner_text() == "Enter your user name."
    assert page.get_by_label("User name").get_attribute("aria-invalid") == "true"
    sign_in(page, service.url, "sam", "not the password")
    assert page.locator("#password-error").inner_text() == "Wrong user name or password."
    assert page.get_by_label("User name").input_value() == "sam"
    assert_accessible(page)


def test_next_leads_only_to_a_page_of_this_console(service: RecordsProcess, page: Any) -> None:
    for elsewhere in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        page.goto(f"{service.url}/login?next={elsewhere}")
        sign_in_here(page, "sam")
        assert page.url == f"{service.url}/console", elsewhere
        page.context.clear_cookies()


def sign_in_here(page: Any, name: str) -> None:
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_an_expired_session_returns_to_the_login_page(service: RecordsProcess, page: Any) -> None:
    sign_in(page, service.url, "dee")
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "__Host-recproxy"]
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    digest = hashlib.sha256(cookie["value"].encode()).hexdigest()
    with catalog(service) as db:
        aged = db.execute(
            "UPDATE sessions SET expires_at = created_at + 1 WHERE token_sha256 = ?", (digest,)
        ).rowcount
    assert aged == 1
    page.goto(f"{service.url}/console")
    assert page.url == f"{service.url}/login?next=/console&why=expired"
    assert "Your session has expired" in page.get_by_role("status").inner_text()


def test_a_post_without_its_csrf_token_is_refused_and_changes_nothing(
    service: RecordsProcess, page: Any
) -> None:
    sign_in(page, service.url, "sam")
    with catalog(service) as db:
        open_before = db.execute(
            "SELECT count(*) FROM sessions WHERE revoked_at IS NULL"
        ).fetchone()
    # sign-out is a form POST: without the page's token it must not end the session
    answer = page.request.post(f"{service.url}/logout", form={"csrf_token": "forged"})
    assert answer.status == 403 and "nothing was changed" in answer.text()
    answer = page.request.post(f"{service.url}/logout")
    assert answer.status == 403
    with catalog(service) as db:
        open_after = db.execute(OPEN_SESSIONS).fetchone()
    assert open_after == open_before
    page.goto(f"{service.url}/console")
    assert page.url == f"{service.url}/console"  # still signed in


def test_the_pages_load_nothing_from_elsewhere(service: RecordsProcess, page: Any) -> None:
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    sign_in(page, service.url, "olive")
    assert asked and all(url.startswith(service.url) for url in asked), asked
    with urllib.request.urlopen(f"{service.url}/login") as answer:
        policy = answer.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert Path(__file__).resolve().parents[2].joinpath("docs", "console", "login.png").exists()


def test_a_sign_in_posted_from_another_site_is_refused(service: RecordsProcess, page: Any) -> None:
    """Login CSRF: a hostile page must not sign the victim's browser in as someone else."""
    with catalog(service) as db:
        before = db.execute("SELECT count(*) FROM sessions").fetchone()
    form = {"username": "sam", "password": PASSWORD, "next": "/console"}
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        answer = page.request.post(f"{service.url}/login", form=form, headers=headers)
        assert answer.status == 403, headers
        assert not [c for c in page.context.cookies() if c["name"] == "__Host-recproxy"]
    with catalog(service) as db:
        assert db.execute("SELECT count(*) FROM sessions").fetchone() == before
    sign_in(page, service.url, "sam")  # the console's own form still signs in
    assert page.url == f"{service.url}/console"
