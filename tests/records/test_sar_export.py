"""A subject access case's bundle from real recordings (AES-GCM segments on disk, a real
SQLite catalog, real ffmpeg, the real transcript model): only the released calls, a
caller-only WAV holding the caller alone, MP3s of the same length, labelled transcripts,
an interrupted call's gap, each export audited; and every bad input refused with nothing
left behind — no folder, no draft, no ZIP, no export recorded."""

from __future__ import annotations

import io
import json
import os
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from proxy.config import AccessSettings, NumberSettings, SarSettings, TranscriptsSettings
from proxy.recording_state import RecordingState
from proxy.records.bundle import MANIFEST, TrustedKey, verify_bundle
from proxy.records.errors import (
    AccessDenied,
    AccessRequestConflict,
    InvalidAccessRequest,
    RecordNotFound,
)
from proxy.records.gate import Gate
from proxy.records.policy import Actor
from proxy.records.sar import SarDesk
from proxy.records.sar_export import ExportProgress, SarExporter, SarExportError
from proxy.roles import Role
from proxy.storage import crypto
from proxy.storage.catalog import Due, SarState, SqliteCatalog
from proxy.storage.crypto import generate_keypair
from tests.storage.faulty_store import tmpfs

from .playback_world import STARTED, catalogue, decoded_seconds, write_audio
from .transcripts.dialogue import two_channel_dialogue, words

DPO = Actor("dana", Role.DPO)
OFFICER = Actor("rory", Role.RECORDS_OFFICER)
CALL_TAKER = Actor("alice", Role.STAFF, operator="alice")
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Audio:
    """Three recordings on disk, written once for the module: ``short`` twice (7.3 s of
    the dialogue call: caller left, a reversed notice right) and ``dialogue`` (21.8 s:
    each party's turns on their own channel)."""

    recordings: Path
    private_key: X25519PrivateKey
    signing_key: Ed25519PrivateKey
    ids: tuple[str, str, str]
    heard: tuple[np.ndarray, np.ndarray, np.ndarray]


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Audio:
    folder = tmp_path_factory.mktemp("sar-audio") / "recordings"
    private, public = generate_keypair()
    short, dialogue, other = (
        write_audio(folder, public),
        write_audio(folder, public, two_channel_dialogue()),
        write_audio(folder, public),
    )
    return Audio(
        folder,
        private,
        crypto.generate_signing_key(),
        (short[0], dialogue[0], other[0]),
        (short[1], dialogue[1], other[1]),
    )


@dataclass
class World:
    catalog: SqliteCatalog
    desk: SarDesk
    exporter: SarExporter
    case_id: str
    ids: tuple[str, str, str]
    out: Path


def exporter(catalog: SqliteCatalog, audio: Audio, model: Path | None = None) -> SarExporter:
    return SarExporter(
        Gate(catalog, AccessSettings()),
        catalog,
        recordings_dir=audio.recordings,
        private_key=audio.private_key,
        signing_key=audio.signing_key,
        transcripts=TranscriptsSettings(model_path=model),
    )


@pytest.fixture
async def world(tmp_path: Path, audio: Audio) -> AsyncIterator[World]:
    """A catalog of the three calls, an hour apart (the second one interrupted), and an
    open case that found all three, undecided."""
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as catalog:
        states = (RecordingState.COMPLETE, RecordingState.INTERRUPTED, RecordingState.COMPLETE)
        for n, (rid, state) in enumerate(zip(audio.ids, states, strict=True)):
            await catalogue(catalog, rid, state, started=STARTED + n * HOUR)
        desk = SarDesk(Gate(catalog, AccessSettings()), catalog, NumberSettings(), SarSettings())
        view = await desk.open(
            OFFICER,
            requester="J. Smith",
            identity_check="passport seen at reception",
            number="01234 567890",
            window_from=(STARTED - HOUR).isoformat(),
            window_to=(STARTED + 4 * HOUR).isoformat(),
        )
        assert [r.recording_id for r in view.case.recordings] == list(audio.ids)
        yield World(catalog, desk, exporter(catalog, audio), view.case.id, audio.ids,
                    tmp_path / "bundle")  # fmt: skip


async def decide(world: World, *releases: str) -> None:
    for rid, release in zip(world.ids, releases, strict=True):
        await world.desk.decide(DPO, world.case_id, rid, release, f"{release}: as balanced")


def wav_samples(data: bytes) -> tuple[int, np.ndarray]:
    with wave.open(io.BytesIO(data)) as w:
        channels = w.getnchannels()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return channels, samples.reshape(-1, channels)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(abs(np.dot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b)))


async def export_entries(catalog: SqliteCatalog) -> list[tuple[str, str | None]]:
    """(action, object) of the export's audit entries: the gate's and the case's."""
    entries = await catalog.audit.entries()
    return [
        (e.action, e.object)
        for e in entries
        if e.detail.get("action") == "export_sar" or e.action == "sar.export"
    ]


def left_behind(out: Path) -> list[str]:
    """Anything named like the bundle or its ZIP, or a draft of it."""
    return sorted(p.name for p in out.parent.iterdir() if out.name in p.name)


