"""One leg's offer/answer state, from recproxy's side (RFC 3264), and its codec policy.

recproxy never passes one party's SDP to the other: each leg has its own session (our
``o=`` id and version), and every description we send on it is built here from what we
accepted.  Only what the recorder can record is offered or answered: PCMU, PCMA and
telephone-event (``RECORDABLE_CODECS``).  An offer with none of them is refused (488)
and the leg keeps the media it had.

What the party said last about its direction is kept as ``direction``, with an RFC 2543
hold (``c=0.0.0.0``) folded in as "does not receive"; the call flow decides from it
where RTP is relayed, whether the notice plays, and whether the party holds the call.

Each leg has its SRTP policy (``srtp``: off, offer or require, from ``[media] srtp``),
applied by :mod:`.srtp_policy` to every description we send and receive on it; what an
exchange agreed carries its keys (``NegotiatedAudio.srtp``) to the relay.

Our SRTP key is fresh per leg (a transfer target's leg is a new one) and per suite, and
kept across the leg's re-offers and answers while it stays SRTP (RFC 4568 section 7.1.4
lets either side keep its key): phones such as baresip 1.0 take a changed key in a
re-INVITE but keep decrypting with the first one, and lose all audio after it.  The
relay keeps the libsrtp session of an unchanged key, so its rollover counter and replay
window carry on and no keystream is reused.  A leg that goes plain forgets its keys.

Sans-IO: no sockets, no clock; the call flow (``b2bua.py``) sends what this builds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..sip import sdes, sdp
from . import srtp_policy

#: What the recorder can record, in our order of preference (telephone-event besides).
RECORDABLE_CODECS = ("PCMU", "PCMA")
_DEFAULT_EVENT_TYPE = 101


@dataclass(eq=False)
class LegSdp:
    """Our side of one leg's offer/answer exchanges."""

    party: str  # "caller" or "call taker": who is on this leg (log lines, hold events)
    session_id: int
    address: str  # ours, for c= and o=
    port: int = 0  # our RTP port on this leg, once taken
    version: int = 0  # of the last description we sent
    # the last description we sent (not in a repr: it may hold our SRTP key)
    local: sdp.SessionDescription | None = field(default=None, repr=False)
    audio: sdp.NegotiatedAudio | None = None  # what the last completed exchange agreed
    direction: sdp.Direction = sdp.Direction.SENDRECV  # the party's, hold address folded in
    answer_in_ack: bool = False  # our offer went in a 2xx: its answer comes in the ACK
    # (codec, direction) we last offered and have no answer to: not offered again
    refused: tuple[str, sdp.Direction] | None = None
    srtp: str = "off"  # this leg's SRTP policy: "off", "offer" or "require"
    # the a=crypto lines (our keys) of our last offer, to pair with its answer
    offered_crypto: tuple[sdes.CryptoAttribute, ...] = field(default=(), repr=False)
    # our SRTP master key per suite on this leg, made when first needed
    own_keys: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def holds(self) -> bool:
        """The party has put the call on hold (sendonly, inactive or c=0.0.0.0)."""
        return not self.direction.receives

    def answer(
        self, offer: sdp.SessionDescription
    ) -> tuple[sdp.SessionDescription, sdp.NegotiatedAudio]:
        """Our answer to the party's offer: the codec in use if offered, else the first
        recordable one in the offerer's order; the direction answered per RFC 3264 §6.1
        (an RFC 2543 hold is answered as the sendonly it means); SRTP as the leg's policy
        says, with a fresh key of ours.  Raises ``RemoteSipError(488)`` when nothing
        recordable is offered, or nothing the SRTP policy accepts (with a Warning), or a
        malformed ``a=crypto``; nothing changes then."""
        held = sdp.holds_by_address(offer)
        prefer = self.audio.encoding if self.audio is not None else None
        plan = srtp_policy.plan_answer(offer, self.srtp)
        answer = sdp.answer_offer(
            offer,
            local_address=self.address,
            ports=lambda index, media: self.port if index in plan else None,
            session_id=self.session_id,
            session_version=self.version + 1,
            codecs=RECORDABLE_CODECS,
            prefer_codec=prefer,
            direction=sdp.Direction.RECVONLY if held else sdp.Direction.SENDRECV,
        )
        answer, ours = srtp_policy.add_answer_crypto(answer, plan, self._key)
        audio = sdp.negotiated(offer, answer, local_role=sdp.Role.ANSWERER)
        audio = replace(audio, srtp=srtp_policy.answer_keys(plan, ours, audio.media_index))
        self._sent(answer)
        self._agreed(audio, offer)
        return answer, audio

    def offer(self, codecs: tuple[str, ...], direction: sdp.Direction) -> sdp.SessionDescription:
        """A new offer of ours on this leg (its answer goes to ``accept_answer``)."""
        previous = self.audio
        event_type = previous.receive_telephone_event if previous is not None else None
        if event_type is None or not 96 <= event_type <= 127:
            event_type = _DEFAULT_EVENT_TYPE
        offer = sdp.create_offer(
            self.address,
            self.port,
            session_id=self.session_id,
            session_version=self.version + 1,
            codecs=codecs,
            telephone_event=event_type,
            ptime=(previous.ptime if previous is not None else None) or 20,
            direction=direction,
        )
        in_use = previous.srtp.suite if previous is not None and previous.srtp else None
        offer, self.offered_crypto = srtp_policy.secure_offer(offer, self.srtp, self._key, in_use)
        self._sent(offer)
        return offer

    def accept_answer(self, answer: sdp.SessionDescription) -> sdp.NegotiatedAudio:
        """The party's answer to our last offer.  Raises ``RemoteSipError`` (400, 488) if
        it agrees nothing we can record; what was agreed before stays."""
        if self.local is None:
            raise RuntimeError("no offer of ours to answer")
        audio = sdp.negotiated(self.local, answer, local_role=sdp.Role.OFFERER)
        keys = srtp_policy.answered_keys(self.offered_crypto, answer, audio.media_index, self.srtp)
        audio = replace(audio, srtp=keys)
        self._agreed(audio, answer)
        return audio

    def wants(self) -> tuple[str, sdp.Direction] | None:
        """(codec, our direction) of our last description, once one was agreed."""
        if self.audio is None:
            return None
        return self.audio.encoding, self.audio.direction

    def _sent(self, description: sdp.SessionDescription) -> None:
        self.local = description
        self.version = description.origin.session_version

    def _key(self, suite: str) -> bytes:
        """Our key for ``suite`` on this leg: the one already in use, else a fresh one."""
        if suite not in self.own_keys:
            self.own_keys[suite] = sdes.new_key(suite)
        return self.own_keys[suite]

    def _agreed(self, audio: sdp.NegotiatedAudio, theirs: sdp.SessionDescription) -> None:
        if audio.srtp is None:  # plain now: SRTP again later starts with new keys
            self.own_keys.clear()
        self.audio = audio
        self.direction = sdp.party_direction(theirs, audio.media_index)
        self.refused = None
