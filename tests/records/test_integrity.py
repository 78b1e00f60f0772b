"""A recording's integrity check on real files written by the real writer and a real
catalog: a sound recording passes; a missing, altered, truncated or extra segment file
and a key that does not open are each named; a recording without audio is refused."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from proxy.recording_state import RecordingState
from proxy.records.errors import RecordingActionError, RecordNotFound
from proxy.records.integrity import verify_recording
from proxy.storage.catalog import SqliteCatalog
from proxy.storage.crypto import generate_keypair, save_public_key
from tests.control.records.governance_world import catalogue, write_recording


@dataclass
class Folder:
    path: Path
    key: X25519PrivateKey
    recording: str

    @property
    def recordings(self) -> Path:
        return self.path / "recordings"

    def segment(self, index: int) -> Path:
        return self.recordings / self.recording / f"seg-{index:06d}.rec"

    async def check(self) -> dict[str, object]:
        async with SqliteCatalog(self.path / "catalog.sqlite3") as catalog:
            report = await verify_recording(catalog, self.recording, self.recordings, self.key)
        return report.as_dict()


async def written(tmp_path: Path, state: RecordingState = RecordingState.COMPLETE) -> Folder:
    private, public = generate_keypair()
    save_public_key(tmp_path / "recording.pub", public)
    rid, segments = write_recording(tmp_path / "recordings", tmp_path / "recording.pub")
    await catalogue(tmp_path / "catalog.sqlite3", rid, segments, state)
    return Folder(tmp_path, private, rid)


def problems(report: dict[str, object]) -> list[tuple[int, list[str]]]:
    segments = report["segments"]
    assert isinstance(segments, list)
    return [(s["index"], s["problems"]) for s in segments if s["problems"]]


async def test_a_sound_recording_passes_and_no_audio_is_returned(tmp_path: Path) -> None:
    folder = await written(tmp_path)
    report = await folder.check()
    assert (report["ok"], report["problems"], problems(report)) == (True, [], [])
    assert report["audio_returned"] is False
    assert not any(isinstance(v, bytes) for v in report.values())


async def test_a_missing_segment_file_is_named(tmp_path: Path) -> None:
    folder = await written(tmp_path)
    folder.segment(1).unlink()
    report = await folder.check()
    assert report["ok"] is False
    assert problems(report) == [(1, ["the file is missing"])]
    [whole] = report["problems"]
    assert "seg-000001.rec" in whole and "missing" in whole


async def test_a_truncated_last_segment_differs_in_size_and_digest(tmp_path: Path) -> None:
    folder = await written(tmp_path)
    last = folder.segment(2)
    last.write_bytes(last.read_bytes()[:-40])
    report = await folder.check()
    [(index, found)] = problems(report)
    assert index == 2 and "bytes, the catalog says" in found[0]
    assert found[1] == "its SHA-256 differs from the catalog's"
    assert report["problems"]  # the walk or a tag refuses the cut chunk too


async def test_a_segment_file_the_catalog_does_not_list_is_named(tmp_path: Path) -> None:
    folder = await written(tmp_path)
    stray = folder.segment(3)
    stray.write_bytes(folder.segment(2).read_bytes())
    report = await folder.check()
    assert "seg-000003.rec: a segment file the catalog does not list" in report["problems"]


async def test_a_key_that_does_not_open_is_named(tmp_path: Path) -> None:
    folder = await written(tmp_path)
    folder.key = X25519PrivateKey.generate()
    report = await folder.check()
    assert problems(report) == []  # the files are as catalogued
    [why] = report["problems"]
    assert why.startswith("the data key does not open")


@pytest.mark.parametrize("state", [RecordingState.RECORDING, RecordingState.DISCARDED])
async def test_a_recording_without_audio_to_check_is_refused(
    tmp_path: Path, state: RecordingState
) -> None:
    folder = await written(tmp_path, state)
    with pytest.raises(RecordingActionError):
        await folder.check()


async def test_an_unknown_recording_is_not_found(tmp_path: Path) -> None:
    folder = await written(tmp_path)
    folder.recording = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(RecordNotFound):
        await folder.check()
