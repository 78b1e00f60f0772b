"""Subject access exports as background jobs of the records service (P17-P19): a bundle
of many calls, transcribed, takes minutes, longer than an HTTP request should wait.

:meth:`SarExportJobs.start` runs :meth:`SarExporter.export` as a task into
``<root>/<case>/<job>/`` (``root`` is the records service's ``exports/NODE`` folder
beside the catalog) and answers once the exporter is past its checks: an unknown case, a
refusal, nothing released, a closed case or a missing model is raised then, so the
person asking gets it at once (404, 403, 422, 409) and no job is left behind.  Past the
checks the job runs on; :meth:`job` reports its stage and how many calls are done, and
once done the manifest's SHA-256 and files; :meth:`download` gives the signed ZIP.

- **Bounded**: at most ``limit`` jobs run at once (transcription already uses both
  cores of a small host): one more is :class:`ExportsBusy` (429), never queued.
- **Private**: a job is seen only by the person who started it, and by the DPO; to
  anyone else it does not exist (404).  Each download asks the gate (``export_sar``) and
  appends ``sar.download`` to the audit chain.
- **Not kept**: the bundle is the plaintext copy a person asked for.  A finished job's
  folder is removed ``keep`` after it ended (:meth:`sweep`, every five minutes), at
  :meth:`close` (the service stopping: running jobs are cancelled, their drafts removed
  by :class:`BundleDraft`), and whatever a crash left is removed at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from ..roles import Role
from ..storage.catalog import Release, SarCaseRepository, SarState, format_utc
from ..storage.catalog.audit import AuditLog
from .errors import (
    AccessDenied,
    AccessRequestConflict,
    InvalidAccessRequest,
    RecordNotFound,
)
from .gate import Gate, require
from .policy import Action, Actor
from .sar_export import ExportProgress, SarExporter, SarExportError, SarExportResult

log = logging.getLogger(__name__)

EXPORTS_FOLDER = "exports"  # beside the catalog
KEEP_SECONDS = 24 * 3600.0  # a finished job's folder, bundle and ZIP, then removed
SWEEP_SECONDS = 300.0
CHECKING = "checking"
FAULT = "the export failed; the operators have been told"
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # a case id as the catalog makes them


class JobState(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ExportsBusy(Exception):
    """As many exports as the host runs at once are running (429)."""


@dataclass(eq=False)
class ExportJob:
    """One export of a case, as far as it has got."""

    id: str
    case_id: str
    started_by: str
    started_at: datetime
    folder: Path
    transcripts: bool
    progress: ExportProgress
    state: JobState = JobState.RUNNING
    error: str | None = None
    result: SarExportResult | None = None
    ended: float | None = None  # monotonic
    failure: Exception | None = field(default=None, repr=False)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The job's progress for the API."""
        shown: dict[str, Any] = {
            "id": self.id,
            "case_id": self.case_id,
            "state": self.state.value,
            "stage": self.progress.stage,
            "done": self.progress.done,
            "total": self.progress.total,
            "recording_id": self.progress.recording_id,
            "transcripts": self.transcripts,
            "started_by": self.started_by,
            "started_at": format_utc(self.started_at),
            "error": self.error,
        }
        if self.result is not None:
            shown["manifest_sha256"] = self.result.bundle.manifest_sha256
            shown["signing_key_sha256"] = self.result.bundle.signing_key_sha256
            shown["files"] = [each.as_dict() for each in self.result.bundle.files]
        return shown


