"""The one byte range of a Range header (RFC 9110 §14): which are read, which are
ignored (the whole is sent), and which are unsatisfiable once the length is known."""

from __future__ import annotations

import pytest

from proxy.control.records.ranges import ByteRange, parse_range
from proxy.records.errors import RangeNotSatisfiable


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=100-", ByteRange(100, None)),
        ("bytes=-500", ByteRange(None, suffix=500)),
        ("BYTES = 5 - 5", ByteRange(5, 5)),
        ("  bytes=7-9  ", ByteRange(7, 9)),
    ],
)
def test_one_range_is_read(header: str, parsed: ByteRange) -> None:
    assert parse_range(header) == parsed


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes=",
        "bytes=-",
        "bytes=5-2",  # invalid: the last before the first
        "bytes=0-1,5-9",  # several: answered whole
        "items=0-9",
        "bytes=a-b",
        "bytes=1.5-2",
        "bytes=٣-٤",  # digits, but not ASCII
        "bytes=0-1 junk",
    ],
)
def test_anything_else_is_ignored(header: str | None) -> None:
    assert parse_range(header) is None


def test_bounds_in_content_of_a_length() -> None:
    assert ByteRange(10, 20).bounds(100) == (10, 20)
    assert ByteRange(10, None).bounds(100) == (10, None)
    assert ByteRange(None, suffix=30).bounds(100) == (70, None)
    assert ByteRange(None, suffix=300).bounds(100) == (0, None)
    with pytest.raises(RangeNotSatisfiable) as refused:
        ByteRange(None, suffix=0).bounds(100)
    assert refused.value.length == 100


def test_a_range_past_byte_0_is_a_continuation() -> None:
    assert not ByteRange(0, 99).continuation
    assert ByteRange(1, None).continuation
    assert ByteRange(None, suffix=10).continuation
