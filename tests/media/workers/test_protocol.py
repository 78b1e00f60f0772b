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
    Packets,
    ProtocolError,
    Returned,
    Take,
    encode_give_back,
    encode_returned,
    encode_take,
    packet_batch,
    parse_message,
)
from proxy.media.workers.recording_messages import (
    FramesDown,
    OpenRecording,
    RecorderSetup,
    RecordingCommand,
    Report,
    encode_command,
    encode_open,
    encode_report,
    encode_setup,
    frame_batch,
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
    batch = packet_batch()
    assert not batch
    size = batch.add(b"a" * 172, 1, 0)
    assert size == 1 + 7 + 172
    batch.add(b"", 2, 1)
    batch.add(b"bc", 1, 1)
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


def test_recording_messages_round_trip() -> None:
    setup = RecorderSetup("/var/lib/recproxy/recordings", "chunk", 10.0, "silence", 3)
    opened = OpenRecording(5, "rid", "ab" * 32, "PCMU", "PCMA", "g711", 10.0, 1_700_000_000_000)
    command = RecordingCommand(5, "held", [1, True])
    report = Report(5, "dropped", {"reason": "queue full"})
    assert parse_message(encode_setup(setup)) == setup
    assert parse_message(encode_open(opened)) == opened
    assert parse_message(encode_command(command)) == command
    assert parse_message(encode_report(report)) == report
    recorded = LegHandOver(("127.0.0.1", 4000), None, None, (5, 0, 8))
    take = Take(8, (recorded, LegHandOver(("127.0.0.1", 4002))))
    assert parse_message(encode_take(take)) == take
    counts = Returned(8, "asked", (LegCounts(packets_in=3, bytes_in=516), LegCounts()))
    assert parse_message(encode_returned(counts)) == counts


def test_frames_handed_down_keep_their_order() -> None:
    batch = frame_batch()
    batch.add(b"\xff" * 160, 5, 0, 65535, 2**32 - 1)
    batch.add(b"", 6, 1, 0, 0)
    message = parse_message(batch.take())
    assert not batch
    assert isinstance(message, FramesDown)
    assert list(message.records()) == [(5, 0, 65535, 2**32 - 1, b"\xff" * 160), (6, 1, 0, 0, b"")]
    with pytest.raises(ProtocolError):
        list(FramesDown(message.data[:-1]).records())


@pytest.mark.parametrize(
    "data",
    [
        b"S{}",
        b"O[1]",
        b'C{"number": 1, "action": "explode"}',
        b'C{"number": -1, "action": "stop"}',
        b'E{"number": 1, "kind": "gossip"}',
        b"Enot json",
    ],
)
def test_a_bad_recording_message_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_message(data)


def test_an_unknown_command_is_refused_when_encoded() -> None:
    with pytest.raises(ValueError, match="unknown recording action"):
        encode_command(RecordingCommand(1, "explode"))
