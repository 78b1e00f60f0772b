"""Records batched into one control message (pure): a fixed header of integers, its last
field the payload's length, then the payload — the ``P`` packets going up and the ``D``
audio going down are both this, with their own header."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

#: a batch is sent once it holds this much (well under the socket's buffer)
BATCH_BYTES = 32 * 1024
#: or this long after its first record (the recorder's jitter buffer absorbs it)
FLUSH_SECONDS = 0.004


class ProtocolError(ValueError):
    """A control message that does not parse (one side has a bug); exported by
    :mod:`.protocol`."""


class RecordBatch:
    """Records waiting to go, as one message of ``kind``."""

    __slots__ = ("_data", "_header")

    def __init__(self, kind: bytes, header: struct.Struct) -> None:
        self._data = bytearray(kind)
        self._header = header

    def add(self, payload: bytes, *fields: int) -> int:
        """Append a record; the message's size so far."""
        data = self._data
        data += self._header.pack(*fields, len(payload))
        data += payload
        return len(data)

    def __bool__(self) -> bool:
        return len(self._data) > 1

    def take(self) -> bytes:
        """The message, and an empty batch from now on."""
        message = bytes(self._data)
        del self._data[1:]
        return message


def records(data: bytes, header: struct.Struct) -> Iterator[tuple[Any, ...]]:
    """Each record's header fields but the length, then its payload."""
    offset, end = 0, len(data)
    unpack, size = header.unpack_from, header.size
    while offset < end:
        if offset + size > end:
            raise ProtocolError("a record's header is cut short")
        *fields, length = unpack(data, offset)
        offset += size
        if offset + length > end:
            raise ProtocolError("a record's payload is cut short")
        yield (*fields, data[offset : offset + length])
        offset += length
