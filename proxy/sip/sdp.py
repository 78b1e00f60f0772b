"""SDP: session descriptions (RFC 4566) and the offer/answer model (RFC 3264).

Sans-IO, like the rest of ``proxy.sip``: bytes in, dataclasses out, and back.

``SessionDescription.parse(data)`` reads a body; it returns a description or raises
``RemoteSipError(400, "Bad Request: ...")``, nothing else, whatever the bytes.  It accepts
CRLF or bare LF line ends, trailing whitespace, blank lines and a missing final newline.
Lines and attributes it does not model are kept verbatim and in order, so a description
of another party can be passed on unchanged apart from what we rewrite.
``serialize()`` writes CRLF line ends, the lines in RFC 4566 order.

Offer/answer for G.711 audio (PCMU, PCMA) with telephone-event (RFC 4733):

* ``answer_offer(offer, ...)`` answers a peer's offer (RFC 3264 section 6); an offer with
  no acceptable audio stream raises ``RemoteSipError(488, "Not Acceptable Here")``;
* ``create_offer(...)`` builds our own offer;
* ``negotiated(offer, answer, local_role=...)`` tells what a finished exchange agreed
  for the audio stream: codec, payload types, telephone-event, ptime, directions and
  the peer's RTP address;
* ``is_hold(description)`` tells whether a description puts its audio on hold;
* ``media_address(description, ...)`` checks that the audio stream's ``c=`` address is
  one we can send RTP to, and says its family.

Addresses: ``c=`` must be an IPv4 or IPv6 literal of its address type.  A host name
(RFC 4566 allows one) is refused with 488 and a ``Warning: 301``: no DNS is done on
the call path.  So are invalid literals, multicast and broadcast addresses, IPv4-mapped
IPv6 addresses, and ``0.0.0.0``/``::`` except as a hold in a re-offer.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TypeAlias

from .errors import LocalSipError, RemoteSipError
from .sdes import SrtpKeys

__all__ = [
    "RELAYED_PROFILES",
    "SUPPORTED_CODECS",
    "Attribute",
    "Connection",
    "Direction",
    "MediaAddress",
    "MediaDescription",
    "NegotiatedAudio",
    "Origin",
    "PortChoice",
    "Role",
    "RtpMap",
    "SdpLine",
    "SessionDescription",
    "Timing",
    "answer_offer",
    "create_offer",
    "holds_by_address",
    "is_hold",
    "media_address",
    "negotiated",
    "party_direction",
    "recordable_codecs",
    "unusable_address",
]

CRLF = "\r\n"

#: Codecs we can relay and record, with their static RTP payload type (RFC 3551).
SUPPORTED_CODECS: dict[str, int] = {"PCMU": 0, "PCMA": 8}
G711_CLOCK_RATE = 8000
TELEPHONE_EVENT = "telephone-event"
DEFAULT_TELEPHONE_EVENTS = "0-16"

# Attributes that carry the sender's own transport addresses: never copied into an
# answer of ours (RFC 3605 rtcp, RFC 8445/8839 ICE).
_ADDRESS_ATTRIBUTES = frozenset(
    {
        "rtcp",
        "candidate",
        "remote-candidates",
        "ice-ufrag",
        "ice-pwd",
        "ice-options",
        "ice-lite",
        "ice-mismatch",
    }
)

# Grammar pieces (RFC 4566 section 9), with the usual real-world slack.
_PORT = re.compile(r"(\d{1,5})(?:/(\d{1,5}))?")
_PAYLOAD_TYPE = re.compile(r"\d{1,3}")
_DECIMAL = re.compile(r"\d{1,30}")
_RTPMAP = re.compile(r"(\d{1,3})\s+([^\s/]+)/(\d{1,9})(?:/(\d{1,3}))?")
_FMTP = re.compile(r"(\S+)(?:\s+(.*))?")
_PACKET_TIME = re.compile(r"(\d{1,6})(?:\.\d{0,6})?")
# An IP4/IP6 connection address: a literal or a host name, optional IPv6 brackets,
# optional multicast /ttl and /count.  Anything else (quotes, comments...) is garbage.
_CONNECTION_ADDRESS = re.compile(r"\[?[A-Za-z0-9:.%_\-]+\]?(?:/\d{1,5}){0,2}")

_HOLD_ADDRESSES = frozenset({"0.0.0.0", "::"})


def _bad(what: str) -> RemoteSipError:
    # The reason phrase never quotes the peer's bytes: it goes into a status line.
    return RemoteSipError(400, f"Bad Request: {what}")


class Direction(enum.Enum):
    """A stream's direction attribute (RFC 4566 section 6, RFC 3264 section 5.1)."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def from_flags(cls, *, sends: bool, receives: bool) -> Direction:
        if sends:
            return cls.SENDRECV if receives else cls.SENDONLY
        return cls.RECVONLY if receives else cls.INACTIVE

    def answered(self, local: Direction | None = None) -> Direction:
        """The direction to answer this offered one with (RFC 3264 section 6.1).

        ``local`` is what we are willing to do ourselves (default sendrecv); the answer
        sends only where the offerer receives and receives only where the offerer sends.
        """
        local = local or Direction.SENDRECV
        return Direction.from_flags(
            sends=self.receives and local.sends,
            receives=self.sends and local.receives,
        )


