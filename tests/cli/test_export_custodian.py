"""``recproxy export`` as the key custodian's tool (issue 15): ``--purpose``, ``--by``,
``--part``, the ``custodian_export`` audit entry, and the DPO's flag for an export outside
working hours.  The real command runs against a real recording of a transferred call
(two parts) and a real catalog; each bad input is one line and changes nothing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pwd
import sqlite3
import wave
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proxy.storage.catalog import SqliteCatalog
from tests.records.playback_world import (
    PASSPHRASE,
    Written,
    catalogue,
    part_slices,
    write_recording,
)

from .test_cli import recproxy


@dataclass(frozen=True)
class Store:
    written: Written
    catalog: Path


async def _catalogue(path: Path, recording_id: str) -> None:
    async with SqliteCatalog(path) as catalog:
        await catalogue(catalog, recording_id)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    written = write_recording(tmp_path_factory.mktemp("store"))
    catalog = written.folder / "catalog.sqlite3"
    asyncio.run(_catalogue(catalog, written.recording_id))
    return Store(written, catalog)


def noon_zone() -> str:
    """A fixed-offset zone where it is about noon now, so that the working hours set by a
    test hold now (or do not) whatever the hour the tests run at."""
    offset = 12 - datetime.now(UTC).hour  # -11 ..= 12
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"  # Etc/GMT-2 is UTC+2


def config(store: Store, folder: Path, *, hours: str = "09:00-15:00") -> Path:
    path = folder / "recproxy.toml"
    w = store.written
    path.write_text(
        f'[recording]\ndir = "{w.recordings}"\npublic_key = "{w.public_key}"\n'
        f'private_key = "{w.private_key}"\n\n[catalog]\npath = "{store.catalog}"\n\n'
        f'[access]\nworking_hours = "{hours}"\nworking_days = "mon-sun"\n'
        f'timezone = "{noon_zone()}"\n'
    )
    return path


def export(store: Store, out: Path, *extra: str, hours: str = "09:00-15:00") -> Any:
    return recproxy(
        "export", store.written.recording_id, "--format", "wav", "--out", str(out),
        "--reason", "complaint 2026-14", "--config", str(config(store, out.parent, hours=hours)),
        *extra, cwd=out.parent, env={"RECPROXY_KEY_PASSPHRASE": PASSPHRASE},
    )  # fmt: skip


def rows(store: Store, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{store.catalog}?mode=ro", uri=True) as connection:
        return [tuple(row) for row in connection.execute(sql)]


def audited(store: Store) -> list[tuple[object, ...]]:
    return rows(store, "SELECT actor, action, object, reason, detail FROM audit_log ORDER BY seq")


def state(store: Store) -> tuple[object, ...]:
    """Everything an export may change in the catalog."""
    return (
        audited(store),
        rows(store, "SELECT * FROM access_log ORDER BY id"),
        rows(store, "SELECT * FROM access_flags ORDER BY id"),
    )


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return data.reshape(-1, wav.getnchannels())


def test_an_export_is_one_custodian_export_entry_with_the_files_sha256(
    store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "call.wav"
    result = export(store, out, "--purpose", "complaint", "--by", " Dr  Jones ")
    assert result.returncode == 0, result.stderr
    account = pwd.getpwuid(os.getuid()).pw_name
    actor, action, obj, reason, detail = audited(store)[-1]
    sha256 = hashlib.sha256(out.read_bytes()).hexdigest()
    assert (actor, action, obj, reason) == (
        f"{account} (by Dr Jones)", "custodian_export",
        f"recording:{store.written.recording_id}", "complaint 2026-14",
    )  # fmt: skip
    assert json.loads(str(detail)) == {
        "os_user": account, "by": "Dr Jones", "purpose": "complaint", "format": "wav",
        "channels": "stereo", "part": None, "sha256": sha256,
    }  # fmt: skip
    assert sha256 in result.stdout and "complaint" in result.stdout
    np.testing.assert_array_equal(read_wav(out), store.written.audio)


def test_the_purpose_defaults_to_accuracy(store: Store, tmp_path: Path) -> None:
    assert export(store, tmp_path / "a.wav").returncode == 0
    detail = json.loads(str(audited(store)[-1][4]))
    assert (detail["purpose"], detail["by"]) == ("accuracy", None)


@pytest.mark.parametrize("purpose", ["browsing", "", "Complaint"])
def test_an_unknown_purpose_is_bad_usage_and_changes_nothing(
    store: Store, tmp_path: Path, purpose: str
) -> None:
    before = state(store)
    result = export(store, tmp_path / "x.wav", "--purpose", purpose)
    assert result.returncode == 2, result
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert f"--purpose {purpose!r} is not one of [access] purposes: accuracy," in result.stderr
    assert state(store) == before
    assert sorted(os.listdir(tmp_path)) == ["recproxy.toml"]


@pytest.mark.parametrize(("part", "index"), [("1", 0), ("2", 1)])
def test_a_part_is_only_that_call_takers_time_range(
    store: Store, tmp_path: Path, part: str, index: int
) -> None:
    out = tmp_path / "part.wav"
    result = export(store, out, "--part", part, "--channels", "call_taker")
    assert result.returncode == 0, result.stderr
    expected = store.written.audio[part_slices()[index], 1:2]
    np.testing.assert_array_equal(read_wav(out), expected)
    assert json.loads(str(audited(store)[-1][4]))["part"] == int(part)
    assert f"part {part}," in result.stdout


def test_an_unknown_part_is_a_clear_error_and_changes_nothing(store: Store, tmp_path: Path) -> None:
    before = state(store)
    result = export(store, tmp_path / "x.wav", "--part", "3")
    assert result.returncode == 1, result
    assert "has no part 3 (its parts: 1, 2)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    for bad in ("0", "-1", "two", "1.5"):
        refused = export(store, tmp_path / "x.wav", "--part", bad)
        assert refused.returncode == 2 and "is not a part number" in refused.stderr, refused
    assert state(store) == before
    assert sorted(os.listdir(tmp_path)) == ["recproxy.toml"]


def test_an_export_in_working_hours_raises_no_flag(store: Store, tmp_path: Path) -> None:
    flags = rows(store, "SELECT id FROM access_flags")
    result = export(store, tmp_path / "a.wav", hours="09:00-15:00")
    assert result.returncode == 0, result.stderr
    assert rows(store, "SELECT id FROM access_flags") == flags
    assert "flagged" not in result.stdout


def test_an_export_outside_working_hours_flags_it_for_the_dpo(store: Store, tmp_path: Path) -> None:
    result = export(store, tmp_path / "late.wav", "--by", "Dr Jones", hours="16:00-17:00")
    assert result.returncode == 0, result.stderr
    assert "flagged for the DPO" in result.stdout
    account = pwd.getpwuid(os.getuid()).pw_name
    ((kind, user, rid, detail, cleared),) = rows(
        store,
        "SELECT kind, user, recording_id, detail, cleared_at FROM access_flags"
        " ORDER BY id DESC LIMIT 1",
    )
    assert (kind, user, rid, cleared) == (
        "outside_working_hours", f"{account} (by Dr Jones)", store.written.recording_id, None
    )  # fmt: skip
    facts = json.loads(str(detail))
    assert (facts["working_hours"], facts["timezone"], facts["purpose"]) == (
        "16:00-17:00", noon_zone(), "accuracy"
    )  # fmt: skip
    # the flag's own audit entry follows the export's
    assert [a[1] for a in audited(store)[-2:]] == ["custodian_export", "flag.raise"]
