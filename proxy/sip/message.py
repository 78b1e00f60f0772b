"""SIP requests and responses: parsing from bytes, checking, building and serialising.

``parse_message(data)`` turns one UDP datagram (or one framed TCP message) into a
``Request`` or ``Response``, or raises ``RemoteSipError`` carrying the status to answer.
Nothing else escapes it, whatever the bytes (a property test holds us to that).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from itertools import islice

from . import abnf
from .errors import LocalSipError, RemoteSipError
from .headers import (
    CSeq,
    Headers,
    NameAddr,
    Via,
    canonical_name,
    pretty_name,
)
from .uri import SipUri, Uri, parse_uri

SIP_VERSION = "SIP/2.0"
MAX_MESSAGE_SIZE = 65_535
MAX_HEADERS = 256

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


def reason_phrase(status: int) -> str:
    return REASON_PHRASES.get(status) or REASON_PHRASES.get(status // 100 * 100, "Unknown")


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(12)}@{host}"


class Message:
    """What requests and responses share: headers, body and the headers the core reads."""

    __slots__ = ("_known_head", "_wire", "body", "headers")

    def __init__(self, headers: Headers, body: bytes = b"") -> None:
        self.headers = headers
        self.body = body
        # the wire bytes of the first header fields, while ``headers`` is at a version
        # (a response's lines copied from its request: ``make_response``)
        self._known_head: tuple[Headers, int, int, bytes] | None = None
        # what ``serialize`` gave, and what it gave it for
        self._wire: tuple[Headers, int, bytes, str, bytes] | None = None

    def start_line(self) -> str:
        raise NotImplementedError

    def serialize(self) -> bytes:
        """Wire bytes.  Content-Length always states the body's real length.

        Kept while the start line, headers and body stay as they were: a retransmission
        is not serialised again."""
        headers, body, start = self.headers, self.body, self.start_line()
        wire = self._wire
        if (
            wire is not None
            and wire[0] is headers
            and wire[1] == headers.version
            and wire[2] is body
            and wire[3] == start
        ):
            return wire[4]
        known, skip = b"", 0
        head = self._known_head
        if head is not None and head[0] is headers and head[1] == headers.version:
            skip, known = head[2], head[3]
        lines = []
        wrote_length = False
        for name, value in islice(headers, skip, None):
            if canonical_name(name) == "content-length":
                if wrote_length:
                    continue
                value = str(len(body))
                wrote_length = True
            lines.append(f"{name}: {value}")
        if not wrote_length:
            lines.append(f"Content-Length: {len(body)}")
        data = b"".join(
            (
                _encode(start + "\r\n"),
                known,
                _encode("\r\n".join(lines) + "\r\n\r\n"),
                body,
            )
        )
        self._wire = (headers, headers.version, body, start, data)
        return data

    # -- the headers every message has (checked by parse_message) ----------------------
    # Parsed once and kept by the headers until they change (``Headers.derived``): the
    # core and the call flow read them at every step.

    @property
    def vias(self) -> list[Via]:
        return list(self.headers.derived("via", _vias))

    @property
    def top_via(self) -> Via:
        return self.headers.derived("via", _top_via)

    @property
    def from_(self) -> NameAddr:
        return self.headers.derived("from", _name_addr)

    @property
    def to(self) -> NameAddr:
        return self.headers.derived("to", _name_addr)

    @property
    def call_id(self) -> str:
        return _required(self.headers, "call-id")

    @property
    def cseq(self) -> CSeq:
        return self.headers.derived("cseq", _cseq)

    @property
    def contacts(self) -> list[NameAddr]:
        return list(self.headers.derived("contact", _contacts))

    @property
    def record_route(self) -> list[str]:
        return self.headers.get_all("record-route")

    @property
    def content_type(self) -> str | None:
        """The media type, lower-case, without parameters (``application/sdp``)."""
        value = self.headers.get("content-type")
        if value is None:
            return None
        return value.split(";", 1)[0].strip(abnf.WSP).lower()


def _required(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise LocalSipError(f"message has no {name} header")
    return value


def _top_via(headers: Headers, key: str) -> Via:
    """The first Via element (the others unparsed: an answer to a request refused
    for a bad lower Via still goes where the top one says)."""
    values = headers.get_all(key)
    if not values:
        raise LocalSipError("message has no Via")
    return Via.parse(values[0])


def _vias(headers: Headers, key: str) -> tuple[Via, ...]:
    values = headers.get_all(key)
    if not values:
        return ()
    return (headers.derived(key, _top_via), *(Via.parse(v) for v in values[1:]))


def _name_addr(headers: Headers, key: str) -> NameAddr:
    return NameAddr.parse(_required(headers, key))


def _cseq(headers: Headers, key: str) -> CSeq:
    return CSeq.parse(_required(headers, key))


def _contacts(headers: Headers, key: str) -> tuple[NameAddr, ...]:
    return tuple(NameAddr.parse(v, allow_star=True) for v in headers.get_all(key))


class Request(Message):
    __slots__ = ("method", "uri", "version")

    def __init__(
        self,
        method: str,
        uri: Uri,
        headers: Headers | None = None,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        super().__init__(headers if headers is not None else Headers(), body)
        self.method = method
        self.uri = uri
        self.version = version

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("max-forwards")
        return None if value is None else int(value)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri} call_id={self.headers.get('call-id')!r}>"


class Response(Message):
    __slots__ = ("reason", "status", "version")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | None = None,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        super().__init__(headers if headers is not None else Headers(), body)
        self.status = status
        self.reason = reason if reason is not None else reason_phrase(status)
        self.version = version

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} call_id={self.headers.get('call-id')!r}>"


# ---------------------------------------------------------------------------------------
# Parsing


def split_head(data: bytes) -> tuple[bytes, bytes] | None:
    """(header section, rest) split at the first empty line (CRLF CRLF, or bare LF LF)."""
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if crlf < 0 and lf < 0:
        return None
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return data[:lf], data[lf + 2 :]
    return data[:crlf], data[crlf + 4 :]


def parse_message(
    data: bytes, *, stream: bool = False, max_size: int = MAX_MESSAGE_SIZE
) -> Request | Response:
    """Parse and check one message.

    ``stream=False`` (UDP): bytes past Content-Length are ignored; with no
    Content-Length the body is the rest of the datagram.  ``stream=True``: ``data`` is
    exactly one message as cut by ``StreamFramer``.
    """
    is_response = data.lstrip(b"\r\n")[:4].upper() == b"SIP/"
    if len(data) > max_size:
        error = RemoteSipError(513, "Message Too Large", answerable=not is_response)
        raise attach_head(error, data) if not is_response else error
    try:
        return _parse(data, stream)
    except RemoteSipError as exc:
        if is_response:
            exc.answerable = False
        raise
    except (ValueError, IndexError, UnicodeError) as exc:  # a gap in the checks below
        raise RemoteSipError(400, f"Bad Request ({type(exc).__name__})") from exc


def attach_head(error: RemoteSipError, data: bytes) -> RemoteSipError:
    """Attach what the header lines of ``data`` say, so that an error found before the
    message could be parsed (513, a framing error on a TCP stream) can be answered like
    any other (§18.1.1).  Without the empty line that ends the header section, the
    complete lines read so far are used.  Reading the lines is linear in their length,
    and the transport already bounds a datagram (64 KiB) or a TCP buffer."""
    data = data.lstrip(b"\r\n")
    if data[:4].upper() == b"SIP/":
        error.answerable = False  # a response is never answered
        return error
    parts = split_head(data)
    head = parts[0] if parts is not None else data[: data.rfind(b"\n") + 1]
    lines = head.decode("utf-8", "surrogateescape").replace("\r\n", "\n").split("\n")
    return _attach(error, _stand_in(Headers(_unfold(lines[1:], strict=False))))


def _parse(data: bytes, stream: bool) -> Request | Response:
    data = data.lstrip(b"\r\n")  # keep-alive CRLFs before a message (RFC 3261 §7.5)
    parts = split_head(data)
    if parts is None:
        # No empty line ends the headers (e.g. RFC 4475 baddn.dat as archived):
        # liberal reading, the whole datagram is the header section.
        head_bytes, rest = data.rstrip(b"\r\n"), b""
    else:
        head_bytes, rest = parts
    head = head_bytes.decode("utf-8", "surrogateescape")
    raw_lines = head.replace("\r\n", "\n").split("\n")
    start = raw_lines[0]
    try:
        fields = _unfold(raw_lines[1:])
    except RemoteSipError as exc:
        if start[:4].upper() == "SIP/":
            raise
        # A request with a garbled header line is still answered (400) when the
        # readable lines include a Via: the answer copies what could be read.
        raise _attach(exc, _stand_in(Headers(_unfold(raw_lines[1:], strict=False)))) from None
    headers = Headers(fields)
    message = _parse_start_line(start, headers)
    try:
        message.body = _frame_body(headers, rest, stream)
        _check_headers(message)
    except RemoteSipError as exc:
        if isinstance(message, Request):
            raise _attach(exc, message) from None
        raise
    return message


# Trimmed from both ends of a header value.  A stray CR (not part of a CRLF) is
# trimmed too: written back before the CRLF it would merge into the line end and
# not survive a second parse.
_VALUE_TRIM = abnf.WSP + "\r"


def _unfold(lines: list[str], *, strict: bool = True) -> list[tuple[str, str]]:
    """Header lines → (name, value) with folding undone.  ``strict=False`` skips what
    it cannot read (a bad line with its continuations, fields past ``MAX_HEADERS``)
    instead of raising: only used to answer a message already refused."""
    fields: list[tuple[str, str]] = []
    skipping = False
    for line in lines:
        if line and line[0] in abnf.WSP:
            if skipping:
                continue
            if not fields:
                if not strict:
                    continue
                raise RemoteSipError(400, "Bad Request (continuation line before any header)")
            name, value = fields[-1]
            piece = line.strip(_VALUE_TRIM)
            fields[-1] = (name, f"{value} {piece}" if value and piece else value or piece)
            continue
        line = line.rstrip("\r")
        if not line:
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(abnf.WSP)
        skipping = not colon or not abnf.is_token(name)
        if skipping:
            if not strict:
                continue
            raise RemoteSipError(400, f"Bad Request (malformed header line {line[:40]!r})")
        if len(fields) == MAX_HEADERS:
            if not strict:
                break
            raise RemoteSipError(400, "Bad Request (too many header fields)")
        fields.append((name, value.strip(_VALUE_TRIM)))
    return fields


def _parse_start_line(line: str, headers: Headers) -> Request | Response:
    if line[:4].upper() == "SIP/":
        version, _, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not abnf.SIP_VERSION.fullmatch(version) or version.upper() != SIP_VERSION:
            raise RemoteSipError(505, "Version Not Supported", answerable=False)
        if abnf.STATUS_CODE.fullmatch(code) is None:
            raise RemoteSipError(400, f"Bad Request (status code {code[:20]!r})", answerable=False)
        return Response(int(code), reason, headers, version=SIP_VERSION)
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise _answerable_error(400, "Bad Request (malformed Request-Line)", headers)
    method, uri_text, version = parts
    if not abnf.is_token(method):
        raise _answerable_error(400, "Bad Request (malformed method)", headers)
    if not abnf.SIP_VERSION.fullmatch(version):
        raise _answerable_error(400, "Bad Request (malformed SIP version)", headers)
    if version.upper() != SIP_VERSION:
        raise _answerable_error(505, "Version Not Supported", headers)
    try:
        uri = parse_uri(uri_text)
    except RemoteSipError as exc:
        raise _answerable_error(400, exc.reason, headers) from None
    return Request(method, uri, headers)


def _answerable_error(status: int, reason: str, headers: Headers) -> RemoteSipError:
    """An error for a request we could not fully parse, answered if its Via allows."""
    return _attach(RemoteSipError(status, reason), _stand_in(headers))


def _stand_in(headers: Headers) -> Request:
    """A request to hang an error on when its start line or headers could not be read."""
    return Request("UNKNOWN", SipUri(host="invalid"), headers)


def _attach(error: RemoteSipError, request: Request) -> RemoteSipError:
    """Attach the request to its error.  It can be answered if it has a Via at all: the
    answer copies the Via lines as they are and goes back to the packet's source."""
    if not request.headers.get_lines("via"):
        error.answerable = False
        return error
    return error.with_request(request)


