"""Listening over real HTTP from a running records service: the gate decides and audits
before the first byte (a refusal streams nothing), the WAV and each byte range are the
recording's decrypted audio exactly, an MP3 plays for the right time, a player's run of
ranges counts as one playback, and nothing decrypted lands on disk."""

from __future__ import annotations

import asyncio
import io
import json
import os
import wave
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from proxy.storage.export import pcm16, wav_header
from tests.records.playback_world import SECONDS, TRANSFER_S, decoded_seconds, part_slices

from .records_world import PLAY, World, http, running_world, world

__all__ = ["http", "world"]


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[World]:
    """A service of its own that flags a third playback within an hour."""
    with running_world(tmp_path, playbacks_per_hour=2) as running:
        yield running


@pytest.fixture
async def granted(world: World, http: aiohttp.ClientSession) -> str:
    """olive, with a grant for the whole recording (asked once, approved by dora)."""
    status, mine, _ = await world.call(http, "olive", "GET", "/access-requests?mine=1")
    if not any(r["live"] for r in mine["access_requests"]):
        path = f"/recordings/{world.transferred.id}/access-requests"
        status, made, _ = await world.call(http, "olive", "POST", path, json_body=PLAY)
        assert status == 201, made
        decision = {"decision": "approve", "reason": "complaint 17"}
        path = f"/access-requests/{made['id']}/decision"
        status, body, _ = await world.call(http, "dora", "POST", path, json_body=decision)
        assert status == 200, body
    return "olive"


def wav_of(audio: np.ndarray) -> bytes:
    return wav_header(len(audio), 2) + pcm16(audio, "stereo")


async def listen(
    world: World,
    http: aiohttp.ClientSession,
    who: str,
    *,
    rid: str | None = None,
    range_: str | None = None,
    **params: str,
) -> tuple[int, bytes, aiohttp.ClientResponse]:
    headers = {"Authorization": f"Bearer {await world.token(http, who)}"}
    if range_ is not None:
        headers["Range"] = range_
    path = f"{world.url}/recordings/{rid or world.transferred.id}/audio"
    async with http.get(path, params=PLAY | params, headers=headers) as answer:
        return answer.status, await answer.read(), answer


async def test_her_part_is_the_recordings_audio_exactly(
    world: World, http: aiohttp.ClientSession
) -> None:
    first, _ = part_slices()
    status, data, answer = await listen(world, http, "alice", part="1")
    assert status == 200
    assert data == wav_of(world.transferred.audio[first])
    assert answer.headers["Content-Type"] == "audio/wav"
    assert answer.headers["Content-Length"] == str(len(data))
    assert answer.headers["Accept-Ranges"] == "bytes"
    assert answer.headers["Cache-Control"] == "no-store"
    assert "Content-Range" not in answer.headers
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, 8000)
        assert abs(wav.getnframes() / 8000 - TRANSFER_S) < 1e-3


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=44-20043", 44, 20043),  # across the 2 s segment files
        ("bytes=64000-", 64000, None),
        ("bytes=-500", -500, None),
        ("bytes=0-", 0, None),
        ("bytes=100-99999999", 100, None),  # past the end: to the end
    ],
)
async def test_each_range_is_206_and_the_slice_of_the_whole(
    world: World,
    http: aiohttp.ClientSession,
    granted: str,
    header: str,
    start: int,
    end: int | None,
) -> None:
    whole = wav_of(world.transferred.audio)
    status, data, answer = await listen(world, http, "olive", range_=header)
    expected = whole[start:] if end is None else whole[start : end + 1]
    assert status == 206
    assert data == expected
    first = start % len(whole)  # a suffix counts from the end
    assert answer.headers["Content-Range"] == f"bytes {first}-{first + len(data) - 1}/{len(whole)}"
    assert answer.headers["Content-Length"] == str(len(data))


@pytest.mark.parametrize(
    ("header", "if_range"),
    [("bytes=0-1,5-9", None), ("bytes=9-2", None), ("items=0-1", None), ("bytes=0-9", '"x"')],
)
async def test_an_ignored_range_is_answered_whole(
    world: World, http: aiohttp.ClientSession, granted: str, header: str, if_range: str | None
) -> None:
    headers = {"Authorization": f"Bearer {await world.token(http, 'olive')}"}
    headers["Range"] = header
    if if_range:
        headers["If-Range"] = if_range
    path = f"{world.url}/recordings/{world.transferred.id}/audio"
    async with http.get(path, params=PLAY, headers=headers) as answer:
        assert answer.status == 200
        assert await answer.read() == wav_of(world.transferred.audio)


