"""The shipped Prometheus alert rules and Grafana dashboard name only metrics, labels and
label values that recproxy exports; the metrics documentation covers them all.

``promtool check rules`` runs as well where promtool is installed (Debian package
``prometheus``); without it the schema and names are still checked here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.control.routing_metrics import RoutingMetrics
from proxy.events import CallTakerProbed, EventBus

from .metrics_helpers import attach_all, build_parts, fresh_metrics, samples

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "config" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "config" / "grafana" / "recproxy.json"
DOCS = ROOT / "docs" / "metrics.md"

METRIC = re.compile(r"\b((?:recproxy|process|python)_[a-zA-Z0-9_]*)\b(\s*\{([^}]*)\})?")
MATCHER = re.compile(r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
TARGET_LABELS = {"instance", "job"}  # added by Prometheus to every scraped series


@dataclass
class Exported:
    """What a fully wired ``Metrics`` exports: series → label → values seen."""

    labels: dict[str, dict[str, set[str]]] = field(default_factory=dict)

    def add(self, name: str, labels: dict[str, str]) -> None:
        known = self.labels.setdefault(name, {})
        for key, value in labels.items():
            known.setdefault(key, set()).add(value)


@pytest.fixture
def exported(tmp_path: Path) -> Iterator[Exported]:
    parts = build_parts(tmp_path)
    metrics = fresh_metrics()
    attach_all(metrics, parts)
    routing, bus = RoutingMetrics(metrics.registry), EventBus()  # issue 18, fed by events
    routing.subscribe(bus)
    bus.publish(CallTakerProbed("sip:ann@192.0.2.1", "192.0.2.1:5060;transport=udp", True, 0.01))
    out = Exported()
    for sample in samples(metrics):
        out.add(sample.name, sample.labels)
    yield out
    parts.writer.stop(timeout=10)


def check_expression(expr: str, exported: Exported, where: str) -> set[str]:
    """Every metric, label and fixed label value ``expr`` names is exported; returns the
    labels the result can carry (for annotation templates)."""
    problems: list[str] = []
    assert expr.count("(") == expr.count(")"), f"{where}: unbalanced ( ) in {expr!r}"
    assert expr.count("[") == expr.count("]"), f"{where}: unbalanced [ ] in {expr!r}"
    assert expr.count("{") == expr.count("}"), f"{where}: unbalanced {{ }} in {expr!r}"
    referenced: set[str] = set()
    for match in METRIC.finditer(expr):
        name, matchers = match.group(1), match.group(3) or ""
        if name not in exported.labels:
            problems.append(f"{name} is not exported")
            continue
        referenced.add(name)
        known = exported.labels[name]
        for key, op, value in MATCHER.findall(matchers):
            if key in TARGET_LABELS:
                continue
            if key not in known:
                problems.append(f"{name} has no label {key}")
            elif "$" in value:
                continue  # a dashboard variable
            elif op == "=" and value not in known[key]:
                problems.append(f'{name}{{{key}="{value}"}}: no such value {sorted(known[key])}')
            elif op == "=~" and re.fullmatch(r"[\w|]+", value):
                for alternative in value.split("|"):
                    if alternative not in known[key]:
                        problems.append(f"{name}: {key} is never {alternative!r}")
    assert referenced or "up{" in expr, f"{where}: no recproxy metric in {expr!r}"
    available = set(TARGET_LABELS) | {"le"}
    for name in referenced:
        available |= set(exported.labels[name])
    grouped: set[str] = set()
    for group in GROUPING.findall(expr):
        for label in (part.strip() for part in group.split(",")):
            if label and label not in available:
                problems.append(f"grouping by {label}, which no metric here has")
            grouped.add(label)
    assert not problems, f"{where}: {problems}"
    return grouped or available


# --- alert rules ----------------------------------------------------------------------------


def load_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    rules: list[dict[str, Any]] = []
    group_names = [group["name"] for group in document["groups"]]
    assert len(group_names) == len(set(group_names))
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules"}, group.keys()
        assert group["rules"], group["name"]
        rules.extend(group["rules"])
    return rules


def test_alert_rules_have_the_prometheus_rule_schema() -> None:
    rules = load_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
        assert re.fullmatch(r"Recproxy[A-Z][A-Za-z0-9]+", rule["alert"]), rule["alert"]
        assert isinstance(rule["expr"], str) and rule["expr"].strip()
        if "for" in rule:
            assert DURATION.match(rule["for"]), rule
        assert rule["labels"]["severity"] in ("warning", "critical"), rule
        assert all(isinstance(v, str) for v in rule["labels"].values())
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_alert_rules_name_only_exported_metrics_and_labels(exported: Exported) -> None:
    for rule in load_rules():
        carried = check_expression(rule["expr"], exported, rule["alert"])
        for text in rule["annotations"].values():
            for label in re.findall(r"\$labels\.(\w+)", text):
                assert label in carried, f"{rule['alert']}: annotation uses $labels.{label}"


def test_the_alerts_the_issue_asks_for_are_there() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in load_rules()}
    wanted = {
        "recording failures": "recproxy_recordings_failed_total",
        "writer queue depth": "recproxy_recording_writer_queue_depth",
        "writer lag": "recproxy_recording_write_seconds_bucket",
        "disk nearly full": "recproxy_storage_free_bytes",
        "one-way audio": "recproxy_one_way_audio_calls_total",
        "event-loop lag": "recproxy_event_loop_lag_seconds_bucket",
        "no calls bridged": 'stage="bridged"',
    }
    for what, needle in wanted.items():
        assert any(needle in expr for expr in exprs.values()), what


def test_promtool_accepts_the_rules_where_it_is_installed(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        return  # the schema and name checks above still ran
    result = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # the dashboard's queries too, as recording rules (PromQL syntax)
    rules = [
        {"record": f"dashboard:query{i}", "expr": _concrete(expr)}
        for i, expr in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _concrete(expr: str) -> str:
    return expr.replace("$__rate_interval", "5m").replace("$instance", ".*")


# --- the dashboard -----------------------------------------------------------------------------


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def dashboard_queries() -> list[str]:
    queries = []
    for panel in load_dashboard()["panels"]:
        queries.extend(target["expr"] for target in panel.get("targets", []))
    return queries


def test_the_dashboard_is_grafana_json_with_prometheus_panels() -> None:
    dashboard = load_dashboard()
    assert dashboard["title"] == "recproxy" and dashboard["uid"]
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    graphs = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert len(graphs) >= 20
    for panel in graphs:
        assert panel["title"] and panel["targets"], panel
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["datasource"]["type"] == "prometheus"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "instance"} <= variables


def test_dashboard_queries_name_only_exported_metrics_and_labels(exported: Exported) -> None:
    dashboard = load_dashboard()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            check_expression(target["expr"], exported, f"panel {panel['title']!r}")
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            check_expression(variable["definition"], exported, f"variable {variable['name']}")


def test_every_recproxy_metric_is_on_the_dashboard(exported: Exported) -> None:
    shown = " ".join(dashboard_queries())
    for name in exported.labels:
        if not name.startswith("recproxy_") or name.endswith("_created"):
            continue
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        assert base in shown, f"{name} is on no dashboard panel"


# --- the documentation -------------------------------------------------------------------------


def test_the_docs_describe_every_metric_and_alert(exported: Exported) -> None:
    text = DOCS.read_text()
    for name in exported.labels:
        if not name.startswith("recproxy_") or name.endswith("_created"):
            continue
        documented = re.sub(r"_(bucket|count|sum)$", "", name)
        assert f"`{documented}`" in text, f"{documented} is not in docs/metrics.md"
        for label in exported.labels[name]:
            if label != "le":
                assert f"`{label}`" in text, f"label {label} of {name} is not documented"
    for rule in load_rules():
        assert rule["alert"] in text, f"alert {rule['alert']} is not in docs/metrics.md"
