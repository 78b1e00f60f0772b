"""PRACK, UPDATE and session timers in the call flow, driven by SIP bytes through the
real sans-IO core without sockets (the harness of ``test_call_flow.py``): the notice's
reliable 183, 421 when 100rel is required, the session interval granted and learnt,
refreshes sent and answered, and a leg that never refreshes torn down."""

from __future__ import annotations

import asyncio
from pathlib import Path

from proxy.config import SipSettings
from proxy.events import (
    CallBridged,
    CallEnded,
    CallStarted,
    NoticeStarted,
    SessionTimerExpired,
)
from proxy.sip.message import Request, Response, make_response

from .call_harness import CALLER, TAKER, Harness, Peer, sdp
from .test_call_flow import CALLER_TO, bridge, invite_branch, no_sockets, play_notice

__all__ = ["no_sockets"]

#: short intervals through the test-only knob (min_se below the RFC's 90 s)
SHORT = SipSettings(session_expires=2, min_se=1)


async def invite_with(h: Harness, caller: Peer, *headers: tuple[str, str]) -> None:
    data = caller.request(
        "INVITE", to=CALLER_TO, body=sdp(40000), branch=invite_branch(caller), headers=headers
    )
    h.feed(data, CALLER)
    await h.until(lambda: h.published(NoticeStarted) or h.published(CallEnded))


def responses(h: Harness, where: tuple[str, int], method: str = "INVITE") -> list[Response]:
    return [
        s.message
        for s in h.to(where)
        if isinstance(s.message, Response) and s.message.cseq.method == method
    ]


def taker_answer(taker: Peer, invite: Request, allow: str, session_expires: str) -> bytes:
    """The call taker's 200 with its SDP answer, an Allow and a Session-Expires."""
    headers = [
        ("Contact", "<sip:taker@127.0.0.1:5070>"),
        ("Allow", allow),
        ("Content-Type", "application/sdp"),
        ("Session-Expires", session_expires),
    ]
    return make_response(
        invite, 200, to_tag=taker.tag, body=sdp(50000), headers=headers
    ).serialize()