def _frame_body(headers: Headers, rest: bytes, stream: bool) -> bytes:
    lengths = headers.get_lines("content-length")
    if not lengths:
        return b"" if stream else rest
    if len(set(lengths)) > 1:
        raise RemoteSipError(400, "Bad Request (conflicting Content-Length)")
    text = lengths[0]
    if abnf.DIGITS.fullmatch(text) is None or len(text) > 10:
        raise RemoteSipError(400, "Bad Request (malformed Content-Length)")
    length = int(text)
    if length > len(rest):
        raise RemoteSipError(400, "Bad Request (Content-Length larger than message)")
    return rest[:length]


_REQUIRED = ("via", "from", "to", "call-id", "cseq")
_SINGLE = ("from", "to", "call-id", "cseq", "max-forwards", "content-type")  # if values differ


def _check_headers(message: Request | Response) -> None:
    headers = message.headers
    for name in _REQUIRED:
        if headers.get(name) is None:
            raise RemoteSipError(400, f"Bad Request (missing {pretty_name(name)})")
    for name in _SINGLE:
        if len(set(headers.get_lines(name))) > 1:
            raise RemoteSipError(400, f"Bad Request (more than one {pretty_name(name)})")
    # parsed to check, and kept for what reads them next
    headers.derived("via", _vias)
    message.from_  # noqa: B018
    message.to  # noqa: B018
    if abnf.CALL_ID.fullmatch(message.call_id) is None:
        raise RemoteSipError(400, "Bad Request (malformed Call-ID)")
    cseq = message.cseq
    headers.derived("contact", _contacts)
    for name in ("route", "record-route"):
        for value in headers.get_all(name):
            NameAddr.parse(value)
    if isinstance(message, Request):
        if cseq.method != message.method:
            raise RemoteSipError(400, "Bad Request (CSeq method does not match)")
        max_forwards = headers.get("max-forwards")
        if max_forwards is not None and (
            abnf.DIGITS.fullmatch(max_forwards) is None
            or len(max_forwards) > 10
            or int(max_forwards) > 255
        ):
            raise RemoteSipError(400, "Bad Request (malformed Max-Forwards)")


