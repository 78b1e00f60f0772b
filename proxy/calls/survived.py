"""What a recording's writer left in the store when it stopped without finishing — a
crash of the process, or of the media worker that ran it: every complete chunk."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..storage.segment import KEY_FILE_NAME, scan_segment
from ..storage.store import SegmentStore
from ..storage.write_reports import SegmentWritten


def scan_what_survived(
    store: SegmentStore, recording: Path
) -> tuple[str | None, list[SegmentWritten]]:
    """What a crash left: the key's hash, and every segment's complete chunks, walked
    without the key, as the writer would have reported them."""
    key = store.read(recording, KEY_FILE_NAME) if store.has_key(recording) else None
    segments: list[SegmentWritten] = []
    first_frame = 0
    for index, name in enumerate(store.segments(recording)):
        data = store.read(recording, name)
        scan = scan_segment(data, allow_truncated=True, name=name, expected_index=index)
        segments.append(
            SegmentWritten(
                recording.name,
                index,
                name,
                recording / name,
                first_frame,
                len(scan.chunks),
                scan.frames,
                len(data),
                hashlib.sha256(data).hexdigest(),
            )
        )
        first_frame += scan.frames
    return (None if key is None else hashlib.sha256(key).hexdigest()), segments
