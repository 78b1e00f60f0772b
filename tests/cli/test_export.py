"""``recproxy export`` handles plaintext carefully (issue 12, defect 4).

A real store is made once for the module: a key pair on disk, a recording written by the
RecordingWriter (AES-GCM segments) and catalogued in a real SQLite catalog.  Each test
runs the real command and checks the decrypted audio, the file's mode, what is left in
the folder and in ``TMPDIR``, and the access log.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import sqlite3
import stat
import struct
import subprocess
import sys
import time
import uuid
import wave
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from proxy.media import g711
from proxy.media.g711 import wire_decode, wire_samples
from proxy.recording_state import RecordingState
from proxy.storage.catalog import CallDirection, NewCall, NewRecording, SqliteCatalog
from proxy.storage.crypto import generate_keypair, save_private_key, save_public_key
from proxy.storage.store import LocalDiskStore
from proxy.storage.writer import RecordingWriter
from tests.storage.conftest import dialogue_call

from .test_cli import recproxy

SECONDS = 2.0


@dataclass(frozen=True)
class Store:
    folder: Path
    config: Path
    catalog: Path
    recording_id: str
    audio: np.ndarray  # as heard
    wire: np.ndarray  # the A-law bytes the phones sent


async def _catalogue(path: Path, recording_id: str) -> None:
    now = datetime.now(UTC)
    async with SqliteCatalog(path) as catalog:
        call = await catalog.calls.create_call(
            NewCall(
                sip_call_id=f"{recording_id}@test",
                caller="+441234567890",
                callee="+441234000000",
                direction=CallDirection.INBOUND,
                started_at=now,
            )
        )
        await catalog.recordings.create_recording(
            NewRecording(
                call.id,
                directory=recording_id,
                encoding="ulaw",
                sample_rate=8000,
                channels=2,
                started_at=now,
                recording_id=recording_id,
            )
        )
        await catalog.recordings.set_recording_state(recording_id, RecordingState.COMPLETE)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    folder = tmp_path_factory.mktemp("store")
    private, public = generate_keypair()
    save_private_key(folder / "recording.key", private, None)
    save_public_key(folder / "recording.pub", public)
    rid = uuid.uuid4()
    codes = np.frombuffer(g711.encode(dialogue_call(SECONDS), "PCMA"), dtype=np.uint8)
    wire = wire_samples(codes.reshape(-1, 2), "PCMA")  # an A-law call, as on the wire
    writer = RecordingWriter(LocalDiskStore(fsync="none"), chunk_seconds=1.0)
    try:
        writer.open(rid, folder / "recordings", public, start_time_ms=1_700_000_000_000)
        for start in range(0, len(wire), 160):
            assert writer.submit(rid, wire[start : start + 160], start + 160 >= len(wire))
    finally:
        writer.stop(timeout=30)
    catalog = folder / "catalog.sqlite3"
    asyncio.run(_catalogue(catalog, str(rid)))
    config = folder / "recproxy.toml"
    config.write_text(
        f'[recording]\ndir = "{folder / "recordings"}"\npublic_key = "{folder / "recording.pub"}"\n'
        f'private_key = "{folder / "recording.key"}"\n\n[catalog]\npath = "{catalog}"\n'
    )
    return Store(folder, config, catalog, str(rid), wire_decode(wire), codes.reshape(-1, 2))


def export(
    store: Store, out: Path, *extra: str, fmt: str = "wav", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return recproxy(
        "export", store.recording_id, "--format", fmt, "--out", str(out),
        "--reason", "complaint 2026-14", "--config", str(store.config), *extra,
        cwd=out.parent if out.parent.is_dir() else store.folder, env=env,
    )  # fmt: skip


def access_log(store: Store) -> list[tuple[str, str, str]]:
    with sqlite3.connect(f"file:{store.catalog}?mode=ro", uri=True) as connection:
        rows = connection.execute("SELECT actor, action, detail FROM access_log ORDER BY id")
        return [tuple(row) for row in rows]


def refused(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode == 1, result
    assert words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return data.reshape(-1, 2)


def test_wav_export_is_the_recording_with_mode_0600_and_logged(
    store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "call.wav"
    result = export(store, out)  # the test process's umask (022) must not matter
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(read_wav(out), store.audio)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["call.wav"]
    assert access_log(store)[-1][1:] == ("custodian_export-wav", f"channels=stereo out={out}")


def test_g711_export_is_the_a_law_bytes_sent_and_ffmpeg_reads_it(
    store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "call.wav"
    result = export(store, out, fmt="g711")
    assert result.returncode == 0, result.stderr
    data = out.read_bytes()
    tag, channels, rate, _, align, bits = struct.unpack_from("<HHIIHH", data, 20)
    assert (data[:4], data[8:12], tag, channels, rate, align, bits) == (
        b"RIFF", b"WAVE", 6, 2, 8000, 2, 8
    )  # fmt: skip
    assert data[-len(store.wire.tobytes()) :] == store.wire.tobytes()  # byte for byte
    decoded = subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(out), "-f", "s16le", "-"],
        capture_output=True,
        check=True,
    ).stdout
    np.testing.assert_array_equal(np.frombuffer(decoded, "<i2").reshape(-1, 2), store.audio)
    assert access_log(store)[-1][1:] == ("custodian_export-g711", f"channels=stereo out={out}")


def test_g711_export_of_one_party_and_mono_refused(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "caller.wav"
    assert export(store, out, "--channels", "caller", fmt="g711").returncode == 0
    assert out.read_bytes().endswith(store.wire[:, 0].tobytes())
    logged = len(access_log(store))
    mono = tmp_path / "mono.wav"
    refused(export(store, mono, "--channels", "mono", fmt="g711"), "mono mixes them")
    assert len(access_log(store)) == logged and not mono.exists()


def test_symlink_out_is_refused_and_its_target_untouched(store: Store, tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    link = tmp_path / "call.wav"
    link.symlink_to(target)
    before = access_log(store)
    for extra in ((), ("--force",)):
        refused(export(store, link, *extra), "symbolic link")
    assert target.read_text() == "keep me"
    assert link.is_symlink() and sorted(os.listdir(tmp_path)) == ["call.wav", "notes.txt"]
    assert access_log(store) == before


def test_folder_out_is_a_clear_error_and_logs_nothing(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    before = access_log(store)
    refused(export(store, folder), "is a folder")
    assert access_log(store) == before
    assert os.listdir(folder) == [] and os.listdir(tmp_path) == ["exports"]


def test_fifo_out_is_refused_and_logs_nothing(store: Store, tmp_path: Path) -> None:
    fifo = tmp_path / "call.wav"
    os.mkfifo(fifo)
    before = access_log(store)
    refused(export(store, fifo, "--force"), "special file")
    assert access_log(store) == before


def test_existing_file_is_refused_without_force_and_replaced_with_it(
    store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "call.wav"
    out.write_bytes(b"an earlier export")
    before = access_log(store)
    refused(export(store, out), "--force")
    assert out.read_bytes() == b"an earlier export"
    assert access_log(store) == before
    assert export(store, out, "--force").returncode == 0
    np.testing.assert_array_equal(read_wav(out), store.audio)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["call.wav"]


def test_actor_is_the_real_account_not_logname(store: Store, tmp_path: Path) -> None:
    account = pwd.getpwuid(os.getuid()).pw_name
    pretend = dict.fromkeys(("LOGNAME", "USER", "LNAME", "USERNAME"), "dr_smith")
    assert export(store, tmp_path / "a.wav", env=pretend).returncode == 0
    assert access_log(store)[-1][0] == account
    assert export(store, tmp_path / "b.wav", "--by", "Dr Jones", env=pretend).returncode == 0
    assert access_log(store)[-1][0] == f"{account} (by Dr Jones)"


def spy_ffmpeg(folder: Path, *, then: str) -> dict[str, str]:
    """An ``ffmpeg`` first on PATH that notes its arguments, what its stdin is and what
    ``TMPDIR`` holds, then runs ``then`` (the real ffmpeg, or a long sleep)."""
    bin_dir, tmpdir = folder / "bin", folder / "tmpdir"
    bin_dir.mkdir()
    tmpdir.mkdir()
    spy = bin_dir / "ffmpeg"
    spy.write_text(
        "#!/bin/sh\n"
        f'{{ printf "%s\\n" "$@"; echo "stdin: $(readlink /proc/self/fd/0)"; '
        f'echo "tmpdir: $(ls -A "$TMPDIR")"; }} > "{folder / "spy.log"}"\n'
        f"{then}\n"
    )
    spy.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(tmpdir)}


def real_ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    assert found, "ffmpeg is needed for MP3 export"
    return found


def test_mp3_is_fed_to_ffmpeg_by_pipe_and_no_plaintext_file_exists(
    store: Store, tmp_path: Path
) -> None:
    env = spy_ffmpeg(tmp_path, then=f'exec "{real_ffmpeg()}" "$@"')
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "call.mp3"
    result = export(store, out, fmt="mp3", env=env)
    assert result.returncode == 0, result.stderr
    spy = (tmp_path / "spy.log").read_text().splitlines()
    assert spy[spy.index("-i") + 1] == "pipe:0"
    assert "stdin: pipe:[" in "\n".join(spy)
    assert "tmpdir: " in spy  # TMPDIR was empty while ffmpeg ran
    assert os.listdir(tmp_path / "tmpdir") == []
    assert os.listdir(out_dir) == ["call.mp3"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    pcm = subprocess.run(
        [real_ffmpeg(), "-v", "error", "-i", str(out), "-f", "s16le", "-ac", "2", "-"],
        check=True,
        capture_output=True,
    ).stdout
    assert abs(len(pcm) / 4 / 8000 - SECONDS) <= 0.1


def test_killed_export_leaves_no_file_under_the_final_name(store: Store, tmp_path: Path) -> None:
    env = spy_ffmpeg(tmp_path, then="exec sleep 30")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "call.mp3"
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "export", store.recording_id, "--format", "mp3",
         "--out", str(out), "--reason", "kill test", "--config", str(store.config)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "spy.log").exists():  # mid-export: decrypted, now encoding
            assert process.poll() is None, "export ended before ffmpeg ran"
            assert time.monotonic() < deadline, "ffmpeg never started"
            time.sleep(0.01)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    assert not out.exists()
    assert os.listdir(tmp_path / "tmpdir") == []
    for name in os.listdir(out_dir):  # at most the private temporary file
        assert name.startswith(".call.mp3.") and name.endswith(".part")
        assert stat.S_IMODE((out_dir / name).stat().st_mode) == 0o600


def test_catalog_and_its_folder_are_created_owner_only(tmp_path: Path) -> None:
    assert recproxy("dnr", "list", cwd=tmp_path).returncode == 0
    catalog = tmp_path / "data" / "catalog.sqlite3"
    assert stat.S_IMODE(catalog.stat().st_mode) == 0o600
    assert stat.S_IMODE(catalog.parent.stat().st_mode) == 0o700
