"""The DPO's pages in a real browser (issue 17): Debian's chromium, driven by
Playwright, against a real ``recproxy records serve`` holding real recordings (AES-GCM
segments by the RecordingWriter, catalogued in SQLite) and a real export-signing key
made by ``recproxy keygen --signing``.

The issue's flow: the DPO opens a subject access case on the page, decides each call,
starts the export, watches it finish, downloads the bundle and ``recproxy
verify-bundle`` accepts the ZIP.  A records officer sees no decision form and a forged
decision POST is refused 403 naming the rule, changing nothing; bad input is shown next
to its field and writes nothing, not even an audit entry.  The audit page filters and
shows the chain's check; the flags page lists a flag raised by real refusals and clears
it with a reason.  axe-core finds no serious or critical violation on any page."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from proxy.storage.catalog import SqliteCatalog
from tests.control.records.service import PASSWORD, RecordsProcess, add_user, with_passphrase
from tests.control.records.test_bulk import PASSPHRASE, write_config, write_recordings
from tests.records.playback_world import catalogue

from .browser import assert_accessible, screenshot
from .test_records_login import sign_in

CALLS = 2
WINDOW = ("2023-11-01T00:00", "2023-12-01T00:00")  # the catalogued calls are in November


@dataclass
class Host:
    folder: Path
    service: RecordsProcess
    ids: list[str]

    @property
    def url(self) -> str:
        return self.service.url

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.folder / "catalog.sqlite3", timeout=10) as db:
            return db.execute(sql, args).fetchall()

    def audit_seq(self) -> int:
        return int(self.rows("SELECT coalesce(max(seq), 0) FROM audit_log")[0][0])

    def api(self, who: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """A bearer-token API call as ``who`` (a fresh login each time)."""
        login = {"username": who, "password": PASSWORD, "kind": "bearer"}
        token = self._call("POST", "/api/v1/login", login)[1]["token"]
        return self._call(method, path, body, token)

    def _call(self, method: str, path: str, body: Any = None, token: str = "") -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as refused:
            return refused.code, json.loads(refused.read())


def recproxy(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", *args], cwd=folder, env=with_passphrase(PASSPHRASE),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def catalogue_all(folder: Path, ids: list[str]) -> None:
    """Catalogue the recordings ``ids`` written in ``folder`` (in a thread of its own:
    Playwright's sync API holds this thread's event loop)."""

    async def each() -> None:
        async with SqliteCatalog(folder / "catalog.sqlite3") as catalog:
            for rid in ids:
                await catalogue(catalog, rid)

    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, each()).result(timeout=60)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    folder = tmp_path_factory.mktemp("dpo-console")
    ids = write_recordings(folder, CALLS)  # recording.key (behind PASSPHRASE) and .pub
    made = recproxy(folder, "keygen", "--signing", "--out", "keys")
    assert made.returncode == 0, made.stderr
    config = write_config(
        folder,
        f'[export]\nsigning_key = "{folder}/keys/signing.key"\n'
        f'signing_public_key = "{folder}/keys/signing.pub"\n',
    )
    catalogue_all(folder, ids)
    add_user(config, "dee", "dpo")
    add_user(config, "olive", "records_officer")
    add_user(config, "sam", "staff", "--operator", "sam")
    service = RecordsProcess(config, env=with_passphrase(PASSPHRASE))
    try:
        yield Host(folder, service, ids)
    finally:
        service.stop()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(accept_downloads=True)
    try:
        yield context.new_page()
    finally:
        context.close()


def open_case_on_the_page(page: Any, host: Host, requester: str) -> str:
    """Fill the open form on the cases page; the new case's id (its page is shown)."""
    page.goto(f"{host.url}/console/sar")
    page.get_by_label("Requester", exact=True).fill(requester)
    page.get_by_label("Identity check", exact=True).fill("passport seen")
    page.get_by_label("Number(s)", exact=True).fill("01234 567890")
    page.get_by_label("From (UTC)", exact=True).fill(WINDOW[0])
    page.get_by_label("To (UTC)", exact=True).fill(WINDOW[1])
    page.get_by_role("button", name="Open the case").click()
    heading = page.get_by_role("heading", level=1).inner_text()
    assert heading.startswith("Subject access case SAR-"), heading
    return str(heading.rsplit(" ", 1)[1])


