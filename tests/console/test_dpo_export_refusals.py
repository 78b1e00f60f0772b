"""The DPO's export refusals in a real browser (issue 17): an export the host will not
start now — another one running, no export-signing key, nothing released — is said in
the case page's export section with the API's status, and nothing is exported: no job,
no bundle, no ``sar_exports`` row, no ``sar.export`` or ``export_sar`` audit entry."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.control.records.service import RecordsProcess, add_user, with_passphrase
from tests.control.records.test_bulk import PASSPHRASE, write_config, write_recordings

from .browser import assert_accessible
from .test_dpo_pages import WINDOW, Host, catalogue_all, host, page
from .test_records_login import sign_in

__all__ = ["host", "page"]

START = "Start an export of the released calls"
#: The audit actions an export writes (its gate decisions, its record): none may appear.
EXPORTED = "detail LIKE '%\"export_sar\"%' OR action = 'sar.export'"


def case_deciding(host: Host, requester: str, release: str) -> str:
    """A case over the API, each of its calls decided ``release`` by the DPO."""
    status, case = host.api("dee", "POST", "/api/v1/sar-cases", {
        "requester": requester, "identity_check": "passport seen", "number": "01234 567890",
        "from": WINDOW[0], "to": WINDOW[1]})  # fmt: skip
    assert status == 201, case
    decisions = f"/api/v1/sar-cases/{case['id']}/decisions"
    for rid in host.ids:
        decision = {"recording_id": rid, "release": release, "reason": "ok"}
        status, decided = host.api("dee", "POST", decisions, decision)
        assert status == 200, decided
    return str(case["id"])


def nothing_exported(host: Host, case_id: str, since: int) -> None:
    assert host.rows("SELECT count(*) FROM sar_exports WHERE case_id = ?", case_id) == [(0,)]
    assert host.rows(f"SELECT count(*) FROM audit_log WHERE seq > ? AND ({EXPORTED})", since) == [
        (0,)
    ]
    # under exports/NODE/CASE/ (issue 20: each node's records service has its own folder)
    assert not [p for p in (host.folder / "exports").rglob("*.zip") if case_id in p.parts]


def press_start(page: Any, url: str, case_id: str, *, transcripts: bool = False) -> int:
    """On the case's page, press Start; the status the page came with."""
    page.goto(f"{url}/console/sar/{case_id}")
    page.get_by_label("Include a transcript of each released call").set_checked(transcripts)
    with page.expect_response(lambda r: r.url.endswith("/exports")) as answered:
        page.get_by_role("button", name=START).click()
    status: int = answered.value.status
    return status


def refused_export(host: Host, page: Any, release: str, status: int) -> str:
    """The DPO presses Start on a new case whose calls are decided ``release``: the
    page comes back with ``status``, the case's page with the button to try again, and
    nothing is exported.  What the export section says."""
    case_id = case_deciding(host, f"Caller deciding {release}", release)
    sign_in(page, host.url, "dee")
    before = host.audit_seq()
    assert press_start(page, host.url, case_id) == status
    assert page.get_by_role("heading", name=f"Subject access case {case_id}").is_visible()
    assert page.get_by_role("button", name=START).is_visible()
    assert_accessible(page)
    nothing_exported(host, case_id, before)
    said: str = page.locator("#export-error").inner_text().replace(case_id, "CASE")
    return said


def test_nothing_released_is_said_on_the_case_page_and_nothing_is_exported(
    host: Host, page: Any
) -> None:
    said = refused_export(host, page, "refuse", 422)
    assert said == "case CASE releases no call (2 refused, 0 undecided): nothing to export"


def test_a_second_export_while_one_runs_is_said_and_starts_nothing(host: Host, page: Any) -> None:
    case_id = case_deciding(host, "Busy Caller", "both")
    path = f"/api/v1/sar-cases/{case_id}/exports"
    status, first = host.api("dee", "POST", path, {"transcripts": True})  # minutes of work
    assert status == 202, first
    sign_in(page, host.url, "dee")
    before = host.audit_seq()
    assert press_start(page, host.url, case_id) == 429
    assert host.api("dee", "GET", f"{path}/{first['id']}")[1]["state"] == "running"
    said = page.locator("#export-error").inner_text()
    assert said == "1 export(s) already running on this host: try again when it has finished"
    assert_accessible(page)
    assert host.rows(f"SELECT count(*) FROM audit_log WHERE seq > ? AND ({EXPORTED})", before) == [
        (0,)
    ]  # the running one's own decisions came before
    deadline = time.monotonic() + 180  # the first one finishes (the next test's host)
    while host.api("dee", "GET", f"{path}/{first['id']}")[1]["state"] == "running":
        assert time.monotonic() < deadline, "the first export never finished"
        time.sleep(0.5)
    assert host.rows("SELECT count(*) FROM sar_exports WHERE case_id = ?", case_id) == [(1,)]


@pytest.fixture
def keyless(tmp_path: Path) -> Iterator[Host]:
    """A records service started without an export-signing key."""
    ids = write_recordings(tmp_path, 2)
    config = write_config(tmp_path)  # [export] left out: no signing key there
    catalogue_all(tmp_path, ids)
    add_user(config, "dee", "dpo")
    service = RecordsProcess(config, env=with_passphrase(PASSPHRASE))
    try:
        yield Host(tmp_path, service, ids)
    finally:
        service.stop()


def test_no_signing_key_is_said_on_the_case_page_and_nothing_is_exported(
    keyless: Host, page: Any
) -> None:
    said = refused_export(keyless, page, "both", 503)
    assert "no export-signing key (make one with recproxy keygen --signing)" in said, said
    assert "Traceback" not in keyless.service.log_text()
