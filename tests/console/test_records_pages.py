"""The records pages in a real browser (issue 17): Debian's chromium driven by
Playwright against a real ``recproxy records serve`` holding real encrypted recordings
(``tests/control/records/records_world.py``: a transferred call, part 1 ``alice`` of
``reception``, part 2 ``bob`` of ``nurses``).

The issue's flow: a staff user asks for access to the whole call, a records officer
approves it on the approvals page, and the staff user plays it on the recording's page —
the audio element's source answers a Range request with the recording's exact bytes,
the waveform is served, and the audit log holds her ``play`` with its purpose.  Search
shows metadata with a bad filter next to its field; holds are placed and released; every
page passes axe-core."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from proxy.storage.export import pcm16, wav_header
from tests.control.records.records_world import World, running_world
from tests.control.records.service import recproxy

from .browser import assert_accessible, screenshot
from .test_records_login import sign_in


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The records world, made in a thread of its own: Playwright's sync API keeps an
    event loop running in this one, and the world's set-up runs its own."""
    running = running_world(tmp_path_factory.mktemp("records-pages"))
    with ThreadPoolExecutor(1) as thread:
        made = thread.submit(running.__enter__).result(timeout=120)
        try:
            yield made
        finally:
            thread.submit(running.__exit__, None, None, None).result(timeout=60)


