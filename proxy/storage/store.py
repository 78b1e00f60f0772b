"""Where segment files live: the ``SegmentStore`` seam, and the local disk behind it.

The writer thread (:mod:`proxy.storage.writer`) decides *what* to write — the wrapped
data key, then sealed chunks gathered into segments — and a ``SegmentStore`` decides
*how* it becomes durable.  Keeping the two apart lets an S3-compatible store replace the
local disk without touching the writer, and lets tests put a fault-injecting store under
a real writer instead of patching ``os``.

A recording is named by its folder, ``<recordings root>/<recording id>`` (a ``Path``; an
object store reads it as a key prefix).  Inside it: the wrapped key (``key``) and the
segment files (``seg-NNNNNN.rec``).  Every method may raise ``OSError``; the error names
the file it was about (``filename``), so the writer can say where a disk filled up.

:class:`LocalDiskStore` is the embedded default and holds the durability rules:

* the wrapped key is written and fsynced, and so are the folder entries that lead to it,
  before any audio, whatever the policy;
* ``fsync="chunk"`` fsyncs every append (a crash loses at most the chunk being filled),
  ``"segment"`` once when a segment is finished, ``"none"`` never; the folder entry of
  each new segment file is fsynced unless the policy is ``"none"``;
* a recording is never appended to after a restart: its folder and each segment file are
  created exclusively (``EEXIST`` otherwise).

Crypto-shredding (:func:`shred_recording`) destroys the wrapped key first, durably, and
only then the files: an interrupted deletion leaves audio nobody can decrypt.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, Protocol

from .segment import KEY_FILE_NAME, parse_segment_file_name

FsyncPolicy = Literal["chunk", "segment", "none"]
FSYNC_POLICIES: tuple[FsyncPolicy, ...] = ("chunk", "segment", "none")

_FILE_MODE = 0o600
_DIR_MODE = 0o700


class SegmentStore(Protocol):
    """Durable storage for one process's recordings (see the module docstring)."""

    @property
    def fsyncs(self) -> int:
        """Durability barriers issued so far (fsync calls on a disk), for metrics."""
        ...

    def open_recording(self, recording: Path, wrapped_key: bytes) -> None:
        """Create the recording (never an existing one) holding its wrapped data key,
        durable before this returns."""
        ...

    def append(self, recording: Path, segment: str, data: bytes) -> None:
        """Append sealed bytes to ``segment``, created (never existing) on first append."""
        ...

    def finish_segment(self, recording: Path, segment: str) -> None:
        """Nothing more goes into ``segment``: make it durable (per policy) and close it."""
        ...

    def abandon(self, recording: Path) -> None:
        """Let go of the recording's open segment after a failure or a discard: nothing
        more is written or made durable, and nothing is deleted."""
        ...

    def segments(self, recording: Path) -> list[str]:
        """The recording's segment names in index order (empty if it has none)."""
        ...

    def read(self, recording: Path, name: str) -> bytes:
        """One stored object of the recording: a segment, or ``KEY_FILE_NAME``."""
        ...

    def has_key(self, recording: Path) -> bool:
        """Whether the recording's wrapped key is still stored."""
        ...

    def destroy_key(self, recording: Path) -> None:
        """Delete the wrapped key, durably: the audio becomes unreadable for good."""
        ...

    def delete(self, recording: Path) -> None:
        """Delete whatever is left of the recording (call :func:`shred_recording`)."""
        ...

    def discard(self, recording: Path) -> None:
        """Shred a recording the writer has let go (a discard on request) without waiting
        on anything remote: the writer thread calls it, and every recording's audio
        waits while it runs.  What is local goes at once, wrapped key first; what is
        remote goes as soon as it can, the deletion queued durably (a restart resumes
        it), and nothing of the recording is uploaded after this returns."""
        ...


def shred_key(store: SegmentStore, recording: Path) -> None:
    """Destroy the recording's wrapped key, durably, if it is still there (so running
    it again after a crash is harmless)."""
    if store.has_key(recording):
        store.destroy_key(recording)


def shred_recording(store: SegmentStore, recording: Path) -> None:
    """Destroy a recording, wrapped key first (and made durable) so the audio is
    unreadable even if deleting the segment files is interrupted."""
    shred_key(store, recording)
    store.delete(recording)