def decide(page: Any, position: int, release: str, reason: str) -> None:
    form = page.locator("form.decision").nth(position - 1)
    form.get_by_label(release, exact=True).check()
    form.get_by_label(f"Reason for the decision on call {position}").fill(reason)
    form.get_by_role("button", name=f"Save the decision on call {position}").click()


def test_the_dpo_opens_a_case_decides_exports_and_downloads_a_bundle_verify_bundle_accepts(
    host: Host, page: Any, tmp_path: Path
) -> None:
    sign_in(page, host.url, "dee")
    page.goto(f"{host.url}/console/sar")
    assert_accessible(page)
    case_id = open_case_on_the_page(page, host, "Pat Caller")
    rows = page.locator("table tbody tr")
    assert rows.count() == CALLS
    assert "alice, bob" in rows.first.inner_text()  # both call takers of the transfer
    assert_accessible(page)
    decide(page, 1, "Release both parties", "the caller's own call")
    decide(page, 2, "Release the caller only", "the call taker asked not to be released")
    assert page.url.startswith(f"{host.url}/console/sar/{case_id}")
    decisions = [c.inner_text() for c in page.locator("td.decision-cell").all()]
    assert decisions[0].startswith("Release both parties: the caller's own call (dee)")
    assert decisions[1].startswith("Release the caller only")
    assert host.rows(
        "SELECT release FROM sar_case_recordings WHERE case_id = ? ORDER BY position", case_id
    ) == [("both",), ("caller",)]
    screenshot(page, "sar_case")
    page.get_by_label("Include a transcript of each released call").uncheck()
    polled: list[str] = []
    page.on("request", lambda r: polled.append(r.url) if "/exports/" in r.url else None)
    page.get_by_role("button", name="Start an export of the released calls").click()
    assert "?job=" in page.url
    first_state = page.locator("#job-state").inner_text()
    download_link = page.get_by_role("link", name=f"Download the bundle ({case_id}.zip)")
    download_link.wait_for(timeout=120_000)  # the page's script reloads it when done
    assert page.locator("#job-state").inner_text() == "done"
    assert first_state == "done" or polled  # while it ran, the page's script polled the API
    assert_accessible(page)
    with page.expect_download() as downloading:
        download_link.click()
    bundle = tmp_path / f"{case_id}.zip"
    downloading.value.save_as(bundle)
    trusted = host.folder / "keys" / "signing.pub"
    verified = recproxy(host.folder, "verify-bundle", str(bundle), "--public-key", str(trusted))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert host.rows(
        "SELECT actor FROM audit_log WHERE action = 'sar.download' AND object = ?", f"sar:{case_id}"
    ) == [("dee",)]
    page.goto(f"{host.url}/console/sar")
    assert page.get_by_role("link", name=case_id).is_visible()
    screenshot(page, "sar_list")


def test_a_records_officer_sees_no_decision_form_and_a_forged_decision_is_refused(
    host: Host, page: Any
) -> None:
    status, case = host.api("dee", "POST", "/api/v1/sar-cases", {
        "requester": "Officer Case", "identity_check": "passport seen", "number": "01234 567890",
        "from": WINDOW[0], "to": WINDOW[1], "received": "2024-01-15T09:00:00Z"})  # fmt: skip
    assert status == 201, case
    sign_in(page, host.url, "olive")
    page.goto(f"{host.url}/console/sar?state=open")
    late = page.locator("tr.overdue", has=page.get_by_role("link", name=case["id"]))
    assert "OVERDUE by" in late.inner_text()
    assert_accessible(page)
    answer = page.goto(f"{host.url}/console/sar?state=lost")
    assert answer.status == 422
    assert page.locator("#state-error").inner_text().startswith("state must be one of open")
    page.goto(f"{host.url}/console/sar/{case['id']}")
    assert page.get_by_role("heading", name=f"Subject access case {case['id']}").is_visible()
    assert page.locator("form.decision").count() == 0
    assert page.get_by_role("heading", name="Decisions").count() == 0
    assert page.get_by_role("button", name="Close the case").is_visible()  # officers close
    assert_accessible(page)
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    before = host.audit_seq()
    forged = page.request.post(
        f"{host.url}/console/sar/{case['id']}/decisions",
        form={"csrf_token": token, "recording_id": host.ids[0], "release": "both",
              "reason": "forged"},
    )  # fmt: skip
    assert forged.status == 403
    assert "sar.decide_dpo_only" in forged.text()
    assert host.rows("SELECT actor, action FROM audit_log WHERE seq > ?", before) == [
        ("olive", "access.refused")
    ]
    assert host.rows(
        "SELECT count(*) FROM sar_case_recordings WHERE case_id = ? AND release IS NOT NULL",
        case["id"],
    ) == [(0,)]
    page.get_by_label("Reason for closing").fill("the requester withdrew the request")
    page.get_by_role("button", name="Close the case").click()
    assert page.locator("dd.state").inner_text() == "closed"
    assert page.get_by_role("button", name="Start an export of the released calls").count() == 0
    assert host.rows("SELECT state, closed_by FROM sar_cases WHERE id = ?", case["id"]) == [
        ("closed", "olive")
    ]