async def test_the_notice_183_is_reliable_and_the_prack_is_answered(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        caller, taker = Peer(CALLER, "caller", "rel-1"), Peer(TAKER, "taker", "")
        await invite_with(h, caller, ("Supported", "100rel"))
        (ringing,) = [r for r in responses(h, CALLER) if r.status == 183]
        assert ringing.headers.get_all("require") == ["100rel"]
        rseq = ringing.headers.get("rseq")
        prack = caller.request(
            "PRACK", to=str(ringing.to), cseq=2, headers=(("RAck", f"{rseq} 1 INVITE"),)
        )
        h.feed(prack, CALLER)
        assert [r.status for r in responses(h, CALLER, "PRACK")] == [200]
        await bridge(h, caller, taker)
        assert [r.status for r in responses(h, CALLER)][-1] == 200


async def test_an_invite_without_100rel_gets_421_when_it_is_required(tmp_path: Path) -> None:
    sip = SipSettings(reliable_provisional="required")
    async with Harness(tmp_path, sip=sip) as h:
        await invite_with(h, Peer(CALLER, "caller", "rel-2"))
        await h.until(lambda: h.published(CallEnded))
        (refused,) = [r for r in responses(h, CALLER) if r.status >= 200]
        assert refused.status == 421
        assert refused.headers.get("require") == "100rel"


async def test_the_call_takers_invite_asks_for_100rel_and_a_session_interval(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path) as h:
        await invite_with(h, Peer(CALLER, "caller", "rel-3"))
        taker_invite = await play_notice(h)
        assert {"100rel", "timer"} <= set(taker_invite.headers.get_all("supported"))
        assert taker_invite.headers.get("session-expires") == "1800"
        assert taker_invite.headers.get("min-se") == "90"


async def test_a_caller_who_never_refreshes_is_torn_down_with_the_recording_closed(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path, sip=SHORT) as h:
        caller, taker = Peer(CALLER, "caller", "st-1"), Peer(TAKER, "taker", "")
        await invite_with(h, caller, ("Supported", "timer"), ("Session-Expires", "2;refresher=uac"))
        ok = await bridge(h, caller, taker)
        assert ok.headers.get("session-expires") == "2;refresher=uac"
        assert "timer" in ok.headers.get_all("require")
        # 2 - min(32, 2/3) seconds after the 200 without a refresh: BYE on both legs
        await h.until(lambda: h.published(CallEnded), seconds=4.0)
        assert any(s.is_request("BYE") for s in h.to(CALLER))
        assert any(s.is_request("BYE") for s in h.to(TAKER))
        (expired,) = h.published(SessionTimerExpired)
        assert (expired.party, expired.interval_seconds) == ("caller", 2)
        (ended,) = h.published(CallEnded)
        assert (ended.outcome, ended.by) == ("session_expired", "proxy")
        assert h.recordings.finished
        row = await h.catalog.calls.get_call(h.published(CallStarted)[0].call_id)
        assert row is not None and row.outcome is not None
        assert row.outcome.value == "session_expired"


async def test_a_caller_refreshing_by_update_keeps_the_call(tmp_path: Path) -> None:
    async with Harness(tmp_path, sip=SHORT) as h:
        caller, taker = Peer(CALLER, "caller", "st-2"), Peer(TAKER, "taker", "")
        timer = (("Supported", "timer"), ("Session-Expires", "2;refresher=uac"))
        await invite_with(h, caller, *timer)
        ok = await bridge(h, caller, taker)
        for cseq in (2, 3, 4):  # every 0.9 s, within the 1.33 s the expiry leaves
            await asyncio.sleep(0.9)
            h.feed(caller.request("UPDATE", to=str(ok.to), cseq=cseq, headers=timer), CALLER)
            answered = lambda: [r for r in responses(h, CALLER, "UPDATE") if r.cseq.number == cseq]  # noqa: B023, E731
            await h.until(answered)
            (answer,) = answered()
            assert answer.status == 200
            assert answer.headers.get("session-expires") == "2;refresher=uac"
        assert not h.published(CallEnded)


async def test_we_refresh_a_caller_without_timer_support_by_update(tmp_path: Path) -> None:
    async with Harness(tmp_path, sip=SHORT) as h:
        caller, taker = Peer(CALLER, "caller", "st-3"), Peer(TAKER, "taker", "")
        await invite_with(h, caller, ("Allow", "INVITE, ACK, BYE, UPDATE"))
        ok = await bridge(h, caller, taker)
        assert ok.headers.get("session-expires") == "2;refresher=uas"
        await h.until(lambda: any(s.is_request("UPDATE") for s in h.to(CALLER)), seconds=3.0)
        (update,) = [s.message for s in h.to(CALLER) if s.is_request("UPDATE")]
        assert isinstance(update, Request) and not update.body
        assert update.headers.get("session-expires") == "2;refresher=uac"
        answer = make_response(
            update, 200, headers=[("Session-Expires", "2;refresher=uac")]
        ).serialize()
        h.feed(answer, CALLER)
        updates = lambda: [s for s in h.to(CALLER) if s.is_request("UPDATE")]  # noqa: E731
        await h.until(lambda: len(updates()) == 2, seconds=3.0)  # the interval restarted
        assert not h.published(CallEnded)


async def test_our_refresh_without_an_answer_ends_the_call_at_the_interval(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path, sip=SHORT) as h:
        caller, taker = Peer(CALLER, "caller", "st-7"), Peer(TAKER, "taker", "")
        await invite_with(h, caller, ("Allow", "INVITE, ACK, BYE, UPDATE"))
        await bridge(h, caller, taker)
        await h.until(lambda: any(s.is_request("UPDATE") for s in h.to(CALLER)), seconds=3.0)
        await h.until(lambda: h.published(CallEnded), seconds=2.0)  # 1 s after the UPDATE
        (ended,) = h.published(CallEnded)
        assert ended.outcome == "session_expired"
        assert any(s.is_request("BYE") for s in h.to(TAKER))


async def test_a_reinvite_while_our_refresh_reinvite_is_out_gets_491(tmp_path: Path) -> None:
    async with Harness(tmp_path, sip=SHORT) as h:
        caller, taker = Peer(CALLER, "caller", "st-8"), Peer(TAKER, "taker", "")
        await invite_with(h, caller)  # no UPDATE allowed: we refresh by re-INVITE
        ok = await bridge(h, caller, taker)
        reinvites = lambda: [s for s in h.to(CALLER) if s.is_request("INVITE")]  # noqa: E731
        await h.until(lambda: reinvites(), seconds=3.0)
        h.feed(caller.request("INVITE", to=str(ok.to), cseq=2, body=sdp(40000)), CALLER)
        final = lambda: [r for r in responses(h, CALLER) if r.cseq.number == 2 and r.status >= 200]  # noqa: E731
        await h.until(final)
        assert [r.status for r in final()] == [491]


async def test_we_refresh_a_call_taker_without_update_by_a_same_sdp_reinvite(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path, sip=SHORT) as h:
        caller, taker = Peer(CALLER, "caller", "st-4"), Peer(TAKER, "taker", "")
        await invite_with(h, caller)
        taker_invite = await play_notice(h)
        h.feed(taker_answer(taker, taker_invite, "INVITE, ACK, BYE", "2;refresher=uac"), TAKER)
        invites = lambda: [s.message for s in h.to(TAKER) if s.is_request("INVITE")]  # noqa: E731
        await h.until(lambda: len(invites()) == 2, seconds=3.0)
        first, refresh = invites()
        assert isinstance(first, Request) and isinstance(refresh, Request)
        assert refresh.body == first.body  # the same description, the same o= version
        assert refresh.headers.get("session-expires") == "2;refresher=uac"
        h.feed(make_response(refresh, 200, body=sdp(50000), headers=[
            ("Content-Type", "application/sdp"), ("Session-Expires", "2;refresher=uac"),
        ]).serialize(), TAKER)  # fmt: skip
        await h.until(lambda: len([s for s in h.to(TAKER) if s.is_request("ACK")]) == 2)
        assert not h.published(CallEnded)


async def test_a_refresh_answered_481_ends_the_call(tmp_path: Path) -> None:
    async with Harness(tmp_path, sip=SHORT) as h:
        caller, taker = Peer(CALLER, "caller", "st-5"), Peer(TAKER, "taker", "")
        await invite_with(h, caller, ("Allow", "INVITE, ACK, BYE, UPDATE"))
        await bridge(h, caller, taker)
        await h.until(lambda: any(s.is_request("UPDATE") for s in h.to(CALLER)), seconds=3.0)
        (update,) = [s.message for s in h.to(CALLER) if s.is_request("UPDATE")]
        assert isinstance(update, Request)
        h.feed(make_response(update, 481).serialize(), CALLER)
        await h.until(lambda: h.published(CallEnded))
        (ended,) = h.published(CallEnded)
        assert ended.outcome == "session_expired"


async def test_an_update_offer_while_ours_is_unanswered_gets_491(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        caller = Peer(CALLER, "caller", "up-1")
        h.feed(caller.request("INVITE", to=CALLER_TO, branch=invite_branch(caller)), CALLER)
        await h.until(lambda: any(r.status == 200 for r in responses(h, CALLER)))
        (ok,) = [r for r in responses(h, CALLER) if r.status == 200]  # our offer: a late one
        h.feed(caller.request("UPDATE", to=str(ok.to), cseq=2, body=sdp(40002)), CALLER)
        await h.until(lambda: responses(h, CALLER, "UPDATE"))
        assert [r.status for r in responses(h, CALLER, "UPDATE")] == [491]


async def test_a_call_takers_422_is_retried_once_with_its_min_se(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        await invite_with(h, Peer(CALLER, "caller", "st-6"))
        first = await play_notice(h)
        too_small = make_response(first, 422, to_tag="t1", headers=[("Min-SE", "3600")])
        h.feed(too_small.serialize(), TAKER)
        invites = lambda: [s.message for s in h.to(TAKER) if s.is_request("INVITE")]  # noqa: E731
        await h.until(lambda: len(invites()) == 2)
        retry = invites()[1]
        assert isinstance(retry, Request)
        assert retry.headers.get("session-expires") == "3600"
        assert retry.headers.get("min-se") == "3600"
        again = make_response(retry, 422, to_tag="t2", headers=[("Min-SE", "7200")])
        h.feed(again.serialize(), TAKER)
        await h.until(lambda: h.published(CallEnded))
        assert len(invites()) == 2  # once only


async def test_an_update_offer_in_the_callers_early_dialog_is_answered(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        caller = Peer(CALLER, "caller", "up-2")
        await invite_with(h, caller)
        (early,) = [r for r in responses(h, CALLER) if r.status == 183]
        h.feed(caller.request("UPDATE", to=str(early.to), cseq=2, body=sdp(40002)), CALLER)
        await h.until(lambda: responses(h, CALLER, "UPDATE"))
        (answer,) = responses(h, CALLER, "UPDATE")
        assert answer.status == 200
        assert b"m=audio" in answer.body
        assert not h.published(CallEnded)


async def test_garbled_timer_headers_from_the_parties_set_no_timer_and_break_nothing(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path, sip=SHORT) as h:
        caller, taker = Peer(CALLER, "caller", "st-9"), Peer(TAKER, "taker", "")
        await invite_with(h, caller, ("Supported", ""))  # empty, as baresip 1.0 sends it
        taker_invite = await play_notice(h)
        h.feed(taker_answer(taker, taker_invite, "INVITE,,BYE", "soon"), TAKER)
        await h.until(lambda: h.published(CallBridged) or h.published(CallEnded))
        assert h.published(CallBridged)
        await asyncio.sleep(1.5)  # past any interval the garbled header might have set
        assert not h.published(CallEnded)
        assert not any(s.is_request("UPDATE") or s.is_request("BYE") for s in h.to(TAKER))


async def test_a_call_takers_one_second_interval_does_not_end_the_call(tmp_path: Path) -> None:
    """A 2xx's ``Session-Expires: 1;refresher=uas`` is raised to our Min-SE (90 s):
    no expiry fires within the second it named."""
    async with Harness(tmp_path) as h:
        caller, taker = Peer(CALLER, "caller", "st-10"), Peer(TAKER, "taker", "")
        await invite_with(h, caller)
        taker_invite = await play_notice(h)
        h.feed(taker_answer(taker, taker_invite, "INVITE, ACK, BYE", "1;refresher=uas"), TAKER)
        await h.until(lambda: h.published(CallBridged) or h.published(CallEnded))
        await asyncio.sleep(1.5)
        assert not h.published(SessionTimerExpired)
        assert not h.published(CallEnded)


async def refresh_answered(h: Harness, caller: Peer, status: int) -> None:
    """A bridged call whose caller allows UPDATE: our first refresh answered ``status``."""
    await invite_with(h, caller, ("Allow", "INVITE, ACK, BYE, UPDATE"))
    await bridge(h, caller, Peer(TAKER, "taker", ""))
    await h.until(lambda: any(s.is_request("UPDATE") for s in h.to(CALLER)), seconds=3.0)
    (update,) = [s.message for s in h.to(CALLER) if s.is_request("UPDATE")]
    assert isinstance(update, Request)
    h.feed(make_response(update, status).serialize(), CALLER)


def updates_to(h: Harness, where: tuple[str, int]) -> list[Request]:
    return [s.message for s in h.to(where) if isinstance(s.message, Request)
            and s.message.method == "UPDATE"]  # fmt: skip


async def test_a_refresh_answered_491_is_sent_again_and_the_call_goes_on(tmp_path: Path) -> None:
    async with Harness(tmp_path, sip=SHORT) as h:
        await refresh_answered(h, Peer(CALLER, "caller", "st-11"), 491)
        await h.until(lambda: len(updates_to(h, CALLER)) == 2 or h.published(CallEnded), 5.0)
        assert not h.published(CallEnded)  # the interval's end (1 s) passed: no BYE
        assert len(updates_to(h, CALLER)) == 2  # again after 2.1-4 s


async def test_an_update_refused_405_is_resent_as_a_reinvite(tmp_path: Path) -> None:
    async with Harness(tmp_path, sip=SHORT) as h:
        caller = Peer(CALLER, "caller", "st-12")
        await refresh_answered(h, caller, 405)
        reinvites = lambda: [  # noqa: E731
            s.message for s in h.to(CALLER) if s.is_request("INVITE") and s.message.cseq.number > 1
        ]
        await h.until(lambda: reinvites() or h.published(CallEnded), seconds=0.5)
        (reinvite,) = reinvites()
        assert isinstance(reinvite, Request) and b"m=audio" in reinvite.body
        assert reinvite.headers.get("session-expires") == "2;refresher=uac"
        assert not h.published(CallEnded)


async def test_a_refresh_answered_500_keeps_the_call_and_refreshes_again(tmp_path: Path) -> None:
    async with Harness(tmp_path, sip=SHORT) as h:
        await refresh_answered(h, Peer(CALLER, "caller", "st-13"), 500)
        await h.until(lambda: len(updates_to(h, CALLER)) == 2 or h.published(CallEnded), 3.0)
        assert not h.published(CallEnded)
        assert len(updates_to(h, CALLER)) == 2  # at the next refresh point, half an interval
        assert not any(s.is_request("BYE") for s in h.to(TAKER))