#: The lock file in the recordings root that ``serve`` holds for its life: exclusively
#: when the root is an S3 store's spool (one node's alone), shared among the nodes that
#: write recordings to the local disk there; ``store copy`` needs it exclusively.
SERVE_LOCK = ".serve.lock"


def recording_folders(root: Path) -> list[Path]:
    """The recordings' folders under ``root``, named by their id as the writer names
    them (anything else there is not a recording's), in name order."""
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        try:
            uuid.UUID(entry.name)
        except ValueError:
            continue
        if entry.is_dir():
            found.append(entry)
    return sorted(found)


@contextlib.contextmanager
def _about(path: Path) -> Iterator[None]:
    """An ``OSError`` from inside names ``path`` when it named no file itself."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise


class LocalDiskStore:
    """Recordings as folders of files on a local filesystem (see the module docstring).

    Used from one writer thread at a time; :func:`shred_recording` and reads may run in
    another thread on recordings the writer no longer holds open."""

    def __init__(self, *, fsync: FsyncPolicy = "chunk") -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be chunk, segment or none, not {fsync!r}")
        self.fsync_policy: FsyncPolicy = fsync
        self._fsyncs = 0
        self._open: dict[Path, tuple[str, int]] = {}  # recording -> its open segment, fd

    @property
    def fsyncs(self) -> int:
        return self._fsyncs

    def open_recording(self, recording: Path, wrapped_key: bytes) -> None:
        root = recording.parent
        os.makedirs(root, mode=_DIR_MODE, exist_ok=True)
        os.mkdir(recording, _DIR_MODE)  # FileExistsError: a recording is never appended to
        self._fsync_dir(root)
        key = recording / KEY_FILE_NAME
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        try:
            with _about(key):
                _write_all(fd, wrapped_key)
                self._fsync(fd)  # the key is durable before any audio, whatever the policy
        finally:
            os.close(fd)
        self._fsync_dir(recording)

    def append(self, recording: Path, segment: str, data: bytes) -> None:
        path = recording / segment
        current = self._open.get(recording)
        new = current is None or current[0] != segment
        if new:
            if current is not None:
                raise ValueError(f"{recording}: segment {current[0]} is still open")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
            fd = os.open(path, flags, _FILE_MODE)
            self._open[recording] = (segment, fd)
        else:
            assert current is not None
            fd = current[1]
        with _about(path):
            _write_all(fd, data)
            if self.fsync_policy == "chunk":
                self._fsync(fd)
        if new and self.fsync_policy != "none":
            self._fsync_dir(recording)

    def finish_segment(self, recording: Path, segment: str) -> None:
        current = self._open.get(recording)
        if current is None or current[0] != segment:
            return
        del self._open[recording]
        fd = current[1]
        try:
            if self.fsync_policy == "segment":
                with _about(recording / segment):
                    self._fsync(fd)
        finally:
            os.close(fd)

    def abandon(self, recording: Path) -> None:
        current = self._open.pop(recording, None)
        if current is not None:
            with contextlib.suppress(OSError):
                os.close(current[1])

    def segments(self, recording: Path) -> list[str]:
        if not recording.is_dir():
            return []
        indexed = []
        for entry in recording.iterdir():
            index = parse_segment_file_name(entry.name)
            if index is not None:
                indexed.append((index, entry.name))
        return [name for _, name in sorted(indexed)]

    def read(self, recording: Path, name: str) -> bytes:
        return (recording / name).read_bytes()

    def has_key(self, recording: Path) -> bool:
        return (recording / KEY_FILE_NAME).exists()

    def destroy_key(self, recording: Path) -> None:
        os.unlink(recording / KEY_FILE_NAME)
        self._fsync_dir(recording)

    def discard(self, recording: Path) -> None:
        shred_recording(self, recording)  # all local: nothing to wait for

    def delete(self, recording: Path) -> None:
        self.abandon(recording)
        if recording.exists():
            for child in recording.iterdir():
                os.unlink(child)
            os.rmdir(recording)

    def _fsync(self, fd: int) -> None:
        os.fsync(fd)
        self._fsyncs += 1

    def _fsync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with _about(path):
                self._fsync(fd)
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
