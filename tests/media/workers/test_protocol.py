"""The control protocol's codec: each message round-trips, and what does not parse is a
``ProtocolError`` naming the message, never another exception."""

from __future__ import annotations

import pytest

from proxy.media.workers.protocol import (
    HELLO,
    Foreign,
    GiveBack,
    Hello,
    LegCounts,
    LegHandOver,
    PacketBatch,
    Packets,
    ProtocolError,
    Returned,
    Take,
    encode_give_back,
    encode_returned,
    encode_take,
    parse_message,
)


def test_take_round_trips() -> None:
    take = Take(
        7,
        (
            LegHandOver(("127.0.0.1", 4000), None, (1, 2, 3, -1, 5, 6)),
            LegHandOver(("::1", 4002), 101, None),
        ),
    )
    assert parse_message(encode_take(take)) == take


def test_give_back_and_returned_round_trip() -> None:
    assert parse_message(encode_give_back(2**32 - 1)) == GiveBack(2**32 - 1)
    assert parse_message(HELLO) == Hello()
    returned = Returned(
        3,
        "a packet from another source",
        (LegCounts(10, 1720, 1, 2, (9, 8, 7, 6, 5, 4)), LegCounts()),
        Foreign(1, ("10.0.0.9", 5004), b"\x80\x00packet"),
    )
    assert parse_message(encode_returned(returned)) == returned
    plain = Returned(4, "asked", (LegCounts(), LegCounts()))
    assert parse_message(encode_returned(plain)) == plain


def test_a_batch_holds_packets_in_order_and_empties_when_taken() -> None:
    batch = PacketBatch()
    assert not batch
    size = batch.add(1, 0, b"a" * 172)
    assert size == 1 + 7 + 172
    batch.add(2, 1, b"")
    batch.add(1, 1, b"bc")
    message = batch.take()
    assert not batch
    parsed = parse_message(message)
    assert isinstance(parsed, Packets)
    assert list(parsed.records()) == [(1, 0, b"a" * 172), (2, 1, b""), (1, 1, b"bc")]
    assert batch.take() == b"P"


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"X",
        b"G\x00\x01",
        b"Hx",
        b"T{not json",
        b'T{"call": -1, "legs": []}',
        b'T{"call": 1, "legs": [{"source": ["h", 1], "keep": null, "rewriter": null}]}',
        b'T{"call": 1, "legs": [{"source": ["h"], "keep": null, "rewriter": null}, {}]}',
        b'R{"call": 1, "reason": "x", "legs": [], "foreign": null}',
    ],
)
def test_what_does_not_parse_is_a_protocol_error(message: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_message(message)


@pytest.mark.parametrize("cut", [b"P\x00\x00\x00\x01\x00", b"P\x00\x00\x00\x01\x00\x00\x05ab"])
def test_a_cut_packets_message_is_a_protocol_error(cut: bytes) -> None:
    parsed = parse_message(cut)
    assert isinstance(parsed, Packets)
    with pytest.raises(ProtocolError):
        list(parsed.records())
