"""Subject access export jobs on the real exporter (real recordings, catalog, ffmpeg and
model; part 1's world of ``test_sar_export``): a job's folder is removed once it has
been kept long enough, a running job is cancelled at shutdown leaving nothing, what a
crash left is removed at start, and a job is its starter's and the DPO's alone."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from proxy.config import AccessSettings
from proxy.records.errors import AccessRequestConflict, RecordNotFound
from proxy.records.gate import Gate
from proxy.records.policy import Actor
from proxy.records.sar_jobs import JobState, SarExportJobs
from proxy.roles import Role
from proxy.storage.catalog import Release
from tests.storage.faulty_store import tmpfs

from .test_sar_export import DPO, OFFICER, World, audio, decide, world  # noqa: F401

OTHER_OFFICER = Actor("otto", Role.RECORDS_OFFICER)
HOUR = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def jobs_of(world: World, root: Path, clock: Clock) -> SarExportJobs:  # noqa: F811
    gate = Gate(world.catalog, AccessSettings())
    return SarExportJobs(
        gate, world.catalog.audit, world.catalog.sar, world.exporter, root, keep=HOUR, clock=clock
    )


async def test_a_finished_job_is_kept_then_swept(world: World, tmp_path: Path) -> None:  # noqa: F811
    await decide(world, "caller", "refuse", "refuse")
    clock, root = Clock(), tmp_path / "exports"
    jobs = jobs_of(world, root, clock)
    jobs.open()
    try:
        job = await jobs.start(OFFICER, world.case_id, False)
        assert job.task is not None
        await asyncio.wait_for(job.task, 60)
        assert job.state is JobState.DONE, job.error
        zipped = await jobs.download(OFFICER, world.case_id, job.id)
        assert zipped.is_file() and zipped.is_relative_to(root / world.case_id / job.id)
        for folder in (root, root / world.case_id, root / world.case_id / job.id):
            assert folder.stat().st_mode & 0o077 == 0, folder  # the service's user's only
        assert jobs.job(DPO, world.case_id, job.id) is job
        with pytest.raises(RecordNotFound):
            jobs.job(OTHER_OFFICER, world.case_id, job.id)
        clock.now = job.ended + HOUR - 1  # type: ignore[operator]
        assert jobs.sweep() == 0 and zipped.is_file()
        clock.now += 1
        assert jobs.sweep() == 1
        assert list(root.iterdir()) == []
        with pytest.raises(RecordNotFound):
            jobs.job(OFFICER, world.case_id, job.id)
    finally:
        await jobs.close()


async def test_a_bundle_no_longer_released_is_gone(world: World, tmp_path: Path) -> None:  # noqa: F811
    await decide(world, "caller", "refuse", "refuse")
    jobs = jobs_of(world, tmp_path / "exports", Clock())
    jobs.open()
    try:
        job = await jobs.start(OFFICER, world.case_id, False)
        assert job.task is not None
        await asyncio.wait_for(job.task, 60)
        assert job.state is JobState.DONE, job.error
        (released,) = job.result.export.recording_ids  # type: ignore[union-attr]
        await world.catalog.sar.decide(  # the DPO thinks again: refused after all
            world.case_id, released, release=Release.REFUSE, by="dee", reason="third party"
        )
        with pytest.raises(AccessRequestConflict, match="decision changed"):
            await jobs.download(OFFICER, world.case_id, job.id)
        assert not job.folder.exists()  # the plaintext bundle is gone at once
        with pytest.raises(RecordNotFound):
            jobs.job(OFFICER, world.case_id, job.id)
    finally:
        await jobs.close()


async def test_shutdown_cancels_a_running_job_and_leaves_nothing(
    world: World,  # noqa: F811
    tmp_path: Path,
) -> None:
    await decide(world, "both", "both", "caller")
    root = tmp_path / "exports"
    jobs = jobs_of(world, root, Clock())
    jobs.open()
    job = await jobs.start(OFFICER, world.case_id, True)
    assert job.state is JobState.RUNNING and job.progress.stage != "checking"
    await jobs.close()
    assert job.state is JobState.FAILED and "stopped" in (job.error or "")
    assert list(root.iterdir()) == []
    case = await world.catalog.sar.get(world.case_id)
    assert case is not None and case.exports == ()


async def test_a_disk_that_fills_fails_the_job_saying_so(world: World, tmp_path: Path) -> None:  # noqa: F811
    """Past its checks, the job fails on its own: the person reads why in its error."""
    await decide(world, "caller", "refuse", "refuse")
    with tmpfs(tmp_path / "tiny", "64k") as disk:
        jobs = jobs_of(world, disk / "exports", Clock())
        jobs.open()
        try:
            job = await jobs.start(OFFICER, world.case_id, False)
            assert job.task is not None
            await asyncio.wait_for(job.task, 60)
            assert job.state is JobState.FAILED and "no space left" in (job.error or ""), job
            assert str(disk) not in (job.error or ""), job.error  # no server path shown
            assert job.as_dict()["error"] == job.error and "files" not in job.as_dict()
            with pytest.raises(AccessRequestConflict, match="failed: there is no bundle"):
                await jobs.download(OFFICER, world.case_id, job.id)
            assert [p.name for p in job.folder.iterdir()] == []  # nothing partial left
        finally:
            await jobs.close()
        assert os.listdir(disk / "exports") == []


async def test_what_a_crash_left_is_removed_at_start(world: World, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "exports"
    (root / "SAR-2026-0001" / "0123abcd").mkdir(parents=True)
    (root / "SAR-2026-0001" / "0123abcd" / "recording.wav").write_bytes(b"RIFF")
    jobs = jobs_of(world, root, Clock())
    jobs.open()
    try:
        assert root.is_dir() and list(root.iterdir()) == []
        assert root.stat().st_mode & 0o077 == 0
    finally:
        await jobs.close()