_DIRECTIONS = {d.value: d for d in Direction}


class Role(enum.Enum):
    """Our side in an offer/answer exchange."""

    OFFERER = "offerer"
    ANSWERER = "answerer"


@dataclass(frozen=True)
class SdpLine:
    """A line we keep without modelling it (``i=``, ``b=``, ``k=``, unknown types...)."""

    kind: str
    value: str

    def to_text(self) -> str:
        return f"{self.kind}={self.value}"


@dataclass(frozen=True)
class Attribute:
    """``a=name`` (``value`` None) or ``a=name:value``, kept verbatim."""

    name: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> Attribute:
        name, colon, value = text.partition(":")
        if not name:
            raise _bad("bad a= line")
        return cls(name, value if colon else None)

    @property
    def key(self) -> str:
        """The attribute name, lower-cased for matching (peers vary the case)."""
        return self.name.lower()

    def to_text(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True)
class Origin:
    """The ``o=`` line."""

    username: str
    session_id: str
    session_version: int
    nettype: str
    addrtype: str
    address: str

    @classmethod
    def parse(cls, text: str) -> Origin:
        tokens = text.split()
        # A username with spaces is against the grammar but seen; the other five
        # fields are fixed, so take them from the end.
        if len(tokens) < 6 or not _DECIMAL.fullmatch(tokens[-4]):
            raise _bad("bad o= line")
        session_id, version, nettype, addrtype, address = tokens[-5:]
        return cls(" ".join(tokens[:-5]), session_id, int(version), nettype, addrtype, address)

    def to_text(self) -> str:
        return " ".join(
            (
                self.username,
                self.session_id,
                str(self.session_version),
                self.nettype,
                self.addrtype,
                self.address,
            )
        )


@dataclass(frozen=True)
class Connection:
    """A ``c=`` line.  ``address`` is as written (it may carry a multicast ``/ttl``)."""

    nettype: str
    addrtype: str
    address: str

    @classmethod
    def parse(cls, text: str) -> Connection:
        tokens = text.split()
        # Tokens after the address are against the grammar but seen in the wild
        # (``c=IN IP4 192.0.2.1 UNHOLD UNHOLD``); they are ignored.
        if len(tokens) < 3:
            raise _bad("bad c= line")
        nettype, addrtype, address = tokens[:3]
        if addrtype.upper() in ("IP4", "IP6") and not _CONNECTION_ADDRESS.fullmatch(address):
            raise _bad("bad address in c= line")
        return cls(nettype, addrtype, address)

    @classmethod
    def for_address(cls, address: str) -> Connection:
        """``IN IP4`` or ``IN IP6`` for one of our own addresses (brackets removed)."""
        host = _strip_brackets(address)
        return cls("IN", _addrtype(host), host)

    @property
    def host(self) -> str:
        """The address without multicast suffixes or IPv6 brackets."""
        return _strip_brackets(self.address.partition("/")[0])

    @property
    def is_hold_address(self) -> bool:
        """``0.0.0.0`` (RFC 2543 hold) or its IPv6 counterpart ``::``."""
        return self.host in _HOLD_ADDRESSES

    def to_text(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True)
