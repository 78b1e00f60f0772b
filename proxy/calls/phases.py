"""Where a call is in its life, and how its flow learns that it is over.

Shared by the call flow and its collaborators (the offers of a call end it when a late
offer gets no usable answer), so neither imports the other for them."""

from __future__ import annotations

import enum
from typing import Literal

from ..storage.catalog import CallOutcome

#: Who ended a call, as ``CallEnded.by`` says it.
Party = Literal["caller", "call_taker", "proxy"]


class CallPhase(enum.Enum):
    SETUP = "setup"
    NOTICE = "notice"
    RINGING = "ringing"
    BRIDGED = "bridged"
    ENDED = "ended"


class CallOver(Exception):
    """Raised inside a call's flow when a party hangs up (or the call cannot go on)."""

    def __init__(self, outcome: CallOutcome, by: Party, why: str) -> None:
        super().__init__(f"{by} ended the call ({why})")
        self.outcome = outcome
        self.by = by
        self.why = why
