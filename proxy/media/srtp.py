"""SRTP and SRTCP on one relay leg (RFC 3711), over libsrtp through ``pylibsrtp``.

A leg whose party agreed SDES keys (``proxy.sip.sdes``) holds one ``SrtpStreams``: an
inbound libsrtp session keyed with the party's master key, which authenticates,
replay-checks and decrypts what the party sends, and an outbound session keyed with
ours, which protects what we send it (the relayed packets, the notice, ringback and
tones alike).  The relay, the recorder and the jitter buffer see plain RTP only.

Authentication and replay protection are libsrtp's: a packet that fails either raises
``SrtpRejected`` with the reason, for the relay to drop and count.  libsrtp keeps a
stream per SSRC on each session (any inbound SSRC, any outbound SSRC), so a party that
changes its SSRC, or our stream rewriter's own SSRC, need no new keys.

libsrtp keeps a stream for every outbound SSRC it has protected, and searches them per
packet: a plain party (or one spoofing its address) that sent a new SSRC in every
packet would grow the outbound session without end.  So an outbound session protects
at most ``MAX_OUTBOUND_SSRCS`` SSRCs (RTP and RTCP alike); a packet from yet another is
refused (``Rejection.SSRC_LIMIT``), never a stream dropped to make room (a stream
created again would start its packet index over and reuse its keystream).

Keys change with every offer (``rekey``): a session whose key did not change is kept
(with its replay window and rollover counter), and the party's previous inbound session
is kept as a fallback for the packets it sent with its old key while the new
description was on its way.

Outbound sessions refuse a repeated sequence number (``Rejection.REPEATED``): two
different packets protected with one SSRC and index share a keystream (with AES-GCM, a
nonce: the key's authentication is lost), so a party's duplicate is dropped, not passed
on.  Pure: no sockets, no clock; nothing here is logged, and no key appears in a
``repr``.
"""

from __future__ import annotations

import enum

import pylibsrtp

#: The suites the relay can protect with (names of RFC 4568 / RFC 7714), to libsrtp's.
PROFILES: dict[str, int] = {
    "AEAD_AES_256_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}

#: The SSRCs one outbound session protects at most (each is a libsrtp stream).
MAX_OUTBOUND_SSRCS = 32

# libsrtp's messages (pylibsrtp.Error's text) for a packet seen before or too old
_REPLAYED = frozenset(
    {
        "replay check failed (bad index)",
        "replay check failed (index too old)",
        "packet index is too old to consider",
    }
)


class Rejection(enum.Enum):
    """Why a packet was dropped."""

    AUTHENTICATION = "authentication"  # the tag did not verify: tampered, or another key
    REPLAYED = "replayed"  # libsrtp's replay window has seen it, or it is too old
    MALFORMED = "malformed"  # too short or too long to process
    # outbound only: an SSRC and sequence number we have protected before (a duplicate)
    REPEATED = "repeated"
    # outbound only: a new SSRC past MAX_OUTBOUND_SSRCS on the session
    SSRC_LIMIT = "ssrc_limit"


class SrtpRejected(Exception):
    """A packet that libsrtp refused; ``reason`` says why."""

    def __init__(self, reason: Rejection) -> None:
        super().__init__(reason.value)
        self.reason = reason


def _reason(error: Exception) -> Rejection:
    if isinstance(error, pylibsrtp.Error):
        text = str(error)
        if text in _REPLAYED:
            return Rejection.REPLAYED
        if text == "authentication failure":
            return Rejection.AUTHENTICATION
    return Rejection.MALFORMED


def _session(suite: str, key: bytes, *, inbound: bool) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=key,
        ssrc_type=(
            pylibsrtp.Policy.SSRC_ANY_INBOUND if inbound else pylibsrtp.Policy.SSRC_ANY_OUTBOUND
        ),
        srtp_profile=PROFILES[suite],
    )
    return pylibsrtp.Session(policy)


