"""The call takers' page and the ops page on the call proxy's listener, in a real browser
(issue 17): Debian's chromium driven by Playwright against a real ``recproxy serve``,
with a live SIPp call.

The issue's flow: a member of staff linked to operator ann signs in, ann's phone (SIPp)
answers a call and it appears on the page by itself; they type a reason and press Stop,
the page shows the stopped state, and the catalog's recording event names them and the
reason; Resume the same.  Also: bad input said next to the field and nothing changed, the
deletion's confirmation, the keyboard, a 375 px screen, a POST without its CSRF token, an
event stream nobody reads, a manager watching their team's calls, the ops page's numbers
and Grafana link, and axe-core on every page."""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import E2e, end_world, new_world, shared_data
from tests.e2e.proxy_process import (
    ProxyProcess,
    ProxySettings,
    proxy_env,
    recproxy_command,
    wait_for,
)
from tests.e2e.records_world import operators_toml
from tests.e2e.test_recording_control import answering, info_dtmf, pause, play, seconds_of

from .browser import assert_accessible, screenshot

PASSWORD = "a long enough password"
STOP_REASON = "the caller is distressed"
RESUME_REASON = "the caller agreed to go on"
GRAFANA = "https://grafana.example.org/d/recproxy"
CALL_SECONDS = 30  # the caller's hold: long enough for the steps below, bounded
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class World:
    e2e: E2e
    proxy: ProxyProcess
    leftovers: list[socket.socket] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.e2e.ports.http}"

    @property
    def records_url(self) -> str:
        return f"http://127.0.0.1:{self.e2e.ports.records_http}"

    def events(self) -> list[dict[str, Any]]:
        with contextlib.closing(sqlite3.connect(self.proxy.catalog_path, timeout=10)) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(
                "SELECT action, actor, channel, reason FROM recording_events ORDER BY id"
            ).fetchall()
        return [dict(row) for row in rows]


