"""A call's catalog rows, held in memory until the call writes them: in one transaction
when it is bridged and one when it ends (issue 19), as :mod:`proxy.storage.catalog.
call_writes` describes.

Until the bridge nothing of the call is in the catalog: its row, its answer and its
consent receipt wait here.  ``bridged`` gives them out with the bridge (the recording
and its part 1 join them in :meth:`RecordingService.start`), but they are forgotten
only once ``submitted`` says that write is on its way: a failure between the two (the
recorder, the writer, the media refusing the bridge) leaves them here, so the end
write still carries the call's row and receipt and the call ends ``failed`` in the
catalog instead of vanishing from it.  ``ended`` hands over the call's end, and with it
whatever was not submitted — all of a call that never reached the call taker.  A crash
before the bridge therefore leaves no row: such a call has no recording to recover, and
this is the price of one transaction at set-up instead of four
(benchmarks/findings/issue19-catalog.md)."""

from __future__ import annotations

from datetime import datetime

from ..storage.catalog import CallBatch, CallOutcome, CallUpdate, ConsentReceipt, NewCall


class CallEntry:
    """See the module docstring."""

    def __init__(self, call: NewCall) -> None:
        assert call.call_id is not None  # the call's own id: one id in logs and catalog
        self.call_id = call.call_id
        self._new: NewCall | None = call  # None once handed over
        self._receipt: ConsentReceipt | None = None
        self._changes = CallUpdate()

    def answered(self, at: datetime) -> None:
        self._changes["answered_at"] = at

    def heard(self, receipt: ConsentReceipt) -> None:
        """The consent receipt (P13), once the notice is over."""
        self._receipt = receipt

    def bridged(self, at: datetime, operator: str | None) -> CallBatch:
        """Transaction 1: the call as it stands at the bridge (kept until
        ``submitted``)."""
        self._changes["bridged_at"] = at
        self._changes["operator"] = operator
        return self._batch()

    def submitted(self) -> None:
        """The batch ``bridged`` gave out is queued for writing: forget it."""
        self._new, self._receipt, self._changes = None, None, CallUpdate()

    def ended(self, at: datetime, outcome: CallOutcome) -> CallBatch:
        """Transaction 2 (the only one of a call never bridged): its end and outcome."""
        self._changes["ended_at"] = at
        self._changes["outcome"] = outcome
        return self._take()

    def _take(self) -> CallBatch:
        batch = self._batch()
        self.submitted()
        return batch

    def _batch(self) -> CallBatch:
        return CallBatch(
            self.call_id, new_call=self._new, receipt=self._receipt, changes=self._changes.copy()
        )
