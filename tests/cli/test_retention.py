"""``recproxy retention sweep``, run as the real command on a real catalog and real
segment files: time travel with ``--as-of``, ``--dry-run``, a bad date, the listing of a
deleted recording, a progress bar only on a terminal, and a sweeper process killed with
SIGKILL after each of the four steps of a deletion, then finished by the next sweep."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proxy.cli import PAUSE_AFTER_STEP_ENV
from proxy.storage.catalog import SqliteCatalog
from tests.cli.test_cli import recproxy
from tests.records.retention_world import (
    Planned,
    catalogue,
    has_files,
    has_key,
    place_hold,
)

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
AS_OF = "2030-06-01T12:00:00Z"

CONFIG = """
[recording]
dir = "recordings"
public_key = "keys/recording.pub"
private_key = "keys/recording.key"

[catalog]
path = "catalog.sqlite3"

[retention]
months = 0
days = 30
batch_size = 1
"""


@dataclass(frozen=True)
class Site:
    folder: Path
    ids: dict[str, str]

    @property
    def db(self) -> Path:
        return self.folder / "catalog.sqlite3"

    @property
    def root(self) -> Path:
        return self.folder / "recordings"

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return recproxy(
            *args, "--config", str(self.folder / "recproxy.toml"), cwd=self.folder, env=env
        )

    def row(self, name: str) -> tuple[str, int | None, str | None]:
        with sqlite3.connect(self.db) as conn:
            found = conn.execute(
                "SELECT state, deleted_at, deleted_reason FROM recordings WHERE id = ?",
                (self.ids[name],),
            ).fetchone()
        conn.close()
        return found  # type: ignore[no-any-return]

    def audit(self, action: str) -> list[tuple[str, str]]:
        with sqlite3.connect(self.db) as conn:
            found = conn.execute(
                "SELECT actor, object FROM audit_log WHERE action = ? ORDER BY seq", (action,)
            ).fetchall()
        conn.close()
        return found


def make_site(folder: Path, plans: tuple[Planned, ...]) -> Site:
    (folder / "recproxy.toml").write_text(CONFIG)

    async def build() -> dict[str, str]:
        async with SqliteCatalog(folder / "catalog.sqlite3") as catalog:
            ids = {
                plan.name: await catalogue(catalog, folder / "recordings", plan) for plan in plans
            }
        for plan in plans:
            if plan.held:
                place_hold(folder / "catalog.sqlite3", ids[plan.name], plan.ended)
        return ids

    return Site(folder, asyncio.run(build()))


AGES = (
    Planned("expired", NOW - timedelta(days=40)),
    Planned("held", NOW - timedelta(days=60), held=True),
    Planned("young", NOW - timedelta(days=5)),
)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return make_site(tmp_path, AGES)


def test_a_sweep_as_of_a_date_deletes_the_expired_unheld_one(site: Site) -> None:
    done = site.run("retention", "sweep", "--as-of", AS_OF)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("deleted 1, kept 1 held, 1 not yet expired (as of 2030-06-01T12")
    assert done.stderr == ""  # not a terminal: no progress bar
    assert site.row("expired")[0] == "deleted"
    assert site.row("expired")[2] == "retention: expired 2030-05-22"
    assert not has_key(site.root, site.ids["expired"]) and not has_files(
        site.root, site.ids["expired"]
    )
    for name in ("held", "young"):
        assert site.row(name)[0] == "complete" and has_key(site.root, site.ids[name])
    account = site.audit("retention.sweep")[0][0]
    assert site.audit("recording.delete") == [(account, f"recording:{site.ids['expired']}")]
    assert account != "retention"  # the person at the command line

    listed = json.loads(site.run("recordings", "list", "--json").stdout)
    by_id = {entry["id"]: entry for entry in listed}
    gone = by_id[site.ids["expired"]]
    assert gone["state"] == "deleted"
    assert (
        gone["deleted_at"].endswith("Z")
        and gone["deleted_reason"] == "retention: expired 2030-05-22"
    )
    assert gone["expires_at"] == "2030-05-22T12:00:00.000Z"
    young = by_id[site.ids["young"]]
    assert young["expires_at"] == "2030-06-26T12:00:00.000Z" and young["deleted_at"] is None

    travelled = site.run("retention", "sweep", "--as-of", "2030-07-01")
    assert travelled.returncode == 0 and travelled.stdout.startswith("deleted 1, kept 1 held, 0")


def test_a_dry_run_lists_and_changes_nothing(site: Site) -> None:
    before = site.db.read_bytes()
    done = site.run("retention", "sweep", "--as-of", AS_OF, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"would delete {site.ids['expired']}"
    assert "would delete 1, kept 1 held, 1 not yet expired" in done.stdout
    assert has_key(site.root, site.ids["expired"]) and site.row("expired")[0] == "complete"
    assert site.audit("retention.sweep") == []
    assert site.db.read_bytes() == before


@pytest.mark.parametrize("bad", ["yesterday", "2030-13-01", "2030-06-01T25:00", ""])
def test_a_malformed_as_of_is_one_line_and_changes_nothing(site: Site, bad: str) -> None:
    done = site.run("retention", "sweep", "--as-of", bad)
    assert done.returncode == 1
    assert done.stderr == (
        f"recproxy: --as-of: {bad!r} is not an ISO 8601 date or time (e.g. 2029-06-01T00:00:00Z)\n"
    )
    assert done.stdout == ""
    assert site.row("expired")[0] == "complete" and has_key(site.root, site.ids["expired"])
    assert site.audit("retention.sweep") == []


def test_a_sweep_with_no_catalog_says_so(tmp_path: Path) -> None:
    (tmp_path / "recproxy.toml").write_text(CONFIG)
    done = recproxy("retention", "sweep", "--config", str(tmp_path / "recproxy.toml"), cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.startswith("recproxy: no catalog at ")
    assert not (tmp_path / "catalog.sqlite3").exists()


def test_a_terminal_gets_a_progress_bar(tmp_path: Path) -> None:
    make_site(tmp_path, (AGES[0], Planned("also", NOW - timedelta(days=41))))
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "retention", "sweep", "--as-of", AS_OF,
             "--config", str(tmp_path / "recproxy.toml")],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=slave, text=True,
        )  # fmt: skip
        os.close(slave)
        out, _ = process.communicate(timeout=60)
        shown = _read_all(master, deadline=time.monotonic() + 5)
    finally:
        os.close(master)
    assert process.returncode == 0 and out.startswith("deleted 2")
    assert "] 1/2" in shown and "[" + "#" * 30 + "] 2/2" in shown


def _read_all(fd: int, deadline: float) -> str:
    data = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the terminal's other end closed
            break
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


# What the catalog and the store hold once the process was killed after each step.
AFTER_STEP = {
    1: ("deleting", True, True),  # (state, key, files)
    2: ("deleting", False, True),
    3: ("deleting", False, False),
    4: ("deleted", False, False),
}


@pytest.mark.parametrize("step", sorted(AFTER_STEP))
def test_a_sweeper_killed_after_each_step_is_finished_by_the_next(
    tmp_path: Path, step: int
) -> None:
    site = make_site(tmp_path, AGES)
    rid = site.ids["expired"]
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "retention", "sweep", "--as-of", AS_OF,
         "--config", str(tmp_path / "recproxy.toml")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, PAUSE_AFTER_STEP_ENV: str(step)},
    )  # fmt: skip
    try:
        assert process.stderr is not None
        line = _line_within(process, seconds=60)
        assert line == f"paused after step {step} of {rid}\n"
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    state, key, files = AFTER_STEP[step]
    assert (site.row("expired")[0], has_key(site.root, rid), has_files(site.root, rid)) == (
        state,
        key,
        files,
    )
    if step < 4:
        assert site.audit("recording.delete") == []
        assert site.row("expired")[1] is None  # no deleted_at over a deletion not finished
    # the next sweep, even as of before its expiry: a deletion under way is always finished
    again = site.run("retention", "sweep", "--as-of", "2030-05-01")
    assert again.returncode == 0, again.stderr
    assert site.row("expired")[0] == "deleted"
    assert site.row("expired")[2] == "retention: expired 2030-05-22"
    assert not has_key(site.root, rid) and not has_files(site.root, rid)
    assert [obj for _, obj in site.audit("recording.delete")] == [f"recording:{rid}"]
    for name in ("held", "young"):
        assert site.row(name)[0] == "complete" and has_key(site.root, site.ids[name])
    with sqlite3.connect(site.db) as conn:
        segments = conn.execute(
            "SELECT COUNT(*) FROM segments WHERE recording_id = ?", (rid,)
        ).fetchone()[0]
    conn.close()
    assert segments == 0


def _line_within(process: subprocess.Popen[str], seconds: float) -> str:
    """The first stderr line of ``process``, waiting at most ``seconds``."""
    assert process.stderr is not None
    ready, _, _ = select.select([process.stderr], [], [], seconds)
    assert ready, "the sweeper never paused"
    return process.stderr.readline()


def test_a_zero_retention_period_is_a_configuration_error(tmp_path: Path) -> None:
    site = make_site(tmp_path, AGES[:1])
    (tmp_path / "recproxy.toml").write_text(CONFIG.replace("days = 30", "days = 0"))
    done = site.run("retention", "sweep")
    assert done.returncode == 78
    assert "retention: months and days are both 0" in done.stderr
    assert site.row("expired")[0] == "complete" and has_key(site.root, site.ids["expired"])
