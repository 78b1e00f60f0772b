"""The call flow driven by SIP bytes through a real sans-IO SIP core, without sockets:
what the B2BUA sends each party and which call events it publishes, for the notice,
a CANCEL during it, a busy call taker, a BYE from either side and the recording switch.

Why not a sans-IO call controller: ``Call.run`` stays one coroutine that reads top to
bottom (setup → notice → ring → talk → teardown); its inputs are already events (the SIP
core's) and its outputs go through collaborators that can be replaced (SIP messages are
captured from the real core, media plays through a scripted player on legs with no
sockets), so the flow is tested as it runs in production rather than re-expressed as a
state table beside it.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from proxy.events import (
    CallBridged,
    CallEnded,
    CallStarted,
    CallTakerInvited,
    NoticeAbandoned,
    NoticeFinished,
    NoticeStarted,
    RecordingSwitched,
)
from proxy.recording_state import RecordingState
from proxy.records.errors import RecordingActionError
from proxy.sip.message import Request, Response
from proxy.storage.catalog import CallOutcome

from .call_harness import CALLER, NOTICE_MS, TAKER, Harness, Peer, sdp

CALLER_TO = "<sip:surgery@127.0.0.1:5060>"


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests open no socket: an attempt fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a call-flow unit test opened a socket")

    for name in ("create_datagram_endpoint", "create_connection", "create_server"):
        monkeypatch.setattr(asyncio.BaseEventLoop, name, refuse)


async def invite(h: Harness, caller: Peer) -> bytes:
    before = len(h.published(NoticeStarted))
    data = caller.request("INVITE", to=CALLER_TO, body=sdp(40000), branch=invite_branch(caller))
    h.feed(data, CALLER)
    await h.until(lambda: len(h.published(NoticeStarted)) > before)
    return data


def invite_branch(caller: Peer) -> str:
    return f"z9hG4bK-invite-{caller.call_id}"


async def play_notice(h: Harness) -> Request:
    """The notice plays to its end; the call taker's INVITE follows: returned."""
    a_leg = h.call.media.a_leg
    assert a_leg is not None
    await h.until(lambda: a_leg in h.player.playing)
    h.player.finish(a_leg)
    await h.until(lambda: any(s.is_request("INVITE") for s in h.to(TAKER)))
    (sent,) = [s for s in h.to(TAKER) if s.is_request("INVITE")]
    assert isinstance(sent.message, Request)
    return sent.message


async def bridge(h: Harness, caller: Peer, taker: Peer) -> Response:
    """The notice, the call taker answering, the caller ACKing our 200; the 200."""
    before = len(h.published(CallBridged))
    taker_invite = await play_notice(h)
    h.feed(taker.answer(taker_invite, 200, sdp(50000)), TAKER)
    await h.until(lambda: any(s.is_response(200) for s in h.to(CALLER)))
    (ok,) = [s.message for s in h.to(CALLER) if s.is_response(200)]
    assert isinstance(ok, Response)
    h.feed(caller.request("ACK", to=str(ok.to), cseq=1), CALLER)
    await h.until(lambda: len(h.published(CallBridged)) > before)
    return ok


def to_proxy(ok: Response) -> str:
    """The To of a request in leg A's dialog: the proxy's From-tagged identity."""
    return str(ok.to)


