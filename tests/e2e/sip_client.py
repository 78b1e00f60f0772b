"""A few hand-written SIP requests over a UDP socket, for what SIPp cannot do easily:
send a prepared datagram as it is, and read the answer to it.

Deliberately naive (regular expressions over the text): the tests judge the proxy's
SIP stack, so they do not use it.
"""

from __future__ import annotations

import re
import socket
import time
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Response:
    status: int
    text: str

    def header(self, name: str, compact: str | None = None) -> str | None:
        names = re.escape(name) + (f"|{re.escape(compact)}" if compact else "")
        match = re.search(rf"^(?:{names})[ \t]*:[ \t]*(.*?)[ \t]*$", self.head, re.I | re.M)
        return match.group(1) if match else None

    @property
    def head(self) -> str:
        return self.text.replace("\r\n", "\n").split("\n\n", 1)[0]

    @property
    def call_id(self) -> str | None:
        return self.header("Call-ID", "i")

    @property
    def cseq(self) -> tuple[int, str] | None:
        value = self.header("CSeq")
        if value is None:
            return None
        number, method = value.split()
        return int(number), method

    @property
    def to_tag(self) -> str | None:
        to = self.header("To", "t") or ""
        match = re.search(r";\s*tag\s*=\s*([^;\s]+)", to)
        return match.group(1) if match else None


def parse_response(data: bytes) -> Response | None:
    """A response's status and text; None for anything else."""
    text = data.decode("utf-8", "replace")
    match = re.match(r"SIP/2\.0 (\d{3}) ", text)
    return Response(int(match.group(1)), text) if match else None


def branch() -> str:
    return f"z9hG4bK-e2e-{uuid.uuid4().hex[:16]}"


SDP_OFFER = (
    "v=0\r\n"
    "o=- 1 1 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "c=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\n"
    "m=audio {port} RTP/AVP 0 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=ptime:20\r\n"
)


class SipSocket:
    """A UDP socket on 127.0.0.1 that sends requests to the proxy and reads answers."""

    def __init__(self, proxy: tuple[str, int], port: int = 0) -> None:
        self.proxy = proxy
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.port: int = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.proxy)

    def receive(self, timeout: float) -> Response | None:
        """The next response within ``timeout`` seconds (other datagrams are skipped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                return None
            response = parse_response(data)
            if response is not None:
                return response
        return None

    def final_response(self, call_id: str, timeout: float) -> Response:
        """The first final (≥ 200) response of the dialog ``call_id``."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            response = self.receive(left)
            if response is not None and response.call_id == call_id and response.status >= 200:
                return response
        raise AssertionError(f"no final response for {call_id} within {timeout} s")

    def request(
        self,
        method: str,
        *,
        call_id: str,
        cseq: int = 1,
        uri: str | None = None,
        via_branch: str | None = None,
        via: str | None = None,
        from_: str | None = None,
        to: str | None = None,
        body: str = "",
    ) -> str:
        """Send a request; returns its Via branch."""
        via_branch = via_branch or branch()
        uri = uri or f"sip:service@{self.proxy[0]}:{self.proxy[1]}"
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: {via or f'SIP/2.0/UDP 127.0.0.1:{self.port};branch={via_branch};rport'}",
            "Max-Forwards: 70",
            f"From: {from_ or f'<sip:e2e@127.0.0.1:{self.port}>;tag=e2e{call_id[:8]}'}",
            f"To: {to or f'<sip:service@{self.proxy[0]}:{self.proxy[1]}>'}",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:e2e@127.0.0.1:{self.port}>",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        self.send(("\r\n".join(lines) + "\r\n\r\n" + body).encode())
        return via_branch

    def options(self, timeout: float = 2.0) -> Response:
        call_id = f"options-{uuid.uuid4().hex}"
        self.request("OPTIONS", call_id=call_id)
        return self.final_response(call_id, timeout)


def ack_and_bye(
    sock: SipSocket, response: Response, *, request_uri: str | None = None, timeout: float = 2.0
) -> None:
    """End what an INVITE's final response left.  A non-2xx is ACKed in its INVITE's
    transaction (the INVITE's Request-URI and top Via, without what the proxy stamped
    on it); a 2xx is ACKed in the dialog, then the call is ended with BYE and its 200
    awaited."""
    cseq = response.cseq
    call_id = response.call_id
    from_ = response.header("From", "f")
    to = response.header("To", "t")
    assert cseq is not None and call_id is not None and from_ is not None and to is not None
    if not 200 <= response.status < 300:
        top_via = (response.header("Via", "v") or "").split(",")[0]
        top_via = re.sub(r";\s*(received|rport)(=[^;]*)?", "", top_via)
        sock.request("ACK", call_id=call_id, cseq=cseq[0], uri=request_uri, via=top_via,
                     from_=from_, to=to)  # fmt: skip
        return
    contact = re.search(r"<([^>]+)>", response.header("Contact", "m") or "")
    uri = contact.group(1) if contact else None
    sock.request("ACK", call_id=call_id, cseq=cseq[0], uri=uri, from_=from_, to=to)
    sock.request("BYE", call_id=call_id, cseq=cseq[0] + 1, uri=uri, from_=from_, to=to)
    deadline = time.monotonic() + timeout
    while True:
        bye = sock.final_response(call_id, max(deadline - time.monotonic(), 0.01))
        if bye.cseq == (cseq[0] + 1, "BYE"):
            break  # (else a retransmitted answer to the INVITE)
    assert bye.status == 200, bye.text
