"""A recording's integrity check in the records service (P10): what a supplier's
maintenance staff run on the archive without hearing it.

    GET /api/v1/recordings/{id}/verify

``Action.VERIFY_INTEGRITY`` on the recording (maintenance, admins, records officers,
the DPO), one gate decision with its audit entry; then every segment file is held
against its catalog row and every chunk authenticated by decrypting it
(:func:`proxy.records.integrity.verify_recording`).  The answer is a report — 200 with
``ok`` false when something is wrong, naming the segment and the check — and never
audio.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ...records.gate import Gate, require
from ...records.integrity import verify_recording
from ...records.policy import Action
from ...storage.catalog import Catalog
from ...storage.store import SegmentStore
from .auth import current_actor
from .routes import API, Routes, ok_json
from .statuses import answering, problems

REPORT = {
    "type": "object",
    "properties": {
        "recording_id": {"type": "string"},
        "state": {"type": "string"},
        "ok": {"type": "boolean"},
        "problems": {"type": "array", "items": {"type": "string"}},
        "audio_returned": {"const": False},
        "segments": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "file": {"type": "string"},
                    "chunks": {"type": "integer"},
                    "frames": {"type": "integer"},
                    "ok": {"type": "boolean"},
                    "problems": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}


class IntegrityRoutes:
    def __init__(
        self,
        gate: Gate,
        catalog: Catalog,
        recordings_dir: Path,
        private_key: X25519PrivateKey,
        store: SegmentStore | None = None,
    ) -> None:
        self._gate = gate
        self._catalog = catalog
        self._recordings_dir = recordings_dir
        self._private_key = private_key
        self._store = store

    async def verify(self, request: web.Request) -> web.StreamResponse:
        recording_id = request.match_info["recording_id"]
        decision = await self._gate.check(
            current_actor(request),
            Action.VERIFY_INTEGRITY,
            recording_id=recording_id,
            reason="integrity check",
        )
        require(decision)
        report = await verify_recording(
            self._catalog, recording_id, self._recordings_dir, self._private_key, self._store
        )
        return web.json_response(report.as_dict())


def add_routes(
    routes: Routes,
    gate: Gate,
    catalog: Catalog,
    recordings_dir: Path,
    private_key: X25519PrivateKey,
    store: SegmentStore | None = None,
) -> None:
    """The recording check (see the module)."""
    handlers = IntegrityRoutes(gate, catalog, recordings_dir, private_key, store)
    routes.add(
        "GET",
        f"{API}/recordings/{{recording_id}}/verify",
        answering(handlers.verify),
        summary="Check a recording's files against the catalog and authenticate every "
        "chunk, returning no audio (verify_integrity)",
        responses={
            "200": ok_json("The report: ok, or each problem and its segment", REPORT),
            **problems("403", "404", "409"),
        },
    )