class Timing:
    """A ``t=`` line with the ``r=`` lines that follow it (kept as text)."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Timing:
        tokens = text.split()
        if len(tokens) != 2 or not all(_DECIMAL.fullmatch(t) for t in tokens):
            raise _bad("bad t= line")
        return cls(int(tokens[0]), int(tokens[1]))

    def to_lines(self) -> list[str]:
        return [f"t={self.start} {self.stop}", *(f"r={r}" for r in self.repeats)]


@dataclass(frozen=True)
class RtpMap:
    """An ``a=rtpmap`` value, or the static mapping of an RFC 3551 payload type.

    ``encoding`` is as the peer wrote it; compare with ``name``, upper-cased
    (encoding names are case-insensitive: X-Lite writes ``pcmu``).
    """

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> RtpMap:
        rtpmap = cls.read(text)
        if rtpmap is None:
            raise _bad("bad a=rtpmap")
        return rtpmap

    @classmethod
    def read(cls, text: str | None) -> RtpMap | None:
        """Like ``parse``, but None for a value that is not a valid mapping."""
        match = _RTPMAP.fullmatch((text or "").strip())
        if match is None:
            return None
        payload_type, encoding, clock_rate, channels = match.groups()
        if int(payload_type) > 127 or int(clock_rate) == 0:
            return None
        return cls(
            int(payload_type),
            encoding,
            int(clock_rate),
            None if channels is None else int(channels),
        )

    @property
    def name(self) -> str:
        return self.encoding.upper()

    def to_text(self) -> str:
        text = f"{self.payload_type} {self.encoding}/{self.clock_rate}"
        return text if self.channels is None else f"{text}/{self.channels}"


# Static audio payload types of RFC 3551 table 4 (known without an a=rtpmap).
_STATIC_RTPMAPS: dict[int, RtpMap] = {
    pt: RtpMap(pt, name, rate, channels)
    for pt, name, rate, channels in (
        (0, "PCMU", 8000, None),
        (3, "GSM", 8000, None),
        (4, "G723", 8000, None),
        (5, "DVI4", 8000, None),
        (6, "DVI4", 16000, None),
        (7, "LPC", 8000, None),
        (8, "PCMA", 8000, None),
        (9, "G722", 8000, None),
        (10, "L16", 44100, 2),
        (11, "L16", 44100, None),
        (12, "QCELP", 8000, None),
        (13, "CN", 8000, None),
        (14, "MPA", 90000, None),
        (15, "G728", 8000, None),
        (16, "DVI4", 11025, None),
        (17, "DVI4", 22050, None),
        (18, "G729", 8000, None),
    )
}


# Attribute values we interpret are read leniently: one we cannot read is kept as it
# is but ignored (RFC 4566 section 5.13), since a whole call should not fail over,
# say, ``a=rtpmap:31 LPC`` (no clock rate) on a video stream (RFC 4475 samples).


def _fmtp_parts(text: str | None) -> tuple[str, str] | None:
    match = _FMTP.fullmatch((text or "").strip())
    if match is None:
        return None
    return match.group(1), match.group(2) or ""


def _packet_time(text: str | None) -> int | None:
    match = _PACKET_TIME.fullmatch((text or "").strip())
    if match is None or int(match.group(1)) == 0:
        return None
    return int(match.group(1))


def _direction_of(attributes: Sequence[Attribute]) -> Direction | None:
    found = None
    for attribute in attributes:
        found = _DIRECTIONS.get(attribute.key, found)
    return found


@dataclass(frozen=True)
class MediaDescription:
    """One media section: the ``m=`` line and what follows it up to the next one."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    connection: Connection | None = None
    attributes: tuple[Attribute, ...] = ()
    other_lines: tuple[SdpLine, ...] = ()

    @property
    def is_rtp(self) -> bool:
        """RTP transport (``RTP/AVP``, ``RTP/SAVP``, ``UDP/TLS/RTP/SAVPF``...)."""
        return "RTP/" in self.proto.upper()

    @property
    def is_audio(self) -> bool:
        return self.media.lower() == "audio"

    @property
    def rejected(self) -> bool:
        """Port 0: the stream is declined or disabled (RFC 3264 section 5.1)."""
        return self.port == 0

    @property
    def direction(self) -> Direction | None:
        """The section's own direction attribute; see ``SessionDescription`` for
        the effective one (a session-level attribute is inherited)."""
        return _direction_of(self.attributes)

    @property
    def ptime(self) -> int | None:
        return self._packet_time("ptime")

    @property
    def maxptime(self) -> int | None:
        return self._packet_time("maxptime")

    def rtpmap(self, fmt: str) -> RtpMap | None:
        """The mapping of one format: its ``a=rtpmap``, else the RFC 3551 static one."""
        if not self.is_rtp or not _PAYLOAD_TYPE.fullmatch(fmt):
            return None
        payload_type = int(fmt)
        return self._rtpmaps.get(payload_type) or _STATIC_RTPMAPS.get(payload_type)

    @cached_property
    def _rtpmaps(self) -> dict[int, RtpMap]:
        """Each payload type's first readable ``a=rtpmap``: read once per section, not
        once per format looked up (offer/answer looks up every offered format)."""
        found: dict[int, RtpMap] = {}
        for attribute in self.attributes:
            if attribute.key == "rtpmap":
                rtpmap = RtpMap.read(attribute.value)
                if rtpmap is not None:
                    found.setdefault(rtpmap.payload_type, rtpmap)
        return found

    def fmtp(self, fmt: str) -> str | None:
        """The parameters of ``a=fmtp:<fmt>``, or None."""
        for attribute in self.attributes:
            if attribute.key == "fmtp":
                parts = _fmtp_parts(attribute.value)
                if parts is not None and parts[0] == fmt:
                    return parts[1]
        return None

    def find_format(self, encoding: str, clock_rate: int) -> str | None:
        """The first offered format with this encoding (any case) and clock rate."""
        for fmt in self.formats:
            rtpmap = self.rtpmap(fmt)
            if (
                rtpmap is not None
                and rtpmap.name == encoding.upper()
                and rtpmap.clock_rate == clock_rate
                and rtpmap.channels in (None, 1)
            ):
                return fmt
        return None

    def to_lines(self) -> list[str]:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        lines = ["m=" + " ".join((self.media, port, self.proto, *self.formats))]
        others = sorted(self.other_lines, key=_media_rank)
        lines += [line.to_text() for line in others if _media_rank(line) == 0]
        if self.connection is not None:
            lines.append("c=" + self.connection.to_text())
        lines += [line.to_text() for line in others if _media_rank(line) > 0]
        lines += ["a=" + attribute.to_text() for attribute in self.attributes]
        return lines

    def _packet_time(self, name: str) -> int | None:
        for attribute in self.attributes:
            if attribute.key == name:
                value = _packet_time(attribute.value)
                if value is not None:
                    return value
        return None


