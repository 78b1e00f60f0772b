"""One leg's offer/answer state and the codec policy (``proxy.calls.offer_answer``),
without sockets: descriptions in, descriptions and agreed audio out."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.calls import offer_answer
from proxy.calls.offer_answer import RECORDABLE_CODECS, LegSdp
from proxy.sip import sdp
from proxy.sip.errors import RemoteSipError
from tests.sip.test_sans_io import forbidden_imports

OURS = "192.0.2.10"


def description(
    formats: str, rtpmaps: str, direction: str = "sendrecv", address: str = "198.51.100.7"
) -> sdp.SessionDescription:
    lines = [
        "v=0",
        f"o=phone 7 {len(formats)} IN IP4 {address}",
        "s=-",
        f"c=IN IP4 {address}",
        "t=0 0",
        f"m=audio 40000 RTP/AVP {formats}",
        *rtpmaps.strip().splitlines(),
        f"a={direction}",
    ]
    return sdp.SessionDescription.parse(("\r\n".join(lines) + "\r\n").encode())


# linphone's re-INVITE on hold and resume: Opus first, then PCMU
OPUS_FIRST = """
a=rtpmap:96 opus/48000/2
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
"""


def leg() -> LegSdp:
    return LegSdp("call taker", 4242, OURS, port=30000)


def formats_of(answer: sdp.SessionDescription) -> list[str]:
    index = answer.first_audio_index()
    assert index is not None
    media = answer.media[index]
    return [rtpmap.name for rtpmap in (media.rtpmap(f) for f in media.formats) if rtpmap]


def test_an_opus_first_offer_is_answered_with_pcmu_and_telephone_event_only() -> None:
    side = leg()
    answer, audio = side.answer(description("96 0 101", OPUS_FIRST))
    assert audio.encoding == "PCMU"
    assert formats_of(answer) == ["PCMU", "TELEPHONE-EVENT"]
    assert b"opus" not in answer.serialize().lower()
    assert answer.origin.address == OURS and answer.media[0].port == 30000


def test_an_offer_with_nothing_recordable_is_refused_and_changes_nothing() -> None:
    side = leg()
    side.answer(description("0 101", "a=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000"))
    before = (side.version, side.local, side.audio, side.direction)
    with pytest.raises(RemoteSipError) as refused:
        side.answer(description("96", "a=rtpmap:96 opus/48000/2", "sendonly"))
    assert refused.value.status == 488
    assert (side.version, side.local, side.audio, side.direction) == before


@pytest.mark.parametrize(
    ("offered", "answered", "holds"),
    [
        ("sendonly", sdp.Direction.RECVONLY, True),
        ("inactive", sdp.Direction.INACTIVE, True),
        ("recvonly", sdp.Direction.SENDONLY, False),
        ("sendrecv", sdp.Direction.SENDRECV, False),
    ],
)
def test_directions_are_answered_per_rfc_3264(
    offered: str, answered: sdp.Direction, holds: bool
) -> None:
    side = leg()
    answer, audio = side.answer(description("96 0 101", OPUS_FIRST, offered))
    assert answer.effective_direction(answer.media[0]) is answered
    assert audio.direction is answered
    assert side.holds is holds


def test_an_rfc_2543_hold_address_is_a_hold_answered_recvonly() -> None:
    side = leg()
    answer, _ = side.answer(description("0", "a=rtpmap:0 PCMU/8000", address="0.0.0.0"))
    assert side.holds
    assert side.direction is sdp.Direction.SENDONLY
    assert answer.effective_direction(answer.media[0]) is sdp.Direction.RECVONLY


def test_resume_after_hold_and_each_description_of_ours_bumps_the_version() -> None:
    side = leg()
    first, _ = side.answer(description("0 8", "a=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000"))
    held, _ = side.answer(description("96 0 101", OPUS_FIRST, "sendonly"))
    resumed, _ = side.answer(description("96 0 101", OPUS_FIRST, "sendrecv"))
    assert not side.holds
    versions = [d.origin.session_version for d in (first, held, resumed)]
    assert versions == [1, 2, 3]
    assert {d.origin.session_id for d in (first, held, resumed)} == {"4242"}


def test_the_codec_in_use_is_kept_when_offered_again_in_another_order() -> None:
    side = leg()
    side.answer(description("8 0", "a=rtpmap:8 PCMA/8000\na=rtpmap:0 PCMU/8000"))
    assert side.audio is not None and side.audio.encoding == "PCMA"
    _, audio = side.answer(description("0 8", "a=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000"))
    assert audio.encoding == "PCMA"
    _, switched = side.answer(description("0", "a=rtpmap:0 PCMU/8000"))
    assert switched.encoding == "PCMU"


def test_our_offer_and_its_answer() -> None:
    side = leg()
    offer = side.offer(RECORDABLE_CODECS, sdp.Direction.SENDONLY)
    assert formats_of(offer) == ["PCMU", "PCMA", "TELEPHONE-EVENT"]
    assert offer.effective_direction(offer.media[0]) is sdp.Direction.SENDONLY
    audio = side.accept_answer(
        description("8 101", "a=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000", "recvonly")
    )
    assert audio.encoding == "PCMA"
    assert side.direction is sdp.Direction.RECVONLY and side.holds is False
    assert side.wants() == ("PCMA", sdp.Direction.SENDONLY)


def test_an_answer_without_a_recordable_codec_leaves_what_was_agreed() -> None:
    side = leg()
    side.offer(("PCMU",), sdp.Direction.SENDRECV)
    agreed = side.accept_answer(description("0", "a=rtpmap:0 PCMU/8000"))
    side.offer(("PCMA",), sdp.Direction.SENDRECV)
    with pytest.raises(RemoteSipError):
        side.accept_answer(description("0", "a=rtpmap:0 PCMU/8000"))
    assert side.audio == agreed


def test_offer_answer_is_sans_io() -> None:
    """Like the SIP layer: no asyncio, socket or time (tests/sip/test_sans_io.py)."""
    source = Path(offer_answer.__file__).read_text(encoding="utf-8")
    assert forbidden_imports(source) == []
