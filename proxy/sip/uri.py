"""SIP and other URIs (RFC 3261 §19.1, §25.1).

Components are kept in their escaped wire form, so that a URI serialises exactly as it
arrived (``value%41`` stays ``value%41``, RFC 4475 §3.1.1.3); comparison helpers
unescape where the RFC says to.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from urllib.parse import unquote as _pct_unquote

from . import abnf
from .errors import RemoteSipError

Param = tuple[str, str | None]


def _bad(what: str) -> RemoteSipError:
    return RemoteSipError(400, f"Bad Request ({what})")


def pct_decode(text: str) -> str:
    """%HH escapes resolved once (never recursively, RFC 4475 §3.1.1.3)."""
    return _pct_unquote(text, errors="surrogateescape") if "%" in text else text


@dataclass(frozen=True)
class SipUri:
    """``sip:`` / ``sips:`` URI: user, password, host, port, parameters, headers."""

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: tuple[Param, ...] = ()
    headers: str | None = None
    scheme: str = "sip"

    @property
    def hostport(self) -> str:
        host = abnf.format_host(self.host)
        return host if self.port is None else f"{host}:{self.port}"

    def param(self, name: str) -> str | None:
        """Value of a URI parameter ('' for a parameter without value, None if absent)."""
        lname = name.lower()
        for key, value in self.params:
            if key.lower() == lname:
                return "" if value is None else value
        return None

    def has_param(self, name: str) -> bool:
        return self.param(name) is not None

    @property
    def transport(self) -> str:
        value = self.param("transport")
        if value:
            return value.upper()
        return "TLS" if self.scheme == "sips" else "UDP"

    def with_params(self, **values: str | None) -> SipUri:
        """A copy with the named parameters set (None value: flag parameter)."""
        params = [p for p in self.params if p[0].lower() not in values]
        params.extend(values.items())
        return replace(self, params=tuple(params))

    def without_params(self, *names: str) -> SipUri:
        lower = {n.lower() for n in names}
        return replace(self, params=tuple(p for p in self.params if p[0].lower() not in lower))

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out += [":", self.password]
            out.append("@")
        out.append(self.hostport)
        for key, value in self.params:
            out.append(f";{key}" if value is None else f";{key}={value}")
        if self.headers is not None:
            out += ["?", self.headers]
        return "".join(out)

    def matches(self, other: Uri) -> bool:
        """URI equality of RFC 3261 §19.1.4 (escapes resolved, case rules applied)."""
        if not isinstance(other, SipUri) or self.scheme != other.scheme:
            return False
        if _opt_decode(self.user) != _opt_decode(other.user):
            return False
        if _opt_decode(self.password) != _opt_decode(other.password):
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        mine = _decoded_params(self.params)
        theirs = _decoded_params(other.params)
        for key in ("user", "ttl", "method", "maddr", "transport"):
            if (key in mine) != (key in theirs):
                return False
        if any(theirs[k] != v for k, v in mine.items() if k in theirs):
            return False
        # "URI header components are never ignored": same set, in any order.
        return _decoded_headers(self.headers) == _decoded_headers(other.headers)


def _decoded_params(params: tuple[Param, ...]) -> dict[str, str]:
    return {pct_decode(k).lower(): pct_decode(v or "").lower() for k, v in params}


def _decoded_headers(headers: str | None) -> set[tuple[str, str]]:
    if not headers:
        return set()
    out: set[tuple[str, str]] = set()
    for item in headers.split("&"):
        name, _, value = item.partition("=")
        out.add((pct_decode(name).lower(), pct_decode(value).lower()))
    return out


def _opt_decode(text: str | None) -> str | None:
    return None if text is None else pct_decode(text)


@dataclass(frozen=True)
class AbsoluteUri:
    """Any other URI (``tel:``, ``urn:``, unknown schemes): kept opaque (RFC 4475 §3.3.2)."""

    scheme: str
    opaque: str = field(default="")

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"

    def matches(self, other: Uri) -> bool:
        return (
            isinstance(other, AbsoluteUri)
            and self.scheme == other.scheme
            and pct_decode(self.opaque) == pct_decode(other.opaque)
        )


Uri = SipUri | AbsoluteUri


_CACHED_URI_LENGTH = 256  # the URIs of real calls are far shorter


def parse_uri(text: str) -> Uri:
    """Parse a URI as found in a Request-URI or inside ``<>``; RemoteSipError(400) if bad.

    The same URIs come back in every message of a dialog and every call to one number
    (From, To, Contact, Request-URI), and a parsed URI is immutable: the latest ones are
    kept, a bounded number (an error is not kept).  Only short texts are kept: a sender
    of unique 60 KB Request-URIs must not pin 2,048 of them in memory."""
    if len(text) > _CACHED_URI_LENGTH:
        return _parse_uri(text)
    return _parse_cached(text)


def _parse_uri(text: str) -> Uri:
    if not text or abnf.URI_CHARS.fullmatch(text) is None:
        raise _bad(f"malformed URI {text[:80]!r}")
    if abnf.BAD_ESCAPE.search(text):
        raise _bad(f"bad escape in URI {text[:80]!r}")
    scheme, colon, rest = text.partition(":")
    if not colon or abnf.SCHEME.fullmatch(scheme) is None:
        raise _bad(f"URI without scheme {text[:80]!r}")
    lscheme = scheme.lower()
    if lscheme not in ("sip", "sips"):
        if not rest:
            raise _bad(f"empty URI {text[:80]!r}")
        return AbsoluteUri(lscheme, rest)
    return _parse_sip(lscheme, rest, text)


_parse_cached = lru_cache(maxsize=2048)(_parse_uri)


def _parse_sip(scheme: str, rest: str, text: str) -> SipUri:
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        if not userinfo:
            raise _bad(f"empty user in URI {text[:80]!r}")
        user, colon, pw = userinfo.partition(":")
        password = pw if colon else None
    headers: str | None = None
    rest, qmark, hdrs = rest.partition("?")
    if qmark:
        headers = hdrs
    hostport, *param_texts = rest.split(";")
    hp = abnf.split_hostport(hostport)
    if hp is None:
        raise _bad(f"bad host in URI {text[:80]!r}")
    params: list[Param] = []
    for ptext in param_texts:
        name, eq, value = ptext.partition("=")
        if not name or (eq and not value):
            raise _bad(f"bad URI parameter in {text[:80]!r}")
        params.append((name, value if eq else None))
    return SipUri(
        host=hp[0],
        port=hp[1],
        user=user,
        password=password,
        params=tuple(params),
        headers=headers,
        scheme=scheme,
    )
