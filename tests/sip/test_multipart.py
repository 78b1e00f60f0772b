"""multipart/mixed bodies (RFC 2046 §5.1): the parts of a SIPREC INVITE's body, and a
malformed body refused with 400 — whole, byte by byte as Hypothesis varies it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.sip import sdp
from proxy.sip.errors import RemoteSipError
from proxy.sip.multipart import MAX_PARTS, boundary_of, parse_multipart

from .siprec_examples import CONTENT_TYPE, metadata, multipart_body, sdp_offer


def test_the_rfc_8068_body_splits_into_its_sdp_and_its_metadata() -> None:
    body = multipart_body(sdp_offer(), metadata()).encode()
    parts = parse_multipart(body, CONTENT_TYPE)
    assert [p.content_type for p in parts] == ["application/sdp", "application/rs-metadata+xml"]
    assert parts[1].header("content-disposition") == "recording-session"
    assert parts[1].body == metadata().encode().removesuffix(b"\n")  # the break is the delimiter's
    offer = sdp.SessionDescription.parse(parts[0].body)
    assert [m.port for m in offer.media] == [49170, 51372]


def test_bare_line_feeds_a_preamble_an_epilogue_and_a_quoted_boundary_are_read() -> None:
    body = (
        b"This is the preamble.\n--b 1\nContent-Type: text/plain\n\none\n"
        b"--b 1   \n\ntwo, no headers\n--b 1--\nepilogue"
    )
    parts = parse_multipart(body, 'multipart/mixed; boundary="b 1"')
    assert [(p.content_type, p.body) for p in parts] == [
        ("text/plain", b"one"),
        ("text/plain", b"two, no headers"),
    ]


def test_a_boundary_inside_a_line_does_not_split_the_part() -> None:
    body = b"--x\r\nContent-Type: a/b\r\n\r\nsay --x here\r\n--x--\r\n"
    assert parse_multipart(body, "multipart/mixed;boundary=x")[0].body == b"say --x here"


@pytest.mark.parametrize(
    ("body", "content_type", "why"),
    [
        (b"--x\r\n\r\nbody\r\n--x--", "multipart/mixed", "without a boundary"),
        (b"--x\r\n\r\nbody\r\n--x--", "multipart/mixed;boundary=", "invalid multipart boundary"),
        (b"--x\r\n\r\nbody\r\n--x--", 'multipart/mixed;boundary="a b "', "invalid"),
        (b"no delimiter at all", "multipart/mixed;boundary=x", "without its boundary"),
        (b"--x\r\n\r\nbody, never closed", "multipart/mixed;boundary=x", "closing boundary"),
        (b"--xjunk\r\n\r\nbody\r\n--x--", "multipart/mixed;boundary=x", "junk after"),
        (b"--x\r\nContent-Type a/b\r\n\r\nb\r\n--x--", "multipart/mixed;boundary=x", "header"),
        (b"--x\r\nContent-Type: a/b\r\nbody\r\n--x--", "multipart/mixed;boundary=x", "empty"),
        (b"--x\r\nX: \xff\r\n\r\nb\r\n--x--", "multipart/mixed;boundary=x", "UTF-8"),
        (b"--x\r\n\r\n1\r\n" * (MAX_PARTS + 1) + b"--x--", "multipart/mixed;boundary=x", "more"),
    ],
)
def test_a_malformed_body_is_a_400_saying_why(body: bytes, content_type: str, why: str) -> None:
    with pytest.raises(RemoteSipError) as caught:
        parse_multipart(body, content_type)
    assert caught.value.status == 400
    assert why in caught.value.reason


def test_the_boundary_parameter_is_found_among_others() -> None:
    assert boundary_of('multipart/mixed ; charset=x;BOUNDARY="unique-Boundary"') == (
        "unique-Boundary"
    )


@given(st.binary(max_size=400), st.text(max_size=80))
def test_any_bytes_give_parts_or_the_protocol_error(body: bytes, content_type: str) -> None:
    try:
        parse_multipart(body, content_type)
    except RemoteSipError as exc:
        assert exc.status == 400


_PIECES = st.sampled_from(
    [b"--b", b"--b--", b"\r\n", b"\n", b"Content-Type: application/sdp", b": ", b"x", b"\xff"]
)


@given(st.lists(_PIECES, max_size=30))
def test_bodies_made_of_delimiters_and_headers_never_raise_anything_else(
    pieces: list[bytes],
) -> None:
    try:
        parts = parse_multipart(b"".join(pieces), "multipart/mixed;boundary=b")
    except RemoteSipError as exc:
        assert exc.status == 400
    else:
        assert len(parts) <= MAX_PARTS
