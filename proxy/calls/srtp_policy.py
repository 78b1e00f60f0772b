"""Each leg's SRTP policy (``[media] srtp``) applied to its offers and answers.

``"off"``: plain RTP only.  ``"offer"``: SRTP when the party takes it, plain RTP when it
does not.  ``"require"``: SRTP or no call.  Keys travel in SDES ``a=crypto`` lines
(RFC 4568, :mod:`proxy.sip.sdes`); which key of ours a line carries is the caller's
``key_for`` (``LegSdp``: fresh per leg and suite, kept across re-offers).

As the answerer (the caller's leg, and any re-offer): a stream over ``RTP/SAVP`` whose
offer has a line we can use gets that suite with a key of ours; under ``offer`` or
``require`` a stream over ``RTP/AVP`` with such a line gets one too (the best-effort
form Asterisk and FreeSWITCH send).  ``off`` accepts only ``RTP/AVP`` (its ``a=crypto``
lines are not read), ``require`` only a stream we can key.  When no audio stream fits,
the offer is refused with 488 and a ``Warning`` saying why.

As the offerer (the call taker's leg, a late offer, our re-offers): ``offer`` sends
``RTP/AVP`` with ``a=crypto`` lines (best effort: an answer without one is plain RTP),
``require`` sends ``RTP/SAVP`` and refuses an answer without one (488: the leg fails).

Pure: descriptions in, descriptions and ``SrtpKeys`` out (the keys for the relay).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from ..sip import sdes, sdp
from ..sip.errors import RemoteSipError

#: Which offered audio stream (by m= index) we may accept, with the line we chose from
#: its offer (None: the stream stays plain RTP).
AnswerPlan = Mapping[int, sdes.CryptoAttribute | None]


def _refused(why: str, code: int = 302) -> RemoteSipError:
    """488 with a Warning (302: incompatible transport protocol; 306: attribute not
    understood).  The text names our rule, never the peer's bytes."""
    return RemoteSipError(
        488, "Not Acceptable Here", extra_headers=(("Warning", f'{code} recproxy "{why}"'),)
    )


def crypto_lines(media: sdp.MediaDescription) -> tuple[sdes.CryptoAttribute, ...]:
    """A stream's ``a=crypto`` lines, parsed; 488 with a Warning if one is malformed."""
    return tuple(sdes.CryptoAttribute.parse(a.value) for a in media.attributes if a.key == "crypto")


def plan_answer(offer: sdp.SessionDescription, policy: str) -> AnswerPlan:
    """The offered audio streams ``policy`` lets us accept.  An offer with audio but no
    such stream is refused (488 with a Warning); one with no audio at all is left to the
    codec negotiation, which refuses it."""
    plan: dict[int, sdes.CryptoAttribute | None] = {}
    profiles: set[str] = set()
    for index, media in enumerate(offer.media):
        if not media.is_audio or media.rejected:
            continue
        profile = media.proto.upper()
        profiles.add(profile)
        if profile not in sdp.RELAYED_PROFILES:
            continue
        if policy == "off":
            if profile == "RTP/AVP":
                plan[index] = None
            continue
        chosen = sdes.choose_crypto(crypto_lines(media))
        if chosen is not None:
            plan[index] = chosen
        elif profile == "RTP/AVP" and policy == "offer":
            plan[index] = None
    if not plan and profiles:
        raise _why_refused(profiles, policy)
    return plan


def _why_refused(profiles: set[str], policy: str) -> RemoteSipError:
    if not profiles & sdp.RELAYED_PROFILES:
        return _refused("RTP/SAVPF and DTLS-SRTP are not supported: offer RTP/AVP or RTP/SAVP")
    if policy == "off":
        return _refused("SRTP is off here: offer RTP/AVP")
    if "RTP/SAVP" in profiles:
        suites = ", ".join(sdes.SUITES)
        return _refused(f"no a=crypto line with a suite we support ({suites})", 306)
    return _refused("SRTP is required here: offer RTP/SAVP with a=crypto")


def add_answer_crypto(
    answer: sdp.SessionDescription, plan: AnswerPlan, key_for: sdes.KeySource
) -> tuple[sdp.SessionDescription, dict[int, sdes.CryptoAttribute]]:
    """Our answer with a line of ours (``key_for`` its suite) on each accepted stream
    whose offer we took with SRTP; and those lines, by m= index."""
    ours: dict[int, sdes.CryptoAttribute] = {}
    media = list(answer.media)
    for index, chosen in plan.items():
        if chosen is None or media[index].rejected:
            continue
        ours[index] = line = sdes.answer_crypto(chosen, key_for)
        media[index] = _with_crypto(media[index], (line,))
    return replace(answer, media=tuple(media)), ours


def answer_keys(
    plan: AnswerPlan, ours: Mapping[int, sdes.CryptoAttribute], index: int
) -> sdes.SrtpKeys | None:
    """The keys of the stream the exchange agreed on (None: plain RTP)."""
    chosen, line = plan.get(index), ours.get(index)
    if chosen is None or line is None:
        return None
    return sdes.SrtpKeys(chosen.suite, line.key, chosen.key)


#: What our first offer on a leg proposes, in our order of preference.
OFFERED_SUITES = ("AEAD_AES_256_GCM", "AES_CM_128_HMAC_SHA1_80")


def secure_offer(
    offer: sdp.SessionDescription,
    policy: str,
    key_for: sdes.KeySource,
    in_use: str | None = None,
) -> tuple[sdp.SessionDescription, tuple[sdes.CryptoAttribute, ...]]:
    """Our offer under ``policy``: its audio stream with our lines (``key_for`` each
    suite) and the profile ``policy`` says; and the lines, to pair with the answer.
    A re-offer on a leg keyed with ``in_use`` proposes that suite alone: a party may
    not follow a change of suite in mid-call (baresip 1.0 keeps its first one)."""
    if policy == "off":
        return offer, ()
    lines = sdes.offer_crypto((in_use,) if in_use else OFFERED_SUITES, key_for)
    profile = "RTP/SAVP" if policy == "require" else "RTP/AVP"
    media = tuple(
        replace(_with_crypto(m, lines), proto=profile) if m.is_audio else m for m in offer.media
    )
    return replace(offer, media=media), lines


def answered_keys(
    ours: Sequence[sdes.CryptoAttribute],
    answer: sdp.SessionDescription,
    index: int,
    policy: str,
) -> sdes.SrtpKeys | None:
    """The keys a party's answer to our lines ``ours`` agrees (None: plain RTP).  An
    answer to a plain offer of ours is plain whatever it says; ``require`` refuses a
    plain answer, and a malformed or mismatched line is refused (488)."""
    if not ours:
        return None
    keys = sdes.pair_answer(ours, crypto_lines(answer.media[index]))
    if keys is None and policy == "require":
        raise _refused("SRTP is required here: the answer has no a=crypto line")
    return keys


def _with_crypto(
    media: sdp.MediaDescription, lines: Sequence[sdes.CryptoAttribute]
) -> sdp.MediaDescription:
    crypto = tuple(sdp.Attribute("crypto", line.to_text()) for line in lines)
    kept = tuple(a for a in media.attributes if a.key != "crypto")
    return replace(media, attributes=(*crypto, *kept))
