"""A subject access case's export jobs over HTTP (P17-P19): the signed bundle, made in
the background with its progress to watch, then downloaded as a ZIP.

    POST /api/v1/sar-cases/{id}/exports                  {"transcripts"?: true} → 202
    GET  /api/v1/sar-cases/{id}/exports/{job}            state, stage, done/total, error;
                                                         once done the manifest's SHA-256
                                                         and the files
    GET  /api/v1/sar-cases/{id}/exports/{job}/bundle.zip the signed ZIP (once done)

The rules are :class:`proxy.records.sar_jobs.SarExportJobs`' (one export at a time on
the host: another is 429; a job is its starter's and the DPO's; each download asked of
the gate and audited ``sar.download``); errors are the problem documents of
:mod:`.statuses`.  The checks (unknown case 404, refused 403, nothing released 422,
a closed case or a released call without audio 409, no transcript model or no signing
key 503) answer the POST itself; a job that fails later says why in its ``error``.
"""

from __future__ import annotations

from aiohttp import web

from ...records.sar_jobs import JobState, SarExportJobs
from .auth import current_actor
from .params import query_values
from .routes import Routes, Schema, ok_json
from .sar import CASES, known_fields
from .statuses import answering, problems

JOB: Schema = {
    "type": "object",
    "required": ["id", "case_id", "state", "stage", "done", "total", "error"],
    "properties": {
        "id": {"type": "string"},
        "case_id": {"type": "string"},
        "state": {"enum": [state.value for state in JobState]},
        "stage": {
            "enum": ["checking", "audio", "transcript", "sealing", "zip", "done"],
            "description": "what the export is doing",
        },
        "done": {"type": "integer", "description": "calls finished so far"},
        "total": {"type": "integer", "description": "calls released in the case"},
        "recording_id": {"type": ["string", "null"], "description": "the call in hand"},
        "transcripts": {"type": "boolean"},
        "started_by": {"type": "string"},
        "started_at": {"type": "string", "format": "date-time"},
        "error": {"type": ["string", "null"], "description": "why it failed"},
        "manifest_sha256": {"type": "string", "description": "once done"},
        "signing_key_sha256": {"type": "string", "description": "once done"},
        "files": {
            "type": "array",
            "description": "once done: each file of the bundle with its size and SHA-256",
            "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "size": {"type": "integer"},
                "sha256": {"type": "string"}}},
        },
    },
}  # fmt: skip
START_SCHEMA: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "transcripts": {
            "type": "boolean",
            "default": True,
            "description": "a transcript (text and WebVTT) of each released call",
        }
    },
}


class SarExportRoutes:
    """The export job endpoints, each a thin shell over :class:`SarExportJobs`."""

    def __init__(self, jobs: SarExportJobs) -> None:
        self._jobs = jobs

    async def start(self, request: web.Request) -> web.StreamResponse:
        # no body at all: the defaults (every field is optional)
        body = await known_fields(request, ("transcripts",)) if request.can_read_body else {}
        case_id = request.match_info["id"]
        job = await self._jobs.start(current_actor(request), case_id, body.get("transcripts", True))
        return web.json_response(
            job.as_dict(),
            status=202,
            headers={"Location": f"{CASES}/{case_id}/exports/{job.id}"},
        )

    async def progress(self, request: web.Request) -> web.StreamResponse:
        query_values(request, ())
        job = self._jobs.job(
            current_actor(request), request.match_info["id"], request.match_info["job"]
        )
        return web.json_response(job.as_dict(), headers={"Cache-Control": "no-store"})

    async def bundle(self, request: web.Request) -> web.StreamResponse:
        query_values(request, ())
        case_id = request.match_info["id"]
        path = await self._jobs.download(current_actor(request), case_id, request.match_info["job"])
        return web.FileResponse(
            path,
            headers={
                "Content-Type": "application/zip",
                "Content-Disposition": f'attachment; filename="{case_id}.zip"',
                "Cache-Control": "no-store",
            },
        )


def add_routes(routes: Routes, jobs: SarExportJobs) -> None:
    """The export job endpoints (see the module)."""
    handlers = SarExportRoutes(jobs)
    path = f"{CASES}/{{id}}/exports"
    routes.add(
        "POST",
        path,
        answering(handlers.start),
        summary="Export the case's released calls as a signed bundle, in the background "
        "(records officers, the DPO: export_sar); one at a time on the host",
        request_body=START_SCHEMA,
        responses={
            "202": ok_json("The job, past its checks; follow Location for its progress", JOB),
            **problems("400", "403", "404", "409", "422", "429", "503"),
        },
    )
    routes.add(
        "GET",
        f"{path}/{{job}}",
        answering(handlers.progress),
        summary="An export job's progress, and once done its manifest's SHA-256 and files "
        "(the person who started it, the DPO)",
        responses={"200": ok_json("The job", JOB), **problems("404", "422")},
    )
    routes.add(
        "GET",
        f"{path}/{{job}}/bundle.zip",
        answering(handlers.bundle),
        summary="The finished export's signed bundle as a ZIP (its starter, the DPO; each "
        "download audited sar.download)",
        responses={
            "200": {
                "description": "The bundle's ZIP: verify it with recproxy verify-bundle",
                "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            },
            **problems("403", "404", "409", "422"),
        },
    )