class SarExportJobs:
    """The records service's export jobs; see the module docstring."""

    def __init__(
        self,
        gate: Gate,
        audit: AuditLog,
        cases: SarCaseRepository,
        exporter: SarExporter | None,
        root: Path,
        *,
        unavailable: str = "",
        limit: int = 1,
        keep: float = KEEP_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``exporter`` None: exports are refused with ``unavailable`` (the signing key
        is missing, say) while the rest of the service runs."""
        if limit < 1 or keep <= 0:
            raise ValueError("limit and keep must be positive")
        self._gate = gate
        self._audit = audit
        self._cases = cases
        self._exporter = exporter
        self._unavailable = unavailable
        self._root = root
        self._limit = limit
        self._keep = keep
        self._clock = clock
        self._jobs: dict[str, ExportJob] = {}
        self._janitor: asyncio.Task[None] | None = None

    def open(self, sweep_every: float = SWEEP_SECONDS) -> None:
        """Remove what an earlier run left (no job outlives its process), make the
        folder, private to the service's user, and sweep it every ``sweep_every``
        seconds until :meth:`close`."""
        shutil.rmtree(self._root, ignore_errors=True)
        self._root.mkdir(parents=True, mode=0o700)
        self._janitor = asyncio.create_task(self._sweeping(sweep_every), name="sar exports")

    async def start(self, actor: Actor, case_id: str, transcripts: object = True) -> ExportJob:
        """Start exporting ``case_id``; the job once the exporter is past its checks
        (their error otherwise, and no job)."""
        if not isinstance(transcripts, bool):
            raise InvalidAccessRequest("transcripts must be true or false")
        if self._exporter is None:
            raise SarExportError(self._unavailable)
        if sum(job.state is JobState.RUNNING for job in self._jobs.values()) >= self._limit:
            raise ExportsBusy(
                f"{self._limit} export(s) already running on this host: try again when "
                "it has finished"
            )
        if SAFE_NAME.fullmatch(case_id) is None:  # it names folders: no "..", no "/"
            raise RecordNotFound(f"no subject access case {case_id[:80]!r}")
        job_id = secrets.token_hex(8)
        folder = self._root / case_id / job_id
        folder.parent.mkdir(mode=0o700, exist_ok=True)  # parents=True would make it 0755
        folder.mkdir(mode=0o700)
        job = ExportJob(
            job_id, case_id, actor.name, self._gate.now(), folder, transcripts,
            ExportProgress(CHECKING, 0, 0),
        )  # fmt: skip
        checked = asyncio.Event()

        def progress(now: ExportProgress) -> None:
            job.progress = now
            if now.stage != CHECKING:
                checked.set()

        job.task = asyncio.create_task(
            self._run(job, actor, self._exporter, progress), name=f"sar export {job_id}"
        )
        self._jobs[job_id] = job
        waiting = asyncio.create_task(checked.wait())
        try:
            await asyncio.wait({job.task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
        if job.failure is not None and job.progress.stage == CHECKING:
            self._forget(job)  # refused at the exporter's checks: no job, the error now
            raise job.failure
        return job

    async def _run(
        self,
        job: ExportJob,
        actor: Actor,
        exporter: SarExporter,
        progress: Callable[[ExportProgress], None],
    ) -> None:
        try:
            job.result = await exporter.export(
                actor, job.case_id, job.folder / job.case_id, make_zip=True,
                transcripts=job.transcripts, progress=progress,
            )  # fmt: skip
            job.state = JobState.DONE
        except asyncio.CancelledError:
            job.state, job.error = JobState.FAILED, "cancelled: the records service stopped"
            raise
        except Exception as exc:
            job.state, job.failure = JobState.FAILED, exc
            if isinstance(exc, _REFUSALS):  # one line for the person asking, no server path
                job.error = str(exc).replace(str(job.folder), "(the job's folder)")
                if isinstance(exc, SarExportError):  # a full disk, say: ops should know too
                    log.warning("subject access export %s of %s: %s", job.id, job.case_id, exc)
            else:  # a bug or the host's fault: the cause is for the log, not the person
                job.error = FAULT
                log.error("subject access export %s of %s failed: %r", job.id, job.case_id, exc)
        finally:
            job.ended = self._clock()

    def job(self, actor: Actor, case_id: str, job_id: str) -> ExportJob:
        """The job, to the person who started it or the DPO (``RecordNotFound`` to
        anyone else, and for a job unknown or of another case)."""
        found = self._jobs.get(job_id)
        if found is None or found.case_id != case_id or not _may_see(actor, found):
            raise RecordNotFound(f"no export job {job_id} of case {case_id}")
        return found

    async def download(self, actor: Actor, case_id: str, job_id: str) -> Path:
        """The finished job's ZIP, once the gate allows it; ``sar.download`` audited."""
        job = self.job(actor, case_id, job_id)
        if job.state is not JobState.DONE or job.result is None or job.result.zip_path is None:
            raise AccessRequestConflict(
                f"export job {job_id} is {job.state.value}: there is no bundle to download"
            )
        reason = f"case {case_id}: download of export job {job_id}"
        require(await self._gate.check(actor, Action.EXPORT_SAR, reason=reason))
        await self._still_released(job, job.result.export.releases)
        await self._audit.append(
            actor=actor.name,
            action="sar.download",
            object=f"sar:{case_id}",
            detail={"job": job_id, "manifest_sha256": job.result.bundle.manifest_sha256,
                    "started_by": job.started_by},
        )  # fmt: skip
        return job.result.zip_path

    async def _still_released(self, job: ExportJob, releases: Mapping[str, Release]) -> None:
        """Refuse (409) a bundle the case no longer stands behind — closed, or a call's
        decision changed since it was written — and remove it at once."""
        case = await self._cases.get(job.case_id)
        changed = (
            case is None
            or case.state is SarState.CLOSED
            or any(
                (attached := case.recording(rid)) is None or attached.release is not release
                for rid, release in releases.items()
            )
        )
        if changed:
            self._forget(job)
            raise AccessRequestConflict(
                f"case {job.case_id} was closed or a decision changed since export job {job.id}"
                " was written: the bundle was removed; export again"
            )

    def sweep(self) -> int:
        """Remove the jobs (and folders) that ended ``keep`` ago or more; how many."""
        now = self._clock()
        old = [
            j for j in self._jobs.values() if j.ended is not None and now - j.ended >= self._keep
        ]
        for job in old:
            self._forget(job)
        return len(old)

    async def _sweeping(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    async def close(self) -> None:
        """Stop sweeping, cancel the running jobs, wait for them, and remove every
        job's folder."""
        running = [job.task for job in self._jobs.values() if job.task and not job.task.done()]
        if self._janitor is not None:
            running.append(self._janitor)
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for job in list(self._jobs.values()):
            self._forget(job)

    def _forget(self, job: ExportJob) -> None:
        self._jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            job.folder.parent.rmdir()  # the case's folder, once it has no job


#: the exporter's answers for the person asking (the job's ``error``), not faults to log
_REFUSALS = (
    AccessDenied,
    AccessRequestConflict,
    InvalidAccessRequest,
    RecordNotFound,
    SarExportError,
)


def _may_see(actor: Actor, job: ExportJob) -> bool:
    return actor.name == job.started_by or actor.role is Role.DPO
