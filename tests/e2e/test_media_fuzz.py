"""Fuzzing the media path of a live ``recproxy serve`` (issue 11, "Fuzzing").

Hypothesis makes SDP connection lines (net and address types, literals of both
families, host names, junk, hold addresses, multicast...) and puts them in a first
INVITE or in a re-INVITE of a call playing its notice, where the proxy follows the new
address at once.  Whatever the answer (200, 400, 488), the proxy must go on: after
every example a healthy call through the same proxy is recorded ``complete``, for as
long as it was bridged.  Bounded: a short notice, 10 examples and 2 explicit ones, about 25 s.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from . import audio
from .conftest import E2e, Notice, end_world, new_world, shared_data
from .proxy_process import ProxyProcess, query, wait_for
from .sip_client import Response, SipSocket, ack_and_bye
from .test_media_addresses import offer

pytestmark = pytest.mark.sipp

NOTICE_SECONDS = 0.4  # a fuzzed call ends long before this; a healthy one waits it out
EXAMPLES = 10
SENDING = 0.08  # a fuzzed call lives this long after its offer: the notice goes to it

INTERESTING = [
    "::1", "0:0::1", "::", "0.0.0.0", "127.0.0.1", "999.1.1.1", "pbx.example.net",
    "224.0.0.1/127", "255.255.255.255", "::ffff:127.0.0.1", "fe80::1%lo", "[::1]",
    "1.2.3", "-", "127.0.0.1/127/2",
]  # fmt: skip
addresses = st.one_of(
    st.sampled_from(INTERESTING),
    st.ip_addresses().map(str),
    st.text(alphabet="0123456789abcdefxyz:.[]%-/", min_size=1, max_size=24),
)
connections = st.builds(
    "{} {} {}".format,
    st.sampled_from(["IN", "in", "ATM"]),
    st.sampled_from(["IP4", "IP6", "ip6", "IPX"]),
    addresses,
)


@st.composite
def bodies(draw: st.DrawFn) -> str:
    """An offer with a fuzzed c= at session or media level, a direction, a port."""
    connection = draw(connections)
    media_level = draw(st.booleans())
    direction = draw(st.sampled_from(["", "sendonly", "inactive", "recvonly"]))
    port = draw(st.sampled_from(["{port}", "0", "{port}/2"]))
    lines = ["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-"]
    lines += [] if media_level else [f"c={connection}"]
    lines += ["t=0 0", f"m=audio {port} RTP/AVP 0 101"]
    lines += [f"c={connection}"] if media_level else []
    lines += ["a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000"]
    lines += [f"a={direction}"] if direction else []
    return "\r\n".join(lines) + "\r\n"


@pytest.fixture
def world(tools: None, tmp_path: Path) -> Iterator[E2e]:
    """The e2e harness with a short notice, so that each healthy call takes ~1.5 s."""
    e2e = new_world(tmp_path)
    source = audio.read_wav(shared_data("audio", "notice_8k_s16.wav"))
    samples = source.channel(0)[: int(NOTICE_SECONDS * audio.RATE)]
    audio.write_wav(e2e.notice.path, samples)
    e2e.notice = Notice(e2e.notice.path, samples)
    try:
        yield e2e
    finally:
        end_world(e2e)


class Fuzzer:
    """Fuzzed calls through ``proxy``, each followed by a healthy recorded call."""

    def __init__(self, e2e: E2e, proxy: ProxyProcess) -> None:
        self.e2e = e2e
        self.proxy = proxy
        self.sip = SipSocket(("127.0.0.1", e2e.ports.sip))
        self.media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.media.bind(("127.0.0.1", 0))
        self.port: int = self.media.getsockname()[1]
        self.healthy = 0
        e2e.call_taker(calls=EXAMPLES + 10, ring_ms=100, timeout_s=120)

    def close(self) -> None:
        self.sip.close()
        self.media.close()

    def first_offer(self, body: str) -> None:
        call_id = f"fuzz-{uuid.uuid4().hex}"
        self.sip.request("INVITE", call_id=call_id, body=body)
        final = self.sip.final_response(call_id, timeout=5)
        assert final.status in (200, 400, 488), final.text
        time.sleep(SENDING)
        ack_and_bye(self.sip, final)

    def re_offer(self, body: str) -> None:
        """A call with a good offer, then a re-INVITE with ``body`` during the notice."""
        call_id = f"fuzz-{uuid.uuid4().hex}"
        self.sip.request("INVITE", call_id=call_id, body=offer("IN IP4 127.0.0.1", self.port))
        answer = self.sip.final_response(call_id, timeout=5)
        assert answer.status == 200, answer.text
        from_, to = answer.header("From", "f"), answer.header("To", "t")
        assert from_ is not None and to is not None
        contact = (answer.header("Contact", "m") or "").strip("<>")

        def send(method: str, cseq: int, body: str = "") -> Response:
            self.sip.request(
                method, call_id=call_id, cseq=cseq, uri=contact, from_=from_, to=to, body=body
            )
            if method == "ACK":
                return answer
            deadline = time.monotonic() + 5
            while True:  # (skipping retransmitted answers to earlier requests)
                left = max(deadline - time.monotonic(), 0.01)
                final = self.sip.final_response(call_id, timeout=left)
                if final.cseq == (cseq, method):
                    return final

        send("ACK", 1)
        final = send("INVITE", 2, body)
        assert final.status in (200, 400, 488), final.text
        if final.status == 200:
            send("ACK", 2)
        time.sleep(SENDING)
        assert send("BYE", 3).status == 200

    def healthy_call(self) -> None:
        """A SIPp call through the same proxy: connected, and recorded ``complete`` for
        as long as it was bridged."""
        self.healthy += 1
        caller = self.e2e.caller(
            label=f"healthy{self.healthy}", pre_audio_ms=800, hold_ms=600, timeout_s=15
        )
        caller.expect_success(timeout=15)
        call_id = caller.first(sent=True, method="INVITE").call_id
        catalog = self.proxy.catalog_path

        def recording() -> dict[str, Any] | None:
            rows = query(
                catalog,
                "SELECT r.state, r.duration_ms, c.bridged_at, c.ended_at FROM recordings r "
                "JOIN calls c ON c.id = r.call_id WHERE c.sip_call_id = ?",
                call_id,
            )
            return dict(rows[0]) if rows and rows[0]["state"] != "recording" else None

        wait_for("the healthy call's recording to close", lambda: recording() is not None, 5)
        row = recording()
        assert row is not None and row["state"] == "complete", row
        assert abs(row["duration_ms"] - (row["ended_at"] - row["bridged_at"])) <= 200, row


def test_fuzzed_media_addresses_never_break_recording(world: E2e) -> None:
    proxy = world.proxy()
    fuzzer = Fuzzer(world, proxy)
    try:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=(Phase.explicit, Phase.generate),  # no shrinking: each example costs ~2 s
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(re_invite=st.booleans(), body=bodies())
        @example(re_invite=True, body=offer("IN IP6 ::1", 40000))  # the other family: 488
        @example(re_invite=False, body=offer("IN IP4 pbx.example.net", 40000))
        def run(re_invite: bool, body: str) -> None:
            body = body.replace("{port}", str(fuzzer.port))
            if re_invite:
                fuzzer.re_offer(body)
            else:
                fuzzer.first_offer(body)
            fuzzer.healthy_call()

        run()
    finally:
        fuzzer.close()
    assert proxy.health()["ok"] is True
