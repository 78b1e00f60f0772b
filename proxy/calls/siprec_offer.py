"""What a SIPREC recording client (SRC) offers, read without I/O: whether an INVITE is
a recording session at all, its SDP and metadata, which of its streams go on which of
the recording's two channels, and our answer.

Channels.  A recording has two channels (left and right, the export's "caller" and
"call taker").  An SRC sends one stream per participant (RFC 7866 §7.1.1), so a
two-party call is two streams; a stream mixing everyone is one (recorded on the left,
the right silent).  More than two audio streams are refused with 488: mapping several
onto one channel would mix voices the metadata keeps apart, and recproxy has nowhere
to record a third.  With metadata, the left channel is the stream sent by the
participant listed first (the SBCs list the calling party first), the right the other
one; without usable metadata (none yet, labels missing, or one participant sending
both) the streams go left and right in SDP order.

SRTP.  An SBC commonly sends its copy of the media over SRTP (``RTP/SAVP`` with SDES
``a=crypto``).  Our answer applies ``[siprec] srtp`` as a caller's leg applies
``[media] srtp`` (:mod:`.srtp_policy`): a stream we take with SRTP gets a line of
ours, and its keys go to its leg, which decrypts before anything is recorded; a stream
the policy does not allow is declined, and an offer with none is refused (488 with a
Warning).  Encrypted bytes are never recorded as audio.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from ..config import OperatorSettings
from ..sip import sdes, sdp
from ..sip.errors import RemoteSipError
from ..sip.headers import param_value
from ..sip.message import Request
from ..sip.multipart import BodyPart, parse_multipart
from ..sip.rs_metadata import CONTENT_TYPES, Participant, RecordingMetadata, parse_metadata
from ..sip.uri import AbsoluteUri, SipUri, parse_uri
from ..storage.catalog.siprec import Channel
from . import srtp_policy
from .parties import identity_matches

SDP = "application/sdp"
MULTIPART = "multipart/mixed"
OPTION_TAG = "siprec"  # RFC 7866 §6.1.1
CHANNELS: tuple[Channel, Channel] = ("left", "right")


def is_siprec(request: Request) -> bool:
    """An INVITE is a recording session when it requires ``siprec``, its Contact has the
    ``+sip.src`` feature tag (RFC 7866 §6.1.1), or its multipart body carries metadata."""
    if OPTION_TAG in (tag.lower() for tag in request.headers.get_all("require")):
        return True
    try:
        if any(param_value(c.params, "+sip.src") is not None for c in request.contacts):
            return True
    except RemoteSipError:
        pass
    if request.content_type != MULTIPART:
        return False
    try:
        return any(p.content_type in CONTENT_TYPES for p in _parts(request))
    except RemoteSipError:
        return False


@dataclass(frozen=True, slots=True)
class SiprecOffer:
    """The SRC's offer, and its metadata snapshot (as read, and as received)."""

    description: sdp.SessionDescription
    metadata: RecordingMetadata | None
    metadata_xml: str | None


def read_offer(request: Request) -> SiprecOffer:
    """The SDP and the metadata of a SIPREC INVITE or re-INVITE: 400 for a malformed
    body or metadata, 488 for a request without an offer (recproxy does not make the
    offer to an SRC: it records what the SRC decides to send)."""
    if not request.body:
        raise RemoteSipError(488, "Not Acceptable Here (a recording session needs an SDP offer)")
    if request.content_type != MULTIPART:
        return SiprecOffer(sdp.SessionDescription.parse(request.body), None, None)
    parts = _parts(request)
    offers = [p for p in parts if p.content_type == SDP]
    documents = [p for p in parts if p.content_type in CONTENT_TYPES]
    if len(offers) != 1 or len(documents) > 1:
        raise RemoteSipError(
            400, "Bad Request (a SIPREC body needs one SDP part and at most one metadata part)"
        )
    description = sdp.SessionDescription.parse(offers[0].body)
    if not documents:
        return SiprecOffer(description, None, None)
    metadata = parse_metadata(documents[0].body)
    return SiprecOffer(description, metadata, documents[0].body.decode("utf-8", "replace"))


def _parts(request: Request) -> tuple[BodyPart, ...]:
    return parse_multipart(request.body, request.headers.get("content-type") or "")


def label_of(media: sdp.MediaDescription) -> str | None:
    """A stream's ``a=label`` (RFC 4574), which the metadata's ``<label>`` names."""
    return next((a.value for a in media.attributes if a.name == "label"), None)


