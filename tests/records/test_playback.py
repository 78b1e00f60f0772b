"""Playback rendering, in process, of a real recording (real writer, AES-GCM segments,
SQLite catalog with two parts): whole, by part, by channel; WAV ranges equal to slices of
the whole; MP3 through ffmpeg; each chunk verified when read; no decrypted file written."""

from __future__ import annotations

import hashlib
import os
import sys
import uuid
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from proxy.config import AccessSettings
from proxy.recording_state import RecordingState
from proxy.records.errors import (
    RangeNotSatisfiable,
    RecordingActionError,
    RecordingUnreadable,
    RecordNotFound,
)
from proxy.records.export import ExportRequest, export_recording, private_key_file
from proxy.records.playback import Rendering, find_playable, render
from proxy.storage.catalog import SqliteCatalog
from proxy.storage.crypto import load_private_key
from proxy.storage.export import pcm16, wav_header
from proxy.storage.reader import RecordingReader
from proxy.storage.segment import segment_file_name

from .playback_world import (
    PASSPHRASE,
    Written,
    catalogue,
    decoded_seconds,
    part_slices,
    write_recording,
)


@dataclass(frozen=True)
class World:
    written: Written
    catalog: SqliteCatalog
    key: X25519PrivateKey


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    written = write_recording(tmp_path)
    catalog = await SqliteCatalog(tmp_path / "catalog.sqlite3").open()
    await catalogue(catalog, written.recording_id)
    yield World(written, catalog, load_private_key(written.private_key, PASSPHRASE.encode()))
    await catalog.close()


async def rendering(world: World, part: int | None = None, **kwargs: Any) -> Rendering:
    playable = await find_playable(world.catalog, world.written.recording_id, part)
    return await render(
        playable, recordings_dir=world.written.recordings, private_key=world.key, **kwargs
    )


