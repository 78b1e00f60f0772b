"""RFC 3262 reliable provisional responses at the sans-IO core: bytes in, bytes out, a
fake clock.  Leg A (we are UAS): RSeq, retransmission at T1 doubling until the PRACK or
64·T1, 481 for a PRACK that matches nothing, the 2xx held until the PRACK.  Leg B (we are
UAC): the PRACK with its RAck, retransmissions and RSeqs out of order not PRACKed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.sip.core import CoreSettings, Outgoing, SipCore
from proxy.sip.errors import LocalSipError, RemoteSipError
from proxy.sip.events import PrackTimedOut, RequestReceived, ResponseReceived
from proxy.sip.message import Request, parse_message
from proxy.sip.prack import RAck, parse_rseq
from tests.sip.sipcore_helpers import answer, drain_events, raw_request
from tests.sip.test_core import feed, invite_event, response_of, ticks, uac_invite, uas

SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
INVITE_100REL = raw_request("INVITE", headers=[("Supported", "100rel")], body=SDP)


def reliable_183(core: SipCore) -> tuple[RequestReceived, int, str]:
    """An INVITE allowing 100rel answered with a reliable 183 (with SDP): its RSeq and
    the dialog's To tag."""
    event = invite_event(core, INVITE_100REL)
    dialog = core.accept_dialog(event.transaction)
    core.respond(event.transaction, 183, now=0.0, dialog=dialog, body=SDP, reliable=True)
    (out,) = core.datagrams_to_send()
    response = response_of(out)
    assert response.status == 183
    assert response.headers.get_all("require") == ["100rel"]
    rseq = response.headers.get("rseq")
    assert rseq is not None
    return event, int(rseq), dialog.local_tag


def prack(rack: str, to_tag: str, cseq: int = 2, branch: str = "prack-1") -> bytes:
    return raw_request(
        "PRACK",
        via=f"SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-{branch}",
        to=f"<sip:bob@127.0.0.2>;tag={to_tag}",
        cseq=cseq,
        headers=[("RAck", rack)],
    )


def test_reliable_183_is_retransmitted_at_t1_doubling_until_its_prack() -> None:
    core = uas()
    _, rseq, tag = reliable_183(core)
    fired = ticks(core, until=3.6)
    assert [t for t, out, _ in fired if out] == [0.5, 1.5, 3.5]  # T1, 2·T1, 4·T1
    assert all(response_of(o).status == 183 for _, out, _ in fired for o in out)
    out = feed(core, prack(f"{rseq} 1 INVITE", tag), 3.6)
    assert [response_of(o).status for o in out] == [200]
    assert response_of(out[0]).cseq.method == "PRACK"
    assert drain_events(core) == []  # the core's own business
    assert [o for _, o, _ in ticks(core, until=60.0) if o] == []  # no more 183s


def test_unacknowledged_reliable_183_rejects_the_invite_after_64_t1() -> None:
    core = uas()
    event, _, _ = reliable_183(core)
    fired = ticks(core, until=40.0)
    finals = [response_of(o) for t, out, _ in fired if t == 32.0 for o in out]
    assert [r.status for r in finals] == [500]
    events = [e for _, _, evs in fired for e in evs]
    assert len(events) == 1 and isinstance(events[0], PrackTimedOut)
    assert events[0].transaction is event.transaction


def test_prack_matching_nothing_gets_481_and_keeps_the_183_going() -> None:
    core = uas()
    _, rseq, tag = reliable_183(core)
    racks = (f"{rseq + 1} 1 INVITE", f"{rseq} 7 INVITE", f"{rseq} 1 UPDATE")
    for cseq, rack in enumerate(racks, start=2):
        out = feed(core, prack(rack, tag, cseq=cseq, branch=f"p{cseq}"), 0.1)
        assert [response_of(o).status for o in out] == [481]
    out = feed(core, prack(f"{rseq} 1 INVITE", "no-such-tag", cseq=9, branch="x"), 0.2)
    assert [response_of(o).status for o in out] == [481]
    assert any(o for t, o, _ in ticks(core, until=0.6) if t == 0.5)  # still resent


def test_prack_outside_any_dialog_gets_481() -> None:
    core = uas()
    out = feed(core, raw_request("PRACK", headers=[("RAck", "1 1 INVITE")]))
    assert [response_of(o).status for o in out] == [481]


def test_malformed_rack_gets_400() -> None:
    core = uas()
    _, _, tag = reliable_183(core)
    out = feed(core, prack("one 1 INVITE", tag), 0.1)
    assert [response_of(o).status for o in out] == [400]


def test_2xx_waits_for_the_prack_of_a_reliable_183_with_sdp() -> None:
    core = uas()
    event, rseq, tag = reliable_183(core)
    dialog = core.dialogs[0]
    core.respond(event.transaction, 200, now=0.1, dialog=dialog, body=SDP)
    assert core.datagrams_to_send() == []  # held (RFC 3262 §3)
    out = feed(core, prack(f"{rseq} 1 INVITE", tag), 0.2)
    assert sorted(response_of(o).status for o in out) == [200, 200]
    assert {response_of(o).cseq.method for o in out} == {"PRACK", "INVITE"}