@dataclass(frozen=True, slots=True)
class RecordedStream:
    """One stream we record: its m= line, its label, who sends it, and its channel."""

    index: int
    label: str | None
    sender: Participant | None
    channel: Channel


#: Per accepted m= line, the SRTP keys its stream agreed (None: plain RTP).
StreamKeys = dict[int, sdes.SrtpKeys | None]


def answer(
    offer: SiprecOffer,
    ports: list[int | None],
    address: str,
    session_id: int,
    version: int,
    *,
    srtp: str = "off",
    key_for: sdes.KeySource = sdes.new_key,
) -> tuple[sdp.SessionDescription, StreamKeys]:
    """Our answer: each G.711 audio stream received (``recvonly``, or ``inactive`` for
    an inactive one), its label echoed, with a key of ours (``key_for``) when ``srtp``
    (the policy, see :mod:`.srtp_policy`) takes it with SRTP; any other stream declined
    with port 0.  The ports are ours per m= line (None: decline).  And each accepted
    stream's keys.  488 when nothing is recordable or the policy allows no stream
    (with a Warning saying why)."""
    plan = srtp_policy.plan_answer(offer.description, srtp)
    description = sdp.answer_offer(
        offer.description,
        local_address=address,
        ports=[port if index in plan else None for index, port in enumerate(ports)],
        session_id=session_id,
        session_version=version,
        telephone_event=False,
        direction=sdp.Direction.RECVONLY,
    )
    media = tuple(
        replace(ours, attributes=(*ours.attributes, sdp.Attribute("label", label)))
        if not ours.rejected and (label := label_of(theirs)) is not None
        else ours
        for ours, theirs in zip(description.media, offer.description.media, strict=True)
    )
    description, lines = srtp_policy.add_answer_crypto(
        replace(description, media=media), plan, key_for
    )
    keys: StreamKeys = {
        index: srtp_policy.answer_keys(plan, lines, index)
        for index, m in enumerate(description.media)
        if m.is_audio and not m.rejected
    }
    return description, keys


def recorded_streams(
    offer: SiprecOffer, address: str, srtp: str = "off"
) -> tuple[RecordedStream, ...]:
    """The streams we record under the SRTP policy ``srtp``, left channel first; 488
    when there are none or more than two (see the module's docstring)."""
    probe, _ = answer(offer, [9] * len(offer.description.media), address, 0, 0, srtp=srtp)
    accepted = [i for i, m in enumerate(probe.media) if m.is_audio and not m.rejected]
    if len(accepted) > len(CHANNELS):
        raise RemoteSipError(
            488,
            "Not Acceptable Here",
            extra_headers=(("Warning", '304 recproxy "at most two audio streams are recorded"'),),
        )
    labels = [label_of(offer.description.media[i]) for i in accepted]
    metadata = offer.metadata
    senders = [
        metadata.sender_of_label(label) if metadata is not None and label is not None else None
        for label in labels
    ]
    order = list(range(len(accepted)))
    if metadata is not None and None not in senders and len(set(senders)) == len(senders):
        people = list(metadata.participants)
        order.sort(key=lambda k: people.index(senders[k]))  # type: ignore[arg-type]
    return tuple(
        RecordedStream(accepted[k], labels[k], senders[k], CHANNELS[position])
        for position, k in enumerate(order)
    )


def number_of(participant: Participant | None) -> str | None:
    """A participant's number (or user) from its AOR: the user part of a SIP URI, the
    number of a ``tel:`` URI; None when it has no usable AOR."""
    if participant is None or participant.aor is None:
        return None
    try:
        uri = parse_uri(participant.aor)
    except RemoteSipError:
        return None
    if isinstance(uri, SipUri):
        return uri.user or None
    if isinstance(uri, AbsoluteUri) and uri.scheme.lower() == "tel":
        return uri.opaque.split(";", 1)[0] or None
    return None


def operator_of(
    operators: Sequence[OperatorSettings], streams: Iterable[RecordedStream]
) -> OperatorSettings | None:
    """The operator (member of staff) whose phone identities match the AOR of a
    participant we record — the right channel's first, as in a call — so the
    recording is theirs and their team's under the access policy, as a call's is."""
    by_channel = sorted(streams, key=lambda stream: stream.channel != "right")
    for stream in by_channel:
        aor = stream.sender.aor if stream.sender is not None else None
        try:
            uri = parse_uri(aor or "")
        except RemoteSipError:
            continue  # no AOR, or one that names nobody
        for operator in operators:
            if any(identity_matches(identity, uri) for identity in operator.identities):
                return operator
    return None
