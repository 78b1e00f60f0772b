"""Errors of the recording use cases, defined here so that both the call (which raises
some of them) and the HTTP API (which maps each to a status) import downward, never
across.  Each says, in one line, what the person asking should know."""

from __future__ import annotations

from .policy import Decision


class RecordingActionError(Exception):
    """The recording cannot take that action now (the API answers 409)."""


class CallNotFound(LookupError):
    """No active call has that id (404)."""


class NotYourCall(PermissionError):
    """The call is active but another operator's (403): a call taker acts on their own
    calls only."""


class InvalidRecordingRequest(ValueError):
    """An unknown action, or a missing or overlong reason (422)."""


class RecordNotFound(LookupError):
    """No recording, recording part, hold or access request has that id (404)."""


class InvalidHoldRequest(ValueError):
    """A hold's kind, reference, review date or person is missing or malformed (422)."""


class HoldRefused(Exception):
    """The hold cannot be placed or released now: its recording has no audio left to
    keep, or the hold was already released (409)."""


# -- access (issue 15): requests, grants and the gate's refusals ----------------------


class AccessDenied(PermissionError):
    """The access policy refused (403); ``decision`` holds the rule id the problem body
    names and the sentence it shows.  The refusal is already in the audit chain."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(f"{decision.reason} ({decision.rule})")
        self.decision = decision


class InvalidAccessRequest(ValueError):
    """An access request or decision is malformed: a missing reason, a grant's days out
    of bounds, a part number that is no number (422)."""


class AccessRequestConflict(Exception):
    """The access request is no longer pending: decided or withdrawn already (409)."""


# -- playback (issue 15): rendering a recording for a person ---------------------------


class RecordingUnreadable(Exception):
    """The recording's audio cannot be decrypted: the key does not open it, or its files
    failed verification (altered, truncated, missing).  An integrity incident (500)."""


class RangeNotSatisfiable(ValueError):
    """A byte range outside the rendered audio (416); ``length`` is the audio's size,
    for ``Content-Range: bytes */length``."""

    def __init__(self, message: str, length: int) -> None:
        super().__init__(message)
        self.length = length


# -- anomaly flags (issue 15): the DPO clears what they have looked at ------------------
# Subclasses of the access errors: a flag is the DPO's finding about accesses, and the
# records service's one status table (``proxy.control.records.statuses``) answers them.


class InvalidFlagRequest(InvalidAccessRequest):
    """Clearing a flag without a reason, or with an overlong one (422)."""


class FlagAlreadyCleared(AccessRequestConflict):
    """The flag was cleared before (409)."""


class InvalidQuery(InvalidAccessRequest):
    """A listing's query parameter is unknown or malformed (422)."""