# Where unmodelled lines go (RFC 4566 section 5 order): session i u e p, [c], b,
# [t r], z k, then unknown types; media i, [c], extra c, b, k, unknown.
_SESSION_RANKS = {"i": 0, "u": 1, "e": 2, "p": 3, "c": 4, "b": 4, "z": 5, "k": 6}
_MEDIA_RANKS = {"i": 0, "c": 1, "b": 2, "k": 3}


def _session_rank(line: SdpLine) -> int:
    return _SESSION_RANKS.get(line.kind, 7)


def _media_rank(line: SdpLine) -> int:
    return _MEDIA_RANKS.get(line.kind, 4)


@dataclass(frozen=True)
class SessionDescription:
    """A whole SDP body."""

    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    times: tuple[Timing, ...] = (Timing(),)
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()
    other_lines: tuple[SdpLine, ...] = ()

    @classmethod
    def parse(cls, data: bytes) -> SessionDescription:
        """Parse a body; raises ``RemoteSipError`` (400) and nothing else."""
        return _Parser().parse(data)

    @property
    def direction(self) -> Direction | None:
        """The session-level direction attribute, if any."""
        return _direction_of(self.attributes)

    def effective_direction(self, media: MediaDescription) -> Direction:
        """The section's direction, else the session's, else sendrecv."""
        return media.direction or self.direction or Direction.SENDRECV

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """The section's ``c=``, else the session's."""
        return media.connection or self.connection

    def first_audio_index(self) -> int | None:
        """Index of the first audio section with a non-zero port."""
        for index, media in enumerate(self.media):
            if media.is_audio and not media.rejected:
                return index
        return None

    def serialize(self) -> bytes:
        others = sorted(self.other_lines, key=_session_rank)
        lines = ["v=0", "o=" + self.origin.to_text(), "s=" + self.session_name]
        lines += [line.to_text() for line in others if _session_rank(line) < 4]
        if self.connection is not None:
            lines.append("c=" + self.connection.to_text())
        lines += [line.to_text() for line in others if _session_rank(line) == 4]
        for timing in self.times:
            lines += timing.to_lines()
        lines += [line.to_text() for line in others if _session_rank(line) > 4]
        lines += ["a=" + attribute.to_text() for attribute in self.attributes]
        for media in self.media:
            lines += media.to_lines()
        return (CRLF.join(lines) + CRLF).encode("utf-8", "surrogateescape")


def _parse_media_line(text: str) -> MediaDescription:
    """A section holding only what the ``m=`` line says."""
    tokens = text.split()
    if len(tokens) < 3:
        raise _bad("bad m= line")
    media, port_text, proto, *formats = tokens
    match = _PORT.fullmatch(port_text)
    if match is None:
        raise _bad("bad port in m= line")
    port, count = int(match.group(1)), match.group(2)
    if port > 65535 or (count is not None and int(count) == 0):
        raise _bad("bad port in m= line")
    section = MediaDescription(
        media=media,
        port=port,
        proto=proto,
        formats=tuple(formats),
        port_count=None if count is None else int(count),
    )
    if section.is_rtp and not all(_PAYLOAD_TYPE.fullmatch(f) and int(f) <= 127 for f in formats):
        raise _bad("bad payload type in m= line")
    return section


@dataclass
class _MediaBuilder:
    section: MediaDescription
    connection: Connection | None = None
    attributes: list[Attribute] = field(default_factory=list)
    other_lines: list[SdpLine] = field(default_factory=list)

    def build(self) -> MediaDescription:
        # what the m= line said; built directly (not replace()d), by keyword, so a
        # field added to MediaDescription cannot take another's value by position
        section = self.section
        return MediaDescription(
            media=section.media,
            port=section.port,
            proto=section.proto,
            formats=section.formats,
            port_count=section.port_count,
            connection=self.connection,
            attributes=tuple(self.attributes),
            other_lines=tuple(sorted(self.other_lines, key=_media_rank)),
        )


