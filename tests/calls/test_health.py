"""Call takers' health from their OPTIONS keepalives: pure, fed each probe's end."""

from __future__ import annotations

import pytest

from proxy.calls.health import TargetHealth, alive
from proxy.sip.resolve import Target

A = Target("192.0.2.1", 5060, "UDP")
B = Target("192.0.2.2", 5060, "UDP")


@pytest.mark.parametrize(("status", "up"), [(200, True), (405, True), (404, True),
                                            (408, False), (503, False), (None, False)])  # fmt: skip
def test_any_final_response_but_408_and_503_means_alive(status: int | None, up: bool) -> None:
    assert alive(status) is up


def test_an_address_is_down_after_k_failures_in_a_row_and_up_at_the_next_answer() -> None:
    health = TargetHealth(3)
    for _ in range(2):
        health.probed("sip:a@x", A, None)
    assert not health.is_down(A) and health.is_up("sip:a@x")
    health.probed("sip:a@x", A, 503)
    assert health.is_down(A) and not health.is_up("sip:a@x")
    health.probed("sip:a@x", A, 200)
    assert not health.is_down(A) and health.is_up("sip:a@x")


def test_a_success_resets_the_count() -> None:
    health = TargetHealth(2)
    health.probed("sip:a@x", A, None)
    health.probed("sip:a@x", A, 200)
    health.probed("sip:a@x", A, None)
    assert not health.is_down(A)


def test_a_call_taker_is_up_while_one_address_is() -> None:
    health = TargetHealth(1)
    health.probed("sip:a@x", A, None)
    health.probed("sip:a@x", B, 200)
    assert health.is_up("sip:a@x")
    assert health.reachable([A, B]) == [B]
    health.probed("sip:a@x", B, None)
    assert not health.is_up("sip:a@x")
    assert health.reachable([A, B]) == [A, B]  # all down: all tried


def test_down_call_takers_are_skipped_while_another_is_up_and_tried_when_all_are_down() -> None:
    health = TargetHealth(1)
    health.probed("sip:a@x", A, None)
    assert health.usable(["sip:a@x", "sip:b@y", "sip:c@z"]) == ["sip:b@y", "sip:c@z"]
    health.probed("sip:b@y", B, None)
    assert health.usable(["sip:a@x", "sip:b@y"]) == ["sip:a@x", "sip:b@y"]


def test_never_probed_is_up_and_an_address_no_longer_resolved_is_forgotten() -> None:
    health = TargetHealth(1)
    assert health.is_up("sip:new@x")
    health.probed("sip:a@x", A, None)
    health.forget("sip:a@x", {B})
    assert not health.is_down(A) and health.is_up("sip:a@x")


def test_at_least_one_failure_is_needed() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        TargetHealth(0)
