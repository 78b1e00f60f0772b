"""The anchor file: the audit chain's head, written outside the database.

Cutting off the last rows of the audit table leaves a shorter chain that still verifies.
So from time to time (``recproxy audit verify``, and periodically in ``serve``) the head
— sequence number and digest — is appended to ``<catalog path>.anchor``, one line per
anchoring::

    2026-12-06T09:00:00Z 42 3f2a...e1

Every anchored ``(seq, sha256)`` must still be in the chain; a chain that ends before an
anchor was cut.  The file is owner-only, opened for appending only, and each line is
fsync'd before the anchoring counts as done.  These functions block (file I/O): callers
on the event loop run them in a thread.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .audit import ChainHead
from .model import format_utc, parse_utc

_LINE = re.compile(r"(\S+) ([1-9][0-9]*) ([0-9a-f]{64})")


class AnchorFileError(Exception):
    """The anchor file cannot be read or written, or a line of it is not an anchor."""


@dataclass(frozen=True, slots=True)
class Anchor:
    """One anchoring: the chain's head at ``at``."""

    at: datetime
    head: ChainHead


def anchor_path(catalog_path: Path) -> Path:
    """Where a catalog's anchors are kept: beside it, ``<catalog path>.anchor``."""
    return catalog_path.with_name(catalog_path.name + ".anchor")


def read_anchors(path: Path) -> list[Anchor]:
    """The anchors in the file, oldest first; none when there is no file yet."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise AnchorFileError(f"{path}: {exc}") from None
    anchors = []
    for number, line in enumerate(text.splitlines(), 1):
        match = _LINE.fullmatch(line)
        try:
            if match is None:
                raise ValueError("expected: ISO-TIME SEQ SHA256")
            at = parse_utc(match[1])
        except ValueError as exc:
            raise AnchorFileError(f"{path} line {number}: {exc}") from None
        anchors.append(Anchor(at, ChainHead(int(match[2]), match[3])))
    return anchors


def append_anchor(path: Path, anchor: Anchor) -> None:
    """Append one line (creating the file owner-only) and make it durable."""
    line = f"{format_utc(anchor.at)} {anchor.head.seq} {anchor.head.sha256}\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise AnchorFileError(f"{path}: {exc.strerror or exc}") from None


def anchor_broken(
    anchors: Iterable[Anchor], chain_length: int, digests: Mapping[int, str]
) -> tuple[int, str] | None:
    """The first anchor the chain no longer holds, as (its seq, why); ``None`` when the
    chain holds them all.  ``digests``: the chain's stored digest at each anchored seq."""
    for anchor in anchors:
        seq = anchor.head.seq
        when = format_utc(anchor.at)
        if seq > chain_length:
            return seq, f"the chain ends at {chain_length} but was anchored at {seq} ({when})"
        if digests.get(seq) != anchor.head.sha256:
            return seq, f"entry {seq} is not the one anchored at {when}"
    return None
