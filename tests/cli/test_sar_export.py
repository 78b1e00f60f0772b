"""``recproxy sar export``, run as the real command on a real installation: keys made by
``recproxy keygen``, a real recording on disk, a case opened and decided in the catalog.
The bundle it prints verifies with ``recproxy verify-bundle``; a terminal gets a progress
bar on stderr, a pipe nothing; bad input is one line, exit 1 (2 for bad usage), and
leaves no bundle."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pty
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from proxy.cli import sar_progress_line
from proxy.config import AccessSettings, NumberSettings, SarSettings
from proxy.records.gate import Gate
from proxy.records.policy import Actor
from proxy.records.sar import SarDesk
from proxy.records.sar_export import ExportProgress
from proxy.roles import Role
from proxy.storage.catalog import NewUser, SqliteCatalog
from tests.cli.test_cli import recproxy
from tests.records.playback_world import STARTED, catalogue, write_recording

SECRET = "a long signing passphrase"
PASSPHRASE = {"RECPROXY_KEY_PASSPHRASE": SECRET}


@dataclass(frozen=True)
class Install:
    folder: Path
    config: Path
    case_id: str


async def _case(catalog_path: Path, recording_id: str) -> str:
    """Users ``dana`` (DPO) and ``carl`` (staff, disabled), and a case releasing the
    recording caller-only."""
    async with SqliteCatalog(catalog_path) as catalog:
        await catalogue(catalog, recording_id)
        await catalog.users.add(NewUser("dana", Role.DPO, "unused-hash"), by="test")
        await catalog.users.add(NewUser("carl", Role.RECORDS_OFFICER, "unused-hash"), by="test")
        await catalog.users.disable("carl", by="test")
        desk = SarDesk(Gate(catalog, AccessSettings()), catalog, NumberSettings(), SarSettings())
        dpo = Actor("dana", Role.DPO)
        view = await desk.open(
            dpo,
            requester="J. Smith",
            identity_check="passport",
            number="+441234567890",
            window_from=(STARTED - timedelta(hours=1)).isoformat(),
            window_to=(STARTED + timedelta(hours=1)).isoformat(),
        )
        await desk.decide(dpo, view.case.id, recording_id, "caller", "the caller's own voice")
        return view.case.id


@pytest.fixture
def install(tmp_path: Path) -> Install:
    written = write_recording(tmp_path, passphrase=SECRET)
    made = recproxy("keygen", "--signing", "--out", "keys", cwd=tmp_path, env=PASSPHRASE)
    assert made.returncode == 0, made.stderr
    catalog = tmp_path / "catalog.sqlite3"
    config = tmp_path / "recproxy.toml"
    config.write_text(
        f'[recording]\ndir = "{written.recordings}"\npublic_key = "{written.public_key}"\n'
        f'private_key = "{written.private_key}"\n\n[catalog]\npath = "{catalog}"\n\n'
        f'[export]\nsigning_key = "{tmp_path / "keys" / "signing.key"}"\n'
        f'signing_public_key = "{tmp_path / "keys" / "signing.pub"}"\n'
    )
    return Install(tmp_path, config, asyncio.run(_case(catalog, written.recording_id)))


def sar_export(install: Install, *args: str) -> subprocess.CompletedProcess[str]:
    return recproxy("sar", "export", *args, "--config", str(install.config),
                    cwd=install.folder, env=PASSPHRASE)  # fmt: skip


def refused(result: subprocess.CompletedProcess[str], words: str, status: int = 1) -> None:
    assert result.returncode == status, (result.stdout, result.stderr)
    assert words in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_export_prints_the_bundle_and_it_verifies(install: Install) -> None:
    out = install.folder / "answer"
    done = sar_export(install, install.case_id, "--out", str(out), "--by", "dana", "--zip")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # not a terminal: no bar
    manifest_sha256 = hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
    assert done.stdout.splitlines() == [
        f"bundle {out} for case {install.case_id}",
        f"manifest sha256 {manifest_sha256}",
        "1 call, 5 files",
        f"zip {out}.zip",
    ]
    for bundle in (out, out.with_suffix(".zip")):
        checked = recproxy("verify-bundle", str(bundle), "--config", str(install.config),
                           cwd=install.folder)  # fmt: skip
        assert checked.returncode == 0, checked.stderr
        assert "calls/1-2023-11-14T221320Z/transcript.vtt" in checked.stdout
    again = sar_export(install, install.case_id, "--out", str(out), "--by", "dana")
    refused(again, f"{out} exists")


def test_a_terminal_sees_the_progress_bar(install: Install) -> None:
    """stderr on a pseudo-terminal: the bar is rewritten in place, and ends its line."""
    master, slave = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "proxy.cli", "sar", "export", install.case_id, "--out",
             "answer", "--by", "dana", "--no-transcripts", "--config", str(install.config)],
            cwd=install.folder, env={**os.environ, **PASSPHRASE}, stdout=subprocess.PIPE,
            stderr=slave, timeout=60, check=False,
        )  # fmt: skip
        os.close(slave)
        shown = b""
        while True:
            try:
                piece = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not piece:
                break
            shown += piece
    finally:
        os.close(master)
    assert done.returncode == 0
    text = shown.decode()
    assert "\r[....................] 0/1 calls  checking" in text
    assert "\r[####################] 1/1 calls  sealing" in text
    assert text.endswith("1/1 calls  done\x1b[K\r\n")


def test_the_bar_line() -> None:
    half = ExportProgress("transcript", 2, 4, "rec-9")
    assert sar_progress_line(half, width=10) == "[#####.....] 2/4 calls  transcript  rec-9"
    assert sar_progress_line(ExportProgress("zip", 3, 3), width=4) == "[####] 3/3 calls  zip"


@pytest.mark.parametrize(
    ("by", "words"),
    [("nobody", "--by nobody: no such user"), ("carl", "--by carl: the account is disabled")],
)
def test_an_unknown_or_disabled_account_is_refused(install: Install, by: str, words: str) -> None:
    out = install.folder / "answer"
    refused(sar_export(install, install.case_id, "--out", str(out), "--by", by), words)
    assert not out.exists()


def test_an_unknown_case_is_one_line(install: Install) -> None:
    out = install.folder / "answer"
    result = sar_export(install, "SAR-1999-0001", "--out", str(out), "--by", "dana")
    refused(result, "no subject access case SAR-1999-0001")
    assert not out.exists()


def test_bad_usage_exits_2(install: Install) -> None:
    result = sar_export(install, install.case_id, "--by", "dana")
    assert result.returncode == 2 and "--out" in result.stderr
