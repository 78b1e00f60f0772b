"""A ``SegmentStore`` for tests: the real local disk underneath, with faults on demand;
a small real filesystem that fills up; and a ``WriterListener`` that keeps the reports.

It fails (``OSError``) from the Nth append on, or when opening a recording; it can hang
an operation until released (a slow disk); and it logs every call, so a test can see
the order of a crypto-shred or count reads.  No ``os`` function is patched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from proxy.recording_state import RecordingState
from proxy.storage.store import LocalDiskStore, shred_recording
from proxy.storage.write_reports import RecordingWritten, SegmentWritten


def disk_error(code: int = errno.ENOSPC) -> OSError:
    return OSError(code, os.strerror(code))


@contextlib.contextmanager
def tmpfs(mount: Path, size: str = "64k") -> Iterator[Path]:
    """A real small filesystem at ``mount`` (a new folder), for a disk that fills up."""
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"cannot mount a tmpfs (the tests run as root): {done.stderr}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


class FaultyStore:
    def __init__(self, inner: LocalDiskStore | None = None) -> None:
        self.inner = inner or LocalDiskStore()
        self.fail_from_append: int | None = None  # 1-based: this append and every later one
        self.append_error = disk_error()
        self.open_error: OSError | None = None
        self.hold: threading.Event | None = None  # set: the next operation waits for it
        self.held = threading.Event()  # an operation is waiting on ``hold``
        self.appends = 0
        self.calls: list[tuple[str, str]] = []  # (method, recording or object name)
        self.lock = threading.Lock()

    @property
    def fsyncs(self) -> int:
        return self.inner.fsyncs

    def _log(self, method: str, what: str) -> None:
        with self.lock:
            self.calls.append((method, what))
        if self.hold is not None:
            self.held.set()
            self.hold.wait(10)

    def open_recording(self, recording: Path, wrapped_key: bytes) -> None:
        self._log("open_recording", recording.name)
        if self.open_error is not None:
            raise self.open_error
        self.inner.open_recording(recording, wrapped_key)

    def append(self, recording: Path, segment: str, data: bytes) -> None:
        self._log("append", segment)
        self.appends += 1
        if self.fail_from_append is not None and self.appends >= self.fail_from_append:
            raise self.append_error
        self.inner.append(recording, segment, data)

    def finish_segment(self, recording: Path, segment: str) -> None:
        self._log("finish_segment", segment)
        self.inner.finish_segment(recording, segment)

    def abandon(self, recording: Path) -> None:
        self._log("abandon", recording.name)
        self.inner.abandon(recording)

    def segments(self, recording: Path) -> list[str]:
        self._log("segments", recording.name)
        return self.inner.segments(recording)

    def read(self, recording: Path, name: str) -> bytes:
        self._log("read", name)
        return self.inner.read(recording, name)

    def has_key(self, recording: Path) -> bool:
        return self.inner.has_key(recording)

    def destroy_key(self, recording: Path) -> None:
        self._log("destroy_key", recording.name)
        self.inner.destroy_key(recording)

    def delete(self, recording: Path) -> None:
        # what is left when the files go: the key must already be gone
        left = "key" if self.inner.has_key(recording) else "no key"
        self._log("delete", f"{left}, {len(self.inner.segments(recording))} segments")
        self.inner.delete(recording)

    def discard(self, recording: Path) -> None:
        shred_recording(self, recording)  # each step logged, in order

    def count(self, method: str) -> int:
        with self.lock:
            return sum(1 for name, _ in self.calls if name == method)


class Reports:
    """A ``WriterListener`` that keeps what the writer said."""

    def __init__(self) -> None:
        self.ended: list[RecordingWritten] = []
        self.segments: list[SegmentWritten] = []
        self.dropped: list[tuple[object, str]] = []

    def segment_written(self, segment: SegmentWritten) -> None:
        self.segments.append(segment)

    def recording_written(self, recording: RecordingWritten) -> None:
        self.ended.append(recording)

    def audio_dropped(self, recording_id: object, reason: str) -> None:
        self.dropped.append((recording_id, reason))

    def states(self) -> list[RecordingState]:
        return [r.state for r in self.ended]