@pytest.mark.parametrize("header", ["bytes=999999-", "bytes=-0"])
async def test_an_unsatisfiable_range_is_416_with_the_length(
    world: World, http: aiohttp.ClientSession, granted: str, header: str
) -> None:
    length = len(wav_of(world.transferred.audio))
    before, seq = world.snapshot(), world.last_seq()
    status, data, answer = await listen(world, http, "olive", range_=header)
    assert status == 416 and b"RIFF" not in data
    assert answer.headers["Content-Range"] == f"bytes */{length}"
    assert answer.content_type == "application/problem+json"
    assert [e["action"] for e in world.audit_since(seq)] == ["access.allowed"]  # decided
    assert world.snapshot() == before


async def test_the_decision_is_audited_before_the_first_byte(
    world: World, http: aiohttp.ClientSession
) -> None:
    seq = world.last_seq()
    headers = {"Authorization": f"Bearer {await world.token(http, 'mona')}"}
    path = f"{world.url}/recordings/{world.transferred.id}/audio"
    async with http.get(path, params=PLAY | {"part": "1"}, headers=headers) as answer:
        assert answer.status == 200  # the headers only: no byte of the body read yet
        [entry] = world.audit_since(seq)
        assert (entry["actor"], entry["action"]) == ("mona", "access.allowed")
        assert entry["object"] == f"recording:{world.transferred.id}"
        assert entry["reason"] == "case 17"
        assert entry["detail"]["action"] == "play"
        assert entry["detail"]["rule"] == "audio.team_call"
        assert entry["detail"]["purpose"] == "complaint" and entry["detail"]["part"] == 1
        assert len(await answer.read()) == int(answer.headers["Content-Length"])


@pytest.mark.parametrize(
    ("who", "params", "rule"),
    [
        ("carl", {}, "grant.none"),  # on no call, no grant
        ("alice", {}, "grant.none"),  # the whole call: part 2 is bob's
        ("mona", {"part": "2"}, "grant.none"),  # another team's part
        ("max", {}, "grant.none"),  # maintenance hears nothing ungranted
        ("alice", {"part": "1", "purpose": "curiosity"}, "purpose.unknown"),
        ("alice", {"part": "1", "reason": ""}, "reason.missing"),
    ],
)
async def test_a_refusal_is_403_naming_the_rule_and_streams_nothing(
    world: World, http: aiohttp.ClientSession, who: str, params: dict[str, str], rule: str
) -> None:
    before, seq = world.snapshot(), world.last_seq()
    status, data, answer = await listen(world, http, who, **params)
    assert status == 403
    assert answer.content_type == "application/problem+json"
    assert b"RIFF" not in data
    body = json.loads(data)
    assert body["rule"] == rule and body["detail"]
    [entry] = world.audit_since(seq)
    assert entry["action"] == "access.refused" and entry["detail"]["rule"] == body["rule"]
    assert world.snapshot() == before


async def test_an_mp3_plays_for_the_parts_time(world: World, http: aiohttp.ClientSession) -> None:
    status, data, answer = await listen(world, http, "bob", part="2", format="mp3")
    assert status == 200 and answer.headers["Content-Type"] == "audio/mpeg"
    assert abs(decoded_seconds(data) - (SECONDS - TRANSFER_S)) <= 0.1
    status, piece, answer = await listen(
        world, http, "bob", part="2", format="mp3", range_="bytes=10-20"
    )
    assert status == 206 and piece == data[10:21]


@pytest.mark.parametrize(("channels", "column"), [("caller", 0), ("call_taker", 1)])
async def test_one_party_is_that_channel_alone(
    world: World, http: aiohttp.ClientSession, channels: str, column: int
) -> None:
    first, _ = part_slices()
    status, data, _ = await listen(world, http, "alice", part="1", channels=channels)
    assert status == 200
    with wave.open(io.BytesIO(data)) as wav:
        assert wav.getnchannels() == 1
        heard = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    np.testing.assert_array_equal(heard, world.transferred.audio[first][:, column])


async def test_a_run_of_ranges_is_one_playback_for_the_flags(
    strict: World, http: aiohttp.ClientSession
) -> None:
    def flags() -> list[tuple[object, ...]]:
        return strict.snapshot()["access_flags"]

    seq = strict.last_seq()
    status, whole, _ = await listen(strict, http, "nina", part="2")
    assert status == 200
    step = len(whole) // 8
    for start in range(step, len(whole), step):
        status, _, _ = await listen(strict, http, "nina", part="2", range_=f"bytes={start}-")
        assert status == 206
    plays = strict.audit_since(seq)
    assert len(plays) == 9 and all(e["actor"] == "nina" for e in plays)  # each audited
    assert [bool(e["detail"].get("continuation")) for e in plays] == [False] + [True] * 8
    assert flags() == []
    assert (await listen(strict, http, "nina", part="2", range_="bytes=0-99"))[0] == 206
    assert flags() == []  # two listenings: not more than 2
    assert (await listen(strict, http, "nina", part="2", range_="bytes=0-99"))[0] == 206
    [flag] = flags()
    assert "too_many_playbacks" in flag and "nina" in flag