def add_user(config: Path, name: str, role: str, *more: str) -> None:
    """The real ``recproxy users add NAME --role ROLE ... --password-stdin``."""
    added = subprocess.run(
        recproxy_command("users", "add", name, "--role", role, *more, "--password-stdin"),
        input=PASSWORD + "\n",
        cwd=config.parent,
        env=proxy_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert added.returncode == 0, added.stderr


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    e2e = new_world(tmp_path_factory.mktemp("calltaker-console"))
    leftovers: list[socket.socket] = []
    try:
        extra = f'{operators_toml(e2e)}\n[console]\ngrafana_url = "{GRAFANA}"\n'
        proxy = e2e.proxy(ProxySettings(extra=extra, records_child="on"))
        wait_for("the records service", lambda: "records service listening" in proxy.log_text(), 30)
        config = e2e.config_path
        add_user(config, "sam", "staff", "--operator", "ann", "--config", str(config))
        add_user(config, "max", "maintenance", "--config", str(config))
        add_user(config, "meg", "manager", "--config", str(config))
        # ann is of team red, bob of team blue (operators_toml)
        add_user(config, "rita", "manager", "--team", "red", "--config", str(config))
        add_user(config, "bea", "manager", "--team", "blue", "--config", str(config))
        add_user(
            config, "tom", "staff", "--operator", "bob", "--team", "red", "--config", str(config)
        )
        yield World(e2e, proxy, leftovers)
    finally:
        try:
            end_world(e2e)  # the proxy must stop cleanly with a stream still open
        finally:
            for leftover in leftovers:
                leftover.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1024, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def sign_in(page: Any, url: str, name: str) -> None:
    page.goto(f"{url}/")
    assert page.url == f"{url}/login?next=/console"
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    assert page.url == f"{url}/console"


@dataclass(frozen=True)
class PhoneCall:
    """One SIPp call: ann's phone and the caller, each with its own files."""

    taker: Any
    caller: Any

    def wait(self, timeout: float = 40) -> None:
        """Both phones done, the call ended cleanly (before the next call takes the
        phone's port)."""
        assert (self.caller.wait(timeout), self.taker.wait(timeout)) == (0, 0)


def place_call(e2e: E2e, seconds: int = CALL_SECONDS, keys: str = "") -> PhoneCall:
    """ann's phone answers (and talks, then keys ``keys`` as SIP INFOs), a caller rings
    and holds ``seconds``."""
    dialogue = shared_data("audio", "dialogue_8k.ulaw").read_bytes()
    ports, n = e2e.ports, len(e2e.sipps)
    steps = play(e2e.rtp_pcap(f"taker{n}.pcap", seconds_of(dialogue, 12, 16))) + pause(500)
    for cseq, key in enumerate(keys, start=1):
        steps += info_dtmf(key, cseq) + pause(200)
    taker = answering(
        e2e, f"taker{n}", steps, sip_port=ports.taker_sip, media_port=ports.taker_rtp,
        keep_dialog=bool(keys), timeout_s=seconds + 30,
    )  # fmt: skip
    caller = e2e.caller(
        audio_pcap=e2e.rtp_pcap(f"caller{n}.pcap", seconds_of(dialogue, 0, 6)),
        label=f"caller{n}",
        pre_audio_ms=2500,
        hold_ms=seconds * 1000,
        timeout_s=seconds + 30,
    )
    return PhoneCall(taker, caller)


def ann_calls(world: World) -> list[dict[str, Any]]:
    """ann's calls from the live-call API (ann's token: records_world.operators_toml)."""
    request = urllib.request.Request(
        f"{world.url}/api/calls", headers={"Authorization": "Bearer ann-token"}
    )
    with _DIRECT.open(request, timeout=5) as answer:
        calls: list[dict[str, Any]] = json.load(answer)["calls"]
    return calls


def test_a_call_taker_sees_a_live_call_and_stops_and_resumes_its_recording(
    world: World, page: Any
) -> None:
    from playwright.sync_api import expect

    sign_in(page, world.url, "sam")
    expect(page.get_by_text("No active calls.")).to_be_visible()
    call = place_call(world.e2e)
    card = page.locator("li.call")
    # the call appears without a reload (Server-Sent Events), recorded once bridged
    expect(card).to_have_count(1, timeout=20_000)
    state = card.locator('[data-field="recording"]')
    expect(state).to_have_text("recording", timeout=15_000)
    expect(page.get_by_text("No active calls.")).to_be_hidden()
    (listed,) = ann_calls(world)
    expect(card.get_by_role("heading")).to_have_text(listed["caller"])
    assert listed["recording"] == "recording"

    # no reason: said next to the field, and nothing changes
    card.get_by_role("button", name="Stop recording").click()
    error = card.locator(".field-error")
    expect(error).to_have_text("a reason is required")
    reason = card.get_by_label("Reason")
    assert reason.get_attribute("aria-invalid") == "true"
    assert reason.get_attribute("aria-describedby") == error.get_attribute("id")
    assert [e["action"] for e in world.events()] == ["start"]
    assert_accessible(page)

    # from the keyboard: the reason, then Tab to the big Stop button, Enter
    reason.focus()
    page.keyboard.type(STOP_REASON)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Stop recording"
    page.keyboard.press("Enter")
    expect(state).to_have_text("stopped", timeout=1_000)
    expect(card.get_by_role("button", name="Resume")).to_be_visible()
    expect(card.get_by_role("button", name="Stop recording")).to_be_hidden()
    expect(card.locator('[data-field="note"]')).to_have_text(
        f"Recording stopped by sam: {STOP_REASON}"
    )
    stop = world.events()[-1]
    assert stop == {"action": "stop", "actor": "sam", "channel": "console", "reason": STOP_REASON}
    assert ann_calls(world)[0]["recording"] == "stopped"
    assert_accessible(page)
    screenshot(page, "calltaker")

    card.get_by_label("Reason").fill(RESUME_REASON)
    card.get_by_role("button", name="Resume").click()
    expect(state).to_have_text("recording", timeout=1_000)
    resume = world.events()[-1]
    assert resume == {
        "action": "resume", "actor": "sam", "channel": "console", "reason": RESUME_REASON
    }  # fmt: skip

    # Stop and delete: a missing reason is said first; then it asks; Cancel deletes nothing
    card.get_by_label("Reason").fill("")
    card.get_by_role("button", name="Stop and delete").click()
    expect(error).to_have_text("a reason is required")
    expect(page.get_by_role("dialog")).to_have_count(0)
    card.get_by_label("Reason").fill("a mistake")
    card.get_by_role("button", name="Stop and delete").click()
    dialog = page.get_by_role("dialog", name="Stop and delete this recording?")
    expect(dialog).to_be_visible()
    assert_accessible(page)
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(state).to_have_text("recording")
    assert [e["action"] for e in world.events()] == ["start", "stop", "resume"]

    # a small screen: nothing wider than it, the buttons as wide as the card
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    box = card.get_by_role("button", name="Stop recording").bounding_box()
    assert box is not None and box["width"] > 250 and box["x"] + box["width"] <= 375
    assert_accessible(page)

    # the call ends: it leaves the page by itself
    expect(card).to_have_count(0, timeout=(CALL_SECONDS + 20) * 1000)
    expect(page.get_by_text("No active calls.")).to_be_visible()
    call.wait()
    assert [e["action"] for e in world.events()][-1] in ("complete", "degraded")


def test_a_manager_sees_their_teams_live_calls_read_only(world: World, chromium: Any) -> None:
    """rita manages team red (ann's): ann's call appears on her page marked with ann's
    name, with no controls, and her POST to switch it is refused.  bea manages team blue
    and tom is staff on bob's phone (of team red too): neither sees it."""
    from playwright.sync_api import expect

    contexts = [chromium.new_context(viewport={"width": 1024, "height": 900}) for _ in range(3)]
    try:
        rita, bea, tom = (context.new_page() for context in contexts)
        for page, name in ((rita, "rita"), (bea, "bea"), (tom, "tom")):
            sign_in(page, world.url, name)
        expect(rita.get_by_role("heading", name="My team's calls")).to_be_visible()
        assert "team red" in rita.locator("#teams").inner_text()
        call = place_call(world.e2e, 12)
        card = rita.locator("li.call")
        expect(card).to_have_count(1, timeout=20_000)
        expect(card.locator('[data-field="recording"]')).to_have_text("recording", timeout=15_000)
        expect(card.locator('[data-field="taker"]')).to_have_text("ann")
        (listed,) = ann_calls(world)
        assert card.get_attribute("data-call") == listed["id"]
        assert card.locator("form").count() == 0 and card.get_by_role("button").count() == 0
        assert_accessible(rita)
        screenshot(rita, "calltaker-manager")

        # watching is not switching: the use case lets only ann's phone's user do that
        before = world.events()
        token = rita.locator('input[name="csrf_token"]').first.get_attribute("value")
        refused = rita.request.post(
            f"{world.url}/console/calls/{listed['id']}/recording",
            form={"action": "stop", "reason": "a manager's try", "csrf_token": token},
            headers={"Accept": "application/json"},
        )
        assert refused.status == 403, refused.text()
        assert world.events() == before and ann_calls(world)[0]["recording"] == "recording"

        # another team's manager and a staff user on another phone see nothing of it
        for other in (bea, tom):
            assert other.locator("li.call").count() == 0
            expect(other.get_by_text("No active calls.")).to_be_visible()
            other.reload()
            assert other.locator("li.call").count() == 0

        expect(card).to_have_count(0, timeout=40_000)  # the call ends: it leaves her page
        call.wait()
    finally:
        for context in contexts:
            context.close()


def test_a_code_keyed_on_the_phone_shows_on_the_page(world: World, page: Any) -> None:
    from playwright.sync_api import expect

    sign_in(page, world.url, "sam")
    call = place_call(world.e2e, 10, keys="*0")  # *0: stop, after ~4.5 s of talk
    card = page.locator("li.call")
    expect(card).to_have_count(1, timeout=20_000)
    note = card.locator('[data-field="note"]')
    expect(note).to_have_text("Code keyed on the phone: recording stopped.", timeout=20_000)
    expect(card.locator('[data-field="recording"]')).to_have_text("stopped")
    assert world.events()[-1]["channel"] == "dtmf"
    expect(card).to_have_count(0, timeout=30_000)
    call.wait()


def test_without_javascript_the_forms_work_and_deletion_is_confirmed_first(
    world: World, chromium: Any
) -> None:
    """The same route, as a plain form: the error page, the confirmation step, the
    redirect back."""
    from playwright.sync_api import expect

    context = chromium.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, world.url, "sam")
        before = len(world.events())
        call = place_call(world.e2e, 15)
        card = page.locator("li.call")
        deadline = time.monotonic() + 20
        while card.count() == 0 or "recording" not in card.locator(".state").inner_text():
            assert time.monotonic() < deadline, "the call did not show as recording"
            time.sleep(0.3)
            page.reload()
        # no reason: said at the field first, the confirmation is not shown
        card.get_by_role("button", name="Stop and delete").click()
        expect(card.locator(".field-error")).to_have_text("a reason is required")
        assert card.get_by_label("Reason").get_attribute("aria-invalid") == "true"
        expect(page.locator("li.call .confirm")).to_have_count(0)
        card.get_by_label("Reason").fill("a mistake")
        card.get_by_role("button", name="Stop and delete").click()
        expect(page.locator("li.call .confirm")).to_be_visible()
        assert page.locator('li.call .confirm input[name="reason"]').input_value() == "a mistake"
        assert len(world.events()) == before + 1  # the start only: nothing deleted yet
        page.get_by_role("link", name="Cancel").click()
        card.get_by_label("Reason").fill("   ")
        card.get_by_role("button", name="Stop recording").click()
        expect(card.locator(".field-error")).to_have_text("a reason is required")
        card.get_by_label("Reason").fill(STOP_REASON)
        card.get_by_role("button", name="Stop recording").click()
        assert page.url == f"{world.url}/console"
        expect(card.locator(".state")).to_have_text("stopped")
        assert world.events()[-1]["actor"] == "sam"
    finally:
        context.close()
    call.wait()


