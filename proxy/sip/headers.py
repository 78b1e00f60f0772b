"""Header fields: names (long and compact), the ordered header list, and the structured
values a B2BUA reads — Via, name-addr (From, To, Contact, Route, Record-Route), CSeq.

Unknown headers are kept verbatim and in order; only the headers the SIP core itself
uses are parsed into structures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TypeVar, cast

from . import abnf
from .errors import RemoteSipError
from .uri import Param, SipUri, Uri, parse_uri

T = TypeVar("T")

# RFC 3261 §7.3.3 and later RFCs' compact forms.
COMPACT_FORMS: dict[str, str] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

# How we write the headers we create.
_PRETTY: dict[str, str] = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
}

# Headers whose value is a comma-separated list (RFC 3261 §7.3.1).  Not the
# authentication headers (commas inside their parameters) and not unknown ones.
LIST_HEADERS = frozenset(
    {
        "via",
        "contact",
        "route",
        "record-route",
        "path",
        "service-route",
        "allow",
        "allow-events",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "accept",
        "accept-encoding",
        "accept-language",
        "content-encoding",
        "content-language",
        "in-reply-to",
        "reason",
        "p-asserted-identity",
    }
)


def _pretty(key: str) -> str:
    return _PRETTY.get(key) or "-".join(part.capitalize() for part in key.split("-"))


def _long_form(name: str) -> str:
    lname = name.lower()
    return COMPACT_FORMS.get(lname, lname)


# The headers a call's messages carry, by the long names the SIP core and the call flow
# look up: with their usual spellings below, a name as it arrives is one dict lookup.
_COMMON_HEADERS = (
    *COMPACT_FORMS.values(),
    *("via", "from", "to", "call-id", "cseq", "contact", "max-forwards", "route"),
    *("record-route", "content-length", "content-type", "allow", "supported", "require"),
    *("user-agent", "server", "subject", "expires", "min-se", "rseq", "rack", "date"),
    *("session-expires", "p-asserted-identity", "remote-party-id", "diversion", "reason"),
    *("authorization", "proxy-authorization", "www-authenticate", "proxy-authenticate"),
    *("accept", "unsupported", "mime-version", "organization", "privacy", "warning"),
    *("retry-after", "replaces", "event", "subscription-state", "refer-to", "path"),
)


def _spellings() -> dict[str, str]:
    """Every usual spelling of the common headers (and the compact letters in either
    case) → the long lower-case name.  Fixed at import: names from the network never
    grow it."""
    out: dict[str, str] = {}
    for key in _COMMON_HEADERS:
        pretty = _pretty(key)
        for spelling in (key, key.upper(), pretty, pretty.title()):
            out[spelling] = key
    for letter, key in COMPACT_FORMS.items():
        out[letter] = out[letter.upper()] = key
    return out


_CANONICAL = _spellings()
_PRETTY_NAMES = {key: _pretty(key) for key in _COMMON_HEADERS}


def canonical_name(name: str) -> str:
    """The lower-case long form of a header name ('v' → 'via', 'CSEQ' → 'cseq')."""
    return _CANONICAL.get(name) or _long_form(name)


def pretty_name(name: str) -> str:
    """The conventional spelling of a header name for headers we write."""
    key = canonical_name(name)
    return _PRETTY_NAMES.get(key) or _pretty(key)


def _bad(what: str) -> RemoteSipError:
    return RemoteSipError(400, f"Bad Request ({what})")


def _unquoted(value: str) -> Iterator[tuple[int, str]]:
    """Each character of ``value`` outside a quoted string, with its index; a quoted
    string (escapes included) is skipped whole.  ``RemoteSipError`` if one is left open."""
    in_quote = False
    escape = False
    for i, ch in enumerate(value):
        if in_quote:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        else:
            yield i, ch
    if in_quote:
        raise _bad("unterminated quoted string")


def split_top_level(value: str, sep: str) -> list[str]:
    """Split on ``sep`` outside quoted strings and ``<...>``; RemoteSipError if unbalanced.

    Most values have no quoted string (a display name is the usual one), and many no
    ``<``: those are split by ``str`` methods; the rest character by character."""
    if '"' in value:
        return _split_quoted(value, sep)
    if "<" not in value:
        return value.split(sep)
    parts: list[str] = []
    start = scan = 0
    while True:
        lt = value.find("<", scan)
        end = len(value) if lt < 0 else lt
        cut = value.find(sep, scan, end)
        while cut >= 0:
            parts.append(value[start:cut])
            start = cut + 1
            cut = value.find(sep, start, end)
        if lt < 0:
            break
        gt = value.find(">", lt + 1)
        if gt < 0:
            raise _bad("unterminated <")
        scan = gt + 1
    parts.append(value[start:])
    return parts


def _split_quoted(value: str, sep: str) -> list[str]:
    """``split_top_level`` for a value with quoted strings in it."""
    parts: list[str] = []
    start = 0
    in_angle = False
    for i, ch in _unquoted(value):
        if in_angle:
            if ch == ">":
                in_angle = False
        elif ch == "<":
            in_angle = True
        elif ch == sep:
            parts.append(value[start:i])
            start = i + 1
    if in_angle:
        raise _bad("unterminated <")
    parts.append(value[start:])
    return parts


def option_tags(headers: Headers, name: str) -> list[str]:
    """The option tags of a Supported, Require, Proxy-Require or Unsupported header.  The
    header may be empty (RFC 3261 §20.37: ``Supported: [option-tag *(COMMA option-tag)]``,
    as baresip sends it); an empty element between commas raises ``RemoteSipError``
    (400)."""
    tags: list[str] = []
    for line in headers.get_lines(name):
        if line.strip(abnf.WSP):
            tags.extend(split_list(line))
    return tags


def offers_option(headers: Headers, tag: str) -> bool:
    """``tag`` is in Supported or Require (any case); a garbled list offers nothing (the
    core has answered a garbled Require with 400 already)."""
    try:
        tags = option_tags(headers, "supported") + option_tags(headers, "require")
    except RemoteSipError:
        return False
    return tag.lower() in (t.lower() for t in tags)


def split_list(value: str) -> list[str]:
    """The elements of a comma-separated header value, stripped; empty elements are errors."""
    items = [item.strip(abnf.WSP) for item in split_top_level(value, ",")]
    if any(not item for item in items):
        raise _bad("empty element in header list")
    return items


class Headers:
    """The header fields of one message, in order, names as received.

    Values are unfolded (line folding replaced by one space) and trimmed.  Lookups use
    the long lower-case name, so ``v`` and ``Via`` are the same header.

    A message's headers are read many times on its way through the core and the call
    flow (the top Via, From, To, CSeq at every step), so lookups go through an index by
    long name, built once, and what is parsed from a header (``derived``) is kept until
    that header changes.  Every change goes through a method here, which drops what it
    makes stale and moves ``version`` on.
    """

    __slots__ = ("_derived", "_fields", "_index", "version")

    def __init__(self, fields: list[tuple[str, str]] | None = None) -> None:
        self._fields: list[tuple[str, str]] = list(fields or [])
        self._index: dict[str, list[str]] | None = None
        self._derived: dict[tuple[str, object], object] = {}
        #: moves on at every change (serialised bytes kept by a message check it)
        self.version = 0

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._fields == other._fields

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"

    def copy(self) -> Headers:
        return Headers(self._fields)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def _lines(self, key: str) -> list[str] | None:
        """The values of the header with long name ``key``, in order (not a copy)."""
        index = self._index
        if index is None:
            index = {}
            for fname, value in self._fields:
                lines = index.setdefault(canonical_name(fname), [])
                lines.append(value)
            self._index = index
        return index.get(key)

    def get(self, name: str) -> str | None:
        """The first value of a header, or None."""
        lines = self._lines(canonical_name(name))
        return lines[0] if lines else None

    def get_lines(self, name: str) -> list[str]:
        """Every header line of that name, unsplit."""
        lines = self._lines(canonical_name(name))
        return list(lines) if lines else []

    def get_all(self, name: str) -> list[str]:
        """Every value of a header: lines in order, comma lists split for list headers."""
        key = canonical_name(name)
        if key not in LIST_HEADERS:
            return self.get_lines(key)
        return list(self.derived(key, _split_lines))

    def derived(self, key: str, compute: Callable[[Headers, str], T]) -> T:
        """``compute(self, key)``, kept until the header ``key`` (its long lower-case
        name) changes: what a message parses from its headers, parsed once.  ``key`` is
        the one header ``compute`` reads, or ``""`` when it reads several (kept until any
        header changes).  ``compute`` is part of the cache key: a function defined once,
        not a new lambda per call.  An error is not kept: it is raised again."""
        try:
            return cast(T, self._derived[key, compute])
        except KeyError:
            value = compute(self, key)
            self._derived[key, compute] = value
            return value

    def _changed(self, key: str) -> None:
        """The header ``key`` changed: what was derived from it (or from several) goes."""
        self.version += 1
        if self._derived:
            self._derived = {k: v for k, v in self._derived.items() if k[0] not in (key, "")}

    def add(self, name: str, value: str) -> None:
        key = canonical_name(name)
        self._fields.append((name, value))
        if self._index is not None:
            self._index.setdefault(key, []).append(value)
        self._changed(key)

    def prepend(self, name: str, value: str) -> None:
        key = canonical_name(name)
        self._fields.insert(0, (name, value))
        if self._index is not None:
            self._index.setdefault(key, []).insert(0, value)
        self._changed(key)

    def remove(self, name: str) -> None:
        key = canonical_name(name)
        self._fields = [(n, v) for n, v in self._fields if canonical_name(n) != key]
        self._index = None
        self._changed(key)

    def set(self, name: str, value: str) -> None:
        """Replace every line of this header by one, at the first one's position."""
        key = canonical_name(name)
        out: list[tuple[str, str]] = []
        placed = False
        for fname, fvalue in self._fields:
            if canonical_name(fname) == key:
                if not placed:
                    out.append((fname, value))
                    placed = True
            else:
                out.append((fname, fvalue))
        if not placed:
            out.append((name, value))
        self._fields = out
        self._index = None
        self._changed(key)

    def replace_first_value(self, name: str, value: str) -> None:
        """Replace the first element of a list header (the top Via), keeping the rest."""
        key = canonical_name(name)
        for i, (fname, line) in enumerate(self._fields):
            if canonical_name(fname) == key:
                items = split_list(line)
                items[0] = value
                self._fields[i] = (fname, ", ".join(items))
                self._index = None
                self._changed(key)
                return
        raise KeyError(name)

    def remove_first_value(self, name: str) -> None:
        """Remove the first element of a list header (the top Via of a response)."""
        key = canonical_name(name)
        for i, (fname, line) in enumerate(self._fields):
            if canonical_name(fname) == key:
                items = split_list(line)
                if len(items) > 1:
                    self._fields[i] = (fname, ", ".join(items[1:]))
                else:
                    del self._fields[i]
                self._index = None
                self._changed(key)
                return
        raise KeyError(name)


