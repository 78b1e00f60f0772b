"""Session timers (RFC 4028) across a transfer: a target's 422 is retried with its
Min-SE and the transfer goes on; once the target has the call, the first call taker's
session interval no longer ends it; a target whose answer is unusable sets no timer."""

from __future__ import annotations

import asyncio
from pathlib import Path

from proxy.config import SipSettings
from proxy.events import CallEnded, CallTransferred, SessionTimerExpired
from proxy.sip.message import Request, make_response

from .call_harness import CALLER, TAKER, Harness, Peer, sdp
from .test_call_flow import invite, no_sockets, play_notice
from .test_dialog_extensions import taker_answer
from .test_transfer import CONSULTATION, OPERATORS, SECOND, bridged, sent_refer

__all__ = ["no_sockets"]

#: the test-only low Min-SE: a party's 2xx may name 2 s, the caller gets a minute
SHORT = SipSettings(session_expires=60, min_se=1)


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


async def test_the_first_call_takers_interval_does_not_end_the_transferred_call(
    tmp_path: Path,
) -> None:
    """Ann's leg has a 2 s interval she refreshes; she never answers our BYE after the
    transfer nor refreshes: bob's call goes on past her expiry."""
    async with Harness(tmp_path, operators=OPERATORS, sip=SHORT) as h:
        caller, ann = Peer(CALLER, "caller", "transfer-st-1"), Peer(TAKER, "taker", "")
        await invite(h, caller)
        taker_invite = await play_notice(h)
        h.feed(taker_answer(ann, taker_invite, "INVITE, ACK, BYE", "2;refresher=uas"), TAKER)
        await h.until(lambda: any(s.is_response(200) for s in h.to(CALLER)))
        ok = next(s.message for s in h.to(CALLER) if s.is_response(200))
        h.feed(caller.request("ACK", to=str(ok.to), cseq=1), CALLER)  # type: ignore[union-attr]
        h.feed(sent_refer(ann, taker_invite), TAKER)
        await h.until(lambda: invites_to_bob(h))
        h.feed(Peer(SECOND, "bob", "").answer(invites_to_bob(h)[0], 200, sdp(52000)), SECOND)
        await h.until(lambda: h.published(CallTransferred))
        await asyncio.sleep(2.0)  # past ann's expiry (2 s less 0.67 s after her answer)
        assert not h.published(SessionTimerExpired)
        assert not h.published(CallEnded)


async def test_an_unusable_answer_from_the_target_sets_no_session_timer(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path, operators=OPERATORS, sip=SHORT) as h:
        _, taker, taker_invite, _ = await bridged(h, "transfer-st-2")
        h.feed(sent_refer(taker, taker_invite), TAKER)
        await h.until(lambda: invites_to_bob(h))
        video_only = sdp(52000).replace(b"m=audio", b"m=video")
        bad = taker_answer(Peer(SECOND, "bob", ""), invites_to_bob(h)[0], "INVITE, ACK, BYE",
                           "2;refresher=uas").replace(sdp(50000), video_only)  # fmt: skip
        h.feed(bad, SECOND)
        await h.until(lambda: h.published(CallTransferred))
        (failed,) = h.published(CallTransferred)
        assert (failed.outcome, failed.status) == ("failed", 488)
        await asyncio.sleep(2.0)  # past the interval bob's 200 named
        assert not h.published(SessionTimerExpired)
        assert not h.published(CallEnded)


async def test_a_481_to_the_first_call_takers_refresh_after_the_transfer_ends_nothing(
    tmp_path: Path,
) -> None:
    """We refresh ann (2 s, refresher=uac); her refresh is still out when bob takes the
    call, and her phone answers it 481 afterwards: bob's call goes on."""
    async with Harness(tmp_path, operators=OPERATORS, sip=SHORT) as h:
        caller, ann = Peer(CALLER, "caller", "transfer-st-3"), Peer(TAKER, "taker", "")
        await invite(h, caller)
        taker_invite = await play_notice(h)
        h.feed(taker_answer(ann, taker_invite, "INVITE, ACK, BYE, UPDATE", "2;refresher=uac"),
               TAKER)  # fmt: skip
        await h.until(lambda: any(s.is_response(200) for s in h.to(CALLER)))
        ok = next(s.message for s in h.to(CALLER) if s.is_response(200))
        h.feed(caller.request("ACK", to=str(ok.to), cseq=1), CALLER)  # type: ignore[union-attr]
        await h.until(lambda: any(s.is_request("UPDATE") for s in h.to(TAKER)), seconds=2.0)
        (refresh,) = [s.message for s in h.to(TAKER) if s.is_request("UPDATE")]
        h.feed(sent_refer(ann, taker_invite), TAKER)
        await h.until(lambda: invites_to_bob(h))
        h.feed(Peer(SECOND, "bob", "").answer(invites_to_bob(h)[0], 200, sdp(52000)), SECOND)
        await h.until(lambda: h.published(CallTransferred))
        assert isinstance(refresh, Request)
        h.feed(make_response(refresh, 481).serialize(), TAKER)
        await asyncio.sleep(1.5)  # past the end of ann's interval too
        assert not h.published(SessionTimerExpired)
        assert not h.published(CallEnded)
