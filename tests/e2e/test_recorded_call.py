"""A recorded call end to end: real ``recproxy serve`` processes, SIPp as the caller and
the call taker, tcpdump on loopback, and the proxy's own commands to read back what it
recorded.

Each test states one acceptance criterion of the recording proxy:

1. the caller hears the whole notice before the call taker is even invited, and the
   bridged conversation is recorded, caller left and call taker right, for as long as
   it was bridged;
2. a caller who gives up during the notice (CANCEL in early-media mode, BYE in answer
   mode) never reaches the call taker, and everything is released;
3. a busy call taker: the caller is hung up after the notice, nothing is recorded;
4. a crash (SIGKILL) mid-call loses at most the last second of the recording;
5. 20 concurrent calls are all recorded, each for its own length;
6. RFC 4475 torture messages get the answers the RFC names, and the proxy goes on;
7. SIGTERM: new calls are refused, active calls get the grace period, then BYE.

Times from SIPp's message logs, tcpdump and the catalog are all the host's wall clock.
"""

from __future__ import annotations

import json
import re
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from . import audio
from .conftest import E2e, end_world, new_world, shared_data
from .netns import in_private_network
from .pcap import RtpPacket
from .proxy_process import (
    ProxySettings,
    export_many,
    export_wav,
    list_recordings,
    query,
    run_cli,
    wait_for,
)
from .sip_client import SDP_OFFER, Response, SipSocket, ack_and_bye, parse_response

pytestmark = pytest.mark.sipp

RATE = audio.RATE
LENGTH_TOLERANCE_S = 0.2


def seconds_of(ulaw: bytes, start: float, end: float) -> bytes:
    return ulaw[int(start * RATE) : int(end * RATE)]


def call_rows(proxy_catalog: Path) -> list[dict[str, object]]:
    return [dict(row) for row in query(proxy_catalog, "SELECT * FROM calls ORDER BY started_at")]


def bridged_seconds(call: dict[str, object]) -> float:
    bridged, ended = call["bridged_at"], call["ended_at"]
    assert isinstance(bridged, int) and isinstance(ended, int), call
    return (ended - bridged) / 1000


# ---------------------------------------------------------------------------------------
# 1. Notice first, then the call taker; the bridged call recorded in stereo