@dataclass
class _Parser:
    """One pass over the lines; session-level state until the first ``m=``."""

    origin: Origin | None = None
    session_name: str | None = None
    connection: Connection | None = None
    times: list[Timing] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    other_lines: list[SdpLine] = field(default_factory=list)
    media: list[_MediaBuilder] = field(default_factory=list)

    def parse(self, data: bytes) -> SessionDescription:
        # SDP text is UTF-8, but some peers send Latin-1 in s= or i=; surrogateescape
        # keeps such bytes as they were, for serialize() to write back unchanged.
        text = data.decode("utf-8", "surrogateescape")
        lines = [line.rstrip() for line in text.split("\n")]
        lines = [line for line in lines if line]
        if not lines or not lines[0].startswith("v="):
            raise _bad("missing v= line")
        if lines[0][2:].strip() != "0":
            raise _bad("unsupported SDP version")
        for line in lines[1:]:
            if len(line) < 2 or line[1] != "=" or not "a" <= line[0] <= "z":
                raise _bad("malformed SDP line")
            kind, value = line[0], line[2:]
            if kind == "m":
                self.media.append(_MediaBuilder(_parse_media_line(value)))
            elif self.media:
                self._media_line(self.media[-1], kind, value)
            else:
                self._session_line(kind, value)
        if self.origin is None:
            raise _bad("missing o= line")
        if self.connection is None and any(
            builder.connection is None and builder.section.port != 0 for builder in self.media
        ):
            raise _bad("missing c= line")
        return SessionDescription(
            origin=self.origin,
            session_name="-" if self.session_name is None else self.session_name,
            connection=self.connection,
            times=tuple(self.times),
            attributes=tuple(self.attributes),
            media=tuple(builder.build() for builder in self.media),
            other_lines=tuple(sorted(self.other_lines, key=_session_rank)),
        )

    def _session_line(self, kind: str, value: str) -> None:
        if kind == "v":
            raise _bad("duplicate v= line")
        if kind == "o":
            if self.origin is not None:
                raise _bad("duplicate o= line")
            self.origin = Origin.parse(value)
        elif kind == "s":
            if self.session_name is not None:
                raise _bad("duplicate s= line")
            self.session_name = value
        elif kind == "c":
            if self.connection is not None:
                raise _bad("duplicate c= line")
            self.connection = Connection.parse(value)
        elif kind == "t":
            self.times.append(Timing.parse(value))
        elif kind == "r":
            if not self.times:
                raise _bad("r= line without t= line")
            last = self.times[-1]
            self.times[-1] = replace(last, repeats=(*last.repeats, value))
        elif kind == "a":
            self.attributes.append(Attribute.parse(value))
        else:
            self.other_lines.append(SdpLine(kind, value))

    @staticmethod
    def _media_line(builder: _MediaBuilder, kind: str, value: str) -> None:
        if kind in "vostr":
            raise _bad(f"{kind}= line inside a media section")
        if kind == "a":
            builder.attributes.append(Attribute.parse(value))
        elif kind == "c" and builder.connection is None:
            builder.connection = Connection.parse(value)
        else:
            builder.other_lines.append(SdpLine(kind, value))


# --- Offer/answer --------------------------------------------------------------------

#: Our port for each m= line: a sequence with one entry per m= line (None or 0 to
#: decline the stream), or a function of (index, offered section) called only for the
#: streams we would accept, so that ports need only be taken for those.
PortChoice: TypeAlias = Sequence[int | None] | Callable[[int, MediaDescription], int | None]


def _choose_port(ports: PortChoice, index: int, media: MediaDescription) -> int | None:
    port = ports(index, media) if callable(ports) else ports[index]
    if port is None or port == 0:
        return None
    if not 0 < port <= 65535:
        raise LocalSipError(f"port {port} out of range")
    return port


def _check_ports(ports: PortChoice, description: SessionDescription) -> None:
    if not callable(ports) and len(ports) != len(description.media):
        raise LocalSipError(f"{len(ports)} ports given for {len(description.media)} m= lines")


def _check_codecs(codecs: Sequence[str]) -> tuple[str, ...]:
    names = tuple(codec.upper() for codec in codecs)
    unknown = [name for name in names if name not in SUPPORTED_CODECS]
    if unknown or not names:
        raise LocalSipError(f"codecs must be some of {sorted(SUPPORTED_CODECS)}: {codecs!r}")
    return names


def _strip_brackets(address: str) -> str:
    return address[1:-1] if address.startswith("[") and address.endswith("]") else address


def _addrtype(address: str) -> str:
    try:
        return "IP6" if ipaddress.ip_address(address).version == 6 else "IP4"
    except ValueError:  # a host name
        return "IP6" if ":" in address else "IP4"


def _our_origin(username: str, session_id: int, session_version: int, address: str) -> Origin:
    connection = Connection.for_address(address)
    return Origin(
        username, str(session_id), session_version, "IN", connection.addrtype, connection.host
    )


def _telephone_event_format(media: MediaDescription, clock_rate: int) -> str | None:
    return media.find_format(TELEPHONE_EVENT, clock_rate)


def _declined(offered: MediaDescription) -> MediaDescription:
    return MediaDescription(offered.media, 0, offered.proto, offered.formats)


def _without_address_attributes(attributes: Sequence[Attribute]) -> tuple[Attribute, ...]:
    return tuple(a for a in attributes if a.key not in _ADDRESS_ATTRIBUTES)


