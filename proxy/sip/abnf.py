"""Character classes and small grammar pieces of RFC 3261 §25, next to the ABNF they implement.

Every regex here is anchored and free of nested quantifiers, so that no input can make
matching slower than linear in its length.
"""

from __future__ import annotations

import ipaddress
import re

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
TOKEN = re.compile(rf"[{TOKEN_CHARS}]+")

# word = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" /
#           "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}")
WORD_CHARS = TOKEN_CHARS + r'()<>:\\"/\[\]?{}'
CALL_ID = re.compile(rf"[{WORD_CHARS}]+(?:@[{WORD_CHARS}]+)?")

# LWS = [*WSP CRLF] 1*WSP; after unfolding only SP / HTAB remain.
WSP = " \t"

# SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT   (case-insensitive per §7.1)
SIP_VERSION = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)

# Status-Code = 3DIGIT (we also require 100..699)
STATUS_CODE = re.compile(r"[1-6][0-9][0-9]")

# URI scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )   (RFC 3986)
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")

# Characters that may appear (unescaped) somewhere in a URI.  Anything else — SP, CTL,
# '<', '>', '"', '\', '{', '}', '|', '^', non-ASCII — makes the URI malformed.
URI_CHARS = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/:@%\[\]#]*")

# escaped = "%" HEXDIG HEXDIG
BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")

# hostname / IPv4address / IPv6reference
HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-_]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9\-_]+)*\.?")
IPV4 = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
PORT = re.compile(r"[0-9]{1,5}")

DIGITS = re.compile(r"[0-9]+")


def is_token(text: str) -> bool:
    return TOKEN.fullmatch(text) is not None


def is_valid_host(host: str) -> bool:
    """A hostname, IPv4 address, or an IPv6 address given *without* its brackets."""
    if IPV4.fullmatch(host):
        return all(int(part) < 256 for part in host.split("."))
    if ":" in host:
        # IPv6address of RFC 3261 §25.1 (RFC 4291 text forms, IPv4-mapped included).
        # The stdlib check is exact and linear; a regex for it is easy to get wrong
        # (``[hex:.]*:[hex:.]*`` backtracks quadratically on a run of colons).
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return "%" not in host
    return HOSTNAME.fullmatch(host) is not None


def parse_port(text: str) -> int | None:
    """A port 1..65535, or None if ``text`` is not one."""
    if PORT.fullmatch(text) is None:
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


def split_hostport(text: str) -> tuple[str, int | None] | None:
    """``host[:port]`` → (host without brackets, port); None when malformed.

    An IPv6 address must be bracketed (RFC 5118 §4.2: ``sip:2001:db8::10`` is invalid).
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1 :]
        if ":" not in host or not is_valid_host(host):
            return None
    elif text.count(":") > 1:
        return _split_bare_ipv6(text)
    else:
        host, sep, port_text = text.partition(":")
        rest = sep + port_text
        if not is_valid_host(host):
            return None
    if not rest:
        return host, None
    if not rest.startswith(":"):
        return None
    port = parse_port(rest[1:])
    if port is None:
        return None
    return host, port


def _split_bare_ipv6(text: str) -> tuple[str, int | None] | None:
    """An IPv6 address written without brackets, accepted only where it is unambiguous.

    RFC 5118 §4.2 makes ``sip:2001:db8::10`` invalid, and with ``::`` there is no telling
    an address from an address and a port.  Real phones still send all eight groups
    unbracketed (``fe80:0:0:0:21a:a0ff:fe07:32e0:5060``): eight groups are an address,
    nine are an address and a port.
    """
    if "::" in text or "." in text:
        return None
    groups = text.split(":")
    if len(groups) not in (8, 9) or not all(_HEX_GROUP.fullmatch(g) for g in groups[:8]):
        return None
    host = ":".join(groups[:8])
    if len(groups) == 8:
        return host, None
    port = parse_port(groups[8])
    return None if port is None else (host, port)


_HEX_GROUP = re.compile(r"[0-9A-Fa-f]{1,4}")


def format_host(host: str) -> str:
    """The host as it appears in a URI or Via: IPv6 addresses get their brackets."""
    return f"[{host}]" if ":" in host else host


def unquote(quoted: str) -> str:
    """The content of a quoted-string, with quoted-pairs resolved."""
    inner = quoted[1:-1] if len(quoted) >= 2 and quoted[0] == quoted[-1] == '"' else quoted
    out: list[str] = []
    escape = False
    for ch in inner:
        if escape:
            out.append(ch)
            escape = False
        elif ch == "\\":
            escape = True
        else:
            out.append(ch)
    return "".join(out)


def quote(text: str) -> str:
    """``text`` as a quoted-string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
