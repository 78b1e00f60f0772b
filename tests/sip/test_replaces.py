"""The ``Replaces`` header (RFC 3891 §6.1): parsed, refused when malformed, written back."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.sip.errors import RemoteSipError
from proxy.sip.replaces import Replaces, parse_replaces


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff",  # RFC 3891 §6.1
            Replaces("98732@sip.example.com", "ff87ff", "r33th4x0r"),
        ),
        (
            "12345600@atlanta.example.com ; to-tag=12345 ;from-tag=2345;early-only",
            Replaces("12345600@atlanta.example.com", "12345", "2345", early_only=True),
        ),
        ("abc;TO-TAG=x;From-Tag=y;other=1", Replaces("abc", "x", "y")),
    ],
)
def test_a_replaces_value_names_one_dialog(value: str, expected: Replaces) -> None:
    assert parse_replaces(value) == expected
    assert parse_replaces(str(expected)) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        ";to-tag=a;from-tag=b",  # no Call-ID
        "abc;to-tag=a",  # no from-tag
        "abc;from-tag=b",  # no to-tag
        "abc;to-tag=a;to-tag=c;from-tag=b",  # two to-tags
        "abc;to-tag;from-tag=b",  # a to-tag without a value
        "abc;to-tag=a;from-tag=b;early-only=yes",
        "a b;to-tag=a;from-tag=b",
        "abc;to-tag=a;from-tag=b" + ";x=1" * 400,  # too long
    ],
)
def test_a_malformed_replaces_is_a_400(value: str) -> None:
    with pytest.raises(RemoteSipError) as error:
        parse_replaces(value)
    assert error.value.status == 400


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_a_dialog_or_a_400(text: str) -> None:
    try:
        replaces = parse_replaces(text)
    except RemoteSipError as error:
        assert error.status == 400
        return
    assert parse_replaces(str(replaces)) == replaces