def test_bad_input_is_shown_next_to_its_field_and_writes_nothing(host: Host, page: Any) -> None:
    sign_in(page, host.url, "dee")
    page.goto(f"{host.url}/console/sar")
    page.get_by_label("Requester", exact=True).fill("Pat Caller")
    page.get_by_label("Identity check", exact=True).fill("passport seen")
    page.get_by_label("Number(s)", exact=True).fill("01234 567890")
    page.get_by_label("From (UTC)", exact=True).fill(WINDOW[1])
    page.get_by_label("To (UTC)", exact=True).fill(WINDOW[0])
    before = host.audit_seq()
    page.get_by_role("button", name="Open the case").click()
    assert page.locator("#to-error").inner_text() == "to must be after from"
    assert page.get_by_label("To (UTC)", exact=True).get_attribute("aria-invalid") == "true"
    assert page.get_by_label("Requester", exact=True).input_value() == "Pat Caller"
    assert_accessible(page)
    assert host.audit_seq() == before  # not even an audit entry
    case_id = open_case_on_the_page(page, host, "Another Caller")
    form = page.locator("form.decision").first
    form.get_by_label("Refuse", exact=True).check()
    before = host.audit_seq()
    form.get_by_role("button", name="Save the decision on call 1").click()
    assert page.locator("#reason-1-error").inner_text() == "a decision needs a reason"
    assert_accessible(page)
    assert host.audit_seq() == before
    assert host.rows(
        "SELECT count(*) FROM sar_case_recordings WHERE case_id = ? AND release IS NOT NULL",
        case_id,
    ) == [(0,)]


def test_the_audit_page_filters_and_shows_the_chain_check(host: Host, page: Any) -> None:
    status, _ = host.api("olive", "GET", "/api/v1/audit")  # an entry of its own: refused
    assert status == 403
    sign_in(page, host.url, "dee")
    page.goto(f"{host.url}/console/audit")
    page.get_by_label("Actor", exact=True).fill("olive")
    page.get_by_label("Action", exact=True).fill("access.refused")
    page.get_by_role("button", name="Show entries").click()
    cells = [row.locator("td").all_inner_texts() for row in page.locator("tbody tr").all()]
    assert cells and {(c[2], c[3]) for c in cells} == {("olive", "access.refused")}
    page.get_by_role("button", name="Check the chain now").click()
    assert page.locator("#check-result").inner_text().startswith("Intact:")
    assert page.get_by_label("Actor", exact=True).input_value() == "olive"  # filters kept
    assert_accessible(page)
    screenshot(page, "audit")
    page.get_by_label("Since (UTC)", exact=True).fill("not a time")
    before = host.audit_seq()
    page.get_by_role("button", name="Show entries").click()
    assert page.locator("#since-error").inner_text().startswith("since: not an ISO 8601")
    assert host.audit_seq() == before