async def test_the_bundle_holds_the_released_calls_as_decided_and_verifies(
    world: World, audio: Audio
) -> None:
    await decide(world, "caller", "both", "refuse")
    seen: list[ExportProgress] = []
    done = await world.exporter.export(DPO, world.case_id, world.out, make_zip=True,
                                       progress=seen.append)  # fmt: skip

    trusted = TrustedKey.of(audio.signing_key.public_key())
    for path in (world.out, world.out.with_suffix(".zip")):
        assert verify_bundle(path, trusted).fault is None, path
    assert done.zip_path == world.out.with_suffix(".zip")
    manifest = json.loads((world.out / MANIFEST).read_bytes())
    caller_only, both = "calls/1-2023-11-14T221320Z", "calls/2-2023-11-14T231320Z"
    assert [r["recording_id"] for r in manifest["recordings"]] == list(world.ids[:2])
    assert sorted(f["name"] for f in manifest["files"]) == sorted(
        ["README.txt"]
        + [f"{folder}/{name}" for folder in (caller_only, both)
           for name in ("recording.mp3", "recording.wav", "transcript.txt", "transcript.vtt")]
    )  # fmt: skip
    assert (manifest["case_id"], manifest["purpose"]) == (world.case_id, "subject_access")
    assert world.ids[2] not in json.dumps(manifest)

    # caller only: a mono WAV of the caller's channel alone, the call taker not in it
    channels, samples = wav_samples((world.out / caller_only / "recording.wav").read_bytes())
    heard = audio.heard[0]
    assert channels == 1 and np.array_equal(samples[:, 0], heard[:, 0])
    assert correlation(samples[:, 0], heard[:, 1]) < 0.1
    channels, samples = wav_samples((world.out / both / "recording.wav").read_bytes())
    assert channels == 2 and np.array_equal(samples, audio.heard[1])
    for folder, heard in ((caller_only, audio.heard[0]), (both, audio.heard[1])):
        mp3 = (world.out / folder / "recording.mp3").read_bytes()
        assert abs(decoded_seconds(mp3) - len(heard) / 8000) <= 0.05

    # transcripts: the caller's words under Caller; only Caller when caller-only
    text = (world.out / caller_only / "transcript.txt").read_text()
    assert text and all(line.split("] ", 1)[1].startswith("Caller: ") for line in text.splitlines())
    assert {"calling", "internet", "dropping"} <= set(words(text))
    assert "<v Call taker>" not in (world.out / caller_only / "transcript.vtt").read_text()
    text = (world.out / both / "transcript.txt").read_text()
    assert "Caller: " in text and "Call taker: " in text and "internet" in words(text)
    vtt = (world.out / both / "transcript.vtt").read_text()
    assert "<v Caller>" in vtt and "<v Call taker>" in vtt

    # the interrupted call: its gap in the manifest, the transcript and the README
    end_ms = round(len(audio.heard[1]) / 8)
    assert manifest["recordings"][1]["state"] == "interrupted"
    assert manifest["recordings"][1]["gaps"] == [{"start_ms": end_ms, "end_ms": end_ms}]
    assert manifest["recordings"][0]["gaps"] == []
    assert text.rstrip().endswith("[no audio from here: recording interrupted]")
    readme = (world.out / "README.txt").read_text()
    assert world.case_id in readme and "your voice only" in readme and "both parties" in readme
    assert "2023-11-14 22:13:20 UTC, 0 min 07 s" in readme and "interrupted" in readme

    # audited: the gate's decision per recording, then the case's export (answered)
    assert await export_entries(world.catalog) == [
        ("access.allowed", f"recording:{world.ids[0]}"),
        ("access.allowed", f"recording:{world.ids[1]}"),
        ("sar.export", f"sar:{world.case_id}"),
    ]
    case = await world.catalog.sar.get(world.case_id)
    assert case is not None and case.state is SarState.ANSWERED
    assert (
        case.exports[0].manifest_sha256
        == done.bundle.manifest_sha256
        == done.export.manifest_sha256
    )
    stages = [p.stage for p in seen]
    assert stages[:2] == ["checking", "checking"] and stages[-3:] == ["sealing", "zip", "done"]
    assert ExportProgress("transcript", 1, 2, world.ids[1]) in seen
    assert seen[-1] == ExportProgress("done", 2, 2)


async def test_without_transcripts_only_the_audio_and_the_readme(world: World) -> None:
    await decide(world, "refuse", "refuse", "both")
    done = await world.exporter.export(OFFICER, world.case_id, world.out, transcripts=False)
    names = sorted(f.name for f in done.bundle.files)
    folder = "calls/1-2023-11-15T001320Z"
    assert names == ["README.txt", f"{folder}/recording.mp3", f"{folder}/recording.wav"]
    assert done.zip_path is None and not world.out.with_suffix(".zip").exists()
    assert "transcript" not in (world.out / "README.txt").read_text()