def _split_lines(headers: Headers, key: str) -> tuple[str, ...]:
    """Every element of a list header, across its lines."""
    out: list[str] = []
    for line in headers.get_lines(key):
        out.extend(split_list(line))
    return tuple(out)


def parse_params(text: str) -> tuple[Param, ...]:
    """``;name[=value]`` parameters (the leading ';' included), LWS allowed around '='."""
    text = text.strip(abnf.WSP)
    if not text:
        return ()
    if not text.startswith(";"):
        raise _bad(f"junk before parameters {text[:60]!r}")
    params: list[Param] = []
    for piece in split_top_level(text[1:], ";"):
        name, eq, value = piece.partition("=")
        name = name.strip(abnf.WSP)
        value = value.strip(abnf.WSP)
        if not abnf.is_token(name):
            raise _bad(f"bad parameter {piece.strip()[:60]!r}")
        if eq:
            # An empty value breaks the grammar, but real phones send ``tag=`` (Pingtel):
            # kept as an empty string, which every lookup treats as "no tag".
            if value.startswith('"'):
                if len(value) < 2 or not value.endswith('"'):
                    raise _bad(f"bad quoted parameter {name}")
            elif " " in value or "\t" in value:  # abnf.WSP
                raise _bad(f"whitespace in parameter {name}")
            params.append((name, value))
        else:
            params.append((name, None))
    return tuple(params)


