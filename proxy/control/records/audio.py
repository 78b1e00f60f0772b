"""Listening: a recording's decrypted audio, streamed with HTTP Range.

    GET /api/v1/recordings/{id}/audio?purpose=&reason=&format=wav|mp3
        &channels=stereo|mono|caller|call_taker&part=N

Each request is first a ``play`` decision of the gate, audited before anything else is
done — before the key is touched and long before the first byte; a refusal is a 403
naming the rule, and nothing is streamed.  Only then is the audio rendered
(:func:`~proxy.records.playback.render`: decrypted in memory as it is read, never into a
file) and sent:

- ``Accept-Ranges: bytes``; one range (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``) is a
  206 with ``Content-Range``; no range, or one ignored (another unit, malformed,
  several ranges, an ``If-Range`` — we give no validator it could match), a 200 of the
  whole; a range outside the audio a 416 with ``Content-Range: bytes */N``;
- ``Content-Length`` always, ``Cache-Control: no-store`` (no copy in a browser's or
  proxy's cache).

A media player fetches one listening in many ranges: each is a decision of its own and
an audit entry, and those starting past byte 0 are marked continuations, so the
``too_many_playbacks`` flag counts the listening once.  An MP3 is encoded whole for each
request (no decrypted audio is kept between requests); a WAV costs one segment.  Should
the audio fail verification once streaming has begun, the connection is cut short
(the status is already sent): the player sees a truncated body, never altered audio.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ...records.access import MAX_TEXT
from ...records.errors import InvalidAccessRequest, RecordingUnreadable
from ...records.gate import Gate, part_number, require
from ...records.playback import AudioFormat, Playable, Rendering, find_playable, render
from ...records.policy import Action, Actor
from ...storage.catalog import Catalog
from ...storage.export import CHANNEL_CHOICES, ChannelChoice
from ...storage.store import SegmentStore
from .auth import current_actor
from .params import query_parameter, query_values
from .ranges import ByteRange, parse_range
from .routes import API, Routes
from .statuses import answering, problems

log = logging.getLogger(__name__)

FORMATS: tuple[AudioFormat, ...] = ("wav", "mp3")
PARAMETERS = ("purpose", "reason", "format", "channels", "part")

T = TypeVar("T", bound=str)


def _choice(name: str, value: str | None, choices: tuple[T, ...]) -> T:
    if value is None:
        return choices[0]
    for choice in choices:
        if value == choice:
            return choice
    raise InvalidAccessRequest(f"{name} must be one of {', '.join(choices)}, not {value!r}")


def _text(name: str, value: str | None) -> str | None:
    if value is not None and len(value) > MAX_TEXT:
        raise InvalidAccessRequest(f"{name} is longer than {MAX_TEXT} characters")
    return value


class Listening:
    """A ``play`` decision of ``gate`` (audited before anything else is done; a refusal
    raises ``AccessDenied``), then the recording from ``catalog`` rendered for reading
    from ``recordings_dir`` with ``private_key``.  The audio route and the console's
    waveform both listen through here, so they decide alike and once each."""

    def __init__(
        self,
        gate: Gate,
        catalog: Catalog,
        *,
        recordings_dir: Path,
        private_key: X25519PrivateKey,
        store: SegmentStore | None = None,
    ) -> None:
        self._gate = gate
        self._catalog = catalog
        self._recordings_dir = recordings_dir
        self._private_key = private_key
        self._store = store

    async def open(
        self,
        actor: Actor,
        recording_id: str,
        raw: Mapping[str, str],
        *,
        continuation: bool = False,
        waveform: bool = False,
    ) -> tuple[Playable, Rendering]:
        """``recording_id`` for ``actor`` with the query's ``raw`` values (purpose,
        reason, format, channels, part; each checked, ``InvalidAccessRequest`` naming a
        bad one)."""
        format = _choice("format", raw.get("format"), FORMATS)
        channels: ChannelChoice = _choice("channels", raw.get("channels"), CHANNEL_CHOICES)
        part = part_number(raw.get("part"))
        decision = await self._gate.check(
            actor,
            Action.PLAY,
            recording_id=recording_id,
            part=part,
            purpose=_text("purpose", raw.get("purpose")),
            reason=_text("reason", raw.get("reason")),
            continuation=continuation,
            waveform=waveform,
        )
        require(decision)  # audited: refused, nothing more is done
        playable = await find_playable(self._catalog, recording_id, part)
        rendering = await render(
            playable,
            format=format,
            channels=channels,
            recordings_dir=self._recordings_dir,
            private_key=self._private_key,
            store=self._store,
        )
        return playable, rendering


def add_routes(
    routes: Routes,
    gate: Gate,
    catalog: Catalog,
    *,
    recordings_dir: Path,
    private_key: X25519PrivateKey,
    store: SegmentStore | None = None,
) -> None:
    """The audio endpoint: decisions by ``gate``, recordings found in ``catalog`` and
    read from ``recordings_dir`` (in ``store``) with ``private_key``."""
    listening = Listening(
        gate, catalog, recordings_dir=recordings_dir, private_key=private_key, store=store
    )

    @answering
    async def audio(request: web.Request) -> web.StreamResponse:
        raw = query_values(request, PARAMETERS)
        asked = parse_range(None if "If-Range" in request.headers else request.headers.get("Range"))
        playable, rendering = await listening.open(
            current_actor(request),
            request.match_info["id"],
            raw,
            continuation=asked is not None and asked.continuation,
        )
        name = f"{playable.recording.id}.{raw.get('format', FORMATS[0])}"
        return await stream(request, rendering, asked, name)

    routes.add(
        "GET",
        f"{API}/recordings/{{id}}/audio",
        audio,
        summary="Listen: the decrypted audio, streamed with HTTP Range (one byte range; "
        "several are answered whole), never written to disk.  Each request is a play "
        "decision audited before the first byte (ranges past byte 0 marked continuations, "
        "counted once towards too_many_playbacks)",
        parameters=(
            query_parameter("purpose", "Why you listen: a configured purpose", {"type": "string"}),
            query_parameter(
                "reason", "Your reason, in words", {"type": "string", "maxLength": MAX_TEXT}
            ),
            query_parameter("format", "The audio format", {"enum": list(FORMATS)}),
            query_parameter(
                "channels",
                "Both parties (stereo), mixed (mono), or one party only",
                {"enum": list(CHANNEL_CHOICES), "default": "stereo"},
            ),
            query_parameter(
                "part",
                "Only this part (a transferred call's), from 1; the whole recording if absent",
                {"type": "integer", "minimum": 1},
            ),
            {
                "name": "Range",
                "in": "header",
                "description": "One byte range: bytes=a-b, bytes=a- or bytes=-n",
                "schema": {"type": "string"},
            },
        ),
        responses={
            "200": _audio("The whole audio"),
            "206": _audio("The byte range asked for, with Content-Range"),
            **problems("403", "404", "409", "416", "422", "500"),
        },
    )


async def stream(
    request: web.Request, rendering: Rendering, asked: ByteRange | None, filename: str
) -> web.StreamResponse:
    """``rendering`` whole (200) or the range ``asked`` (206), see the module docstring;
    :class:`RangeNotSatisfiable` before a byte is sent."""
    start, end = (0, None) if asked is None else asked.bounds(rendering.length)
    first, last = rendering.byte_range(start, end)
    response = web.StreamResponse(status=200 if asked is None else 206)
    response.content_type = rendering.content_type
    response.content_length = last - first + 1
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Disposition"] = f'inline; filename="{filename}"'
    if asked is not None:
        response.headers["Content-Range"] = f"bytes {first}-{last}/{rendering.length}"
    await response.prepare(request)
    try:
        async for piece in rendering.chunks(first, last):
            await response.write(piece)
    except RecordingUnreadable as exc:
        log.error("integrity: %s; the stream was cut short", exc)
        response.force_close()
    except ConnectionResetError:
        pass  # the player went away (it has what it wanted)
    return response


def _audio(description: str) -> dict[str, object]:
    return {
        "description": description,
        "headers": {
            "Accept-Ranges": {"schema": {"const": "bytes"}},
            "Cache-Control": {"schema": {"const": "no-store"}},
        },
        "content": {
            "audio/wav": {"schema": {"type": "string", "format": "binary"}},
            "audio/mpeg": {"schema": {"type": "string", "format": "binary"}},
        },
    }
