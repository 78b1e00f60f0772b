"""Recording metadata (RFC 7865), the ``application/rs-metadata+xml`` part of a SIPREC
request (RFC 7866 §9): who took part in the communication session, and which media
stream each of them sends.

What recproxy needs of it is small — the communication session's identifiers, the
participants with their names and AORs, the streams with their SDP ``label``s, and
``participantstreamassoc``'s send/receive lists — so this reads exactly that and
ignores the rest (groups, extension data in other namespaces, times).

The XML is parsed with the standard library's expat, event by event, not with a tree
builder and not with ``defusedxml`` (which recproxy does not otherwise depend on): a
document with a DOCTYPE is refused outright, so there are no entity declarations to
expand (no "billion laughs", no external entities), and the document's size and its
number of elements are bounded before and while it is read.  Anything malformed is a
``RemoteSipError(400)`` with a one-line reason, never another exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.parsers import expat

from .errors import RemoteSipError

NAMESPACE = "urn:ietf:params:xml:ns:recording:1"
#: The media types of the metadata part (RFC 7866 §9; earlier drafts without ``+xml``).
CONTENT_TYPES = ("application/rs-metadata+xml", "application/rs-metadata")
#: A snapshot of a two-party call is about 2 KB; SBCs with extension data send ~8 KB.
MAX_BYTES = 32_768
MAX_ELEMENTS = 1_000
_MAX_TEXT = 1_024  # characters of one element's text or attribute kept
_SEPARATOR = "|"  # between namespace and local name in expat's element names


def _bad(why: str) -> RemoteSipError:
    return RemoteSipError(400, f"Bad Request (recording metadata: {why})")


@dataclass(frozen=True, slots=True)
class Participant:
    """A participant (RFC 7865 §6.5): its id, its AOR and its name, if given."""

    participant_id: str
    aor: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Stream:
    """A media stream (RFC 7865 §6.6), tied to its SDP m= line by ``label``."""

    stream_id: str
    label: str | None
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class Session:
    """A communication session (RFC 7865 §6.3) and its ``sipSessionID``s (RFC 7989)."""

    session_id: str
    sip_session_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordingMetadata:
    """One snapshot of the metadata, as far as recproxy reads it."""

    datamode: str  # "complete" or "partial" (RFC 7865 §6.1.1)
    sessions: tuple[Session, ...]
    participants: tuple[Participant, ...]
    streams: tuple[Stream, ...]
    sends: dict[str, str] = field(default_factory=dict)  # stream id → participant id
    receives: dict[str, tuple[str, ...]] = field(default_factory=dict)  # participant → streams

    def sender_of_label(self, label: str) -> Participant | None:
        """The participant who sends the stream with SDP ``a=label:label``."""
        stream = next((s for s in self.streams if s.label == label), None)
        sender_id = self.sends.get(stream.stream_id) if stream is not None else None
        return next((p for p in self.participants if p.participant_id == sender_id), None)


def parse_metadata(data: bytes) -> RecordingMetadata:
    """Read one metadata document; ``RemoteSipError(400)`` if it is not one."""
    if len(data) > MAX_BYTES:
        raise _bad(f"larger than {MAX_BYTES} bytes")
    reader = _Reader()
    parser = expat.ParserCreate(namespace_separator=_SEPARATOR)
    parser.StartDoctypeDeclHandler = reader.doctype
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.text
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise _bad(f"not well-formed XML ({expat.errors.messages[exc.code]})") from None
    except (LookupError, ValueError):  # an encoding Python cannot decode the bytes in
        raise _bad("undecodable XML") from None
    return reader.result()


class _Reader:
    """expat's handlers: collects what :class:`RecordingMetadata` holds."""

    def __init__(self) -> None:
        self.elements = 0
        self.path: list[str] = []  # local names of the open elements in our namespace
        self.outside = 0  # depth inside elements of other namespaces (ignored)
        self.texts: list[str] = []
        self.attributes: list[dict[str, str]] = []
        self.root_seen = False
        self.datamode = "complete"
        self.sessions: list[Session] = []
        self.participants: list[Participant] = []
        self.streams: list[Stream] = []
        self.sends: dict[str, str] = {}
        self.receives: dict[str, tuple[str, ...]] = {}
        # the element being read: its text pieces, and what its children said
        self._sip_ids: list[str] = []
        self._aor: str | None = None
        self._name: str | None = None
        self._label: str | None = None
        self._send: list[str] = []
        self._recv: list[str] = []

    # -- refusal --------------------------------------------------------------------

    def doctype(self, *_: object) -> None:
        """Raised before any internal subset is read: no entity is ever declared."""
        raise _bad("a DOCTYPE is not allowed")

    # -- elements ---------------------------------------------------------------------

    def start(self, name: str, attributes: dict[str, str]) -> None:
        self.elements += 1
        if self.elements > MAX_ELEMENTS:
            raise _bad(f"more than {MAX_ELEMENTS} elements")
        namespace, _, local = name.rpartition(_SEPARATOR)
        if not self.root_seen:
            if namespace != NAMESPACE or local != "recording":
                raise _bad(f"the root element must be <recording xmlns='{NAMESPACE}'>")
            self.root_seen = True
        if self.outside or namespace != NAMESPACE:
            self.outside += 1
            return
        if local == "nameID" and self._parent == "participant":
            self._aor = attributes.get("aor", "")[:_MAX_TEXT] or None
        self.path.append(local)
        self.texts.append("")
        self.attributes.append({k: v[:_MAX_TEXT] for k, v in attributes.items()})

    def text(self, data: str) -> None:
        if not self.outside and self.texts and len(self.texts[-1]) < _MAX_TEXT:
            self.texts[-1] += data[: _MAX_TEXT - len(self.texts[-1])]

    def end(self, name: str) -> None:
        if self.outside:
            self.outside -= 1
            return
        local = self.path.pop()
        value = self.texts.pop().strip()
        attributes = self.attributes.pop()
        parent = self._parent
        if parent == "recording" or parent is None:
            self._top_level(local, value, attributes)
        elif local == "sipSessionID" and parent == "session":
            self._sip_ids.append("".join(value.split()))  # RFC 8068 folds it over lines
        elif local == "name" and parent == "nameID":
            self._name = value or None
        elif local == "label" and parent == "stream":
            self._label = value
        elif local == "send" and parent == "participantstreamassoc":
            self._send.append(value)
        elif local == "recv" and parent == "participantstreamassoc":
            self._recv.append(value)

    def _top_level(self, local: str, value: str, attributes: dict[str, str]) -> None:
        if local == "datamode":
            if value not in ("complete", "partial"):
                raise _bad("datamode must be complete or partial")
            self.datamode = value
        elif local == "session":
            self.sessions.append(Session(_id(attributes, "session_id"), tuple(self._sip_ids)))
        elif local == "participant":
            self.participants.append(
                Participant(_id(attributes, "participant_id"), self._aor, self._name)
            )
        elif local == "stream":
            stream_session = attributes.get("session_id") or None
            self.streams.append(Stream(_id(attributes, "stream_id"), self._label, stream_session))
        elif local == "participantstreamassoc":
            participant = _id(attributes, "participant_id")
            for stream in self._send:
                self.sends[stream] = participant
            self.receives[participant] = tuple(self._recv)
        self._sip_ids, self._aor, self._name, self._label = [], None, None, None
        self._send, self._recv = [], []

    @property
    def _parent(self) -> str | None:
        return self.path[-1] if self.path else None

    def result(self) -> RecordingMetadata:
        return RecordingMetadata(
            self.datamode,
            tuple(self.sessions),
            tuple(self.participants),
            tuple(self.streams),
            self.sends,
            self.receives,
        )


def _id(attributes: dict[str, str], name: str) -> str:
    value = attributes.get(name, "").strip()
    if not value:
        raise _bad(f"an element without its {name}")
    return value