async def test_the_notice_plays_whole_before_the_call_taker_is_invited(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        caller = Peer(CALLER, "caller", "flow-1")
        await invite(h, caller)
        assert [s.message.status for s in h.to(CALLER) if isinstance(s.message, Response)] == [
            100,
            183,
        ]
        assert h.to(TAKER) == []  # nobody invited while the notice plays
        assert [type(e) for e in h.events] == [CallStarted, NoticeStarted]
        assert h.published(NoticeStarted)[0].duration_ms == NOTICE_MS

        await play_notice(h)
        (finished,) = h.published(NoticeFinished)
        assert finished.played_ms == NOTICE_MS
        assert [type(e) for e in h.events][2:] == [NoticeFinished, CallTakerInvited]


async def test_cancel_during_the_notice_gets_487_and_invites_nobody(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        caller = Peer(CALLER, "caller", "flow-2")
        await invite(h, caller)
        cancel = caller.request("CANCEL", to=CALLER_TO, branch=invite_branch(caller))
        h.feed(cancel, CALLER)
        await h.until(lambda: h.published(CallEnded))

        assert any(s.is_response(487) for s in h.to(CALLER))
        assert any(s.is_response(200, "CANCEL") for s in h.to(CALLER))
        assert h.to(TAKER) == []
        (abandoned,) = h.published(NoticeAbandoned)
        assert abandoned.caller_left is True
        assert 0 <= abandoned.played_ms <= NOTICE_MS
        (ended,) = h.published(CallEnded)
        assert (ended.outcome, ended.by) == ("caller_abandoned_during_notice", "caller")
        assert ended.bridged_seconds is None
        assert not h.published(CallTakerInvited)


async def test_a_busy_call_taker_fails_the_call_with_486_to_the_caller(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        caller, taker = Peer(CALLER, "caller", "flow-3"), Peer(TAKER, "taker", "")
        await invite(h, caller)
        taker_invite = await play_notice(h)
        h.feed(taker.answer(taker_invite, 486), TAKER)
        await h.until(lambda: h.published(CallEnded))

        assert any(s.is_request("ACK") for s in h.to(TAKER))  # the 486 is ACKed
        finals = [s.message.status for s in h.to(CALLER) if isinstance(s.message, Response)]
        assert finals[-1] == 486
        (ended,) = h.published(CallEnded)
        assert (ended.outcome, ended.by) == ("calltaker_busy", "call_taker")
        assert not h.published(CallBridged)
        row = await h.catalog.calls.get_call(h.published(CallStarted)[0].call_id)
        assert row is not None and row.outcome is not None
        assert row.outcome.value == "calltaker_busy"


@pytest.mark.parametrize("by", ["caller", "call_taker"])
async def test_a_bye_while_bridged_ends_the_other_leg(tmp_path: Path, by: str) -> None:
    async with Harness(tmp_path) as h:
        caller, taker = Peer(CALLER, "caller", "flow-4"), Peer(TAKER, "taker", "")
        await invite(h, caller)
        ok = await bridge(h, caller, taker)
        (bridged,) = h.published(CallBridged)
        assert bridged.setup_seconds >= 0
        taker_invite = next(s.message for s in h.to(TAKER) if s.is_request("INVITE"))
        assert isinstance(taker_invite, Request)

        if by == "caller":
            h.feed(caller.request("BYE", to=to_proxy(ok), cseq=2), CALLER)
            hung_up, other = CALLER, TAKER
        else:
            bye = taker_request(taker, taker_invite, "BYE", 1)
            h.feed(bye, TAKER)
            hung_up, other = TAKER, CALLER
        await h.until(lambda: h.published(CallEnded))

        assert any(s.is_response(200, "BYE") for s in h.to(hung_up))
        assert any(s.is_request("BYE") for s in h.to(other))
        assert not any(s.is_request("BYE") for s in h.to(hung_up))
        (ended,) = h.published(CallEnded)
        assert (ended.outcome, ended.by) == ("completed", by)
        assert ended.bridged_seconds is not None and ended.bridged_seconds >= 0
        assert ended.caller is not None and ended.taker is not None
        assert h.recordings.finished  # the recording is closed, not dropped


async def test_stop_and_resume_of_the_recording_check_its_state(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        caller, taker = Peer(CALLER, "caller", "flow-5"), Peer(TAKER, "taker", "")
        await invite(h, caller)
        await bridge(h, caller, taker)
        call = h.call
        assert call.describe()["recording"] == "recording"
        with pytest.raises(RecordingActionError, match="not stopped"):
            await call.recording_action("resume", actor="ann", channel="api", reason="r")

        stopped = await call.recording_action("stop", actor="ann", channel="api", reason="why")
        assert stopped["recording"] == "stopped"
        assert call.switch.state is RecordingState.STOPPED
        assert call.describe()["recording"] == "stopped"
        with pytest.raises(RecordingActionError, match="already stopped"):
            await call.recording_action("stop", actor="ann", channel="api", reason="again")

        resumed = await call.recording_action("resume", actor="ann", channel="api", reason="ok")
        assert resumed["recording"] == "recording"
        switched = h.published(RecordingSwitched)
        assert [(e.action, e.actor, e.channel, e.reason) for e in switched] == [
            ("stop", "ann", "api", "why"),
            ("resume", "ann", "api", "ok"),
        ]
        assert {e.recording_id for e in switched} == {stopped["recording_id"]}
        assert {e.call_id for e in switched} == {call.id}


async def test_the_routes_are_empty_once_the_calls_are_over(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        for n in range(3):
            caller, taker = Peer(CALLER, "caller", f"flow-6-{n}"), Peer(TAKER, "taker", "")
            await invite(h, caller)
            ok = await bridge(h, caller, taker)
            assert len(h.b2bua.routes) > 0
            h.feed(caller.request("BYE", to=to_proxy(ok), cseq=2), CALLER)
            await h.until(lambda n=n: len(h.published(CallEnded)) == n + 1)
            await h.until(lambda: not h.b2bua.calls)  # its teardown has finished
            assert len(h.b2bua.routes) == 0
            h.sent.clear()


def taker_request(taker: Peer, taker_invite: Request, method: str, cseq: int, **kw: Any) -> bytes:
    """A request of the call taker in leg B's dialog."""
    taker.call_id = taker_invite.call_id
    return taker.request(
        method, uri=str(taker_invite.contacts[0].uri), to=str(taker_invite.from_),
        from_=f"{taker_invite.to};tag={taker.tag}", cseq=cseq, **kw,
    )  # fmt: skip


async def test_a_stop_code_keyed_by_info_stops_the_recording_and_stays_private(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path) as h:
        caller, taker = Peer(CALLER, "caller", "flow-7"), Peer(TAKER, "taker", "")
        await invite(h, caller)
        await bridge(h, caller, taker)
        taker_invite = next(s.message for s in h.to(TAKER) if s.is_request("INVITE"))
        assert isinstance(taker_invite, Request)
        for cseq, key in enumerate("5*0", start=1):
            body = f"Signal={key}\r\nDuration=160\r\n".encode()
            info = taker_request(
                taker, taker_invite, "INFO", cseq, body=body,
                content_type="application/dtmf-relay",
            )  # fmt: skip
            h.feed(info, TAKER)
        await h.until(lambda: h.published(RecordingSwitched))

        (switched,) = h.published(RecordingSwitched)
        assert (switched.action, switched.channel) == ("stop", "dtmf")
        assert h.call.describe()["recording"] == "stopped"
        assert [s.is_response(200, "INFO") for s in h.to(TAKER)].count(True) == 3
        passed_on = [s.message for s in h.to(CALLER) if s.is_request("INFO")]
        assert [m.body for m in passed_on] == [b"Signal=5\r\nDuration=160\r\n"]


async def test_a_discarded_recording_takes_no_more_actions_and_is_not_closed(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path) as h:
        caller, taker = Peer(CALLER, "caller", "flow-8"), Peer(TAKER, "taker", "")
        await invite(h, caller)
        ok = await bridge(h, caller, taker)
        call = h.call
        gone = await call.recording_action("discard", actor="ann", channel="api", reason="r")
        assert gone["recording"] == "discarded"
        assert call.media.a_leg is not None and call.media.a_leg.sink is None
        for action in ("stop", "resume", "discard"):
            with pytest.raises(RecordingActionError, match="discarded"):
                await call.recording_action(action, actor="ann", channel="api", reason="r")
        h.feed(caller.request("BYE", to=to_proxy(ok), cseq=2), CALLER)
        await h.until(lambda: not h.b2bua.calls)
        assert h.recordings.discarded == [gone["recording_id"]]
        assert h.recordings.finished == []


def sendonly(port: int) -> bytes:
    return sdp(port).replace(b"a=sendrecv", b"a=sendonly")


async def test_a_hold_by_the_caller_is_passed_on_and_becomes_a_recording_event(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path) as h:
        caller, taker = Peer(CALLER, "caller", "flow-9"), Peer(TAKER, "taker", "")
        await invite(h, caller)
        ok = await bridge(h, caller, taker)
        call = h.call
        recording = call.recording
        assert recording is not None
        h.sent.clear()
        reinvite = caller.request("INVITE", to=to_proxy(ok), cseq=2, body=sendonly(40000))
        h.feed(reinvite, CALLER)
        await h.until(lambda: any(s.is_request("INVITE") for s in h.to(TAKER)))

        (answer,) = [s.message for s in h.to(CALLER) if s.is_response(200)]
        assert b"a=recvonly" in answer.body  # our answer to the caller's hold
        (offer,) = [s.message for s in h.to(TAKER) if s.is_request("INVITE")]
        assert b"a=sendonly" in offer.body  # the hold passed on to the call taker
        assert call.media.b_leg is not None
        assert call.media.b_leg.mode.name == "HOLD"  # nothing relayed to the holder
        assert recording.pair.caller.held and recording.pair.taker.held

        async def hold_events() -> list[tuple[str, str | None]]:
            events = await h.catalog.events.recording_events(recording.id)
            return [(e.action.value, e.actor) for e in events if e.action.value == "hold"]

        for _ in range(200):  # the event is written in the background: bounded wait
            if await hold_events():
                break
        assert await hold_events() == [("hold", "caller")]


# --- a failure at the bridge keeps the call in the catalog (issue 19) -----------------------


@pytest.mark.parametrize("where", ["recorder", "bridge_unrecorded"])
async def test_a_failure_at_the_bridge_still_catalogues_the_call_failed_with_its_receipt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    async with Harness(tmp_path) as h:
        caller, taker = Peer(CALLER, "caller", f"flow-fail-{where}"), Peer(TAKER, "taker", "")
        await invite(h, caller)
        call = h.call

        def broken(*args: object, **kwargs: object) -> Any:
            raise RuntimeError(f"{where} broke")

        if where == "recorder":  # recorder.add raising inside RecordingService.start
            monkeypatch.setattr(h.recordings.recorder, "add", broken)
        else:  # an unrecorded call whose media refuses the bridge, before its write
            call.plan = replace(call.plan, record=False)
            monkeypatch.setattr(call.media, "bridge", broken)
        taker_invite = await play_notice(h)
        h.feed(taker.answer(taker_invite, 200, sdp(50000)), TAKER)
        await h.until(lambda: h.published(CallEnded))
        await h.until(lambda: not h.b2bua.calls)
        row = await h.catalog.calls.get_call(call.id)
        assert row is not None and row.outcome is CallOutcome.FAILED
        assert row.ended_at is not None and row.bridged_at is not None
        assert await h.catalog.calls.consent_receipt(call.id) is not None


async def test_a_call_cancelled_while_closing_its_recording_is_still_let_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Harness(tmp_path) as h:
        caller, taker = Peer(CALLER, "caller", "flow-cancel"), Peer(TAKER, "taker", "")
        await invite(h, caller)
        ok = await bridge(h, caller, taker)
        call = h.call
        closing = asyncio.Event()

        async def never_done(*args: object) -> None:
            closing.set()
            await asyncio.Event().wait()  # the writer's last word that never comes

        monkeypatch.setattr(h.recordings, "finish", never_done)
        h.feed(caller.request("BYE", to=to_proxy(ok), cseq=2), CALLER)
        await asyncio.wait_for(closing.wait(), 3)
        (task,) = [t for t in asyncio.all_tasks() if t.get_name() == f"call-{call.id}"]
        task.cancel()  # what the loop does to tasks left at shutdown
        await asyncio.wait((task,), timeout=3)
        assert task.cancelled()
        assert call.id not in h.b2bua.calls  # call_over ran: nothing routes to it