async def refused_without_trace(world: World, error: type[Exception], match: str,
                                **options: object) -> None:  # fmt: skip
    """The export fails with ``error`` naming ``match``, leaves nothing on disk and
    records no export in the case or the audit chain."""
    before = await world.catalog.audit.entries()
    with pytest.raises(error, match=match):
        await world.exporter.export(DPO, world.case_id, world.out, make_zip=True, **options)  # type: ignore[arg-type]
    assert left_behind(world.out) == []
    case = await world.catalog.sar.get(world.case_id)
    assert case is not None and case.exports == ()
    assert [e.action for e in await world.catalog.audit.entries()][len(before):] in (
        [], ["access.allowed"], ["access.allowed", "access.allowed"]
    )  # fmt: skip
    assert not [e for e in await world.catalog.audit.entries() if e.action == "sar.export"]


async def test_an_unknown_case_is_not_found(world: World) -> None:
    world.case_id = "SAR-2026-9999"
    with pytest.raises(RecordNotFound, match="no subject access case SAR-2026-9999"):
        await world.exporter.export(DPO, world.case_id, world.out)
    assert left_behind(world.out) == []


async def test_a_case_that_releases_nothing_names_its_refused_and_undecided_calls(
    world: World,
) -> None:
    await world.desk.decide(DPO, world.case_id, world.ids[0], "refuse", "employee's privacy")
    await world.desk.decide(DPO, world.case_id, world.ids[1], "refuse", "third party")
    await refused_without_trace(world, InvalidAccessRequest, r"\(2 refused, 1 undecided\)")
    # ... and neither did the gate: nothing was asked of it per recording
    assert await export_entries(world.catalog) == []


async def test_a_released_call_deleted_since_is_a_conflict_naming_it(world: World) -> None:
    """Its hold released by hand, retention deleted it after the DPO's decision."""
    await decide(world, "both", "refuse", "caller")
    case = await world.catalog.sar.get(world.case_id)
    assert case is not None
    hold = case.recordings[2].hold_id
    assert hold is not None
    await world.catalog.holds.release(hold, by="rory", reason="released by mistake")
    later = datetime.now(UTC) + timedelta(days=1)
    catalog = world.catalog.retention
    assert await catalog.begin_deletion(world.ids[2], Due(later, later))
    assert await catalog.finish_deletion(world.ids[2], at=later, actor="retention", reason="due")
    await refused_without_trace(
        world, AccessRequestConflict, f"{world.ids[2]} was deleted.*revises the decision"
    )
    assert await export_entries(world.catalog) == []


async def test_a_missing_model_names_how_to_install_one(
    world: World, audio: Audio, tmp_path: Path
) -> None:
    (tmp_path / "no-model").mkdir()
    world.exporter = exporter(world.catalog, audio, model=tmp_path / "no-model")
    await decide(world, "caller", "refuse", "refuse")
    await refused_without_trace(world, SarExportError, "scripts/setup.sh.*--no-transcripts")
    assert await export_entries(world.catalog) == []


async def test_an_existing_folder_or_zip_is_never_written_over(world: World) -> None:
    await decide(world, "caller", "refuse", "refuse")
    for taken in (world.out.with_suffix(".zip"), world.out):
        taken.write_bytes(b"someone's file")
        with pytest.raises(SarExportError, match=f"{taken} exists"):
            await world.exporter.export(DPO, world.case_id, world.out, make_zip=True)
        assert taken.read_bytes() == b"someone's file"
        taken.unlink()
    assert await export_entries(world.catalog) == []


async def test_a_closed_case_exports_nothing(world: World) -> None:
    await decide(world, "caller", "refuse", "refuse")
    await world.desk.close(OFFICER, world.case_id, "requester withdrew")
    with pytest.raises(AccessRequestConflict, match="is closed"):
        await world.exporter.export(DPO, world.case_id, world.out)
    assert left_behind(world.out) == []


async def test_a_call_taker_may_not_export_a_case(world: World) -> None:
    await decide(world, "caller", "refuse", "refuse")
    with pytest.raises(AccessDenied, match=r"\(sar\.not_officer\)"):
        await world.exporter.export(CALL_TAKER, world.case_id, world.out)
    assert left_behind(world.out) == []


@pytest.mark.parametrize(
    ("size", "where"),
    [("64k", "the folder"), ("256k", "the zip")],
)
async def test_a_disk_that_fills_leaves_no_bundle_and_no_zip(
    world: World, tmp_path: Path, size: str, where: str
) -> None:
    """64 KiB hold not even the caller's 117 KB WAV; 256 KiB hold the folder (~150 KB)
    but not its ZIP as well: the sealed folder is removed again."""
    await decide(world, "caller", "refuse", "refuse")
    with tmpfs(tmp_path / "tiny", size) as disk:
        world.out = disk / "bundle"
        seen: list[ExportProgress] = []
        await refused_without_trace(world, SarExportError, "no space left", transcripts=False,
                                    progress=seen.append)  # fmt: skip
        assert os.listdir(disk) == []
    assert ("zip" in [p.stage for p in seen]) == (where == "the zip")
    case = await world.catalog.sar.get(world.case_id)
    assert case is not None and case.state is SarState.OPEN