def files_under(*folders: Path) -> set[str]:
    return {
        os.path.join(root, name)
        for folder in folders
        for root, _, names in os.walk(folder)
        for name in names
    }


async def test_streaming_writes_no_file(world: World, http: aiohttp.ClientSession) -> None:
    watched = (world.folder / "data", world.folder / "tmp")
    before = files_under(*watched)
    sizes = {path: os.path.getsize(path) for path in before if "catalog" not in path}
    headers = {"Authorization": f"Bearer {await world.token(http, 'alice')}"}
    path = f"{world.url}/recordings/{world.transferred.id}/audio"
    for format in ("wav", "mp3"):
        params = PLAY | {"part": "1", "format": format}
        async with http.get(path, params=params, headers=headers) as answer:
            assert answer.status == 200
            await answer.content.readexactly(1000)  # mid-stream
            assert files_under(*watched) - before <= {
                p for p in files_under(*watched) if "catalog.sqlite3" in p
            }
            await answer.read()
    assert files_under(world.folder / "tmp") == set()
    new = files_under(*watched) - before
    assert all("catalog.sqlite3" in p for p in new), new  # the catalog's WAL at most
    assert {p: os.path.getsize(p) for p in sizes} == sizes  # no recording file touched


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        ({"format": "ogg"}, 422, "format must be one of wav, mp3"),
        ({"channels": "left"}, 422, "channels must be one of"),
        ({"part": "x"}, 422, "part must be a whole number"),
        ({"part": "0"}, 422, "part must be a whole number"),
        ({"speed": "2"}, 422, "unknown query parameter 'speed'"),
        ({"reason": "r" * 501}, 422, "longer than 500"),
        ({"part": "9"}, 404, "has no part 9"),
    ],
)
async def test_bad_input_is_refused_before_the_gate_and_changes_nothing(
    world: World, http: aiohttp.ClientSession, params: dict[str, str], status: int, says: str
) -> None:
    before, seq = world.snapshot(), world.last_seq()
    got, data, answer = await listen(world, http, "alice", **({"part": "1"} | params))
    assert got == status, data
    assert answer.content_type == "application/problem+json"
    assert says in json.loads(data)["detail"]
    assert world.audit_since(seq) == [] and world.snapshot() == before


@pytest.mark.parametrize("rid", ["00000000-0000-4000-8000-000000000000", "..%2F..%2Fkeys"])
async def test_an_unknown_recording_is_404(
    world: World, http: aiohttp.ClientSession, rid: str
) -> None:
    seq = world.last_seq()
    status, data, _ = await listen(world, http, "dora", rid=rid)
    assert status == 404 and b"RIFF" not in data
    assert world.audit_since(seq) == []


async def test_a_recording_still_open_is_409_after_its_decision(
    world: World, http: aiohttp.ClientSession
) -> None:
    before, seq = world.snapshot(), world.last_seq()
    status, data, _ = await listen(world, http, "alice", rid=world.open_id, part="1")
    assert status == 409 and "still open" in json.loads(data)["detail"]
    assert [e["action"] for e in world.audit_since(seq)] == ["access.allowed"]
    assert world.snapshot() == before


async def test_altered_audio_is_never_served(world: World, http: aiohttp.ClientSession) -> None:
    # an MP3 is encoded whole first: a 500 naming no file; a WAV fails where it is read:
    # the stream is cut short, after the bytes before the damage
    status, data, _ = await listen(
        world, http, "alice", rid=world.damaged_id, part="1", format="mp3"
    )
    assert status == 500
    detail = json.loads(data)["detail"]
    assert "seg-" not in detail and "chunk" not in detail
    headers = {"Authorization": f"Bearer {await world.token(http, 'alice')}"}
    path = f"{world.url}/recordings/{world.damaged_id}/audio"
    async with http.get(path, params=PLAY | {"part": "1"}, headers=headers) as answer:
        assert answer.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await answer.read()
    await asyncio.sleep(0.1)
    assert "integrity:" in world.service.log_text()


async def test_without_a_session_it_is_401(world: World, http: aiohttp.ClientSession) -> None:
    seq = world.last_seq()
    async with http.get(
        f"{world.url}/recordings/{world.transferred.id}/audio", params=PLAY
    ) as answer:
        assert answer.status == 401 and b"RIFF" not in await answer.read()
    assert world.audit_since(seq) == []


async def test_the_openapi_document_describes_the_audio_route(
    world: World, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{world.url}/openapi.json") as answer:
        paths = (await answer.json())["paths"]
    audio = paths["/api/v1/recordings/{id}/audio"]["get"]
    assert {p["name"] for p in audio["parameters"]} == {
        "id", "purpose", "reason", "format", "channels", "part", "Range",
    }  # fmt: skip
    assert set(audio["responses"]) == {
        "200", "206", "401", "403", "404", "409", "416", "422", "500",
    }  # fmt: skip
