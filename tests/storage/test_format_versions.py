"""Recordings written by earlier versions of the segment format still read.

``fixtures/format-v1/`` was written by the writer of format version 1 (every chunk
µ-law, no codec tag) before version 2 existed, together with the private key that opens
it and the µ-law codes that went in.  It is never regenerated: it is what a recording
made before the change looks like on disk.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from proxy.storage.crypto import unwrap_key
from proxy.storage.reader import Outcome, RecordingReader
from proxy.storage.segment import (
    HEADER_SIZE,
    RecordingCorrupt,
    SegmentHeader,
    read_segment,
    ulaw_decode,
)

V1 = Path(__file__).parent / "fixtures" / "format-v1"
V1_ID = uuid.UUID("13131313-0000-4000-8000-000000000001")


def v1_key() -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes((V1 / "private_key.raw").read_bytes())


def v1_codes() -> npt.NDArray[np.uint8]:
    return np.frombuffer((V1 / "audio.ulaw").read_bytes(), dtype=np.uint8).reshape(-1, 2)


def test_a_format_1_recording_reads_exactly() -> None:
    recording = RecordingReader(V1 / str(V1_ID), v1_key()).read()
    assert recording.report.outcome is Outcome.COMPLETE
    assert recording.report.frames == 20_000 and recording.report.segments == 3
    np.testing.assert_array_equal(recording.audio, ulaw_decode(v1_codes()))


def test_a_format_1_header_says_version_1() -> None:
    segment = V1 / str(V1_ID) / "seg-000000.rec"
    key = unwrap_key((V1 / str(V1_ID) / "key").read_bytes(), v1_key(), V1_ID)
    contents = read_segment(segment, key, V1_ID)
    assert contents.header is not None and contents.header.version == 1


@pytest.mark.parametrize(
    ("version", "encoding", "problem"),
    [
        (1, 3, "unknown encoding 3 in format version 1"),  # tags came with version 2
        (2, 1, "unknown encoding 1 in format version 2"),  # untagged µ-law is format 1's
        (3, 3, "unsupported format version 3"),
    ],
)
def test_a_header_names_a_version_and_an_encoding_of_it(
    version: int, encoding: int, problem: str
) -> None:
    header = bytearray((V1 / str(V1_ID) / "seg-000000.rec").read_bytes()[:HEADER_SIZE])
    header[8:10] = bytes((version, encoding))
    with pytest.raises(RecordingCorrupt, match=problem):
        SegmentHeader.parse(bytes(header))
