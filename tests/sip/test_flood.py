"""Flood control in the sans-IO core: the admission hook runs before any state is kept,
refusals are stateless (one reply, never retransmitted, never larger than the request),
per-source token buckets answer 503 then nothing, and the state tables are capped."""

from __future__ import annotations

from proxy.sip.core import CoreSettings, Refusal, SipCore
from proxy.sip.dialog import build_request
from proxy.sip.events import Address, RequestReceived
from proxy.sip.flood import FloodSettings, SourceLimiter, TokenBucket
from proxy.sip.message import Request, Response, parse_message
from proxy.sip.uri import parse_uri
from tests.sip.sipcore_helpers import PEER_ADDR, drain_events, raw_request

UNTRUSTED: Address = ("198.51.100.7", 5060)
SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n" + (
    b"m=audio 4000 RTP/AVP 0\r\n"
)


def trust_only_peer(request: Request, source: Address) -> Refusal | None:
    if request.method == "INVITE" and not source[0].startswith("192.0.2."):
        return Refusal(403, "Forbidden (not a trusted peer)")
    return None


def core_with(**settings: object) -> SipCore:
    return SipCore(
        CoreSettings(host="127.0.0.2", **settings),  # type: ignore[arg-type]
        admission=trust_only_peer,
    )


def invite(n: int = 1, **kw: object) -> bytes:
    return raw_request(
        "INVITE",
        via=f"SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-flood-{n};rport",
        call_id=f"flood-{n}@192.0.2.10",
        body=SDP,
        **kw,  # type: ignore[arg-type]
    )


def statuses(core: SipCore) -> list[int]:
    out = []
    for o in core.datagrams_to_send():
        message = parse_message(o.data)
        assert isinstance(message, Response)
        out.append(message.status)
    return out


# ---------------------------------------------------------------------------------------
# Token buckets


def test_bucket_spends_its_burst_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.05) is False  # half a token
    assert bucket.take(0.1) is True
    assert bucket.take(100.0) and bucket.tokens == 2  # never more than the burst


def test_limiter_keeps_sources_apart_and_bounds_its_table() -> None:
    limiter = SourceLimiter(FloodSettings(request_burst=1, requests_per_second=1, max_sources=8))
    assert limiter.take_request("a", 0.0) and not limiter.take_request("a", 0.0)
    assert limiter.take_request("b", 0.0)
    for i in range(1000):  # a spoofed-source flood: the table stays bounded
        limiter.take_request(f"10.0.{i // 256}.{i % 256}", 0.0)
    assert len(limiter) <= 8


# ---------------------------------------------------------------------------------------
# Untrusted sources: one stateless 403


def test_untrusted_invite_gets_one_403_no_100_and_no_retransmission() -> None:
    core = core_with()
    data = invite()
    core.receive_datagram(data, UNTRUSTED, 0.0)
    (out,) = core.datagrams_to_send()
    response = parse_message(out.data)
    assert isinstance(response, Response) and response.status == 403
    assert len(out.data) <= len(data), "the refusal amplifies"
    assert core.transaction_count == 0 and core.get_timer() is None
    assert drain_events(core) == []
    # its retransmission is refused the same way, again without state
    core.receive_datagram(data, UNTRUSTED, 0.5)
    assert statuses(core) == [403]
    assert core.transaction_count == 0 and core.stats["refused_admission"] == 2


def test_untrusted_flood_is_answered_up_to_the_refusal_rate_then_not_at_all() -> None:
    core = core_with(flood=FloodSettings(refusals_per_second=2, refusal_burst=5))
    for n in range(50):
        core.receive_datagram(invite(n), UNTRUSTED, n * 0.001)
    assert statuses(core) == [403] * 5
    assert core.stats["dropped_flood"] == 45
    core.receive_datagram(invite(99), UNTRUSTED, 1.0)  # two tokens a second come back
    assert statuses(core) == [403]


def test_trust_is_checked_before_the_merge_check() -> None:
    core = core_with()
    core.receive_datagram(invite(1), PEER_ADDR, 0.0)
    assert statuses(core) == [100]
    # the same From tag, Call-ID and CSeq on another branch: a merged request, but from
    # an untrusted source it is refused as untrusted (no 482 that takes a transaction)
    merged = invite(1).replace(b"branch=z9hG4bK-flood-1", b"branch=z9hG4bK-other")
    core.receive_datagram(merged, UNTRUSTED, 0.1)
    assert statuses(core) == [403]
    assert core.transaction_count == 1


