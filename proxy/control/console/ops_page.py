"""The ops page (issue 17) on the call proxy's listener: is it up, how many calls, how
the recording pipeline keeps up, how much disk is left, when retention last swept.

The pipeline's numbers are read from the metrics registry Prometheus scrapes (the same
samples, so the page and the dashboard never disagree); the last sweep is the newest
``retention.sweep`` audit entry in the catalog.  The Grafana dashboard is the one shipped
in ``config/grafana/recproxy.json`` (uid ``recproxy``): the page links to it at
``[console] grafana_url``, or, without one, names its path in Grafana, ``/d/recproxy``,
on the Grafana the installation imported it into.

Open to maintenance, admins, records officers and the DPO; anyone else signed in is
told the page is not theirs (403)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from ...records.retention import SWEEP_ACTION
from ...roles import Role
from ...storage.catalog import format_utc
from ...storage.catalog.audit import AuditLog
from ..metrics import RECORDING_FAILURE_REASONS
from . import render
from .session import page, page_context, page_user

OPS_ROLES = frozenset({Role.MAINTENANCE, Role.ADMIN, Role.RECORDS_OFFICER, Role.DPO})
DASHBOARD_FILE = "config/grafana/recproxy.json"
DASHBOARD_PATH = "/d/recproxy"

#: (label, metric sample): what the pipeline section shows, in order.
PIPELINE: tuple[tuple[str, str], ...] = (
    ("Recordings in progress", "recproxy_recordings_active"),
    ("Writer queue depth", "recproxy_recording_writer_queue_depth"),
    ("Writer queue limit", "recproxy_recording_writer_queue_limit"),
    ("Audio blocks dropped (queue full)", "recproxy_recording_blocks_total"),
    ("Recordings failed by the writer", "recproxy_recording_writer_recordings_total"),
    ("Catalog writes waiting (journal)", "recproxy_catalog_journal_pending"),
)
_LABELS: dict[str, dict[str, str]] = {
    "recproxy_recording_blocks_total": {"result": "dropped"},
    "recproxy_recording_writer_recordings_total": {"result": "failed"},
}


@dataclass(frozen=True)
class OpsSources:
    """Where the page reads from: health, the metrics registry, the audit log, the
    recordings' folder."""

    health: Callable[[], dict[str, Any]]
    registry: CollectorRegistry
    audit: AuditLog
    recordings_dir: Path
    #: where relative paths in the configuration start (the config file's folder): the
    #: page names the recordings' folder from there, as the configuration does
    config_dir: Path | None = None
    #: ``[console] grafana_url``: the dashboard the page links to ("": none configured)
    grafana_url: str = ""


OPS_KEY: web.AppKey[OpsSources] = web.AppKey("ops sources", OpsSources)


def add_ops_page(app: web.Application, sources: OpsSources) -> None:
    app[OPS_KEY] = sources
    app.router.add_get("/ops", page(ops))


async def ops(request: web.Request) -> web.StreamResponse:
    if page_user(request).role not in OPS_ROLES:
        return render(request, "ops.html", page_context(request, allowed=False), status=403)
    sources = request.app[OPS_KEY]
    report = sources.health()
    registry = sources.registry
    pipeline = [
        (label, _number(registry.get_sample_value(name, _LABELS.get(name, {}))))
        for label, name in PIPELINE
    ]
    failures = sum(
        registry.get_sample_value("recproxy_recordings_failed_total", {"reason": reason}) or 0
        for reason in RECORDING_FAILURE_REASONS
    )
    sweep = await sources.audit.latest(SWEEP_ACTION)
    context = page_context(
        request,
        allowed=True,
        ok=bool(report.get("ok")),
        reason=str(report.get("reason", "")),
        calls=int(report.get("calls", 0)),
        accepting=bool(report.get("accepting", False)),
        pipeline=pipeline,
        failures=_number(failures),
        disk=disk_of(sources.recordings_dir, sources.config_dir),
        last_sweep=format_utc(sweep.at) if sweep is not None else "",
        sweep_reason=sweep.reason if sweep is not None and sweep.reason else "",
        dashboard_file=DASHBOARD_FILE,
        dashboard_path=DASHBOARD_PATH,
        grafana_url=sources.grafana_url,
    )
    return render(request, "ops.html", context)


def _number(value: float | None) -> str:
    if value is None:
        return "unknown"
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def disk_of(folder: Path, config_dir: Path | None) -> dict[str, str]:
    """Free and total space on the recordings' filesystem, in GB (empty: unreadable);
    the folder named from ``config_dir`` when it is inside it."""
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return {}
    return {
        "free": f"{usage.free / 1e9:.1f} GB",
        "total": f"{usage.total / 1e9:.1f} GB",
        "percent": f"{100 * usage.free / usage.total:.0f} %" if usage.total else "0 %",
        "folder": str(folder),
    } | _beside(folder, config_dir)


def _beside(folder: Path, config_dir: Path | None) -> dict[str, str]:
    """``folder`` as the configuration names it, when it is inside ``config_dir``."""
    if config_dir is None or not folder.is_relative_to(config_dir):
        return {}
    return {"folder": str(folder.relative_to(config_dir)), "beside": "the configuration file"}
