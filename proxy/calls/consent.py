"""The consent receipt (P13): what the caller was told before the call was recorded.

Which notice (its hash and version), how it reached the caller, from when, how much of
it was heard (of its last start), how often a hold restarted it and for how long the
caller held the call; a call with no notice (outbound, or a service without one) gets a
receipt saying so."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..storage.catalog import Catalog, ConsentReceipt, NoticeMode
from .prompt import Prompt


@dataclass(frozen=True, slots=True)
class NoticeHeard:
    started_at: datetime
    played_ms: int  # of the notice's last start
    left: bool  # the caller left during the notice
    restarts: int = 0
    held_ms: int = 0


async def store_src_receipt(catalog: Catalog, call_id: str) -> None:
    """A SIPREC session's receipt: telling the parties was the recording client's job
    (RFC 7866 §6.1.4), so recproxy played nothing (mode ``src``)."""
    await catalog.calls.add_consent_receipt(
        ConsentReceipt(
            call_id,
            mode=NoticeMode.SRC,
            notice_sha256=None,
            notice_version=None,
            started_at=None,
            played_ms=0,
            notice_ms=0,
            completed=False,
            caller_left_during_notice=False,
            do_not_record=False,
        )
    )


def notice_receipt(
    call_id: str,
    notice: Prompt | None,
    heard: NoticeHeard,
    *,
    early_media: bool,
    do_not_record: bool,
) -> ConsentReceipt:
    """The receipt of a call that played ``notice`` (None: it played none)."""
    mode = NoticeMode.EARLY_MEDIA if early_media else NoticeMode.ANSWER
    return ConsentReceipt(
        call_id,
        mode=mode if notice else NoticeMode.NONE,
        notice_sha256=notice.sha256 if notice else None,
        notice_version=notice.name if notice else None,
        started_at=heard.started_at if notice else None,
        played_ms=heard.played_ms,
        notice_ms=notice.duration_ms if notice else 0,
        completed=notice is not None
        and not heard.left
        and heard.played_ms >= notice.duration_ms - 20,
        caller_left_during_notice=heard.left,
        do_not_record=do_not_record,
        notice_restarts=heard.restarts,
        held_ms=heard.held_ms,
    )