def test_a_refusal_larger_than_the_request_is_not_sent() -> None:
    def long_refusal(request: Request, source: Address) -> Refusal:
        return Refusal(403, "Forbidden " + "x" * 2000)

    core = SipCore(CoreSettings(host="127.0.0.2"), admission=long_refusal)
    core.receive_datagram(invite(), UNTRUSTED, 0.0)
    assert core.datagrams_to_send() == []
    assert core.stats["dropped_amplification"] == 1


# ---------------------------------------------------------------------------------------
# Trusted sources: the request bucket, then 503, then silence


def test_past_its_burst_a_source_gets_503_with_retry_after_then_nothing() -> None:
    flood = FloodSettings(request_burst=10, requests_per_second=1, refusal_burst=5)
    core = core_with(flood=flood)
    sizes: list[tuple[int, int]] = []
    for n in range(40):
        data = invite(n)
        core.receive_datagram(data, PEER_ADDR, 0.0)
        for out in core.datagrams_to_send():
            sizes.append((len(out.data), len(data)))
            response = parse_message(out.data)
            assert isinstance(response, Response)
            if response.status == 503:
                assert response.headers.get("retry-after") == "5"
    events = drain_events(core)
    assert len(events) == 10 and all(isinstance(e, RequestReceived) for e in events)
    assert core.transaction_count == 10  # nothing kept for the refused 30
    assert core.stats["refused_rate"] == 30 and core.stats["dropped_flood"] == 25
    refusals = sizes[10:]
    assert len(refusals) == 5 and all(sent <= received for sent, received in refusals)
    # another source is not affected
    core.receive_datagram(invite(100), ("192.0.2.99", 5060), 0.0)
    assert statuses(core) == [100]


def test_retransmissions_and_in_dialog_requests_take_no_token() -> None:
    core = core_with(flood=FloodSettings(request_burst=1, requests_per_second=0.001))
    data = invite(1)
    for t in (0.0, 0.5, 1.5):
        core.receive_datagram(data, PEER_ADDR, t)
    assert statuses(core) == [100, 100, 100]  # the transaction answers its retransmissions
    assert core.stats["refused_rate"] == 0


def test_past_the_transaction_cap_new_requests_get_503() -> None:
    core = core_with(max_server_transactions=3)
    for n in range(4):
        core.receive_datagram(invite(n), PEER_ADDR, 0.0)
    assert statuses(core) == [100, 100, 100, 503]
    assert core.stats["refused_capacity"] == 1 and core.transaction_count == 3


# ---------------------------------------------------------------------------------------
# URI headers and the TCP Contact


def test_headers_in_the_request_uri_are_400() -> None:
    core = core_with()
    core.receive_datagram(
        invite(uri="sip:bob@127.0.0.2?Route=%3Csip:evil.example.net%3Blr%3E"), PEER_ADDR, 0.0
    )
    assert drain_events(core) == []
    (out,) = core.datagrams_to_send()
    response = parse_message(out.data)
    assert isinstance(response, Response) and response.status == 400
    assert "Request-URI" in response.reason


def test_the_2xx_to_an_invite_over_tcp_has_transport_tcp_in_its_contact() -> None:
    core = core_with()
    data = invite().replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP")
    core.receive_datagram(data, PEER_ADDR, 0.0, "TCP")
    (event,) = drain_events(core)
    assert isinstance(event, RequestReceived)
    dialog = core.accept_dialog(event.transaction)
    core.respond(event.transaction, 200, now=0.0, dialog=dialog, body=SDP)
    *_, out = core.datagrams_to_send()
    response = parse_message(out.data, stream=True)
    assert isinstance(response, Response) and response.status == 200
    assert response.headers.get("contact") == "<sip:127.0.0.2:5060;transport=tcp>"


def test_a_request_we_send_over_tcp_has_transport_tcp_in_its_contact() -> None:
    core = core_with()
    target = parse_uri("sip:taker@192.0.2.20:5070;transport=tcp")
    request = build_request(
        "INVITE",
        target,
        from_="<sip:rec@127.0.0.2>;tag=abc",
        to=f"<{target}>",
        contact=core.default_contact(),
        local_host="127.0.0.2",
        body=SDP,
    )
    core.send_request(request, 0.0)
    (out,) = core.datagrams_to_send()
    assert out.transport == "TCP"
    sent = parse_message(out.data, stream=True)
    assert sent.headers.get("contact") == "<sip:127.0.0.2:5060;transport=tcp>"