async def read(r: Rendering, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([piece async for piece in r.chunks(start, end)])


def wav_of(audio: np.ndarray, channels: str = "stereo") -> bytes:
    count = 2 if channels == "stereo" else 1
    return wav_header(len(audio), count) + pcm16(audio, channels)  # type: ignore[arg-type]


async def test_a_whole_wav_is_the_recording_read_the_old_way_and_the_export(
    world: World, tmp_path: Path
) -> None:
    whole = await rendering(world)
    data = await read(whole)
    assert (whole.content_type, whole.length, len(data)) == ("audio/wav", len(data), len(data))
    read_whole = RecordingReader(world.written.recordings / world.written.recording_id, world.key)
    assert data == wav_of(read_whole.read().audio)  # the one-shot reader agrees
    np.testing.assert_array_equal(read_whole.read().audio, world.written.audio)
    export = await export_recording(
        world.catalog,
        ExportRequest(world.written.recording_id, "wav", "stereo", tmp_path / "x.wav",
                      "complaint 1", "records"),
        recordings_dir=world.written.recordings,
        private_key=private_key_file(world.written.private_key, PASSPHRASE.encode()),
        access=AccessSettings(working_days=frozenset(range(7))),
    )  # fmt: skip
    assert export.out.read_bytes() == data
    assert export.sha256 == hashlib.sha256(data).hexdigest() == await whole.sha256()


async def test_wav_length_is_known_before_anything_is_decrypted(world: World) -> None:
    for name in os.listdir(world.written.recordings / world.written.recording_id):
        if name.startswith("seg-"):  # break every chunk: only the framing stays readable
            path = world.written.recordings / world.written.recording_id / name
            data = bytearray(path.read_bytes())
            data[-1] ^= 0xFF
            path.write_bytes(bytes(data))
    whole = await rendering(world)
    assert whole.length == 44 + len(world.written.audio) * 4
    assert await read(whole, 0, 43) == wav_of(world.written.audio)[:44]  # the header alone
    with pytest.raises(RecordingUnreadable, match="failed verification"):
        await read(whole, 44, 47)


def ranges(length: int) -> Iterator[tuple[int, int | None]]:
    segment = 2 * 8000 * 4  # bytes of one 2-second segment, stereo
    yield from [(0, 43), (0, 44), (43, 44), (44, 45), (45, 46), (0, None), (length - 1, None)]
    yield from [(length - 1, length - 1), (44 + segment - 3, 44 + segment + 2)]
    yield from [(1000, 3 * segment + 7), (length - 10, length + 1000)]
    rng = np.random.default_rng(15)
    for _ in range(20):
        start, end = sorted(int(n) for n in rng.integers(0, length, 2))
        yield start, end


@pytest.mark.parametrize("channels", ["stereo", "caller"])
async def test_each_range_is_the_slice_of_the_whole(world: World, channels: str) -> None:
    whole = await rendering(world, channels=channels)
    data = wav_of(world.written.audio, channels)
    assert whole.length == len(data)
    for start, end in ranges(whole.length):
        expected = data[start : None if end is None else end + 1]
        assert await read(whole, start, end) == expected, (start, end)


async def test_a_range_outside_the_audio_is_refused_with_its_length(world: World) -> None:
    whole = await rendering(world)
    for start, end in ((whole.length, None), (whole.length + 5, whole.length + 9), (10, 9)):
        with pytest.raises(RangeNotSatisfiable) as refused:
            whole.chunks(start, end)  # refused before any response is begun
        assert refused.value.length == whole.length


async def test_each_part_is_its_time_range_and_the_parts_tile_the_call(world: World) -> None:
    first, second = part_slices()
    audio = world.written.audio
    one, two = await rendering(world, 1), await rendering(world, 2)
    assert await read(one) == wav_of(audio[first])
    assert await read(two) == wav_of(audio[second])
    assert one.frames + two.frames == len(audio)
    assert abs(one.duration_s - 3.25) < 1e-9


@pytest.mark.parametrize(("channels", "column"), [("caller", 0), ("call_taker", 1)])
async def test_one_party_holds_only_that_channel(
    world: World, channels: str, column: int, tmp_path: Path
) -> None:
    path = tmp_path / "party.wav"
    path.write_bytes(await read(await rendering(world, 2, channels=channels)))
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (1, 8000, 2)
        heard = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    audio = world.written.audio[part_slices()[1]]
    np.testing.assert_array_equal(heard, audio[:, column])  # the other party: not a trace
    assert not np.array_equal(audio[:, 0], audio[:, 1])


async def test_mono_is_the_clipped_mix(world: World) -> None:
    mono = np.frombuffer((await read(await rendering(world, channels="mono")))[44:], "<i2")
    mixed = world.written.audio.astype(np.int32).sum(axis=1)
    np.testing.assert_array_equal(mono, np.clip(mixed, -32768, 32767))


@pytest.mark.parametrize(("part", "seconds"), [(None, 7.3), (2, 4.05)])
async def test_mp3_decodes_to_the_right_duration(
    world: World, part: int | None, seconds: float
) -> None:
    mp3 = await rendering(world, part, format="mp3", channels="caller")
    data = await read(mp3)
    assert mp3.content_type == "audio/mpeg" and mp3.length == len(data)
    assert abs(decoded_seconds(data) - seconds) <= 0.1
    assert await read(mp3, 10, 20) == data[10:21]


class WritesSeen:
    """Every file named and opened for writing in this process while ``watching`` (an
    audit hook: hooks cannot be removed, so one is installed once and switched).  A
    descriptor opened as a file object (the pipe to ffmpeg) names no file."""

    watching = False
    opened: list[str] = []

    @classmethod
    def hook(cls, event: str, args: tuple[Any, ...]) -> None:
        if not cls.watching or event != "open":
            return
        path, mode, flags = args
        if isinstance(path, int):
            return
        writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT
        if (isinstance(mode, str) and set(mode) & set("wax+")) or (flags or 0) & writes:
            cls.opened.append(str(path))


sys.addaudithook(WritesSeen.hook)


def listing(*folders: Path) -> dict[str, list[str]]:
    return {str(f): sorted(str(p) for p in f.rglob("*")) for f in folders}


@pytest.mark.parametrize("fmt", ["wav", "mp3", "g711"])
async def test_rendering_writes_no_file(world: World, fmt: str, tmp_path: Path) -> None:
    """No file opened for writing here, none new beside the recording or in the working
    folder (ffmpeg's own files: see tests/cli/test_export.py's spy on TMPDIR)."""
    before = listing(tmp_path), sorted(os.listdir(Path.cwd()))
    WritesSeen.opened.clear()
    WritesSeen.watching = True
    try:
        r = await rendering(world, 2, format=fmt)
        assert len(await read(r)) == r.length > 44
    finally:
        WritesSeen.watching = False
    assert WritesSeen.opened == []
    assert (listing(tmp_path), sorted(os.listdir(Path.cwd()))) == before


async def test_unknown_and_unplayable_recordings_are_refused(world: World) -> None:
    with pytest.raises(RecordNotFound, match="no recording nope"):
        await find_playable(world.catalog, "nope")
    with pytest.raises(RecordNotFound, match=r"has no part 3 \(its parts: 1, 2\)"):
        await find_playable(world.catalog, world.written.recording_id, 3)
    live = str(uuid.uuid4())
    await catalogue(world.catalog, live, RecordingState.RECORDING)
    with pytest.raises(RecordingActionError, match=r"still open \(recording\)"):
        await find_playable(world.catalog, live, 1)


async def test_a_damaged_segment_fails_only_the_ranges_that_need_it(world: World) -> None:
    folder = world.written.recordings / world.written.recording_id
    path = folder / segment_file_name(0)
    data = bytearray(path.read_bytes())
    data[200] ^= 0x01  # inside the first chunk's ciphertext
    path.write_bytes(bytes(data))
    whole = await rendering(world)
    tail = len(wav_of(world.written.audio)) - 100
    assert await read(whole, tail) == wav_of(world.written.audio)[tail:]
    with pytest.raises(RecordingUnreadable, match=r"seg-000000\.rec chunk 0"):
        await read(whole, 44, 1000)
    with pytest.raises(RecordingUnreadable, match=r"seg-000000\.rec chunk 0"):
        await rendering(world, format="mp3")


async def test_a_playable_names_every_part_or_the_one_asked_for(world: World) -> None:
    rid = world.written.recording_id
    whole = await find_playable(world.catalog, rid)
    assert whole.part is None
    assert [(p.recording_id, p.part, p.operator, p.team) for p in whole.parts] == [
        (rid, 1, "alice", "reception"),
        (rid, 2, "bob", "nurses"),
    ]
    second = await find_playable(world.catalog, rid, 2)
    assert second.part is not None and (second.part.part, second.part.operator) == (2, "bob")


async def test_a_segment_gone_after_rendering_began_is_unreadable_not_a_traceback(
    world: World,
) -> None:
    folder = world.written.recordings / world.written.recording_id
    whole = await rendering(world)
    (folder / segment_file_name(3)).unlink()
    assert len(await read(whole, 0, 1000)) == 1001  # the first segments are still there
    with pytest.raises(RecordingUnreadable, match="cannot be read"):
        await read(whole, whole.length - 10)
    (folder / "key").unlink()  # shredded
    with pytest.raises(RecordingUnreadable, match="no key file"):
        await rendering(world)
