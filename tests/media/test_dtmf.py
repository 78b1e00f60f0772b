"""RFC 4733 telephone events: payload parsing and one digit per key press."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.media.dtmf import (
    DIGITS,
    FLASH,
    DigitDetected,
    DtmfDetector,
    DtmfError,
    TelephoneEvent,
)
from proxy.media.rtp import RtpPacket
from tests.media.media_helpers import read_pcap, sipp_pcap

SIPP_CAPTURES = {f"dtmf_2833_{d}.pcap": d for d in "0123456789"} | {
    "dtmf_2833_pound.pcap": "#",
    "dtmf_2833_star.pcap": "*",
}


def _capture_packets(name: str) -> list[RtpPacket]:
    return [RtpPacket.parse(d.payload) for d in read_pcap(sipp_pcap(name))]


def _event_packets(
    timestamp: int, event: int, duration: int = 800, step: int = 160, ends: int = 3
) -> list[tuple[int, bool, bytes]]:
    """(timestamp, marker, payload) of one key press as a sender emits it."""
    packets = [
        (timestamp, d == step, TelephoneEvent(event, False, 10, d).serialize())
        for d in range(step, duration, step)
    ]
    end = TelephoneEvent(event, True, 10, duration).serialize()
    return packets + [(timestamp, False, end)] * ends


def _feed_all(
    detector: DtmfDetector, packets: list[tuple[int, bool, bytes]]
) -> list[DigitDetected]:
    found: list[DigitDetected] = []
    for timestamp, marker, payload in packets:
        found.extend(detector.feed(timestamp, marker, payload))
    return found


# --------------------------------------------------------------------------- payload


def test_telephone_event_payload_fields() -> None:
    event = TelephoneEvent.parse(bytes.fromhex("0b8a08c0"))
    assert event == TelephoneEvent(event=11, end=True, volume=10, duration=2240)
    assert event.digit == "#"
    assert event.serialize() == bytes.fromhex("0b8a08c0")


def test_reserved_bit_is_ignored_and_trailing_blocks_are_allowed() -> None:
    event = TelephoneEvent.parse(bytes.fromhex("05 4a 0140 05 4a 0280"))
    assert (event.event, event.end, event.volume, event.duration) == (5, False, 10, 320)


def test_short_payload_raises() -> None:
    with pytest.raises(DtmfError, match="too short: 3 bytes"):
        TelephoneEvent.parse(b"\x01\x02\x03")


@pytest.mark.parametrize(("code", "digit"), list(enumerate(DIGITS)))
def test_event_codes_map_to_keys(code: int, digit: str) -> None:
    assert TelephoneEvent(code, False, 0, 0).digit == digit


def test_flash_and_the_letters() -> None:
    assert DIGITS[12:] == "ABCD" + FLASH
    assert TelephoneEvent(32, False, 0, 0).digit is None  # a tone event, not a key


# --------------------------------------------------------------------------- SIPp captures


@pytest.mark.parametrize(("name", "digit"), sorted(SIPP_CAPTURES.items()))
def test_sipp_capture_yields_exactly_one_digit(name: str, digit: str) -> None:
    packets = _capture_packets(name)
    assert len(packets) == 10
    assert all(p.payload_type == 101 for p in packets)
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    detector = DtmfDetector()
    found = _feed_all(detector, [(p.timestamp, p.marker, p.payload) for p in packets])
    assert found == [DigitDetected(digit, packets[0].timestamp, 2240, ended=True)]
    assert detector.flush() == []


def test_all_sipp_captures_as_one_stream_give_every_digit_once_in_order() -> None:
    names = sorted(SIPP_CAPTURES, key=lambda n: _capture_packets(n)[0].timestamp)
    packets = [p for name in names for p in _capture_packets(name)]
    detector = DtmfDetector()
    found = _feed_all(detector, [(p.timestamp, p.marker, p.payload) for p in packets])
    assert [d.digit for d in found] == [SIPP_CAPTURES[n] for n in names]
    assert all(d.ended and d.duration == 2240 for d in found)


# --------------------------------------------------------------------------- synthetic


def test_end_retransmissions_report_once() -> None:
    detector = DtmfDetector()
    found = _feed_all(detector, _event_packets(1000, 5, duration=960))
    assert found == [DigitDetected("5", 1000, 960, ended=True)]


def test_digit_with_all_end_packets_lost_is_reported_when_the_next_event_starts() -> None:
    detector = DtmfDetector()
    first = _event_packets(1000, 1, duration=800, ends=0)
    second = _event_packets(5000, 2, duration=640)
    assert _feed_all(detector, first) == []
    assert detector.pending
    found = _feed_all(detector, second)
    assert found == [
        DigitDetected("1", 1000, 640, ended=False),  # longest duration seen: 640 of 800
        DigitDetected("2", 5000, 640, ended=True),
    ]


def test_flush_reports_an_open_event_once() -> None:
    detector = DtmfDetector()
    _feed_all(detector, _event_packets(1000, 12, ends=0))
    assert detector.flush() == [DigitDetected("A", 1000, 640, ended=False)]
    assert detector.flush() == []
    assert not detector.pending
    # Its end packets, arriving after all, do not report it again.
    end = TelephoneEvent(12, True, 10, 800).serialize()
    assert detector.feed(1000, False, end) == []


def test_late_end_of_an_event_already_closed_by_a_newer_one_is_ignored() -> None:
    detector = DtmfDetector()
    found = _feed_all(detector, _event_packets(1000, 3, ends=0) + _event_packets(9000, 4)[:2])
    assert [d.digit for d in found] == ["3"]
    late_end = TelephoneEvent(3, True, 10, 800).serialize()
    assert detector.feed(1000, False, late_end) == []
    assert _feed_all(detector, _event_packets(9000, 4)[2:]) == [
        DigitDetected("4", 9000, 800, ended=True)
    ]


def test_straggler_of_an_older_event_does_not_open_a_new_one() -> None:
    detector = DtmfDetector()
    _feed_all(detector, _event_packets(9000, 7)[:2])
    old = TelephoneEvent(6, False, 10, 160).serialize()
    assert detector.feed(8000, False, old) == []
    assert detector.ignored == 1
    assert detector.flush() == [DigitDetected("7", 9000, 320, ended=False)]


def test_duplicated_and_reordered_packets_of_one_event_give_one_digit() -> None:
    rng = random.Random(4733)
    packets = _event_packets(123456, 9, duration=1600)
    packets = packets + rng.sample(packets, 5)
    rng.shuffle(packets)
    detector = DtmfDetector()
    found = _feed_all(detector, packets) + detector.flush()
    assert found == [DigitDetected("9", 123456, 1600, ended=True)]


def test_end_packet_arriving_first_reports_at_once() -> None:
    detector = DtmfDetector()
    packets = _event_packets(500, 0)
    assert detector.feed(*packets[-1]) == [DigitDetected("0", 500, 800, ended=True)]
    assert _feed_all(detector, packets) == []


def test_timestamp_wraparound_between_events() -> None:
    detector = DtmfDetector()
    packets = _event_packets(0xFFFFFF00, 10) + _event_packets(0x00000200, 11)
    found = _feed_all(detector, packets)
    assert [(d.digit, d.start_timestamp) for d in found] == [("*", 0xFFFFFF00), ("#", 0x200)]


def test_letters_and_flash_are_keys() -> None:
    detector = DtmfDetector()
    packets = [
        p for i, code in enumerate(range(12, 17)) for p in _event_packets(1000 * (i + 1), code)
    ]
    assert [d.digit for d in _feed_all(detector, packets)] == ["A", "B", "C", "D", FLASH]


def test_non_key_events_and_malformed_payloads_are_ignored() -> None:
    detector = DtmfDetector()
    assert _feed_all(detector, _event_packets(1000, 32)) == []  # a modem tone event
    assert detector.feed(2000, True, b"\x01") == []
    assert detector.ignored == 8  # 4 updates + 3 ends of event 32, 1 runt
    assert not detector.pending


def test_same_timestamp_but_a_different_key_is_a_new_event() -> None:
    # Some gateways reuse the timestamp for consecutive keys.
    detector = DtmfDetector()
    found = _feed_all(detector, _event_packets(4000, 1) + _event_packets(4000, 2))
    assert [(d.digit, d.ended) for d in found] == [("1", True), ("2", True)]


@given(
    st.lists(st.integers(0, 16), min_size=1, max_size=8),
    st.randoms(use_true_random=False),
)
def test_each_key_press_is_reported_exactly_once(codes: list[int], rng: random.Random) -> None:
    """Packets of each event are shuffled, duplicated and partly lost (at least one
    survives); events stay in order.  Every event is reported once."""
    detector = DtmfDetector()
    found: list[DigitDetected] = []
    for index, code in enumerate(codes):
        packets = _event_packets(10_000 * (index + 1), code, duration=160 * rng.randint(2, 10))
        survivors = [p for p in packets if rng.random() > 0.3] or [rng.choice(packets)]
        survivors += [rng.choice(survivors) for _ in range(rng.randint(0, 3))]
        rng.shuffle(survivors)
        found.extend(_feed_all(detector, survivors))
    found.extend(detector.flush())
    assert [d.digit for d in found] == [DIGITS[c] for c in codes]
    assert [d.start_timestamp for d in found] == [10_000 * (i + 1) for i in range(len(codes))]


def test_a_replayed_capture_is_a_restarted_stream_not_stale_reordering() -> None:
    """SIPp's key-press captures each start from the same numbering: played one after
    the other, the second key's timestamps are behind the first's.  Given sequence and
    SSRC, the detector sees a restarted sender and reports both keys."""
    detector = DtmfDetector()
    found: list[str] = []
    for name in ("dtmf_2833_star.pcap", "dtmf_2833_0.pcap"):
        for packet in _capture_packets(name):
            digits = detector.feed(
                packet.timestamp,
                packet.marker,
                packet.payload,
                sequence=packet.sequence_number,
                ssrc=packet.ssrc,
            )
            found += [d.digit for d in digits]
    found += [d.digit for d in detector.flush()]
    assert found == ["*", "0"]


def test_without_sequence_numbers_a_replay_looks_stale() -> None:
    detector = DtmfDetector()
    found: list[str] = []
    for name in ("dtmf_2833_star.pcap", "dtmf_2833_0.pcap"):
        for packet in _capture_packets(name):
            found += [d.digit for d in detector.feed(packet.timestamp, False, packet.payload)]
    found += [d.digit for d in detector.flush()]
    assert found[0] == "*" and "0" not in found
