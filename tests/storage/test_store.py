"""The local-disk segment store on real filesystems: durability order, exclusive
creation, errors that name their file, and crypto-shredding key first."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.storage.store import LocalDiskStore, shred_recording

from .faulty_store import FaultyStore, tmpfs


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs, filled to the last byte by another file."""
    with tmpfs(tmp_path / "full") as mount:
        with (mount / "filler").open("wb", buffering=0) as filler:
            with pytest.raises(OSError) as full:
                for _ in range(1000):  # 4 MiB at most: far more than fits
                    filler.write(b"\0" * 4096)
            assert full.value.errno == errno.ENOSPC
        yield mount


def test_a_full_disk_while_writing_the_key_names_the_key(full_disk: Path) -> None:
    store = LocalDiskStore()
    recording = full_disk / "recordings" / "r1"
    with pytest.raises(OSError) as failed:
        store.open_recording(recording, b"wrapped" * 100)
    assert failed.value.errno == errno.ENOSPC
    assert failed.value.filename == str(recording / "key")
    assert store.segments(recording) == []


def test_segments_are_created_once_listed_in_order_and_read_back(tmp_path: Path) -> None:
    store = LocalDiskStore(fsync="segment")
    recording = tmp_path / "r2"
    store.open_recording(recording, b"wrapped key")
    for index in (0, 1, 2):
        name = f"seg-{index:06d}.rec"
        store.append(recording, name, b"header")
        store.append(recording, name, b"+chunk")
        store.finish_segment(recording, name)
    assert store.segments(recording) == ["seg-000000.rec", "seg-000001.rec", "seg-000002.rec"]
    assert store.read(recording, "seg-000001.rec") == b"header+chunk"
    assert store.read(recording, "key") == b"wrapped key"
    # 3 at open (root, key, folder), then per segment: its folder entry and the file
    assert store.fsyncs == 3 + 3 * 2
    with pytest.raises(FileExistsError) as again:  # a finished segment is never reopened
        store.append(recording, "seg-000001.rec", b"more")
    assert again.value.filename == str(recording / "seg-000001.rec")
    with pytest.raises(FileExistsError):
        store.open_recording(recording, b"another key")


def test_shredding_destroys_the_key_before_any_audio(tmp_path: Path) -> None:
    store = FaultyStore(LocalDiskStore())
    recording = tmp_path / "r3"
    store.open_recording(recording, b"wrapped key")
    store.append(recording, "seg-000000.rec", b"audio")  # still open: shred closes it
    shred_recording(store, recording)
    assert not recording.exists()
    shredding = [call for call in store.calls if call[0] in ("destroy_key", "delete")]
    assert shredding == [("destroy_key", "r3"), ("delete", "no key, 1 segments")]
    shred_recording(store, recording)  # twice, or a folder never made: nothing to do


def test_destroying_the_key_leaves_the_audio_unreadable_but_present(tmp_path: Path) -> None:
    store = LocalDiskStore(fsync="none")
    recording = tmp_path / "r4"
    store.open_recording(recording, b"wrapped key")
    store.append(recording, "seg-000000.rec", b"audio")
    store.finish_segment(recording, "seg-000000.rec")
    store.destroy_key(recording)
    assert not store.has_key(recording)
    assert store.segments(recording) == ["seg-000000.rec"]  # a crash here: audio, no key
