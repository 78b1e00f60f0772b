"""The waveform's pure core: per-column peaks of 16-bit stereo PCM fed in pieces of any
size (a frame split between two), and the SVG with a labelled line per part."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np

from proxy.control.console.waveform import Boundary, Peaks, svg


def pcm(frames: np.ndarray) -> bytes:
    return frames.astype("<i2").tobytes()


def test_each_column_holds_its_frames_minimum_and_maximum_per_channel() -> None:
    rng = np.random.default_rng(17)
    frames = rng.integers(-32768, 32767, size=(1000, 2), dtype=np.int16)
    whole = Peaks(len(frames), columns=10)
    whole.feed(pcm(frames))
    pieces = Peaks(len(frames), columns=10)
    data = pcm(frames)
    for start in range(0, len(data), 333):  # not a multiple of a frame's 4 bytes
        pieces.feed(data[start : start + 333])
    for peaks in (whole, pieces):
        for column in range(10):
            block = frames[column * 100 : (column + 1) * 100].astype(np.int32)
            assert peaks.low[column].tolist() == [min(0, v) for v in block.min(axis=0)]
            assert peaks.high[column].tolist() == [max(0, v) for v in block.max(axis=0)]


def test_audio_past_the_announced_frames_is_ignored_and_short_audio_has_fewer_columns() -> None:
    peaks = Peaks(3, columns=600)
    assert peaks.columns == 3
    peaks.feed(pcm(np.array([[1, -1], [2, -2], [3, -3], [30000, -30000]])))
    assert peaks.high[:, 0].tolist() == [1, 2, 3]
    assert peaks.low[:, 1].tolist() == [-1, -2, -3]


def test_the_drawing_marks_each_part_where_it_begins() -> None:
    peaks = Peaks(8000, columns=100)
    peaks.feed(pcm(np.full((8000, 2), 1000)))
    drawn = svg(peaks, [Boundary(0, "Part 1: alice"), Boundary(2000, "Part 2: <bob>")], "Waveform")
    root = ET.fromstring(drawn)  # well-formed, the label escaped
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert texts == ["Caller", "Call taker", "Part 1: alice", "Part 2: <bob>"]
    lines = [ln.get("x1") for ln in root.iter("{http://www.w3.org/2000/svg}line")]
    assert lines[1:] == ["0.0", "25.0"]  # after the channels' divider: 2000 of 8000 frames
    assert root.get("aria-label") == "Waveform"
    assert len(re.findall(r"M\d", drawn)) == 200  # a stroke per column per channel