def _answer_audio(
    offered: MediaDescription,
    offered_direction: Direction,
    codecs: tuple[str, ...],
    telephone_event: bool,
    local_direction: Direction,
    prefer_codec: str | None = None,
) -> MediaDescription | None:
    """The answer to one offered audio stream, port still 0; None to decline it."""
    if not _relayed_audio(offered):
        return None
    usable: list[tuple[str, RtpMap]] = []
    for fmt in offered.formats:  # the offerer's preference order
        rtpmap = offered.rtpmap(fmt)
        if (
            rtpmap is not None
            and rtpmap.name in codecs
            and rtpmap.clock_rate == G711_CLOCK_RATE
            and rtpmap.channels in (None, 1)
        ):
            usable.append((fmt, rtpmap))
    if not usable:
        return None
    preferred = [u for u in usable if u[1].name == prefer_codec]
    fmt, rtpmap = (preferred or usable)[0]
    formats = [fmt]
    attributes = [Attribute("rtpmap", f"{fmt} {rtpmap.name}/{rtpmap.clock_rate}")]
    event_fmt = _telephone_event_format(offered, rtpmap.clock_rate) if telephone_event else None
    if event_fmt is not None:
        formats.append(event_fmt)
        attributes.append(Attribute("rtpmap", f"{event_fmt} {TELEPHONE_EVENT}/{rtpmap.clock_rate}"))
        events = offered.fmtp(event_fmt)
        if events is not None:
            attributes.append(Attribute("fmtp", f"{event_fmt} {events}".rstrip()))
    if offered.ptime is not None:
        attributes.append(Attribute("ptime", str(offered.ptime)))
    attributes.append(Attribute(offered_direction.answered(local_direction).value))
    return MediaDescription("audio", 0, offered.proto, tuple(formats), attributes=tuple(attributes))


def _relay_answer(
    offered: MediaDescription, offered_direction: Direction, local_direction: Direction
) -> MediaDescription:
    """Accept a stream we do not interpret by mirroring the offer (port still 0)."""
    kept = [a for a in _without_address_attributes(offered.attributes) if a.key not in _DIRECTIONS]
    direction = Attribute(offered_direction.answered(local_direction).value)
    return MediaDescription(
        offered.media, 0, offered.proto, offered.formats, attributes=(*kept, direction)
    )


def answer_offer(
    offer: SessionDescription,
    *,
    local_address: str,
    ports: PortChoice,
    session_id: int,
    session_version: int,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    telephone_event: bool = True,
    direction: Direction = Direction.SENDRECV,
    relay_other_media: bool = False,
    username: str = "recproxy",
    session_name: str = "recproxy",
    prefer_codec: str | None = None,
) -> SessionDescription:
    """Our answer to a peer's offer (RFC 3264 section 6).

    One answer m= line per offered one, in the same order.  Each audio stream over
    RTP/AVP or RTP/SAVP (the profile kept; ``a=crypto`` is never copied: the caller
    adds its own keys, see ``proxy.calls.srtp_policy``) gets the first codec of the
    offer (in the offerer's order) that is among ``codecs``, plus the offered
    telephone-event of the same clock rate (its payload type and fmtp kept) when
    ``telephone_event``, plus the offered ptime; its direction
    answers the offered one (sendonly -> recvonly, ...), limited by ``direction``.
    Other streams (video, T.38 image...) are declined with port 0, unless
    ``relay_other_media``, when they are accepted with the offered formats and
    attributes.  A stream whose port choice is None is declined too.  ``prefer_codec``
    (the codec a call already uses) is taken over the offerer's order when offered, so
    that a re-offer does not switch codecs needlessly (RFC 3264 section 6.1 lets the
    answerer choose among the offered formats).

    Raises ``RemoteSipError(488)`` if no audio stream is accepted.
    """
    names = _check_codecs(codecs)
    _check_ports(ports, offer)
    answered: list[MediaDescription] = []
    for index, offered in enumerate(offer.media):
        offered_direction = offer.effective_direction(offered)
        answer: MediaDescription | None = None
        if offered.is_audio:
            answer = _answer_audio(
                offered, offered_direction, names, telephone_event, direction, prefer_codec
            )
        elif relay_other_media and not offered.rejected:
            answer = _relay_answer(offered, offered_direction, direction)
        port = None if answer is None else _choose_port(ports, index, offered)
        if answer is None or port is None:
            answered.append(_declined(offered))
        else:
            answered.append(replace(answer, port=port))
    if not any(m.is_audio and not m.rejected for m in answered):
        raise RemoteSipError(488, "Not Acceptable Here")
    return SessionDescription(
        origin=_our_origin(username, session_id, session_version, local_address),
        session_name=session_name,
        connection=Connection.for_address(local_address),
        times=offer.times or (Timing(),),  # RFC 3264 section 6: t= as in the offer
        media=tuple(answered),
    )