def test_a_recording_post_without_its_csrf_token_is_refused(world: World, page: Any) -> None:
    sign_in(page, world.url, "sam")
    before = world.events()
    target = f"{world.url}/console/calls/no-such-call/recording"
    refused = page.request.post(target, form={"action": "stop", "reason": "x"})
    assert refused.status == 403 and "nothing was changed" in refused.text()
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    unknown = page.request.post(
        target,
        form={"action": "stop", "reason": "x", "csrf_token": token},
        headers={"Accept": "application/json"},
    )
    assert unknown.status == 404 and unknown.json()["detail"] == "no such active call"
    unconfirmed = page.request.post(
        target,
        form={"action": "discard", "reason": "x", "csrf_token": token},
        headers={"Accept": "application/json"},
    )
    # whose call comes first, even before the confirmation step (found in review)
    assert unconfirmed.status == 404, unconfirmed.text()
    assert unconfirmed.json()["detail"] == "no such active call"
    as_form = page.request.post(target, form={"action": "stop", "reason": "x", "csrf_token": token})
    assert as_form.status == 404 and "no such active call" in as_form.text()  # said on the page
    assert world.events() == before


def test_unread_event_streams_leave_the_real_proxy_answering_and_taking_calls(
    world: World,
) -> None:
    """End to end beside test_unread_stream.py (which fills a stream's queue until the
    page is dropped): streams asked and never read leave ``serve`` answering its health
    check and taking a call, and (the fixture's end) stopping cleanly."""
    form = urllib.parse.urlencode(
        {"username": "sam", "password": PASSWORD, "next": "/console"}
    ).encode()

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())
    try:
        opener.open(f"{world.url}/login", data=form, timeout=5)
    except urllib.error.HTTPError as answer:
        assert answer.code == 303
        cookie = answer.headers["Set-Cookie"].split(";")[0]
    else:
        pytest.fail("the sign-in did not redirect")
    streams = []
    for _ in range(3):  # connected, asked, never read
        stream = socket.create_connection(("127.0.0.1", world.e2e.ports.http), timeout=5)
        stream.sendall(
            f"GET /console/events HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n".encode()
        )
        streams.append(stream)
    world.leftovers.extend(streams)
    health = world.proxy.health()  # answered (within its 1 s) while they stay unread
    assert health["ok"], health
    # the streams are open and unread: the call proxy still takes a call
    call = place_call(world.e2e, 5)
    call.wait()
    assert world.proxy.wait_idle()["calls"] == 0