def test_notice_then_call_taker_then_recorded_in_stereo(e2e: E2e, dialogue: bytes) -> None:
    proxy = e2e.proxy()
    caller_audio = seconds_of(dialogue, 0, 6)
    taker_audio = seconds_of(dialogue, 12, 18)
    capture = e2e.capture("caller_side.pcap", f"udp port {e2e.ports.caller_rtp}")
    taker = e2e.call_taker(audio_pcap=e2e.rtp_pcap("taker.pcap", taker_audio), ring_ms=500)
    # the caller starts talking 3 s after its ACK: after the 2 s notice and 0.5 s ringing
    caller = e2e.caller(
        audio_pcap=e2e.rtp_pcap("caller.pcap", caller_audio), pre_audio_ms=3000, hold_ms=6500
    )
    caller.expect_success(timeout=30)
    taker.expect_success(timeout=10)
    proxy.wait_idle()
    packets = capture.stop()

    # The call taker is invited only once the whole notice has played.
    caller_invite = caller.first(sent=True, method="INVITE").time
    taker_invite = taker.first(sent=False, method="INVITE").time
    assert taker_invite - caller_invite >= e2e.notice.seconds, (caller_invite, taker_invite)
    assert taker_invite - caller_invite < e2e.notice.seconds + 1.0, "call taker invited late"

    # What the caller received before the bridge is the notice, from its first packet.
    bridge = taker.first(sent=False, method="ACK").time
    to_caller = [
        (d.time, RtpPacket.parse(d.payload))
        for d in packets
        if d.destination[1] == e2e.ports.caller_rtp and d.time < bridge
    ]
    rtp = [packet for _, packet in to_caller if packet is not None]
    assert len(rtp) == len(to_caller) and rtp, "no RTP, or non-RTP, sent to the caller"
    assert {packet.payload_type for packet in rtp} == {0}, "the caller was answered with PCMU"
    heard = audio.ulaw_decode(b"".join(packet.payload for packet in rtp))
    notice = audio.best_match(heard, e2e.notice.samples)
    assert notice.ncc >= 0.9, f"the caller did not hear the notice: {notice}"
    assert abs(notice.offset_s) <= 0.1, f"the notice did not start the call: {notice}"
    # ... and all of it had been sent before the call taker was invited
    notice_end = notice.offset + len(e2e.notice.samples)
    played = 0
    last_notice_packet = 0.0
    for sent_at, packet in to_caller:
        assert packet is not None
        if played < notice_end:
            last_notice_packet = sent_at
        played += len(packet.payload)
    assert last_notice_packet <= taker_invite, "call taker invited before the notice ended"

    # One complete recording, as long as the bridged call, caller left, call taker right.
    rows = list_recordings(e2e.config_path)
    assert [row["state"] for row in rows] == ["complete"], rows
    # ... and it says so because nothing was lost: every frame of both channels counted
    quality = rows[0]["quality"]
    assert set(quality) == {"caller", "call_taker"}, rows
    for channel in quality.values():
        assert channel["frames"] > 0 and channel["lost_frames"] == channel["late_frames"] == 0
    (call,) = call_rows(proxy.catalog_path)
    assert call["outcome"] == "completed"
    # ... and names the configuration version serve started under (P22)
    (version,) = json.loads(run_cli(e2e.config_path, "config", "history", "--json"))
    assert rows[0]["config_version"] == call["config_version"] == version["version"], rows
    wav = audio.read_wav(export_wav(e2e.config_path, str(rows[0]["id"]), e2e.folder / "call.wav"))
    assert (wav.channels, wav.rate) == (2, RATE)
    by_catalog = bridged_seconds(call)
    by_sipp = caller.first(sent=True, method="BYE").time - bridge
    assert abs(wav.seconds - by_catalog) <= LENGTH_TOLERANCE_S, (wav.seconds, by_catalog)
    assert abs(wav.seconds - by_sipp) <= LENGTH_TOLERANCE_S, (wav.seconds, by_sipp)
    caller_pcm = audio.ulaw_decode(caller_audio)
    taker_pcm = audio.ulaw_decode(taker_audio)
    left = audio.place(wav.channel(0), caller_pcm)
    right = audio.place(wav.channel(1), taker_pcm)
    # all of both, not just some (no voiced chunk fell outside the recording)
    assert len(left.inside) == left.voiced and len(right.inside) == right.voiced, (left, right)
    assert audio.absent(wav.channel(0), taker_pcm), "the call taker is on the caller's channel"
    assert audio.absent(wav.channel(1), caller_pcm), "the caller is on the call taker's channel"


# ---------------------------------------------------------------------------------------
# 2. The caller leaves during the notice: the call taker is never called


def _assert_nothing_arrives(sock: SipSocket, until: float) -> None:
    while (left := until - time.time()) > 0:
        sock.sock.settimeout(left)
        try:
            data, source = sock.sock.recvfrom(65535)
        except TimeoutError:
            return
        raise AssertionError(f"the call taker's port got a message from {source}: {data[:200]!r}")


def _assert_left_during_notice(e2e: E2e, proxy_catalog: Path, mode: str) -> None:
    (call,) = call_rows(proxy_catalog)
    assert call["outcome"] == "caller_abandoned_during_notice", call
    assert call["bridged_at"] is None
    (receipt,) = query(
        proxy_catalog, "SELECT * FROM consent_receipts WHERE call_id = ?", call["id"]
    )
    assert receipt["caller_left_during_notice"] == 1, dict(receipt)
    assert receipt["completed"] == 0
    assert receipt["mode"] == mode
    assert 500 <= receipt["played_ms"] < receipt["notice_ms"], dict(receipt)
    assert list_recordings(e2e.config_path) == []


def test_cancel_during_early_media_notice_never_reaches_call_taker(e2e: E2e) -> None:
    proxy = e2e.proxy(ProxySettings(mode="early-media"))
    taker_port = SipSocket(("127.0.0.1", e2e.ports.sip), port=e2e.ports.taker_sip)
    try:
        caller = e2e.caller("uac_cancel", cancel_after_ms=1000)
        caller.expect_success(timeout=15)
        invite = caller.first(sent=True, method="INVITE").time
        assert (
            caller.first(sent=False, status=183).time
            < caller.first(sent=True, method="CANCEL").time
        )
        # the notice would have ended 2 s after the INVITE: wait well past that
        _assert_nothing_arrives(taker_port, until=invite + e2e.notice.seconds + 1.0)
    finally:
        taker_port.close()
    health = proxy.wait_idle(timeout=5)
    assert (health["calls"], health["rtp"]["in_use"]) == (0, 0)
    _assert_left_during_notice(e2e, proxy.catalog_path, "early-media")


