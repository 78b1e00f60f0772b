"""The ops page's dashboard section and disk line as rendered (the browser test in
tests/console covers the page served with ``[console] grafana_url`` set): without a
Grafana URL it says where the provisioned dashboard is; the recordings' folder is named
as the configuration names it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jinja2

from proxy.control.console import TEMPLATES
from proxy.control.console.ops_page import DASHBOARD_FILE, DASHBOARD_PATH, disk_of
from proxy.roles import Role


def rendered(tmp_path: Path, grafana_url: str) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.globals |= {"console_title": "recproxy call taker", "static": lambda name: name}
    context: dict[str, Any] = {
        "user": SimpleNamespace(name="max", role=Role.MAINTENANCE),
        "csrf_token": "t", "nav": [], "here": "/ops", "allowed": True, "ok": True,
        "reason": "", "calls": 0, "accepting": True, "pipeline": [], "failures": "0",
        "disk": disk_of(tmp_path / "data" / "recordings", tmp_path), "last_sweep": "",
        "sweep_reason": "", "dashboard_file": DASHBOARD_FILE,
        "dashboard_path": DASHBOARD_PATH, "grafana_url": grafana_url,
    }  # fmt: skip
    return env.get_template("ops.html").render(context)


def test_without_a_grafana_url_the_page_says_where_the_dashboard_is(tmp_path: Path) -> None:
    (tmp_path / "data" / "recordings").mkdir(parents=True)
    html = rendered(tmp_path, "")
    assert f"<code>{DASHBOARD_FILE}</code>" in html and DASHBOARD_PATH in html
    assert "grafana_url</code> to link it here" in html
    assert 'id="grafana"' not in html
    assert "<code>data/recordings</code> (beside the configuration file)" in html
    assert str(tmp_path) not in html


def test_with_a_grafana_url_the_page_links_to_it(tmp_path: Path) -> None:
    html = rendered(tmp_path, 'https://grafana.example.org/d/recproxy?x="y"')
    assert 'href="https://grafana.example.org/d/recproxy?x=&#34;y&#34;"' in html
    assert DASHBOARD_FILE not in html


def test_a_folder_outside_the_configurations_is_named_whole(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shown = disk_of(outside, tmp_path / "config")
    assert shown["folder"] == str(outside) and "beside" not in shown