def test_the_ops_page_shows_health_calls_pipeline_disk_and_the_last_sweep(
    world: World, page: Any
) -> None:
    sign_in(page, world.url, "max")
    menu = page.get_by_role("navigation", name="Main")
    menu.get_by_role("link", name="Operations").click()
    assert page.url == f"{world.url}/ops"
    assert page.locator("#health").inner_text().startswith("Up")
    assert page.locator("#active-calls").inner_text() == str(world.proxy.health()["calls"])
    depth = page.get_by_role("row", name="Writer queue depth").get_by_role("cell")
    assert depth.inner_text().isdigit()
    assert page.locator("#recording-faults").inner_text() == "0"
    disk = page.locator("#disk").inner_text()
    # the folder as the configuration names it: no temporary path on the page
    assert "GB free of" in disk and "data/recordings (beside the configuration file)" in disk
    assert str(world.e2e.folder) not in page.inner_text("main")
    sweep = page.locator("#last-sweep").inner_text()
    assert sweep.startswith("Last retention sweep: 20"), sweep  # the sweep at start-up
    link = page.get_by_role("link", name="Open the Grafana dashboard")
    assert link.get_attribute("href") == GRAFANA  # [console] grafana_url
    assert_accessible(page)
    screenshot(page, "ops")
    page.goto(f"{world.url}/console")
    assert "not" in page.locator("main .notice").inner_text()  # no phone: no calls
    assert_accessible(page)