def test_bye_during_answered_notice_never_reaches_call_taker(e2e: E2e) -> None:
    proxy = e2e.proxy(ProxySettings(mode="answer"))
    taker_port = SipSocket(("127.0.0.1", e2e.ports.sip), port=e2e.ports.taker_sip)
    try:
        caller = e2e.caller("uac_call", pre_audio_ms=1000, hold_ms=0)
        caller.expect_success(timeout=15)
        invite = caller.first(sent=True, method="INVITE").time
        assert caller.first(sent=True, method="BYE").time - invite < e2e.notice.seconds
        _assert_nothing_arrives(taker_port, until=invite + e2e.notice.seconds + 1.0)
    finally:
        taker_port.close()
    health = proxy.wait_idle(timeout=5)
    assert (health["calls"], health["rtp"]["in_use"]) == (0, 0)
    _assert_left_during_notice(e2e, proxy.catalog_path, "answer")


# ---------------------------------------------------------------------------------------
# 3. The call taker is busy


def test_busy_call_taker_caller_hung_up_after_notice_nothing_recorded(e2e: E2e) -> None:
    proxy = e2e.proxy(ProxySettings(mode="answer"))
    taker = e2e.run_sipp(
        "taker", "uas_busy", {}, local_port=e2e.ports.taker_sip, media_port=e2e.ports.taker_rtp
    )
    caller = e2e.caller("uac_expect_bye")
    caller.expect_success(timeout=15)
    taker.expect_success(timeout=5)
    invite = caller.first(sent=True, method="INVITE").time
    bye = caller.first(sent=False, method="BYE").time
    taker_invite = taker.first(sent=False, method="INVITE").time
    taker.first(sent=True, status=486)
    assert taker_invite - invite >= e2e.notice.seconds, "call taker invited during the notice"
    # (SIPp logs a message it sends after sending it, one it receives before acting on
    # it: so the call taker's INVITE, not its 486, is what the BYE must follow)
    assert taker_invite < bye, "the caller was hung up before the call taker was called"
    assert bye - invite >= e2e.notice.seconds, "hung up before the notice had played"
    assert list_recordings(e2e.config_path) == []
    health = proxy.wait_idle(timeout=5)
    assert (health["calls"], health["rtp"]["in_use"]) == (0, 0)
    (call,) = call_rows(proxy.catalog_path)
    assert call["outcome"] == "calltaker_busy", call


# ---------------------------------------------------------------------------------------
# 4. SIGKILL mid-call: the recording survives up to the last second


def test_sigkill_mid_call_recording_interrupted_but_kept(e2e: E2e, dialogue: bytes) -> None:
    proxy = e2e.proxy(ProxySettings(segment_seconds=2))
    caller_audio = seconds_of(dialogue, 0, 10)
    taker_audio = seconds_of(dialogue, 10, 20)
    taker = e2e.call_taker(audio_pcap=e2e.rtp_pcap("taker.pcap", taker_audio), ring_ms=300)
    caller = e2e.caller(
        audio_pcap=e2e.rtp_pcap("caller.pcap", caller_audio), pre_audio_ms=2800, hold_ms=10000
    )

    def bridged_at() -> int | None:
        rows = query(proxy.catalog_path, "SELECT bridged_at FROM calls")
        return rows[0]["bridged_at"] if rows else None

    wait_for("the call to be bridged", lambda: bridged_at() is not None, timeout=15)
    bridged = (bridged_at() or 0) / 1000
    time.sleep(max(bridged + 3.5 - time.time(), 0))  # mid-chunk: chunks are ~1 s
    killed_at = time.time()
    proxy.send_signal(signal.SIGKILL)
    assert proxy.wait(timeout=5) == -signal.SIGKILL
    caller.stop()
    taker.stop()

    restarted = e2e.proxy(restart=True)
    health = restarted.health()
    assert (health["calls"], health["rtp"]["in_use"]) == (0, 0)
    rows = list_recordings(e2e.config_path)
    assert [row["state"] for row in rows] == ["interrupted"], rows
    wav = audio.read_wav(export_wav(e2e.config_path, str(rows[0]["id"]), e2e.folder / "kept.wav"))
    assert (wav.channels, wav.rate) == (2, RATE)
    before_kill = killed_at - bridged
    assert before_kill - 1.0 <= wav.seconds <= before_kill + LENGTH_TOLERANCE_S, (
        f"kept {wav.seconds:.2f} s of the {before_kill:.2f} s bridged before the kill"
    )
    # what was kept is the conversation: every second of it that fits
    right = audio.place(wav.channel(1), audio.ulaw_decode(taker_audio))
    left = audio.place(wav.channel(0), audio.ulaw_decode(caller_audio))
    assert right.inside_s >= 1.5 and left.inside_s >= 1.0, (left, right)
    assert abs(rows[0]["duration_ms"] / 1000 - wav.seconds) <= 0.05
    # and the catalog says the recording ends where its kept audio does
    (kept,) = query(restarted.catalog_path, "SELECT * FROM recordings")
    assert kept["ended_at"] == kept["started_at"] + kept["duration_ms"], dict(kept)