class _Keyed:
    """One libsrtp session and what it was keyed with (to tell whether a rekey keeps it)."""

    __slots__ = ("key", "session", "ssrcs", "suite")

    def __init__(self, suite: str, key: bytes, *, inbound: bool) -> None:
        self.suite = suite
        self.key = key
        self.session = _session(suite, key, inbound=inbound)
        self.ssrcs: set[bytes] = set()  # outbound: the SSRCs protected so far

    def admit(self, ssrc: bytes) -> None:
        """An outbound packet's SSRC: one more stream, unless the session has its fill."""
        ssrcs = self.ssrcs
        if ssrc not in ssrcs:
            if len(ssrcs) >= MAX_OUTBOUND_SSRCS:
                raise SrtpRejected(Rejection.SSRC_LIMIT)
            ssrcs.add(ssrc)

    def __repr__(self) -> str:
        return f"<{self.suite} session>"


class SrtpStreams:
    """One leg's SRTP: the party's key in, ours out."""

    __slots__ = ("_inbound", "_outbound", "_previous")

    def __init__(self, suite: str, send_key: bytes, receive_key: bytes) -> None:
        if suite not in PROFILES:
            raise ValueError(f"unsupported SRTP suite {suite!r}")
        self._inbound = _Keyed(suite, receive_key, inbound=True)
        self._outbound = _Keyed(suite, send_key, inbound=False)
        self._previous: _Keyed | None = None  # the party's key before the last rekey

    @property
    def suite(self) -> str:
        return self._outbound.suite

    def __repr__(self) -> str:
        return f"<SrtpStreams {self.suite}>"

    def rekey(self, suite: str, send_key: bytes, receive_key: bytes) -> SrtpStreams:
        """The streams after a new exchange: unchanged keys keep their sessions; the
        party's old key stays usable until the next rekey."""
        streams = SrtpStreams.__new__(SrtpStreams)
        inbound, outbound = self._inbound, self._outbound
        same_in = inbound.suite == suite and inbound.key == receive_key
        same_out = outbound.suite == suite and outbound.key == send_key
        streams._inbound = inbound if same_in else _Keyed(suite, receive_key, inbound=True)
        streams._outbound = outbound if same_out else _Keyed(suite, send_key, inbound=False)
        streams._previous = self._previous if same_in else inbound
        return streams

    def unprotect(self, packet: bytes) -> bytes:
        """The plain RTP packet, or ``SrtpRejected``."""
        try:
            return self._inbound.session.unprotect(packet)
        except (pylibsrtp.Error, ValueError, TypeError) as error:
            reason = _reason(error)
        return self._fallback(packet, reason, rtcp=False)

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        """The plain RTCP packet, or ``SrtpRejected``."""
        try:
            return self._inbound.session.unprotect_rtcp(packet)
        except (pylibsrtp.Error, ValueError, TypeError) as error:
            reason = _reason(error)
        return self._fallback(packet, reason, rtcp=True)

    def _fallback(self, packet: bytes, reason: Rejection, *, rtcp: bool) -> bytes:
        """A packet the current key refused: the party's previous key may still be in
        use for a moment after a rekey."""
        previous = self._previous
        if reason is Rejection.AUTHENTICATION and previous is not None:
            try:
                if rtcp:
                    return previous.session.unprotect_rtcp(packet)
                return previous.session.unprotect(packet)
            except (pylibsrtp.Error, ValueError, TypeError) as error:
                reason = _reason(error)
        raise SrtpRejected(reason)

    def protect(self, packet: bytes) -> bytes:
        """The SRTP packet for a plain one, or ``SrtpRejected``: too long, a sequence
        number its SSRC has sent before, or one SSRC too many."""
        outbound = self._outbound
        outbound.admit(packet[8:12])
        try:
            return outbound.session.protect(packet)
        except (pylibsrtp.Error, ValueError, TypeError) as error:
            raise SrtpRejected(_outbound_reason(error)) from None

    def protect_rtcp(self, packet: bytes) -> bytes:
        outbound = self._outbound
        outbound.admit(packet[4:8])
        try:
            return outbound.session.protect_rtcp(packet)
        except (pylibsrtp.Error, ValueError, TypeError) as error:
            raise SrtpRejected(_outbound_reason(error)) from None


def _outbound_reason(error: Exception) -> Rejection:
    """What libsrtp's replay check means when we protect: a repeated index."""
    reason = _reason(error)
    return Rejection.REPEATED if reason is Rejection.REPLAYED else reason
