"""Recording codes in the call taker's digits: which digits are held, dropped, passed on."""

from __future__ import annotations

from proxy.calls.dtmf_codes import CodeMatcher

CODES = {"*0": "stop", "*9": "discard", "*1": "resume"}


def test_a_code_is_recognised_and_its_digits_dropped() -> None:
    matcher = CodeMatcher(CODES)
    first = matcher.feed("*", "t1", 0.0)
    assert first.action is None and first.released == () and matcher.holding
    second = matcher.feed("0", "t2", 0.2)
    assert second.action == "stop"
    assert second.dropped == ("t1", "t2")
    assert not matcher.holding


def test_digits_that_start_no_code_pass_straight_through() -> None:
    matcher = CodeMatcher(CODES)
    assert matcher.feed("5", "a", 0.0).released == ("a",)
    assert not matcher.holding


def test_a_star_followed_by_another_digit_is_released_with_it() -> None:
    matcher = CodeMatcher(CODES)
    matcher.feed("*", "a", 0.0)
    decision = matcher.feed("5", "b", 0.1)
    assert decision.action is None
    assert decision.released == ("a", "b")


def test_a_second_star_restarts_the_code() -> None:
    matcher = CodeMatcher(CODES)
    matcher.feed("*", "a", 0.0)
    decision = matcher.feed("*", "b", 0.1)
    assert decision.released == ("a",)
    assert matcher.holding
    done = matcher.feed("9", "c", 0.2)
    assert done.action == "discard" and done.dropped == ("b", "c")


def test_an_unfinished_code_is_released_after_the_timeout() -> None:
    matcher = CodeMatcher(CODES, timeout=3.0)
    matcher.feed("*", "a", 0.0)
    assert matcher.expire(2.9).released == ()
    assert matcher.expire(3.0).released == ("a",)
    assert not matcher.holding


def test_a_late_digit_does_not_complete_an_expired_code() -> None:
    matcher = CodeMatcher(CODES, timeout=3.0)
    matcher.feed("*", "a", 0.0)
    decision = matcher.feed("0", "b", 5.0)
    assert decision.action is None
    assert decision.released == ("a", "b")


def test_longer_codes_and_shared_prefixes() -> None:
    matcher = CodeMatcher({"*0": "stop", "*00": "discard"})
    first = matcher.feed("*", 1, 0)
    assert first.action is None
    # "*0" is complete and matches at once: the shorter code wins
    assert matcher.feed("0", 2, 0).action == "stop"