# ---------------------------------------------------------------------------------------
# 5. Twenty calls at once


def test_twenty_concurrent_calls_all_recorded_each_for_its_length(
    e2e: E2e, dialogue: bytes
) -> None:
    calls = 20
    proxy = e2e.proxy()
    caller_audio = seconds_of(dialogue, 0, 2)
    taker_audio = seconds_of(dialogue, 12.2, 14.2)
    taker = e2e.call_taker(
        audio_pcap=e2e.rtp_pcap("taker.pcap", taker_audio), ring_ms=300, calls=calls, timeout_s=40
    )
    caller = e2e.caller(
        audio_pcap=e2e.rtp_pcap("caller.pcap", caller_audio),
        pre_audio_ms=3000,
        hold_ms=2500,  # the 2 s of audio (played in the background) and 0.5 s
        calls=calls,
        rate=10,
        limit=calls,
        timeout_s=40,
    )
    caller.expect_success(timeout=45)
    taker.expect_success(timeout=10)
    proxy.wait_idle(timeout=10)

    rows = list_recordings(e2e.config_path)
    assert len(rows) == calls and {row["state"] for row in rows} == {"complete"}, rows
    bridged = {str(call["id"]): bridged_seconds(call) for call in call_rows(proxy.catalog_path)}
    assert len(bridged) == calls
    wavs = export_many(e2e.config_path, [str(row["id"]) for row in rows], e2e.folder)
    caller_pcm = audio.ulaw_decode(caller_audio)
    taker_pcm = audio.ulaw_decode(taker_audio)
    for row in rows:
        wav = audio.read_wav(wavs[str(row["id"])])
        expected = bridged[str(row["call_id"])]
        assert (wav.channels, wav.rate) == (2, RATE)
        assert abs(wav.seconds - expected) <= LENGTH_TOLERANCE_S, (row, wav.seconds, expected)
        for channel, reference in ((0, caller_pcm), (1, taker_pcm)):
            placed = audio.place(wav.channel(channel), reference)
            assert len(placed.inside) == placed.voiced, (row, channel, placed)


# ---------------------------------------------------------------------------------------
# 6. RFC 4475 torture messages


# file -> the status the proxy must answer (None: no answer), and why
INVALID: dict[str, tuple[int | None, str]] = {
    # RFC 4475 §3.1.2 and §3.3.1: the response EXPECTED.md names
    "badinv01.dat": (400, "extraneous header field separators"),
    "clerr.dat": (400, "Content-Length larger than the datagram"),
    "scalar02.dat": (400, "CSeq above 2**32-1"),
    "quotbal.dat": (400, "unterminated quoted string"),
    "lwsstart.dat": (400, "multiple SP in the Request-Line"),
    "badaspec.dat": (400, "spaces within addr-spec"),
    "badvers.dat": (505, "SIP/7.0"),
    "mismatch01.dat": (400, "CSeq method differs from the Request-Line"),
    "bigcode.dat": (None, "a response with an overlarge status code is dropped"),
    "insuf.dat": (400, "no Call-ID, From or To"),
    # "may reject, but should not unless Date matters": it does not, so a call
    "baddate.dat": (200, "INVITE with a non-GMT Date: answered"),
}
VALID: dict[str, tuple[int | None, str]] = {
    # §3.1.1: well formed, so never 400; the answer a B2BUA's UAS side gives
    "wsinv.dat": (481, "INVITE with a To tag of no dialog here"),
    "intmeth.dat": (501, "unknown method at a UAS: Not Implemented"),
    "esc01.dat": (200, "INVITE with escaped URIs: answered"),
    "escnull.dat": (403, "REGISTER: the registrar is disabled"),
    "lwsdisp.dat": (200, "OPTIONS"),
    "longreq.dat": (200, "INVITE with long header values: answered"),
    "mpart01.dat": (405, "MESSAGE: not supported"),
    "noreason.dat": (None, "a response matching no transaction is absorbed"),
    # §3.2 and §3.3: parseable; the answers the RFC names
    "badbranch.dat": (200, "OPTIONS with a bare magic-cookie branch"),
    "unkscm.dat": (416, "unknown URI scheme"),
    "novelsc.dat": (416, "soap.beep: URI scheme"),
    "bext01.dat": (420, "Require: extensions nobody supports"),
    "invut.dat": (415, "INVITE with a body that is not SDP"),
    "cparam01.dat": (403, "REGISTER: the registrar is disabled"),
    "cparam02.dat": (403, "REGISTER: the registrar is disabled"),
}
# §3.4.1: an RFC 2543 INVITE (no branch, no From tag, no Content-Length, no
# Max-Forwards, and no Contact): to be accepted for backward compatibility
RFC2543_INVITE = "inv2543.dat"


