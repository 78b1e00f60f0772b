"""Control of a live recording: what a call taker may do to the recording of a call in
progress (stop it, discard it, resume it), whichever shell asks — the HTTP API today, a
web console later.  The policy is here and only here:

* a call taker sees and acts on their own calls only (the call's operator is the
  authenticated one): ``CallNotFound`` for a call not in progress, ``NotYourCall`` for
  someone else's; a manager sees their team's calls (:func:`team_call`) but acts on
  none of them;
* the action is one of ``ACTIONS`` and a reason is required, at most ``MAX_REASON``
  characters (``InvalidRecordingRequest``);
* the call then carries it out at its next tick, and records who, how and why; when
  the recording cannot take the action now it raises ``RecordingActionError``.

The shells authenticate the person and map these errors to their own answers.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Protocol, TypeVar

from .errors import CallNotFound, InvalidRecordingRequest, NotYourCall

ACTIONS = ("stop", "discard", "resume")
MAX_REASON = 500


class LiveCall(Protocol):
    """What the use case needs of a call in progress (``proxy.calls.b2bua.Call``)."""

    @property
    def operator(self) -> str | None: ...

    async def recording_action(
        self, action: str, *, actor: str, channel: str, reason: str
    ) -> dict[str, Any]: ...


C = TypeVar("C", bound=LiveCall)


def own_calls(calls: Mapping[str, C], operator: str) -> list[C]:
    """The calls in progress that ``operator`` answered (or placed)."""
    return [call for call in calls.values() if call.operator == operator]


def team_call(call: LiveCall, team_of: Mapping[str, str | None], teams: Collection[str]) -> bool:
    """Whether ``call`` was taken by an operator of one of ``teams`` (``team_of``: each
    operator's team, from ``[[operators]] team``): what a manager watches.  Watching is
    not acting: only the call's own operator switches its recording (:func:`own_call`)."""
    team = None if call.operator is None else team_of.get(call.operator)
    return team is not None and team in teams


def own_call(calls: Mapping[str, C], call_id: str, operator: str) -> C:
    """The call ``call_id`` if it is in progress and ``operator``'s; a shell may ask this
    before reading the rest of a request, so nothing of a request about someone else's
    call is parsed."""
    call = calls.get(call_id)
    if call is None:
        raise CallNotFound("no such active call")
    if call.operator != operator:
        raise NotYourCall("this call is not yours")
    return call


async def control_recording(
    calls: Mapping[str, LiveCall],
    call_id: str,
    operator: str,
    action: object,
    reason: object,
    *,
    channel: str,
    actor: str | None = None,
) -> dict[str, Any]:
    """Stop, discard or resume the recording of ``operator``'s call ``call_id`` for
    ``reason``, asked through ``channel`` ("api"...).  ``action`` and ``reason`` are as
    the person sent them (any JSON value): they are checked here.  ``actor`` is who the
    recording event names: the operator (an API token is the operator's), or the
    signed-in user acting for that operator (the web console).  Returns the call's
    answer (its id, the recording's id and state)."""
    call = own_call(calls, call_id, operator)
    if not isinstance(action, str) or action not in ACTIONS:
        raise InvalidRecordingRequest(f"action must be one of {', '.join(ACTIONS)}")
    return await call.recording_action(
        action, actor=actor or operator, channel=channel, reason=checked_reason(reason)
    )


def checked_reason(reason: object) -> str:
    """``reason`` as the person sent it, trimmed, or ``InvalidRecordingRequest`` saying
    what is wrong with it.  A shell with a confirmation step (the console's Stop and
    delete) asks this first, so a missing reason is said before anything is confirmed."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidRecordingRequest("a reason is required")
    if len(reason) > MAX_REASON:
        raise InvalidRecordingRequest(f"the reason is longer than {MAX_REASON} characters")
    return reason.strip()
