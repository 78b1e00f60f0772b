"""Debian's chromium driven by Playwright (issue 17): the browser, an accessibility
check with axe-core, and screenshots for the docs.

Browser downloads are not possible here: Playwright is pointed at ``/usr/bin/chromium``
(``scripts/setup.sh`` installs it with apt) and started with the flags that keep it off
the network.  axe-core comes from the npm registry into ``.cache/axe`` (setup.sh) and is
evaluated in the page under test through Playwright, so the page itself loads nothing from
elsewhere and its Content-Security-Policy is tested as served."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = ROOT / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "console"
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in a container: chromium's sandbox needs user namespaces
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless chromium for a module (a fresh context per test keeps them apart:
    cookies, storage).  Per module, not per session: Playwright's synchronous API holds
    an event loop while it runs, and an asyncio test later in the same process would
    find it running."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("the console tests need Debian's chromium (scripts/setup.sh)", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=list(FLAGS))
        try:
            yield browser
        finally:
            browser.close()


def serious_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now (WCAG 2.1 A
    and AA rules)."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run scripts/setup.sh (npm axe-core)", pytrace=False)
    page.evaluate(AXE.read_text())  # through the debugger: the page's CSP stays as served
    result = page.evaluate(
        """async () => await axe.run(document, {
            runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},
        })"""
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def assert_accessible(page: Any) -> None:
    found = serious_violations(page)
    assert not found, json.dumps(found, indent=2)


def screenshot(page: Any, name: str) -> Path:
    """A full-page screenshot for the docs (``docs/console/NAME.png``)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