@dataclass(frozen=True)
class TortureRun:
    answers: dict[str, list[int]]  # file -> the final statuses answered to it
    options_after: int  # status of an OPTIONS sent after all of them
    health_after: list[dict[str, Any]]  # each proxy's /healthz at the end


def _transaction_key(data: bytes) -> tuple[str, str, str]:
    """Method, top Via branch and sent-by, read from the raw message: two requests
    that share them are one transaction to a UAS (RFC 3261 §17.2.3)."""
    head = data.decode("utf-8", "replace").split("\r\n\r\n", 1)[0]
    head = re.sub(r"\r\n[ \t]+", " ", head)  # unfold
    via = re.search(r"^(?:via|v)[ \t]*:(.*)$", head, re.I | re.M)
    if via is None:
        return head.split(" ", 1)[0], "", ""
    top = via.group(1).split(",")[0]
    branch = re.search(r"branch[ \t]*=[ \t]*([^;\s]+)", top)
    sent_by = top.split(";")[0].split()[-1].lower()
    return head.split(" ", 1)[0], branch.group(1) if branch else "", sent_by


def _call_id(data: bytes) -> str | None:
    response = parse_response(b"SIP/2.0 100 x\r\n" + data.split(b"\r\n", 1)[1])
    return response.call_id if response else None


def _torture(worlds: list[E2e], files: list[Path]) -> TortureRun:
    """Send every file to a proxy, one at a time, and note what the proxy sends back
    (wherever the Via tells it to: tcpdump sees it).  Files that would be retransmissions
    of an earlier one's transaction (unkscm of novelsc, cparam02 of cparam01) go to a
    second proxy.  Calls that start are ACKed and ended with BYE at once."""
    proxies = [world.proxy() for world in worlds]
    sip_ports = [world.ports.sip for world in worlds]
    capture = worlds[0].capture(
        "sip.pcap", "udp and (" + " or ".join(f"src port {port}" for port in sip_ports) + ")"
    )
    sockets = [
        SipSocket(("127.0.0.1", world.ports.sip), port=world.ports.spare_sip(0)) for world in worlds
    ]
    keys: list[set[tuple[str, str, str]]] = [set() for _ in worlds]
    answers: dict[str, list[int]] = {}
    seen = 0
    try:
        for path in files:
            data = path.read_bytes()
            key = _transaction_key(data)
            target = next(i for i, used in enumerate(keys) if key not in used)
            keys[target].add(key)
            sock = sockets[target]
            expected = {**INVALID, **VALID}.get(path.name, (200, ""))[0]
            sock.send(data)
            deadline = time.monotonic() + (2.0 if expected is not None else 0.5)
            final: Response | None = None
            statuses: list[int] = []
            while time.monotonic() < deadline and final is None:
                time.sleep(0.01)
                datagrams = capture.datagrams()
                for datagram in datagrams[seen:]:
                    response = parse_response(datagram.payload)
                    if (
                        response is not None
                        and datagram.source[1] == sip_ports[target]
                        and response.call_id == _call_id(data)
                        and response.status >= 200
                    ):
                        statuses.append(response.status)
                        final = final or response
                seen = len(datagrams)
            answers[path.name] = statuses
            if (
                final is not None
                and final.cseq is not None
                and final.cseq[1] == "INVITE"
                and final.status not in (400, 505)  # (those came from the parser: no dialog)
            ):
                ack_and_bye(sock, final, request_uri=data.split(b" ")[1].decode())
        options_after = sockets[0].options().status
        health_after = [proxy.wait_idle(timeout=10) for proxy in proxies]
    finally:
        for sock in sockets:
            sock.close()
    return TortureRun(answers, options_after, health_after)