def test_a_records_officer_checks_the_chain_on_the_page_but_reads_no_entry(
    host: Host, page: Any
) -> None:
    """As over the API: ``verify_integrity`` is a records officer's, ``view_audit`` the
    DPO's alone."""
    status, checked = host.api("olive", "GET", "/api/v1/audit/verify")
    assert status == 200 and checked["intact"], checked
    sign_in(page, host.url, "olive")
    menu = page.get_by_role("navigation", name="Main")
    assert menu.get_by_role("link", name="Audit log").count() == 0
    menu.get_by_role("link", name="Audit chain").click()
    assert page.url == f"{host.url}/console/audit"
    assert page.get_by_role("heading", name="Audit chain", level=1).is_visible()
    assert page.get_by_role("heading", name="Entries").count() == 0
    before = host.audit_seq()
    page.goto(f"{host.url}/console/audit?actor=dee")  # a filter by hand reads nothing
    assert page.locator("tbody tr").count() == 0 and host.audit_seq() == before
    page.get_by_role("button", name="Check the chain now").click()
    assert page.locator("#check-result").inner_text().startswith("Intact:")
    assert page.locator("tbody tr").count() == 0
    assert_accessible(page)
    screenshot(page, "audit-chain")
    (entry,) = host.rows("SELECT actor, action, detail FROM audit_log WHERE seq > ?", before)
    assert entry[:2] == ("olive", "access.allowed")
    assert json.loads(entry[2])["action"] == "verify_integrity"  # the check, not a reading

    page.context.clear_cookies()
    sign_in(page, host.url, "sam")  # staff: neither
    answer = page.goto(f"{host.url}/console/audit?verify=1")
    assert answer.status == 403 and "integrity.not_permitted" in page.locator("main").inner_text()
    answer = page.goto(f"{host.url}/console/audit")
    assert answer.status == 403 and "audit.dpo_only" in page.locator("main").inner_text()


def test_the_flags_page_lists_a_flag_raised_by_refusals_and_clears_it(
    host: Host, page: Any
) -> None:
    for _ in range(6):  # more than refusals_per_hour (5): repeated_refusals
        status, _refusal = host.api("sam", "GET", "/api/v1/audit")
        assert status == 403
    (flag_id,) = host.rows("SELECT id FROM access_flags WHERE user = 'sam' AND cleared_at IS NULL")[
        0
    ]
    sign_in(page, host.url, "dee")
    page.goto(f"{host.url}/console/flags")
    section = page.get_by_role("region", name=f"Flag {flag_id}: repeated refusals")
    assert "sam" in section.inner_text()
    assert_accessible(page)
    screenshot(page, "flags")
    section.get_by_role("button", name=f"Clear flag {flag_id}").click()
    assert page.locator(f"#clear-reason-{flag_id}-error").is_visible()
    assert_accessible(page)
    page.get_by_label(f"Why flag {flag_id} needs nothing more").fill("sam tried the DPO's page")
    page.get_by_role("button", name=f"Clear flag {flag_id}").click()
    assert page.url.startswith(f"{host.url}/console/flags")
    assert page.get_by_role("region", name=f"Flag {flag_id}: repeated refusals").count() == 0
    assert host.rows(
        "SELECT cleared_by, cleared_reason FROM access_flags WHERE id = ?", flag_id
    ) == [("dee", "sam tried the DPO's page")]


def test_staff_are_refused_by_rule_and_an_unknown_case_is_not_found(host: Host, page: Any) -> None:
    sign_in(page, host.url, "sam")
    answer = page.goto(f"{host.url}/console/sar")
    assert answer.status == 403 and "sar.not_officer" in page.locator("main").inner_text()
    assert_accessible(page)
    page.context.clear_cookies()
    sign_in(page, host.url, "dee")
    before = host.audit_seq()
    answer = page.goto(f"{host.url}/console/sar/SAR-1999-0001")
    assert answer.status == 404
    assert "no subject access case SAR-1999-0001" in page.get_by_role("alert").inner_text()
    assert host.audit_seq() == before  # an unknown case writes nothing, as over the API


def test_the_audit_log_pages_on_from_the_last_entry_shown(host: Host, page: Any) -> None:
    for _ in range(60):  # each reading is an entry itself: more than a page of them
        if host.audit_seq() > 60:
            break
        assert host.api("dee", "GET", "/api/v1/audit?limit=1")[0] == 200
    sign_in(page, host.url, "dee")
    page.goto(f"{host.url}/console/audit")
    first = [int(n) for n in page.locator("tbody tr td:first-child").all_inner_texts()]
    assert len(first) == 50
    page.get_by_role("link", name="Next page").click()
    assert f"after={first[-1]}" in page.url
    second = [int(n) for n in page.locator("tbody tr td:first-child").all_inner_texts()]
    assert second and second[0] > first[-1] and second == sorted(second)
