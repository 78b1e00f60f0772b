"""The live-recording-control use case on a fake calls view: ownership, validation, and
that the call is asked exactly once with the operator as the actor."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.records.errors import (
    CallNotFound,
    InvalidRecordingRequest,
    NotYourCall,
    RecordingActionError,
)
from proxy.records.live import (
    ACTIONS,
    MAX_REASON,
    checked_reason,
    control_recording,
    own_call,
    own_calls,
    team_call,
)


class FakeCall:
    """A call in progress as the use case sees it: its operator and its switch."""

    def __init__(self, operator: str | None, *, refuse: str | None = None) -> None:
        self._operator = operator
        self.refuse = refuse
        self.asked: list[tuple[str, str, str, str]] = []

    @property
    def operator(self) -> str | None:
        return self._operator

    async def recording_action(
        self, action: str, *, actor: str, channel: str, reason: str
    ) -> dict[str, Any]:
        if self.refuse is not None:
            raise RecordingActionError(self.refuse)
        self.asked.append((action, actor, channel, reason))
        return {"recording": action}


@pytest.fixture
def calls() -> dict[str, FakeCall]:
    return {"c1": FakeCall("alice"), "c2": FakeCall("bob"), "c3": FakeCall(None)}


@pytest.mark.parametrize("action", ACTIONS)
async def test_the_calls_own_operator_switches_its_recording(
    calls: dict[str, FakeCall], action: str
) -> None:
    answer = await control_recording(calls, "c1", "alice", action, "  asked to  ", channel="api")
    assert answer == {"recording": action}
    assert calls["c1"].asked == [(action, "alice", "api", "asked to")]  # reason stripped


async def test_an_unknown_call_is_not_found(calls: dict[str, FakeCall]) -> None:
    with pytest.raises(CallNotFound):
        await control_recording(calls, "nope", "alice", "stop", "x", channel="api")


@pytest.mark.parametrize(("call_id", "operator"), [("c2", "alice"), ("c3", "alice")])
async def test_someone_elses_call_or_one_nobody_answered_is_not_yours(
    calls: dict[str, FakeCall], call_id: str, operator: str
) -> None:
    with pytest.raises(NotYourCall):
        await control_recording(calls, call_id, operator, "stop", "x", channel="api")
    assert all(not call.asked for call in calls.values())


async def test_ownership_is_checked_before_the_request_itself(calls: dict[str, FakeCall]) -> None:
    with pytest.raises(NotYourCall):  # not "bad action": nothing about the call leaks
        await control_recording(calls, "c2", "alice", "explode", None, channel="api")


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("stop", None),
        ("stop", "   "),
        ("stop", 7),
        ("pause", "x"),  # not a person's action: hold pauses, people stop
        (["stop"], "x"),
        (None, "x"),
        ("stop", "x" * (MAX_REASON + 1)),
    ],
)
async def test_an_unknown_action_or_a_missing_or_long_reason_is_invalid(
    calls: dict[str, FakeCall], action: object, reason: object
) -> None:
    with pytest.raises(InvalidRecordingRequest):
        await control_recording(calls, "c1", "alice", action, reason, channel="api")
    assert calls["c1"].asked == []


async def test_a_reason_of_the_maximum_length_is_accepted(calls: dict[str, FakeCall]) -> None:
    await control_recording(calls, "c1", "alice", "stop", "x" * MAX_REASON, channel="api")
    assert len(calls["c1"].asked) == 1


async def test_the_calls_refusal_reaches_the_shell(calls: dict[str, FakeCall]) -> None:
    calls["c1"].refuse = "the recording is not stopped"
    with pytest.raises(RecordingActionError, match="not stopped"):
        await control_recording(calls, "c1", "alice", "resume", "x", channel="api")


def test_own_calls_and_own_call(calls: dict[str, FakeCall]) -> None:
    assert own_calls(calls, "bob") == [calls["c2"]]
    assert own_calls(calls, "carol") == []
    assert own_call(calls, "c1", "alice") is calls["c1"]
    with pytest.raises(NotYourCall):
        own_call(calls, "c1", "bob")


def test_a_manager_watches_the_calls_of_their_teams_operators(calls: dict[str, FakeCall]) -> None:
    team_of = {"alice": "red", "bob": "blue", "carol": None}
    watched = [cid for cid, call in calls.items() if team_call(call, team_of, {"red"})]
    assert watched == ["c1"]
    assert not any(team_call(call, team_of, set()) for call in calls.values())
    assert not team_call(FakeCall("carol"), team_of, {"red"})  # an operator of no team
    assert not team_call(FakeCall("dan"), team_of, {"red"})  # not in [[operators]]


async def test_watching_a_call_is_not_switching_it(calls: dict[str, FakeCall]) -> None:
    with pytest.raises(NotYourCall):
        await control_recording(calls, "c1", "manager-of-red", "stop", "x", channel="console")
    assert calls["c1"].asked == []


@pytest.mark.parametrize(
    ("reason", "said"),
    [(None, "required"), ("  ", "required"), (3, "required"), ("x" * (MAX_REASON + 1), "longer")],
)
def test_a_reason_is_checked_on_its_own_before_any_confirmation(reason: object, said: str) -> None:
    with pytest.raises(InvalidRecordingRequest, match=said):
        checked_reason(reason)
    assert checked_reason("  upset  ") == "upset"