def create_offer(
    local_address: str,
    port: int,
    *,
    session_id: int,
    session_version: int,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    telephone_event: int | None = 101,
    ptime: int | None = 20,
    direction: Direction = Direction.SENDRECV,
    username: str = "recproxy",
    session_name: str = "recproxy",
) -> SessionDescription:
    """Our offer of one audio stream: ``codecs`` in our order (static payload types),
    telephone-event 0-16 on the dynamic payload type ``telephone_event`` (None: none)."""
    names = _check_codecs(codecs)
    if not 0 < port <= 65535:
        raise LocalSipError(f"port {port} out of range")
    formats = [str(SUPPORTED_CODECS[name]) for name in names]
    attributes = [
        Attribute("rtpmap", f"{SUPPORTED_CODECS[name]} {name}/{G711_CLOCK_RATE}") for name in names
    ]
    if telephone_event is not None:
        if not 96 <= telephone_event <= 127:
            raise LocalSipError("telephone-event needs a dynamic payload type (96-127)")
        formats.append(str(telephone_event))
        attributes += [
            Attribute("rtpmap", f"{telephone_event} {TELEPHONE_EVENT}/{G711_CLOCK_RATE}"),
            Attribute("fmtp", f"{telephone_event} {DEFAULT_TELEPHONE_EVENTS}"),
        ]
    if ptime is not None:
        attributes.append(Attribute("ptime", str(ptime)))
    attributes.append(Attribute(direction.value))
    audio = MediaDescription("audio", port, "RTP/AVP", tuple(formats), attributes=tuple(attributes))
    return SessionDescription(
        origin=_our_origin(username, session_id, session_version, local_address),
        session_name=session_name,
        connection=Connection.for_address(local_address),
        media=(audio,),
    )


@dataclass(frozen=True)
class NegotiatedAudio:
    """What an offer/answer exchange agreed for the audio stream, from our side.

    Payload type numbers are per direction (RFC 3264 section 6.1): we send with the
    numbers of the peer's description and receive with those of ours; usually equal.
    """

    media_index: int
    encoding: str  # "PCMU" or "PCMA"
    clock_rate: int
    send_payload_type: int
    receive_payload_type: int
    send_telephone_event: int | None  # None unless both sides listed telephone-event
    receive_telephone_event: int | None
    ptime: int | None  # the peer's a=ptime (what it wants to receive), if any
    remote_address: str  # where to send RTP
    remote_port: int
    direction: Direction  # ours, as our description says
    remote_direction: Direction  # the peer's, as its description says
    remote_hold: bool  # the peer's description holds (see is_hold)
    srtp: SrtpKeys | None = None  # the stream's SDES keys, set by the leg's SRTP policy


def negotiated(
    offer: SessionDescription,
    answer: SessionDescription,
    *,
    local_role: Role,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
) -> NegotiatedAudio:
    """The first audio stream that both sides accepted with a common G.711 codec.

    The codec is the first of the answer's formats that the offer has too.  Raises
    ``RemoteSipError`` 400 if the m= lines do not pair up or the peer gave no address,
    488 if no audio stream was agreed.
    """
    names = _check_codecs(codecs)
    if len(offer.media) != len(answer.media):
        raise _bad("answer has a different number of m= lines")
    local, remote = (offer, answer) if local_role is Role.OFFERER else (answer, offer)
    for index, (offered, answered) in enumerate(zip(offer.media, answer.media, strict=True)):
        if not (_relayed_audio(offered) and _relayed_audio(answered)):
            continue
        for fmt in answered.formats:
            rtpmap = answered.rtpmap(fmt)
            if rtpmap is None or rtpmap.name not in names:
                continue
            offered_fmt = offered.find_format(rtpmap.name, G711_CLOCK_RATE)
            answered_fmt = answered.find_format(rtpmap.name, G711_CLOCK_RATE)
            if offered_fmt is None or answered_fmt is None:
                continue
            formats = (offered_fmt, answered_fmt)
            if local_role is Role.ANSWERER:
                formats = (answered_fmt, offered_fmt)
            return _agreed(index, local, remote, rtpmap.name, *formats)
    raise RemoteSipError(488, "Not Acceptable Here")


#: The RTP profiles we relay: plain, and SRTP keyed by SDES (``proxy.sip.sdes``).  Not the
#: feedback profiles (``RTP/SAVPF``) nor DTLS-SRTP (``UDP/TLS/RTP/SAVP``).
RELAYED_PROFILES = frozenset({"RTP/AVP", "RTP/SAVP"})


def _relayed_audio(media: MediaDescription) -> bool:
    """An active audio stream over RTP or SRTP (whether its keys suit us is decided
    above, by the leg's SRTP policy)."""
    return media.is_audio and not media.rejected and media.proto.upper() in RELAYED_PROFILES


def _agreed(
    index: int,
    local: SessionDescription,
    remote: SessionDescription,
    encoding: str,
    receive_pt: str,
    send_pt: str,
) -> NegotiatedAudio:
    ours, theirs = local.media[index], remote.media[index]
    send_event = _telephone_event_format(theirs, G711_CLOCK_RATE)
    receive_event = _telephone_event_format(ours, G711_CLOCK_RATE)
    if send_event is None or receive_event is None:
        send_event = receive_event = None
    connection = remote.connection_for(theirs)
    if connection is None:
        raise _bad("no c= line for the audio stream")
    return NegotiatedAudio(
        media_index=index,
        encoding=encoding,
        clock_rate=G711_CLOCK_RATE,
        send_payload_type=int(send_pt),
        receive_payload_type=int(receive_pt),
        send_telephone_event=None if send_event is None else int(send_event),
        receive_telephone_event=None if receive_event is None else int(receive_event),
        ptime=theirs.ptime,
        remote_address=connection.host,
        remote_port=theirs.port,
        direction=local.effective_direction(ours),
        remote_direction=remote.effective_direction(theirs),
        remote_hold=is_hold(remote, index),
    )


