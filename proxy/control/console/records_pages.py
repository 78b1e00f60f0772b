"""The records pages of the console (issue 17): search, a recording's page with its
player and waveform, and (``access_pages``, ``holds_page``) requests, approvals and
holds.

Each page decides through the same use case as the matching API route —
:class:`~proxy.records.search.RecordSearch` for search and a recording's page, the audio
route's :class:`~proxy.control.records.audio.Listening` for the waveform — so the gate
decides and audits an action once, whichever way it is asked.  The player is an
``<audio>`` element whose source *is* the API's audio route (``Range``, a ``play``
decision audited per request, decrypted in memory): the page itself never touches audio.
The page asks for a purpose and a reason first (a GET form) and shows the player only
when the person's access, as the recording's detail reports it, allows that purpose.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ...config import Config
from ...records.access import AccessDesk
from ...records.errors import AccessDenied, InvalidAccessRequest
from ...records.gate import Gate
from ...records.holds import HoldDesk
from ...records.playback import part_frame
from ...records.search import FILTERS, RecordSearch, parse_filters, parse_page
from ...storage.catalog import CallDirection, Catalog
from ...storage.export import WAV_HEADER_SIZE
from ...storage.store import SegmentStore
from ..records.audio import Listening
from ..records.auth import actor_of
from ..records.routes import API
from ..records.statuses import answer
from . import access_pages, holds_page, render
from .page_errors import error_page, field_errors
from .session import page, page_context, page_user
from .shown import shown_duration, shown_time
from .waveform import Boundary, Peaks, svg

SEARCH = "/console/search"
RECORDING = "/console/recordings/{id}"
LISTEN = ("purpose", "reason", "part")


def recording_path(recording_id: str) -> str:
    return RECORDING.replace("{id}", recording_id)


class RecordPages:
    """Search, a recording's page and its waveform, on the records service's use cases."""

    def __init__(self, search: RecordSearch, listening: Listening, config: Config) -> None:
        self._search = search
        self._listening = listening
        self._numbers = config.numbers
        self._purposes = config.access.purposes

    async def search(self, request: web.Request) -> web.StreamResponse:
        asked = {k: v.strip() for k, v in request.query.items() if v.strip()}
        number, size = asked.pop("page", None), asked.get("size")
        context = page_context(
            request,
            asked=asked,
            directions=[(d.value, d.value.capitalize()) for d in CallDirection],
            errors={},
        )
        try:
            found = await self._search.search(
                actor_of(page_user(request)),
                parse_filters({k: v for k, v in asked.items() if k != "size"}, self._numbers),
                parse_page(number, size),
            )
        except InvalidAccessRequest as exc:
            errors = field_errors(exc, {name: name for name in (*FILTERS, "page", "size")})
            context |= {"errors": errors, "rows": [], "previous": None, "next": None}
            return render(request, "records_search.html", context, status=422)
        here = found.page.number

        def page_link(number: int) -> str:
            return f"{SEARCH}?{urlencode(asked | {'page': number})}"

        rows = [
            {
                "href": recording_path(hit.recording_id),
                "when": shown_time(hit.call_started_at),
                "caller": hit.caller,
                "callee": hit.callee,
                "service": hit.service or "",
                "parts": [(p.part, p.operator or "", p.team or "") for p in hit.parts],
                "duration": shown_duration(hit.duration_ms),
                "state": hit.state.value,
            }
            for hit in found.rows
        ]
        context |= {
            "rows": rows,
            "page": here,
            "previous": page_link(here - 1) if here > 1 else None,
            "next": page_link(here + 1) if found.more else None,
        }
        return render(request, "records_search.html", context)

    async def recording(
        self,
        request: web.Request,
        *,
        errors: Mapping[str, str] | None = None,
        asked: Mapping[str, str] | None = None,
        status: int = 200,
    ) -> web.StreamResponse:
        """The page; a form's ``errors`` and the values ``asked`` when it is shown
        again after a request for access."""
        recording_id = request.match_info["id"]
        base = {
            "recording_id": recording_id,
            "purpose_options": [(p, p.replace("_", " ")) for p in self._purposes],
            "request_errors": dict(errors or {}),
            "requested": dict(asked or {}),
            "done": request.query.get("done", ""),
        }
        try:
            detail = await self._search.recording_detail(actor_of(page_user(request)), recording_id)
        except AccessDenied as exc:  # not theirs to see: they may still ask for access
            context = page_context(request, detail=None, refusal=exc.decision.reason, **base)
            return render(request, "records_recording.html", context, status=max(status, 403))
        except Exception as exc:
            return error_page(request, exc)
        listen = {k: request.query.get(k, "").strip() for k in LISTEN}
        listen_errors, player = self._player(recording_id, detail, listen)
        context = page_context(
            request,
            detail=detail,
            refusal="",
            when=shown_time,
            duration=shown_duration(detail["duration_ms"]),
            listen=listen,
            listen_errors=listen_errors,
            part_options=[(p["part"], f"Part {p['part']}") for p in detail["parts"]],
            player=player,
            **base,
        )
        return render(request, "records_recording.html", context, status=status)

    def _player(
        self, recording_id: str, detail: Mapping[str, Any], listen: Mapping[str, str]
    ) -> tuple[dict[str, str], dict[str, str] | None]:
        """The listening form's errors, or the player's sources once its purpose and
        reason are given and the person may hear the part(s) for that purpose now."""
        if not any(listen.values()):
            return {}, None
        errors: dict[str, str] = {}
        allowed = {
            entry["part"]: set(entry["purposes"]) for entry in detail["access"]["listen"]
        }  # part → purposes
        part = listen["part"]
        number = int(part) if part.isascii() and part.isdecimal() else None  # not "²"
        parts = [number] if number in allowed else list(allowed)
        if part and number not in allowed:
            errors["part"] = f"This recording has no part {part}."
        if listen["purpose"] not in self._purposes:
            errors["purpose"] = "Choose why you are listening."
        elif not all(listen["purpose"] in allowed[n] for n in parts):
            errors["purpose"] = (
                f"You may not hear {'this part' if part else 'all of this recording'} for "
                f"{listen['purpose']} now: request access below."
            )
        if not listen["reason"]:
            errors["reason"] = "Give the reason you are listening."
        if errors:
            return errors, None
        query = {k: v for k, v in listen.items() if v}
        path = f"{API}/recordings/{recording_id}"
        return {}, {
            "audio": f"{path}/audio?{urlencode(query | {'format': 'wav'})}",
            "waveform": f"{recording_path(recording_id)}/waveform.svg?{urlencode(query)}",
        }

    async def waveform(self, request: web.Request) -> web.StreamResponse:
        """The waveform SVG: a ``play`` decision, as the audio route's (audited), marked
        ``waveform`` so the flags count the page's playback once (``records.flagging``)."""
        recording_id = request.match_info["id"]
        return await answer(lambda: self._draw(request, recording_id))

    async def _draw(self, request: web.Request, recording_id: str) -> web.StreamResponse:
        raw = {k: v for k, v in request.query.items() if k in LISTEN}
        if len(raw) != len(request.query):
            raise InvalidAccessRequest(f"the waveform takes {', '.join(LISTEN)} only")
        actor = actor_of(page_user(request))
        playable, rendering = await self._listening.open(
            actor, recording_id, raw | {"format": "wav"}, waveform=True
        )
        peaks = Peaks(rendering.frames)
        if rendering.frames:
            async for piece in rendering.chunks(WAV_HEADER_SIZE):
                peaks.feed(piece)
        parts = playable.parts if playable.part is None and len(playable.parts) > 1 else ()
        origin = playable.recording.started_at
        marks = [
            Boundary(
                part_frame(origin, p, rendering.sample_rate, rendering.frames),
                f"Part {p.part}: {p.operator or 'unknown'}",
            )
            for p in parts
        ]
        which = "the whole call" if playable.part is None else f"part {playable.part.part}"
        drawing = svg(peaks, marks, f"Waveform of {which}: caller above, call taker below")
        return web.Response(
            text=drawing,
            content_type="image/svg+xml",
            headers={
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'",
            },
        )


def add_routes(
    app: web.Application,
    config: Config,
    gate: Gate,
    catalog: Catalog,
    private_key: X25519PrivateKey,
    store: SegmentStore | None = None,
) -> None:
    """The records pages on ``app``, deciding through ``gate`` with the records
    service's use cases (the API's own kinds of desk, on the same gate and catalog);
    audio read from ``store`` (the local disk when None)."""
    listening = Listening(
        gate, catalog, recordings_dir=config.recording.dir, private_key=private_key, store=store
    )
    pages = RecordPages(RecordSearch(gate, catalog), listening, config)
    app.router.add_get(SEARCH, page(pages.search))
    app.router.add_get(RECORDING, page(pages.recording))
    app.router.add_get(f"{RECORDING}/waveform.svg", page(pages.waveform))
    access_pages.add_routes(app, AccessDesk(gate, catalog.access_requests), pages.recording)
    holds_page.add_routes(app, gate, HoldDesk(catalog.holds, config.holds.kinds))
