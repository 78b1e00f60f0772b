"""Session timers (RFC 4028) across a transfer: a target's 422 is retried with its
Min-SE and the transfer goes on; once the target has the call, the first call taker's
session interval no longer ends it; a target whose answer is unusable sets no timer."""

from __future__ import annotations

from pathlib import Path

from proxy.events import CallTransferred
from proxy.sip.message import Request, make_response

from .call_harness import TAKER, Harness, Peer, sdp
from .test_call_flow import no_sockets
from .test_transfer import CONSULTATION, OPERATORS, SECOND, bridged, sent_refer

__all__ = ["no_sockets"]


def invites_to_bob(h: Harness) -> list[Request]:
    return [s.message for s in h.to(SECOND) if isinstance(s.message, Request)
            and s.message.method == "INVITE"]  # fmt: skip


async def test_a_targets_422_is_retried_with_its_min_se_and_the_same_replaces(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path, operators=OPERATORS) as h:
        _, taker, taker_invite, _ = await bridged(h, "transfer-422")
        h.feed(sent_refer(taker, taker_invite, CONSULTATION), TAKER)
        await h.until(lambda: invites_to_bob(h))
        (first,) = invites_to_bob(h)
        too_small = make_response(first, 422, to_tag="b1", headers=[("Min-SE", "3600")])
        h.feed(too_small.serialize(), SECOND)
        await h.until(lambda: len(invites_to_bob(h)) == 2 or h.published(CallTransferred))
        assert not h.published(CallTransferred)  # still pending
        retry = invites_to_bob(h)[1]
        assert retry.headers.get("session-expires") == "3600"
        assert retry.headers.get("min-se") == "3600"
        assert retry.headers.get("replaces") == first.headers.get("replaces")
        assert "replaces" in retry.headers.get_all("require")
        assert retry.call_id != first.call_id or retry.cseq.number > first.cseq.number
        h.feed(Peer(SECOND, "bob", "").answer(retry, 200, sdp(52000)), SECOND)
        await h.until(lambda: h.published(CallTransferred))
        (done,) = h.published(CallTransferred)
        assert (done.outcome, done.target_operator) == ("succeeded", "bob")