def is_hold(description: SessionDescription, media_index: int | None = None) -> bool:
    """Whether the description puts an audio stream on hold: direction sendonly or
    inactive (RFC 3264 section 8.4), or connection address 0.0.0.0 (RFC 2543 style).

    ``media_index`` defaults to the first active audio stream; without one, False.
    """
    if media_index is None:
        media_index = description.first_audio_index()
        if media_index is None:
            return False
    media = description.media[media_index]
    connection = description.connection_for(media)
    return description.effective_direction(media) in (
        Direction.SENDONLY,
        Direction.INACTIVE,
    ) or (connection is not None and connection.is_hold_address)


def holds_by_address(description: SessionDescription, media_index: int | None = None) -> bool:
    """Whether an audio stream's connection address is ``0.0.0.0`` (or ``::``): the RFC
    2543 way to put a call on hold, which RFC 3264 section 8.4 asks answerers to honour.

    ``media_index`` defaults to the first active audio stream; without one, False.
    """
    if media_index is None:
        media_index = description.first_audio_index()
        if media_index is None:
            return False
    connection = description.connection_for(description.media[media_index])
    return connection is not None and connection.is_hold_address


def party_direction(description: SessionDescription, media_index: int) -> Direction:
    """The direction a party's description gives its audio stream, with an RFC 2543 hold
    address read as "do not send to me" (so sendrecv becomes sendonly)."""
    direction = description.effective_direction(description.media[media_index])
    if holds_by_address(description, media_index):
        return Direction.from_flags(sends=direction.sends, receives=False)
    return direction


def recordable_codecs(
    description: SessionDescription, codecs: Sequence[str] = ("PCMU", "PCMA")
) -> tuple[str, ...]:
    """Which of ``codecs`` (8 kHz) the description's first audio stream lists, in ``codecs``
    order."""
    index = description.first_audio_index()
    if index is None:
        return ()
    media = description.media[index]
    return tuple(name for name in codecs if media.find_format(name, G711_CLOCK_RATE) is not None)


# ---------------------------------------------------------------------------------------
# Connection addresses we can relay to

_HOST_NAME = re.compile(r"(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?:\.(?!-)[A-Za-z0-9-]{1,63})*\.?")


@dataclass(frozen=True)
class MediaAddress:
    """The audio stream's connection address, checked: a normalised IP literal."""

    host: str  # as the kernel reports a source: "::1", never "0:0::1"
    family: int  # 4 or 6
    hold: bool  # 0.0.0.0 or :: (RFC 2543 hold): nothing to send to


def unusable_address(why: str) -> RemoteSipError:
    """488 with ``Warning: 301`` (RFC 3261: incompatible network address formats)."""
    # the reason phrase and the warning text never quote the peer's bytes
    return RemoteSipError(
        488,
        "Not Acceptable Here",
        extra_headers=(("Warning", f'301 recproxy "{why}"'),),
    )


def media_address(
    description: SessionDescription, media_index: int | None = None, *, in_call: bool = False
) -> MediaAddress:
    """The address RTP for the audio stream (default: the first) goes to, or
    ``RemoteSipError(488)`` with a ``Warning: 301`` header saying why it is unusable.

    ``0.0.0.0``/``::`` is accepted only in a re-offer (``in_call``), as the RFC 2543
    hold: a first offer gives us nowhere to send the notice.
    """
    if media_index is None:
        media_index = description.first_audio_index()
        if media_index is None:
            raise RemoteSipError(488, "Not Acceptable Here")
    media = description.media[media_index]
    connection = description.connection_for(media)
    if connection is None or connection.nettype.upper() != "IN":
        raise unusable_address("media address must be IN IP4 or IN IP6")
    addrtype = connection.addrtype.upper()
    if addrtype not in ("IP4", "IP6"):
        raise unusable_address("media address type must be IP4 or IP6")
    try:
        address = ipaddress.ip_address(connection.host)
    except ValueError:
        host = connection.host
        if _HOST_NAME.fullmatch(host) and not host.replace(".", "").isdigit():
            raise unusable_address("host names in c= are not resolved: use an IP") from None
        raise unusable_address("media address is not a valid IP address") from None
    if address.version != (4 if addrtype == "IP4" else 6):
        raise unusable_address(f"media address is not an {addrtype} address")
    if address.is_multicast or address == ipaddress.IPv4Address("255.255.255.255"):
        raise unusable_address("multicast and broadcast media addresses are not relayed")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        raise unusable_address("IPv4-mapped IPv6 media address: use IN IP4")
    hold = address.is_unspecified
    if hold and not in_call:
        raise unusable_address("media address 0.0.0.0 or :: is not a destination")
    return MediaAddress(str(address), address.version, hold)
