"""The anchor file: owner-only, append-only lines of (time, seq, sha256), read back as
written; a bad line is a one-line error naming the line; ``anchor_broken`` names the
first anchor the chain no longer holds."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from proxy.storage.catalog.anchor import (
    Anchor,
    AnchorFileError,
    anchor_broken,
    anchor_path,
    append_anchor,
    read_anchors,
)
from proxy.storage.catalog.audit import ChainHead

T0 = datetime(2026, 12, 6, 9, 0, 0, 250_000, tzinfo=UTC)
A, B = "a" * 64, "b" * 64


def test_the_anchor_file_sits_beside_the_catalog() -> None:
    assert anchor_path(Path("/var/lib/recproxy/catalog.sqlite3")) == Path(
        "/var/lib/recproxy/catalog.sqlite3.anchor"
    )


def test_anchors_append_owner_only_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "c.anchor"
    assert read_anchors(path) == []
    append_anchor(path, Anchor(T0, ChainHead(3, A)))
    append_anchor(path, Anchor(T0, ChainHead(5, B)))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == f"2026-12-06T09:00:00.250Z 3 {A}\n2026-12-06T09:00:00.250Z 5 {B}\n"
    assert read_anchors(path) == [Anchor(T0, ChainHead(3, A)), Anchor(T0, ChainHead(5, B))]


@pytest.mark.parametrize(
    "line", ["garbage", f"2026-12-06T09:00:00Z 0 {A}", f"yesterday 3 {A}", "2026-12-06 3 abc"]
)
def test_a_line_that_is_no_anchor_is_named(tmp_path: Path, line: str) -> None:
    path = tmp_path / "c.anchor"
    path.write_text(f"2026-12-06T09:00:00Z 1 {A}\n{line}\n")
    with pytest.raises(AnchorFileError, match=r"c\.anchor line 2: "):
        read_anchors(path)


def test_an_unwritable_anchor_file_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(AnchorFileError, match="missing"):
        append_anchor(tmp_path / "missing" / "c.anchor", Anchor(T0, ChainHead(1, A)))


def test_anchor_broken_names_the_first_anchor_the_chain_lost() -> None:
    anchors = [Anchor(T0, ChainHead(2, A)), Anchor(T0, ChainHead(4, B))]
    assert anchor_broken(anchors, 5, {2: A, 4: B}) is None
    assert anchor_broken(anchors, 3, {2: A}) == (
        4,
        "the chain ends at 3 but was anchored at 4 (2026-12-06T09:00:00.250Z)",
    )
    assert anchor_broken(anchors, 5, {2: B, 4: B}) == (
        2,
        "entry 2 is not the one anchored at 2026-12-06T09:00:00.250Z",
    )
