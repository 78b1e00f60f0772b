"""``multipart/mixed`` message bodies (RFC 2046 §5.1), as a SIPREC INVITE carries them.

A recording client (SRC, RFC 7866 §8.1) sends its SDP offer and its recording metadata
in one ``multipart/mixed`` body.  This splits such a body into its parts, each with its
own headers and bytes, without interpreting them.  It is sans-IO and strict where being
lenient would let a peer hide a part: a missing or malformed ``boundary``, a body with
no closing delimiter, too many parts, or a part without a header/body separator is a
``RemoteSipError(400)`` with a reason, never another exception.

Lines may end in CRLF (as RFC 2046 says) or a bare LF (as some SRCs and scenario files
write them); the line break before a delimiter belongs to the delimiter, so a part's
bytes are exactly what its sender put between the delimiters.  The preamble and the
epilogue are ignored (RFC 2046 §5.1.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import abnf
from .errors import RemoteSipError
from .headers import parse_params

#: More parts than a SIPREC offer ever has (SDP, metadata, perhaps one more): a body
#: of hundreds of tiny parts is refused before it costs anything.
MAX_PARTS = 8
_MAX_BOUNDARY = 70  # RFC 2046 §5.1.1
#: bchars of RFC 2046 §5.1.1 (the space only inside, never last)
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_HEADER_LINE = re.compile(rb"([!-9;-~]+)[ \t]*:[ \t]*(.*)")


def _bad(why: str) -> RemoteSipError:
    return RemoteSipError(400, f"Bad Request ({why})")


@dataclass(frozen=True, slots=True)
class BodyPart:
    """One part: its headers (names as sent) and its bytes."""

    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((v for n, v in self.headers if n.lower() == wanted), None)

    @property
    def content_type(self) -> str:
        """The media type, lower-case, without parameters; ``text/plain`` when absent
        (RFC 2046 §5.1: a part without Content-Type is ``text/plain``)."""
        value = self.header("content-type")
        if value is None:
            return "text/plain"
        return value.split(";", 1)[0].strip(abnf.WSP).lower()


def boundary_of(content_type: str) -> str:
    """The ``boundary`` parameter of a ``multipart/*`` Content-Type header value;
    ``RemoteSipError(400)`` when it is missing or not a valid boundary."""
    _, semi, rest = content_type.partition(";")
    try:
        params = parse_params(semi + rest)
    except RemoteSipError:
        raise _bad("malformed Content-Type parameters") from None
    value = next((v for k, v in params if k.lower() == "boundary"), None)
    if value is None:
        raise _bad("multipart body without a boundary")
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        value = value[1:-1]
    if len(value) > _MAX_BOUNDARY or not _BOUNDARY.fullmatch(value):
        raise _bad("invalid multipart boundary")
    return value


def parse_multipart(body: bytes, content_type: str) -> tuple[BodyPart, ...]:
    """The parts of ``body``, whose Content-Type header value is ``content_type``
    (``multipart/mixed;boundary=...``), in order."""
    delimiter = b"--" + boundary_of(content_type).encode("ascii")
    # the first delimiter may open the body; every other one starts a line
    text = body if body.startswith(delimiter) else None
    if text is None:
        start = _line_start(body, delimiter, 0)
        if start < 0:
            raise _bad("multipart body without its boundary")
        text = body[start:]
    parts: list[BodyPart] = []
    position = len(delimiter)
    while True:
        if text.startswith(b"--", position):  # the close delimiter
            return tuple(parts)
        line_end = text.find(b"\n", position)
        if line_end < 0 or text[position:line_end].strip(b" \t\r"):
            raise _bad("junk after a multipart boundary")  # transport padding only
        following = _line_start(text, delimiter, line_end)
        if following < 0:
            raise _bad("multipart body without its closing boundary")
        if len(parts) == MAX_PARTS:
            raise _bad(f"more than {MAX_PARTS} body parts")
        break_length = 2 if text[following - 2 : following] == b"\r\n" else 1
        parts.append(_part(text[line_end + 1 : following - break_length]))
        position = following + len(delimiter)


def _line_start(text: bytes, delimiter: bytes, start: int) -> int:
    """Where the next ``delimiter`` at the start of a line (after ``start``) begins, the
    line break before it not included; -1 if none."""
    index = text.find(b"\n" + delimiter, start)
    return -1 if index < 0 else index + 1


def _part(raw: bytes) -> BodyPart:
    """A part's headers (RFC 822 style, folding refused) and body."""
    if raw.startswith((b"\r\n", b"\n")):  # no headers: the body starts at once
        head, body = b"", raw[2 if raw.startswith(b"\r\n") else 1 :]
    else:
        match = re.search(rb"\r?\n\r?\n", raw)
        if match is None:
            raise _bad("body part without an empty line after its headers")
        head, body = raw[: match.start()], raw[match.end() :]
    headers: list[tuple[str, str]] = []
    for line in head.split(b"\n") if head else []:
        found = _HEADER_LINE.fullmatch(line.rstrip(b"\r"))
        if found is None:
            raise _bad("malformed body part header")
        try:
            headers.append((found[1].decode("ascii"), found[2].decode("utf-8").strip()))
        except UnicodeDecodeError:
            raise _bad("body part header is not UTF-8") from None
    return BodyPart(tuple(headers), body)