# ---------------------------------------------------------------------------------------
# Building


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    server: str | None = None,
) -> Response:
    """A response to ``request`` (RFC 3261 §8.2.6): Via, From, To, Call-ID and CSeq copied;
    a To tag added when the request had none (``to_tag``, else a fresh one: §8.2.6.2),
    except on a 100; Record-Route copied on dialog-establishing responses (§12.1.1); a
    ``Server`` header (§20.35) first among the extra ``headers``.

    The copied lines are read from the request once (``_Copied``, kept with its
    headers), with their wire bytes: its 100, 180/183, 200 and errors are built on them."""
    if to_tag is None and status > 100:
        to_tag = new_tag()
    plain, in_dialog = request.headers.derived("", _copy_lines)
    copied = in_dialog if 100 < status < 300 else plain
    fields = list(copied.fields)
    to_line = b""
    if copied.to >= 0:
        value = fields[copied.to][1]
        if to_tag and status > 100 and copied.to_untagged:
            value = f"{value};tag={to_tag}"
            fields[copied.to] = ("To", value)
        to_line = _encode(f"To: {value}\r\n")
    if server is not None:
        fields.append(("Server", server))
    if headers:
        fields.extend(headers)
    out = Headers(fields)
    response = Response(status, reason, out, body)
    response._known_head = (
        out,
        out.version,
        len(copied.fields),
        copied.head + to_line + copied.tail,
    )
    return response


