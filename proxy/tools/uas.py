"""An answering UAS built on the SIP stack: 180 then 200 (with an SDP answer) to every
INVITE, 200 to BYE, OPTIONS and other requests.  A loopback peer for SIPp and for
checking that a trunk or PBX can reach this host (``recproxy test-uas``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

from proxy.sip.core import CoreSettings, SipCore
from proxy.sip.events import AckReceived, AckTimedOut, Event, RequestReceived
from proxy.sip.transport import SipTransport

ANSWER = (
    b"v=0\r\n"
    b"o=- 1 1 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)


@dataclass
class AnsweringUas:
    host: str = "127.0.0.1"
    core: SipCore = field(init=False)
    transport: SipTransport = field(init=False)
    answered: int = 0
    acked: int = 0
    byes: int = 0
    ack_timeouts: int = 0

    async def start(self, port: int = 0) -> tuple[str, int]:
        self.core = SipCore(CoreSettings(host=self.host))
        self.transport = SipTransport(self.core, self.on_event)
        await self.transport.start(self.host, port, tcp=True)
        assert self.transport.udp_address is not None
        port = self.transport.udp_address[1]
        # the Contact and Via we advertise must name the port we really listen on
        self.core.settings = replace(self.core.settings, port=port)
        return self.host, port

    async def close(self) -> None:
        await self.transport.close()

    def on_event(self, event: Event) -> None:
        now = self.transport.now()
        if isinstance(event, RequestReceived):
            txn = event.transaction
            method = event.request.method
            if method == "INVITE" and event.dialog is None:
                dialog = self.core.accept_dialog(txn)
                self.core.respond(txn, 180, now=now, dialog=dialog)
                self.core.respond(txn, 200, now=now, dialog=dialog, body=ANSWER)
                self.answered += 1
            elif method == "BYE":
                self.byes += 1
                self.core.respond(txn, 200, now=now, dialog=event.dialog)
            else:
                self.core.respond(txn, 200, now=now, dialog=event.dialog)
        elif isinstance(event, AckReceived):
            self.acked += 1
        elif isinstance(event, AckTimedOut):
            self.ack_timeouts += 1
            if event.dialog is not None:
                self.core.end_dialog(event.dialog)


async def serve(host: str, port: int) -> None:
    """Run until cancelled, printing a line per hundred calls."""
    uas = AnsweringUas(host=host)
    address = await uas.start(port)
    print(f"answering SIP calls on {address[0]}:{address[1]} (UDP and TCP)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await uas.close()