def test_a_second_reliable_1xx_waits_for_the_first_prack() -> None:
    core = uas()
    event, rseq, tag = reliable_183(core)
    dialog = core.dialogs[0]
    core.respond(event.transaction, 180, now=0.1, dialog=dialog, reliable=True)
    assert core.datagrams_to_send() == []
    out = feed(core, prack(f"{rseq} 1 INVITE", tag), 0.2)
    statuses = sorted(response_of(o).status for o in out)
    assert statuses == [180, 200]
    ringing = next(response_of(o) for o in out if response_of(o).status == 180)
    assert ringing.headers.get("rseq") == str(rseq + 1)


def test_reliable_1xx_to_an_invite_without_100rel_is_our_bug() -> None:
    core = uas()
    event = invite_event(core)
    dialog = core.accept_dialog(event.transaction)
    with pytest.raises(LocalSipError):
        core.respond(event.transaction, 183, now=0.0, dialog=dialog, reliable=True)


def test_require_100rel_is_accepted_by_the_core() -> None:
    core = uas()
    event = invite_event(core, raw_request("INVITE", headers=[("Require", "100rel")]))
    assert event.request.method == "INVITE"


# ---------------------------------------------------------------------------------------
# UAC


def reliable_1xx(invite: bytes, status: int, rseq: str) -> bytes:
    headers = [("Require", "100rel"), ("RSeq", rseq), ("Contact", "<sip:bob@192.0.2.10:5070>")]
    return answer(invite, status, headers=headers)


def pracks(outgoing: list[Outgoing]) -> list[Request]:
    out = []
    for o in outgoing:
        message = parse_message(o.data)
        if isinstance(message, Request) and message.method == "PRACK":
            out.append(message)
    return out


def test_uac_pracks_a_reliable_1xx_in_its_early_dialog() -> None:
    core = SipCore(CoreSettings(host="127.0.0.1"))
    _, invite = uac_invite(core)
    (prack_sent,) = pracks(feed(core, reliable_1xx(invite, 183, "17"), 0.1))
    assert prack_sent.headers.get("rack") == "17 1 INVITE"
    assert prack_sent.cseq.number == 2
    assert prack_sent.to.tag == "peer-to-tag"
    events = drain_events(core)
    assert len(events) == 1 and isinstance(events[0], ResponseReceived)


def test_uac_ignores_a_retransmission_and_an_rseq_out_of_order() -> None:
    core = SipCore(CoreSettings(host="127.0.0.1"))
    _, invite = uac_invite(core)
    assert len(pracks(feed(core, reliable_1xx(invite, 183, "17"), 0.1))) == 1
    drain_events(core)
    assert pracks(feed(core, reliable_1xx(invite, 183, "17"), 0.6)) == []  # again
    assert pracks(feed(core, reliable_1xx(invite, 180, "19"), 0.7)) == []  # 18 missing
    assert drain_events(core) == []
    (prack_sent,) = pracks(feed(core, reliable_1xx(invite, 180, "18"), 0.8))
    assert prack_sent.headers.get("rack") == "18 1 INVITE"
    assert len(drain_events(core)) == 1


def test_uac_drops_a_reliable_1xx_with_a_bad_rseq() -> None:
    core = SipCore(CoreSettings(host="127.0.0.1"))
    _, invite = uac_invite(core)
    assert pracks(feed(core, reliable_1xx(invite, 183, "0"), 0.1)) == []
    assert drain_events(core) == []
    assert core.stats["dropped_bad_rseq"] == 1


@pytest.mark.parametrize("text", ["1", "4294967295", " 42 "])
def test_rseq_parses(text: str) -> None:
    assert parse_rseq(text) == int(text)


def test_rack_round_trips() -> None:
    assert str(RAck.parse("776656 1 INVITE")) == "776656 1 INVITE"


@given(st.text(max_size=40))
def test_fuzzed_rseq_and_rack_raise_only_the_protocol_error(text: str) -> None:
    for parse in (parse_rseq, RAck.parse):
        try:
            parse(text)
        except RemoteSipError as exc:
            assert exc.status == 400


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30))
def test_fuzzed_rack_in_a_prack_gets_400_or_481_and_the_call_goes_on(text: str) -> None:
    core = uas()
    _, _, tag = reliable_183(core)
    out = feed(core, prack(text, tag), 0.1)
    assert [response_of(o).status for o in out] in ([400], [481], [200])
    assert core.dialogs and core.dialogs[0].state.value == "early"


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=14))
def test_fuzzed_rseq_from_a_call_taker_is_pracked_or_dropped_never_raised(rseq: str) -> None:
    core = SipCore(CoreSettings(host="127.0.0.1"))
    _, invite = uac_invite(core)
    sent = pracks(feed(core, reliable_1xx(invite, 183, rseq), 0.1))
    events = drain_events(core)
    assert (len(sent), len(events)) in ((0, 0), (1, 1))
    assert core.transaction_count >= 1  # the INVITE goes on


def test_an_empty_supported_header_is_legal_and_offers_nothing() -> None:
    """baresip 1.0 sends ``Supported:`` with nothing in it (RFC 3261 §20.37 allows it)."""
    core = uas()
    event = invite_event(core, raw_request("INVITE", headers=[("Supported", "")]))
    dialog = core.accept_dialog(event.transaction)
    with pytest.raises(LocalSipError):  # not reliable: the caller did not offer 100rel
        core.respond(event.transaction, 183, now=0.0, dialog=dialog, reliable=True)


def test_a_garbled_require_gets_400_not_a_traceback() -> None:
    core = uas()
    out = feed(core, raw_request("INVITE", headers=[("Require", "100rel,,timer")]))
    assert [response_of(o).status for o in out] == [400]
    assert drain_events(core) == []