def test_the_ops_page_is_not_for_call_takers(world: World, page: Any) -> None:
    sign_in(page, world.url, "sam")
    menu = page.get_by_role("navigation", name="Main")
    assert menu.get_by_role("link", name="Operations").count() == 0
    answer = page.goto(f"{world.url}/ops")
    assert answer is not None and answer.status == 403
    assert "is for maintenance" in page.get_by_role("alert").inner_text()
    page.context.clear_cookies()
    sign_in(page, world.url, "meg")  # a manager: no phone of her own
    assert page.request.get(f"{world.url}/console/events").status == 403


def test_one_sign_in_serves_both_listeners_on_one_host_but_not_each_others_forms(
    world: World, page: Any
) -> None:
    """Cookies are kept per host, not per port: the records service's ``__Host-`` cookie
    on 127.0.0.1 is the call proxy's too, and both check it against the one catalog.
    Each listener has its own CSRF key, so a form of one is refused by the other."""
    sign_in(page, world.url, "sam")
    page.goto(f"{world.records_url}/console")
    assert page.url == f"{world.records_url}/console"  # signed in there too
    assert page.get_by_role("heading", name="Records").is_visible()
    records_token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    refused = page.request.post(f"{world.url}/logout", form={"csrf_token": records_token})
    assert refused.status == 403
    page.get_by_role("button", name="Sign out").click()  # on the records service
    page.goto(f"{world.url}/console")
    assert page.url == f"{world.url}/login?next=/console"  # the one cookie is gone
