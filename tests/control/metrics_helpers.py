"""Shared by the metrics tests: the proxy's real parts whose snapshots a fresh
``Metrics`` reads, a bus it subscribes to, and the exposition parsed back into samples."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from proxy.app import calls_snapshot, recordings_snapshot
from proxy.calls.b2bua import B2bua, Prompt
from proxy.calls.recording import RecordingService
from proxy.config import Config, RecordingSettings, WebhookSettings
from proxy.control.flag_metrics import KINDS, FlagsSnapshot
from proxy.control.hold_metrics import HoldsSnapshot
from proxy.control.metrics import Metrics
from proxy.control.sar_metrics import SarSnapshot
from proxy.control.webhook import WebhookSender
from proxy.events import EventBus
from proxy.media.announcer import PromptAudio
from proxy.media.clock import MediaClock
from proxy.media.recorder import Recorder
from proxy.media.relay import PortAllocator
from proxy.sip.core import CoreSettings, SipCore
from proxy.sip.registrar import RegistrarSnapshot
from proxy.storage.catalog import SqliteCatalog
from proxy.storage.crypto import generate_keypair
from proxy.storage.store import LocalDiskStore
from proxy.storage.writer import RecordingWriter

NOTICE_MS = 2000


@dataclass
class Parts:
    """One proxy's parts, built for real but not started (no sockets, no tasks)."""

    config: Config
    core: SipCore
    allocator: PortAllocator
    recorder: Recorder
    writer: RecordingWriter
    clock: MediaClock
    recordings: RecordingService
    b2bua: B2bua
    recordings_dir: Path
    webhook: WebhookSender


def build_parts(tmp_path: Path, metrics: Metrics | None = None) -> Parts:
    recordings_dir = tmp_path / "recordings"
    recordings_dir.mkdir(exist_ok=True)
    config = Config(recording=RecordingSettings(dir=recordings_dir, fsync="none"))
    core = SipCore(CoreSettings(host="127.0.0.1", port=5060))
    allocator = PortAllocator(44000, 44099)
    writer = RecordingWriter(
        LocalDiskStore(fsync="none"),
        on_write=metrics.observe_write_seconds if metrics is not None else None,
    )
    recorder = Recorder(writer.sink)
    clock = MediaClock(recorder, on_lag=metrics.observe_loop_lag if metrics is not None else None)
    catalog = SqliteCatalog(tmp_path / "catalog.sqlite3")
    _, public_key = generate_keypair()
    recordings = RecordingService(config.recording, catalog, recorder, writer, public_key)
    pcm = np.zeros(NOTICE_MS * 8, dtype=np.int16)
    digest = hashlib.sha256(pcm.tobytes()).hexdigest()
    notice = Prompt(PromptAudio(pcm), digest, NOTICE_MS, "notice.wav")
    b2bua = B2bua(config, core, allocator, clock, catalog, recordings, notice)
    webhook = WebhookSender(  # never started: its counters and queue length read as zero
        WebhookSettings(url="http://127.0.0.1:9/hook"), tmp_path / "webhook-queue"
    )
    return Parts(
        config,
        core,
        allocator,
        recorder,
        writer,
        clock,
        recordings,
        b2bua,
        recordings_dir,
        webhook,
    )


def attach_all(metrics: Metrics, parts: Parts, loop_name: str = "asyncio") -> None:
    """Every scrape-time source, as the app factory attaches them."""
    metrics.attach(
        calls=lambda: calls_snapshot(parts.b2bua),
        core=parts.core.snapshot,
        ports=parts.allocator.snapshot,
        clock=parts.clock.snapshot,
        recorder=lambda: parts.recorder.stats,
        writer=parts.writer,
        recordings=lambda: recordings_snapshot(parts.recordings),
        recordings_dir=parts.recordings_dir,
        loop_name=loop_name,
        webhook=parts.webhook,
        holds=lambda: HoldsSnapshot({"complaint": 2, "training": 0}, 1),
        flags=lambda: FlagsSnapshot(dict.fromkeys(KINDS, 0) | {"repeated_refusals": 1}),
        sar=lambda: SarSnapshot(later=2, soon=1, overdue=0),
        registrar=lambda: RegistrarSnapshot(3, {"registered": 4, "failed": 2}),
    )


def fresh_metrics(**kwargs: object) -> Metrics:
    return Metrics(CollectorRegistry(), **kwargs)  # type: ignore[arg-type]


def subscribed(**kwargs: object) -> tuple[EventBus, Metrics]:
    """A bus and fresh metrics subscribed to it."""
    bus, metrics = EventBus(), fresh_metrics(**kwargs)
    metrics.subscribe(bus)
    return bus, metrics


def samples(metrics: Metrics) -> list[Sample]:
    """Every sample of the text exposition, parsed back."""
    text = metrics.render().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    """One sample's value from the exposition (``None`` when absent)."""
    for sample in samples(metrics):
        if sample.name == name and sample.labels == labels:
            return float(sample.value)
    return None


def family_labels(metrics: Metrics) -> dict[str, tuple[str, set[str]]]:
    """recproxy family name → (type, label names seen on its samples, ``le`` left out)."""
    text = metrics.render().decode()
    out: dict[str, tuple[str, set[str]]] = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("recproxy_") and not family.name.endswith("_created"):
            names: set[str] = set()
            for s in family.samples:
                names.update(k for k in s.labels if k != "le")
            out[family.name] = (family.type, names)
    return out


def series_names(metrics: Metrics) -> Iterator[str]:
    for sample in samples(metrics):
        yield sample.name
