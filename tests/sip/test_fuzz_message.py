"""Property tests: whatever the bytes, parse_message returns a message or raises
RemoteSipError — nothing else — quickly; and what parses survives serialise + parse.

Inputs: random bytes, and mutations (byte flips, insertions, deletions, truncation,
duplicated lines, inserted grammar characters) of every valid torture and real message.
The time bound (0.5 s a message, generous) guards against catastrophic regex backtracking.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.sip.errors import RemoteSipError
from proxy.sip.framing import StreamFramer
from proxy.sip.message import (
    MAX_MESSAGE_SIZE,
    Message,
    Request,
    Response,
    error_response,
    parse_message,
)

TIME_BOUND_S = 0.5

COMMON = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces of SIP syntax worth inserting: separators, quoting, escapes, line ends.
SPECIALS = [
    b":",
    b";",
    b",",
    b"=",
    b'"',
    b"\\",
    b"<",
    b">",
    b"@",
    b"%",
    b"%0",
    b"%00",
    b"[",
    b"]",
    b" ",
    b"\t",
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\n ",
    b"\r\n\r\n",
    b"\x00",
    b"\xff",
    b"\xc3",
    b"SIP/2.0",
    b"sip:",
    b"z9hG4bK",
    b"Content-Length: 9999\r\n",
    b"l: 0\r\n",
    b"v: ",
    b"Via: SIP/2.0/UDP [::1]\r\n",
    b"*",
    b"?",
    b"&",
    b"\r ",
    b" \r",
    b"\r\n\t",
]


def check_parse(data: bytes, *, stream: bool = False) -> Message | None:
    """Parse ``data``: a message or RemoteSipError only, within the time bound.  A
    rejected request that can be answered must give a response that serialises."""
    # CPU time (other processes do not count), with the collector held off: a full
    # collection of the whole test run's garbage is not the parser's cost
    result: Message | None = None
    failure: RemoteSipError | None
    gc.disable()
    try:
        start = time.thread_time()
        try:
            result = parse_message(data, stream=stream)
        except RemoteSipError as err:
            failure = err
        else:
            failure = None
        elapsed = time.thread_time() - start
    finally:
        gc.enable()
    if failure is not None:
        assert 100 <= failure.status <= 699
        response = error_response(failure)
        if response is not None:
            assert failure.answerable
            assert response.status == failure.status
            response.serialize()
    assert elapsed < TIME_BOUND_S, f"parse took {elapsed:.3f} s of CPU"
    if result is not None:
        assert isinstance(result, Request | Response)
    return result


def comparable(message: Message) -> tuple[str, list[tuple[str, str]], bytes]:
    headers = [(n, v) for n, v in message.headers if n.lower() not in ("content-length", "l")]
    return message.start_line(), headers, message.body


def assert_round_trips(message: Message) -> None:
    again = parse_message(message.serialize())
    assert type(again) is type(message)
    assert comparable(again) == comparable(message)
    assert again.headers.get_lines("content-length") == [str(len(message.body))]


@pytest.fixture(scope="module")
def seeds(testdata: Path, load_wire: Callable[[Path], bytes]) -> list[bytes]:
    """Every torture and real message that parses."""
    sip = testdata / "sip"
    paths = sorted(sip.glob("rfc4475/*.dat")) + sorted(sip.glob("rfc5118/*.dat"))
    paths += sorted((sip / "real").rglob("*.sip"))
    out: list[bytes] = []
    for path in paths:
        data = load_wire(path)
        try:
            parse_message(data)
        except RemoteSipError:
            continue
        out.append(data)
    assert len(out) > 150
    return out


@st.composite
def mutations(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from(["flip", "insert", "special", "delete", "truncate", "dup", "eol"])
        )
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and data:
            data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "special":
            data[at:at] = draw(st.sampled_from(SPECIALS))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del data[at:]
        elif kind in ("dup", "eol"):
            lines = bytes(data).split(b"\r\n")
            i = draw(st.integers(0, len(lines) - 1))
            if kind == "dup":
                lines.insert(i, lines[i])
            else:  # something at the end of a line, where trimming and folding happen
                lines[i] += draw(st.sampled_from(SPECIALS))
            data = bytearray(b"\r\n".join(lines))
    return bytes(data)


@settings(COMMON, max_examples=2000)
@given(data=st.binary(max_size=1500))
def test_random_bytes(data: bytes) -> None:
    check_parse(data)
    check_parse(data, stream=True)


SIP_ALPHABET = st.sampled_from(
    [
        b"INVITE ",
        b"SIP/2.0 ",
        b"sip:",
        b"a",
        b"1",
        b"@",
        b"\r\n",
        b": ",
        b";",
        b",",
        b'"',
        b"<",
        b">",
        b" ",
        b"Via",
        b"v",
        b"From",
        b"To",
        b"Call-ID",
        b"CSeq",
        b"l",
        b"=",
        b"[",
        b"]",
        b"%",
        b"\\",
        b"\t",
        b"tag",
        b"branch",
        b"200 ",
    ]
)


@settings(COMMON, max_examples=2000)
@given(pieces=st.lists(SIP_ALPHABET, max_size=80))
def test_random_sip_like_text(pieces: list[bytes]) -> None:
    message = check_parse(b"".join(pieces))
    if message is not None:
        assert_round_trips(message)


@settings(COMMON, max_examples=6000)
@given(data=st.data())
def test_mutated_messages(seeds: list[bytes], data: st.DataObject) -> None:
    mutated = data.draw(mutations(seeds))
    message = check_parse(mutated)
    if message is not None:
        assert_round_trips(message)
    check_parse(mutated, stream=True)


@settings(COMMON, max_examples=500)
@given(data=st.data())
def test_framer_takes_any_chunks(seeds: list[bytes], data: st.DataObject) -> None:
    stream = data.draw(mutations(seeds)) + data.draw(st.sampled_from(seeds))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    framer = StreamFramer()
    try:
        for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            for message in framer.feed(stream[a:b]):
                check_parse(message, stream=True)
    except RemoteSipError as err:
        assert err.status in (400, 513)


def test_every_seed_round_trips(seeds: list[bytes]) -> None:
    for seed in seeds:
        message = check_parse(seed)
        assert message is not None
        assert_round_trips(message)


# ---------------------------------------------------------------------------------------
# Pathological inputs near the size limit: runs of one grammar character in every place
# a regex or a scanner looks at.

BASE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP host.example.com;branch=z9hG4bK1\r\n"
    b"From: <sip:alice@example.com>;tag=1\r\n"
    b"To: <sip:bob@example.com>\r\n"
    b"Call-ID: abc@example.com\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.1>\r\n"
)
PLACES = {
    "request-uri-host": (b"sip:bob@example.com SIP", b"sip:bob@example.com{} SIP"),
    "request-uri-ipv6": (b"sip:bob@example.com SIP", b"sip:bob@[{}] SIP"),
    "via-host": (b"UDP host.example.com", b"UDP host{}"),
    "via-ipv6": (b"UDP host.example.com", b"UDP [{}]"),
    "via-param": (b"branch=z9hG4bK1", b"branch=z9hG4bK1;x={}"),
    "from-display": (b"From: <", b"From: {} <"),
    "to-uri": (b"<sip:bob@example.com>", b"<sip:bob{}@example.com>"),
    "contact-params": (b"192.0.2.1>", b"192.0.2.1>;{}"),
    "call-id": (b"abc@example.com", b"abc{}"),
    "cseq": (b"1 INVITE", b"1{} INVITE"),
    "header-value": (b"CSeq: 1 INVITE\r\n", b"CSeq: 1 INVITE\r\nX: {}\r\n"),
}
RUNS = [b":", b";", b",", b'"', b"\\", b"<", b"%", b" ", b"a-", b"a.", b"::", b"=", b"\r\n "]


@pytest.mark.parametrize("place", sorted(PLACES))
@pytest.mark.parametrize("run", RUNS, ids=[repr(r) for r in RUNS])
def test_long_runs_parse_in_bounded_time(place: str, run: bytes) -> None:
    old, new = PLACES[place]
    size = (MAX_MESSAGE_SIZE - len(BASE) - 64) // len(run)
    data = BASE.replace(old, new.replace(b"{}", run * size)) + b"Content-Length: 0\r\n\r\n"
    assert len(data) <= MAX_MESSAGE_SIZE
    check_parse(data)