@pytest.fixture
def browser_context(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context()
    try:
        yield context
    finally:
        context.close()


def signed_in(context: Any, world: World, name: str) -> Any:
    page = context.new_page()
    sign_in(page, world.service.url, name)
    assert page.url == f"{world.service.url}/console", page.url
    return page


def field_error(page: Any, field_id: str) -> str:
    assert page.locator(f"#{field_id}").get_attribute("aria-invalid") == "true"
    described = page.locator(f"#{field_id}").get_attribute("aria-describedby") or ""
    assert f"{field_id}-error" in described.split()
    return str(page.locator(f"#{field_id}-error").inner_text())


def test_search_shows_metadata_and_a_bad_date_next_to_its_field(
    world: World, browser_context: Any
) -> None:
    page = signed_in(browser_context, world, "alice")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Search").click()
    rows = page.locator("tbody tr")
    assert rows.count() == 3  # the three calls she took part 1 of
    first = rows.nth(0).inner_text()
    assert "+441234567890" in first and "1: alice (reception)" in first and "2: bob" in first
    assert page.locator(f'a[href="/console/recordings/{world.transferred.id}"]').count() == 1
    assert_accessible(page)
    screenshot(page, "search")

    page.goto(f"{world.service.url}/console/search?size=2")
    assert rows.count() == 2 and page.get_by_role("link", name="Previous page").count() == 0
    page.get_by_role("link", name="Next page").click()
    assert page.url.endswith("/console/search?size=2&page=2")
    assert rows.count() == 1 and page.get_by_role("link", name="Next page").count() == 0
    page.get_by_role("link", name="Previous page").click()
    assert rows.count() == 2

    page.get_by_label("Team").fill("nobody's team")
    page.get_by_role("button", name="Search").click()
    assert page.locator("tbody tr").count() == 0
    assert "No recordings you may see match." in page.locator("main").inner_text()

    page.get_by_label("Team").fill("")
    page.get_by_label("From", exact=True).fill("last Tuesday")
    page.get_by_role("button", name="Search").click()
    assert field_error(page, "from") == "from: not an ISO 8601 date or time: 'last Tuesday'"
    assert page.get_by_label("From", exact=True).input_value() == "last Tuesday"
    assert_accessible(page)

    page.get_by_label("From", exact=True).fill("2023-11-14")
    page.get_by_label("To", exact=True).fill("2023-11-01")
    page.get_by_role("button", name="Search").click()
    assert field_error(page, "to") == "to must be after from"


def test_a_staff_user_asks_an_officer_approves_and_she_plays_the_whole_call(
    world: World, browser_context: Any, chromium: Any
) -> None:
    rid = world.transferred.id
    alice = signed_in(browser_context, world, "alice")
    alice.goto(f"{world.service.url}/console/recordings/{rid}")
    assert "bob" in alice.locator("table").inner_text()
    # her own part she may hear; the whole call (bob's part too) needs a grant
    alice.get_by_label("Purpose", exact=True).first.select_option("complaint")
    alice.get_by_label("Reason", exact=True).first.fill("complaint 17")
    alice.get_by_role("button", name="Listen").click()
    assert "request access below" in field_error(alice, "listen-purpose")
    assert alice.locator("audio").count() == 0
    assert_accessible(alice)

    alice.get_by_role("button", name="Request access").click()  # nothing chosen
    assert field_error(alice, "ask-purpose").startswith("playback, export and access requests")
    alice.locator("#ask-purpose").select_option("complaint")
    alice.locator("#ask-reason").fill("complaint 17 about the transfer")
    alice.get_by_role("button", name="Request access").click()
    assert alice.url.endswith("?done=requested")
    assert "Your request was sent" in alice.get_by_role("status").inner_text()

    # the officer's approvals page, in a browser context of her own
    officer_context = chromium.new_context()
    try:
        olive = signed_in(officer_context, world, "olive")
        olive.get_by_role("link", name="Approvals").first.click()
        (request_id,) = pending_ids(world, rid)
        section = olive.locator(f"section:has(#req-{request_id})")
        assert "alice asks to hear" in section.inner_text()
        assert_accessible(olive)
        screenshot(olive, "approvals")
        section.get_by_role("button", name="Approve").click()
        assert field_error(olive, f"reason-{request_id}") == "a decision needs a reason"
        section = olive.locator(f"section:has(#req-{request_id})")
        section.get_by_label("Reason for your decision").fill("complaint 17 is open")
        section.get_by_label("Days the grant lasts (approve only)").fill("3")
        section.get_by_role("button", name="Approve").click()
        assert olive.url.endswith("/console/approvals?done=approved")
        assert olive.locator(f"#req-{request_id}").count() == 0
    finally:
        officer_context.close()

    seq = world.last_seq()
    alice.goto(f"{world.service.url}/console/recordings/{rid}")
    alice.locator("#listen-purpose").select_option("complaint")
    alice.locator("#listen-reason").fill("complaint 17")
    alice.get_by_role("button", name="Listen").click()
    audio = alice.locator("audio")
    source = audio.get_attribute("src")
    assert source.startswith(f"/api/v1/recordings/{rid}/audio?")
    assert audio.get_attribute("preload") == "none"
    expected = wav_header(len(world.transferred.audio), 2) + pcm16(
        world.transferred.audio, "stereo"
    )
    answer = alice.request.get(f"{world.service.url}{source}", headers={"Range": "bytes=0-4095"})
    assert answer.status == 206
    assert answer.headers["content-range"] == f"bytes 0-4095/{len(expected)}"
    assert answer.body() == expected[:4096]
    later = alice.request.get(f"{world.service.url}{source}", headers={"Range": "bytes=50000-"})
    assert later.status == 206 and later.body() == expected[50000:]

    # she presses play: the browser fetches the source itself, with a Range
    with alice.expect_response(lambda r: "/audio?" in r.url, timeout=10_000) as played:
        box = audio.bounding_box()
        alice.mouse.click(box["x"] + 20, box["y"] + box["height"] / 2)
    assert played.value.status == 206
    assert played.value.request.headers.get("range", "").startswith("bytes=0-")
    waveform = alice.locator("img.waveform")
    assert alice.evaluate("img => img.complete && img.naturalWidth > 0", waveform.element_handle())
    drawn = alice.request.get(f"{world.service.url}{waveform.get_attribute('src')}")
    assert drawn.status == 200 and drawn.headers["content-type"].startswith("image/svg+xml")
    assert "Part 2: bob" in drawn.text() and "Part 1: alice" in drawn.text()
    assert_accessible(alice)
    screenshot(alice, "recording")

    plays = [
        entry
        for entry in world.audit_since(seq)
        if entry["actor"] == "alice" and entry["detail"].get("action") == "play"
    ]
    assert plays and all(e["action"] == "access.allowed" for e in plays)
    assert all(
        e["detail"]["purpose"] == "complaint" and e["reason"] == "complaint 17" for e in plays
    )
    assert {e["object"] for e in plays} == {f"recording:{rid}"}
    assert len(plays) >= 3  # the waveform and both ranges, each decided and audited
    # the waveform's reads (the page's image, the fetch above) are marked as drawings:
    # audited, but not another playback for the too_many_playbacks flag (test_flagging)
    drawings = [e for e in plays if e["detail"].get("waveform")]
    assert len(drawings) >= 2 and len(plays) - len(drawings) >= 3  # and the 3 ranges

    # a part that is no number (a superscript two passes str.isdigit) is said at its field
    odd = alice.goto(
        f"{world.service.url}/console/recordings/{rid}?purpose=complaint&reason=x&part=%C2%B2"
    )
    assert odd is not None and odd.status < 500
    assert "has no part" in alice.locator("main").inner_text()


def pending_ids(world: World, recording_id: str) -> list[str]:
    with sqlite3.connect(world.catalog_path) as db:
        rows = db.execute(
            "SELECT id FROM access_requests WHERE recording_id = ? AND state = 'pending'",
            (recording_id,),
        ).fetchall()
    return [row[0] for row in rows]


def test_staff_see_their_requests_and_withdraw_one_but_no_approvals(
    world: World, browser_context: Any
) -> None:
    carl = signed_in(browser_context, world, "carl")
    carl.goto(f"{world.service.url}/console/recordings/{world.transferred.id}")
    # not his call: the page says so and still lets him ask
    assert "no grant for it" in carl.get_by_role("alert").inner_text()
    carl.locator("#ask-purpose").select_option("training")
    carl.locator("#ask-reason").fill("to learn from it")
    carl.get_by_role("button", name="Request access").click()
    assert carl.url.endswith("?done=requested")
    assert_accessible(carl)
    carl.get_by_role("link", name="My requests").first.click()
    row = carl.locator("tbody tr", has_text="training")
    assert "pending" in row.inner_text()
    assert_accessible(carl)
    (request_id,) = [r for r in pending_ids(world, world.transferred.id) if r in row.inner_html()]
    forged = carl.request.post(
        f"{world.service.url}/console/requests/{request_id}/withdraw", form={"csrf_token": "x"}
    )
    assert forged.status == 403 and request_id in pending_ids(world, world.transferred.id)
    row.get_by_role("button", name="Withdraw").click()
    assert carl.url.endswith("/console/requests?done=withdrawn")
    assert "withdrawn" in carl.locator("tbody tr", has_text="training").inner_text()
    assert carl.locator("tbody").get_by_role("button", name="Withdraw").count() == 0

    carl.goto(f"{world.service.url}/console/approvals")
    assert "Only records officers and the DPO" in carl.get_by_role("alert").inner_text()
    answer = carl.request.get(f"{world.service.url}/console/holds")
    assert answer.status == 403 and "only records officers and the DPO" in answer.text()


def test_an_officer_places_and_releases_a_hold(world: World, browser_context: Any) -> None:
    olive = signed_in(browser_context, world, "olive")
    olive.goto(f"{world.service.url}/console/recordings/{world.transferred.id}")
    olive.get_by_role("link", name="Place a hold on this recording").click()
    assert olive.get_by_label("Recording id").input_value() == world.transferred.id
    olive.get_by_label("Kind").select_option("complaint")
    olive.get_by_label("Reference").fill("COMPLAINT-17")
    olive.get_by_label("Review date").fill("31/12/2027")
    olive.get_by_role("button", name="Place hold").click()
    assert "YYYY-MM-DD" in field_error(olive, "hold-review")
    assert olive.get_by_label("Reference").input_value() == "COMPLAINT-17"
    assert_accessible(olive)
    olive.get_by_label("Review date").fill("2020-01-31")  # past: due for review at once
    olive.get_by_role("button", name="Place hold").click()
    assert olive.url.endswith("/console/holds?done=placed")
    row = olive.locator("tbody tr", has_text="COMPLAINT-17")
    assert "Due for review" in row.inner_text()
    assert_accessible(olive)
    screenshot(olive, "holds")

    olive.get_by_label("Recording id").fill("no-such-recording")
    olive.get_by_label("Kind").select_option("training")
    olive.get_by_label("Reference").fill("TRAINING-1")
    olive.get_by_role("button", name="Place hold").click()
    assert "no-such-recording does not exist" in field_error(olive, "hold-recording")
    assert active_holds(world, "TRAINING-1") == []

    row.get_by_role("button", name="Release").click()
    (hold_id,) = active_holds(world, "COMPLAINT-17")
    assert field_error(olive, f"release-{hold_id}") == "reason is required"
    olive.get_by_label("Reason to release COMPLAINT-17").fill("the complaint is closed")
    olive.locator("tbody tr", has_text="COMPLAINT-17").get_by_role("button", name="Release").click()
    assert olive.url.endswith("/console/holds?done=released")
    assert active_holds(world, "COMPLAINT-17") == []
    with sqlite3.connect(world.catalog_path) as db:
        released = db.execute(
            "SELECT placed_by, released_by, release_reason FROM holds WHERE id = ?", (hold_id,)
        ).fetchone()
    assert released == ("olive", "olive", "the complaint is closed")


def active_holds(world: World, reference: str) -> list[str]:
    with sqlite3.connect(world.catalog_path) as db:
        rows = db.execute(
            "SELECT id FROM holds WHERE reference = ? AND released_at IS NULL", (reference,)
        ).fetchall()
    return [row[0] for row in rows]


def test_a_subject_access_hold_is_released_only_by_closing_its_case(
    world: World, browser_context: Any
) -> None:
    opened = recproxy(
        world.folder, "sar", "open", "--requester", "Pat Caller", "--number", "+441234567890",
        "--from", "2023-11-01", "--to", "2023-12-01", "--identity-check", "passport",
        "--by", "olive", "--config", str(world.folder / "recproxy.toml"),
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    case = opened.stdout.strip()
    olive = signed_in(browser_context, world, "olive")
    olive.goto(f"{world.service.url}/console/holds")
    (hold_id, *_) = active_holds(world, case)
    olive.locator(f"#release-{hold_id}").fill("the requester withdrew")
    with olive.expect_response(lambda r: r.url.endswith("/release")) as released:
        olive.locator(f"form[action='/console/holds/{hold_id}/release'] button").click()
    assert released.value.status == 409
    assert "released when the case is closed" in field_error(olive, f"release-{hold_id}")
    assert hold_id in active_holds(world, case)
    assert_accessible(olive)