@pytest.fixture(scope="module")
def torture(tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TortureRun]:
    """All the RFC 4475 messages, sent once for the tests below.  In a network
    namespace of its own: some offers name 192.0.2.x media addresses, and the proxy
    answering them must not send its notice anywhere but loopback."""
    files = sorted(shared_data("sip", "rfc4475").glob("*.dat"))
    assert {path.name for path in files} == {*INVALID, *VALID, RFC2543_INVITE}, (
        "every message in the folder needs an expected answer here"
    )
    worlds = [new_world(tmp_path_factory.mktemp(f"rfc4475-{i}")) for i in range(2)]
    try:
        yield in_private_network(lambda: _torture(worlds, files))
    finally:
        for world in worlds:
            end_world(world)


def _wrong(run: TortureRun, table: dict[str, tuple[int | None, str]]) -> dict[str, object]:
    return {
        name: {"answered": run.answers[name], "expected": expected, "why": why}
        for name, (expected, why) in table.items()
        if run.answers[name][:1] != ([] if expected is None else [expected])
    }


def test_rfc4475_invalid_messages_get_the_answers_the_rfc_names(torture: TortureRun) -> None:
    assert not _wrong(torture, INVALID)


def test_rfc4475_valid_messages_are_never_400(torture: TortureRun) -> None:
    assert not [name for name in VALID if 400 in torture.answers[name]]
    assert not _wrong(torture, VALID)


def test_rfc4475_rfc2543_invite_is_answered_not_400(torture: TortureRun) -> None:
    assert torture.answers[RFC2543_INVITE][:1] == [200]


def test_rfc4475_proxy_still_answers_and_holds_nothing_afterwards(torture: TortureRun) -> None:
    assert torture.options_after == 200
    for health in torture.health_after:
        assert (health["calls"], health["rtp"]["in_use"]) == (0, 0), health


# ---------------------------------------------------------------------------------------
# 7. SIGTERM: refuse new calls, let the active one run out its grace, then BYE


def test_sigterm_refuses_new_calls_then_ends_active_call_after_grace(
    e2e: E2e, dialogue: bytes
) -> None:
    grace = 2.0
    proxy = e2e.proxy(ProxySettings(grace_seconds=grace))
    taker = e2e.call_taker(audio_pcap=e2e.rtp_pcap("taker.pcap", seconds_of(dialogue, 10, 20)))
    caller = e2e.caller(
        "uac_expect_bye", audio_pcap=e2e.rtp_pcap("caller.pcap", seconds_of(dialogue, 0, 10))
    )
    wait_for(
        "the call to be bridged",
        lambda: any(c["bridged_at"] for c in call_rows(proxy.catalog_path)),
        timeout=15,
    )
    time.sleep(0.5)
    terminated_at = time.time()
    proxy.send_signal(signal.SIGTERM)
    # the signal is handled asynchronously: an INVITE racing it may still be taken
    wait_for("/healthz to say new calls are refused", lambda: not proxy.health()["accepting"], 2)

    late = SipSocket(("127.0.0.1", e2e.ports.sip), port=e2e.ports.spare_sip(1))
    try:
        call_id = f"late-{uuid.uuid4().hex}"
        late.request("INVITE", call_id=call_id, body=SDP_OFFER.format(port=e2e.ports.spare_rtp))
        refused = late.final_response(call_id, timeout=3)
        assert refused.status == 503, refused.text
        ack_and_bye(late, refused)
    finally:
        late.close()

    caller.expect_success(timeout=grace + 10)
    taker.expect_success(timeout=5)
    assert proxy.wait(timeout=15) == 0
    bye_to_caller = caller.first(sent=False, method="BYE").time
    bye_to_taker = taker.first(sent=False, method="BYE").time
    for bye in (bye_to_caller, bye_to_taker):
        assert grace - 0.1 <= bye - terminated_at <= grace + 2.0, (terminated_at, bye)
    rows = list_recordings(e2e.config_path)
    assert [row["state"] for row in rows] == ["complete"], rows
    (call,) = call_rows(proxy.catalog_path)
    assert call["outcome"] == "completed", call
    wav = audio.read_wav(export_wav(e2e.config_path, str(rows[0]["id"]), e2e.folder / "call.wav"))
    assert abs(wav.seconds - bridged_seconds(call)) <= LENGTH_TOLERANCE_S
