"""A call's catalog rows held until its two writes (issue 19): the bridge takes what
is pending, the end takes the rest, and a call never bridged writes all at its end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from proxy.calls.call_entry import CallEntry
from proxy.storage.catalog import (
    CallBatch,
    CallDirection,
    CallOutcome,
    CallUpdate,
    ConsentReceipt,
    NewCall,
    NoticeMode,
)

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
CALL = NewCall(
    sip_call_id="sip-1", caller="+441234567890", callee="surgery",
    direction=CallDirection.INBOUND, started_at=T0, call_id="call-1",
)  # fmt: skip
RECEIPT = ConsentReceipt(
    "call-1", NoticeMode.NONE, None, None, None, 0, 0,
    completed=False, caller_left_during_notice=False, do_not_record=False,
)  # fmt: skip


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_bridge_takes_the_call_row_its_answer_and_receipt_and_the_end_only_the_end() -> None:
    entry = CallEntry(CALL)
    entry.answered(at(1))
    entry.heard(RECEIPT)
    assert entry.bridged(at(5), "alice") == CallBatch(
        "call-1",
        new_call=CALL,
        receipt=RECEIPT,
        changes=CallUpdate(answered_at=at(1), bridged_at=at(5), operator="alice"),
    )
    entry.submitted()
    assert entry.ended(at(9), CallOutcome.COMPLETED) == CallBatch(
        "call-1", changes=CallUpdate(ended_at=at(9), outcome=CallOutcome.COMPLETED)
    )


def test_a_call_never_bridged_writes_everything_with_its_end() -> None:
    entry = CallEntry(CALL)
    entry.heard(RECEIPT)
    assert entry.ended(at(3), CallOutcome.CALLER_ABANDONED_WHILE_RINGING) == CallBatch(
        "call-1",
        new_call=CALL,
        receipt=RECEIPT,
        changes=CallUpdate(ended_at=at(3), outcome=CallOutcome.CALLER_ABANDONED_WHILE_RINGING),
    )


def test_what_the_bridge_gave_out_stays_until_submitted_so_a_failure_ends_with_it() -> None:
    entry = CallEntry(CALL)
    entry.heard(RECEIPT)
    set_up = entry.bridged(at(5), "alice")
    # the bridge failed before its write was queued: the end carries the call's row
    assert entry.ended(at(6), CallOutcome.FAILED) == CallBatch(
        "call-1",
        new_call=CALL,
        receipt=RECEIPT,
        changes=CallUpdate(bridged_at=at(5), operator="alice", ended_at=at(6),
                           outcome=CallOutcome.FAILED),
    )  # fmt: skip
    assert set_up.new_call == CALL and set_up.changes == CallUpdate(
        bridged_at=at(5), operator="alice"
    )  # not changed by what came later