def format_params(params: tuple[Param, ...]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def param_value(params: tuple[Param, ...], name: str) -> str | None:
    """A parameter's value ('' if present without value, None if absent)."""
    lname = name.lower()
    for key, value in params:
        if key.lower() == lname:
            return "" if value is None else value
    return None


# ---------------------------------------------------------------------------------------
# Via


@dataclass(frozen=True)
class Via:
    """One Via element: ``SIP/2.0/UDP host[:port];branch=...;rport;received=...``."""

    transport: str
    host: str
    port: int | None = None
    params: tuple[Param, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Via:
        head, *rest = split_top_level(text, ";")
        parts = head.split("/")
        if len(parts) != 3:
            raise _bad(f"bad Via {text[:60]!r}")
        proto = parts[0].strip(abnf.WSP)
        version = parts[1].strip(abnf.WSP)
        tail = parts[2].strip(abnf.WSP).split(None, 1)
        if proto.upper() != "SIP" or version != "2.0" or len(tail) != 2:
            raise _bad(f"bad Via {text[:60]!r}")
        transport, sent_by = tail[0], tail[1].strip(abnf.WSP)
        if not abnf.is_token(transport):
            raise _bad(f"bad Via transport {transport[:20]!r}")
        hp = abnf.split_hostport(_squeeze_hostport(sent_by))
        if hp is None:
            raise _bad(f"bad Via sent-by {sent_by[:60]!r}")
        params = parse_params(";" + ";".join(rest)) if rest else ()
        via = cls(transport.upper(), hp[0], hp[1], params)
        rport = via.param("rport")
        if rport and abnf.parse_port(rport) is None:
            raise _bad(f"bad Via rport {rport[:20]!r}")
        return via

    def param(self, name: str) -> str | None:
        return param_value(self.params, name)

    @property
    def branch(self) -> str | None:
        return self.param("branch") or None

    @property
    def is_rfc3261_branch(self) -> bool:
        """A branch with the RFC 3261 magic cookie and something after it (§8.1.1.7)."""
        branch = self.branch
        return branch is not None and branch.startswith("z9hG4bK") and len(branch) > 7

    @property
    def sent_by(self) -> tuple[str, int]:
        return self.host, self.port or (5061 if self.transport == "TLS" else 5060)

    def with_params(self, **values: str | None) -> Via:
        params = [p for p in self.params if p[0].lower() not in values]
        params.extend(values.items())
        return replace(self, params=tuple(params))

    def response_address(self) -> tuple[str, int]:
        """Where a response to this Via goes over UDP (RFC 3261 §18.2.2, RFC 3581 §4).

        ``maddr`` wins, with the sent-by port (rport applies only without maddr);
        otherwise ``received`` (brackets of an IPv6 value dropped) with ``rport``
        when it has a value, else the sent-by port.
        """
        maddr = self.param("maddr")
        if maddr:
            return maddr.strip("[]"), self.sent_by[1]
        host = (self.param("received") or "").strip("[]") or self.host
        port_text = self.param("rport")
        if port_text:
            return host, int(port_text)
        return host, self.sent_by[1]

    def __str__(self) -> str:
        host = abnf.format_host(self.host)
        sent_by = host if self.port is None else f"{host}:{self.port}"
        return f"SIP/2.0/{self.transport} {sent_by}{format_params(self.params)}"


def _squeeze_hostport(text: str) -> str:
    """Allow LWS around ':' in sent-by (``host : 5060``), as the grammar's HCOLON-free form
    is often violated by liberal senders; reject any other whitespace."""
    return ":".join(part.strip(abnf.WSP) for part in text.split(":")) if "[" not in text else text


# ---------------------------------------------------------------------------------------
# name-addr / addr-spec


@dataclass(frozen=True)
class NameAddr:
    """``[display-name] <uri> *(;param)`` or ``addr-spec *(;param)`` (From, To, Contact...)."""

    uri: Uri
    display: str | None = None
    params: tuple[Param, ...] = ()

    @classmethod
    def parse(cls, text: str, *, allow_star: bool = False) -> NameAddr:
        text = text.strip(abnf.WSP)
        if allow_star and text == "*":
            return cls(uri=SipUri(host="*"), display="*")
        lt = _find_unquoted(text, "<")
        if lt >= 0:
            display = text[:lt].strip(abnf.WSP)
            gt = text.find(">", lt)
            if gt < 0:
                raise _bad("unterminated <")
            uri = parse_uri(text[lt + 1 : gt])
            params = parse_params(text[gt + 1 :])
            if display:
                _check_display(display)
            return cls(uri=uri, display=display or None, params=params)
        if '"' in text:
            raise _bad(f"display name without <uri> {text[:60]!r}")
        # addr-spec form: parameters after the URI belong to the header (RFC 3261 §20).
        uri_text, semi, rest = text.partition(";")
        uri_text = uri_text.strip(abnf.WSP)
        if not uri_text or any(c in abnf.WSP for c in uri_text):
            raise _bad(f"bad addr-spec {text[:60]!r}")
        return cls(uri=parse_uri(uri_text), params=parse_params(semi + rest))

    def param(self, name: str) -> str | None:
        return param_value(self.params, name)

    @property
    def tag(self) -> str | None:
        return self.param("tag") or None

    @property
    def display_text(self) -> str | None:
        """The display name as a person would read it (quotes and escapes resolved)."""
        if self.display is None:
            return None
        return abnf.unquote(self.display) if self.display.startswith('"') else self.display

    def with_params(self, **values: str | None) -> NameAddr:
        params = [p for p in self.params if p[0].lower() not in values]
        params.extend(values.items())
        return replace(self, params=tuple(params))

    def __str__(self) -> str:
        if self.display == "*":
            return "*"
        prefix = f"{self.display} " if self.display else ""
        return f"{prefix}<{self.uri}>{format_params(self.params)}"


def _find_unquoted(text: str, target: str) -> int:
    """Index of the first ``target`` outside quoted strings, or -1; an unbalanced quote
    is left for the caller's own checks, which name the fault more precisely."""
    if '"' not in text:
        return text.find(target)
    try:
        return next((i for i, ch in _unquoted(text) if ch == target), -1)
    except RemoteSipError:
        return -1


def _check_display(display: str) -> None:
    if display.startswith('"'):
        if _quoted_end(display) != len(display):
            raise _bad("bad quoted display name")
        return
    for word in display.split():
        # RFC 3261 wants tokens; real phones send unquoted UTF-8 names (Jürgen): accepted
        # as long as nothing in them could end or confuse the header.
        if not abnf.is_token(word) and (word.isascii() or any(c in _SPECIALS for c in word)):
            raise _bad(f"bad display name {display[:60]!r}")


_SPECIALS = frozenset('"<>,;:\\@')


def _quoted_end(text: str) -> int:
    """Index just past the quoted-string that starts ``text``; -1 if it never closes."""
    escape = False
    for i in range(1, len(text)):
        ch = text[i]
        if escape:
            escape = False
        elif ch == "\\":
            escape = True
        elif ch == '"':
            return i + 1
    return -1


# ---------------------------------------------------------------------------------------
# CSeq

MAX_CSEQ = 2**31 - 1


@dataclass(frozen=True)
class CSeq:
    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        parts = text.split()
        if len(parts) != 2 or not abnf.DIGITS.fullmatch(parts[0]) or len(parts[0]) > 12:
            raise _bad(f"bad CSeq {text[:40]!r}")
        number = int(parts[0])
        if number > MAX_CSEQ:
            raise _bad("CSeq number too large")
        if not abnf.is_token(parts[1]):
            raise _bad(f"bad CSeq method {parts[1][:40]!r}")
        return cls(number, parts[1])

    def __str__(self) -> str:
        return f"{self.number} {self.method}"