@dataclass(frozen=True, slots=True)
class _Copied:
    """The lines a response copies from its request, in the request's order: every Via,
    the first From, Call-ID, CSeq and To (an identical duplicate is copied once), and in
    a 101-299 every Record-Route; with their wire bytes before and after the To line,
    which may get a tag."""

    fields: tuple[tuple[str, str], ...]
    to: int  # where To is in ``fields``; -1: none
    to_untagged: bool
    head: bytes
    tail: bytes


def _copy_lines(headers: Headers, key: str) -> tuple[_Copied, _Copied]:
    """What responses copy from a request: without Record-Route, and with it (the same
    when the request has none)."""
    plain = _copy(headers, record_route=False)
    if headers.get("record-route") is None:
        return plain, plain
    return plain, _copy(headers, record_route=True)


def _copy(headers: Headers, *, record_route: bool) -> _Copied:
    fields: list[tuple[str, str]] = []
    copied: set[str] = set()
    to = -1
    for name, value in headers:
        key = canonical_name(name)
        if key in copied:
            continue  # an identical duplicate of a single-valued header, copied once
        if key in ("from", "call-id", "cseq", "to"):
            copied.add(key)
        if key in ("via", "from", "call-id", "cseq"):
            fields.append((pretty_name(key), value))
        elif key == "to":
            to = len(fields)
            fields.append(("To", value))
        elif key == "record-route" and record_route:
            fields.append(("Record-Route", value))
    wire = [_encode(f"{name}: {value}\r\n") for name, value in fields]
    cut = len(fields) if to < 0 else to
    return _Copied(
        tuple(fields),
        to,
        to >= 0 and _tag_missing(headers),
        b"".join(wire[:cut]),
        b"".join(wire[cut + 1 :]),
    )


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _tag_missing(headers: Headers) -> bool:
    """The (first) To has no tag, or cannot be read."""
    try:
        return headers.derived("to", _name_addr).tag is None
    except RemoteSipError:
        return True


def error_response(error: RemoteSipError) -> Response | None:
    """The answer to a request that failed parsing or checking, if it can be answered."""
    if not error.answerable or error.request is None:
        return None
    response = make_response(
        error.request,
        error.status,
        error.reason,
        headers=list(error.extra_headers),
    )
    return response
