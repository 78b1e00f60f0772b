"""Cutting a TCP byte stream into SIP messages by Content-Length (RFC 3261 §18.3).

Pure: bytes in, complete messages out.  The buffer is bounded: a header section or a
body larger than the limit is an error, and the transport then closes the connection.
"""

from __future__ import annotations

import re

from .errors import RemoteSipError
from .message import MAX_MESSAGE_SIZE

# ``Content-Length`` / ``l`` HCOLON 1*DIGIT, on one (possibly folded) header line.
# SWS = [LWS], LWS = [*WSP CRLF] 1*WSP.  Lines end in CRLF, and ``$`` (re.M) matches
# only before the LF, so the CR is matched explicitly.
_SWS = rb"(?:[ \t]*\r?\n[ \t]+|[ \t]*)"
_CONTENT_LENGTH = re.compile(
    rb"^(?:content-length|l)" + _SWS + rb":" + _SWS + rb"([0-9]+)[ \t]*\r?$", re.I | re.M
)
# The end of the header section, found exactly as ``message.split_head`` finds it.
_HEAD_END = re.compile(rb"\r\n\r\n|\n\n")


class StreamFramer:
    """Feed bytes with ``feed``; take complete messages from its return value."""

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buffer = bytearray()
        self._max = max_message_size
        self.keepalives = 0  # double-CRLF pings seen (RFC 5626 §4.4.1), each to be ponged
        self._crlf_bytes = 0  # CR/LF bytes since the last message, across feeds

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def pending(self) -> bytes:
        """What is buffered: after an error, the start of the message that caused it."""
        return bytes(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return every message now complete (possibly none).

        Raises RemoteSipError(513) when a message would exceed the size limit, and
        RemoteSipError(400) for a header section with an unreadable Content-Length:
        after either the stream cannot be resynchronised and must be closed.
        """
        self._buffer += data
        messages: list[bytes] = []
        while True:
            message = self._next()
            if message is None:
                break
            messages.append(message)
        return messages

    def _next(self) -> bytes | None:
        buf = self._buffer
        # CRLF keep-alives between messages (RFC 5626 §4.4.1) are skipped; every four
        # CR/LF bytes in a row (a double CRLF, however the stream split it) is one ping.
        # A lone CRLF (a pong, or a message's stray trailing CRLF) is no ping.
        skip = 0
        while skip < len(buf) and buf[skip] in (0x0D, 0x0A):
            skip += 1
        if skip:
            self._crlf_bytes += skip
            self.keepalives += self._crlf_bytes // 4
            self._crlf_bytes %= 4
            del buf[:skip]
        if not buf:
            return None
        self._crlf_bytes = 0
        end = _HEAD_END.search(buf)
        if end is None:
            if len(buf) > self._max:
                raise RemoteSipError(513, "Message Too Large")
            return None
        head = bytes(buf[: end.start()])
        lengths = [m.group(1) for m in _CONTENT_LENGTH.finditer(head)]
        if len(set(lengths)) > 1:
            raise RemoteSipError(400, "Bad Request (conflicting Content-Length)")
        if lengths and len(lengths[0]) > 10:
            raise RemoteSipError(400, "Bad Request (malformed Content-Length)")
        body_length = int(lengths[0]) if lengths else 0
        total = end.end() + body_length
        if total > self._max:
            raise RemoteSipError(513, "Message Too Large")
        if len(buf) < total:
            return None
        message = bytes(buf[:total])
        del buf[:total]
        return message
