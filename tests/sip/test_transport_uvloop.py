"""The SIP transport under uvloop, the loop recproxy runs on: its transports do not
subclass asyncio's, so nothing may depend on isinstance checks against them."""

from __future__ import annotations

import asyncio

import uvloop

from proxy.tools.uas import AnsweringUas

OPTIONS = (
    "OPTIONS sip:uas@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/{transport} 127.0.0.1:5999;branch=z9hG4bK-uvloop-{transport};rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:test@127.0.0.1>;tag=t1\r\n"
    "To: <sip:uas@127.0.0.1>\r\n"
    "Call-ID: uvloop-{transport}@127.0.0.1\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "Content-Length: 0\r\n\r\n"
)


async def _exchange() -> tuple[bytes, bytes]:
    uas = AnsweringUas()
    host, port = await uas.start()
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(OPTIONS.format(transport="TCP").encode())
        await writer.drain()
        tcp_answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()

        loop = asyncio.get_running_loop()
        answers: asyncio.Queue[bytes] = asyncio.Queue()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                answers.put_nowait(data)

        transport, _ = await loop.create_datagram_endpoint(
            Client, local_addr=("127.0.0.1", 0), remote_addr=(host, port)
        )
        transport.sendto(OPTIONS.format(transport="UDP").encode())
        udp_answer = await asyncio.wait_for(answers.get(), 5)
        transport.close()
        return tcp_answer, udp_answer
    finally:
        await uas.close()


def test_options_over_tcp_and_udp_on_uvloop() -> None:
    tcp_answer, udp_answer = uvloop.run(_exchange())
    assert tcp_answer.startswith(b"SIP/2.0 200 OK\r\n")
    assert b"Call-ID: uvloop-TCP@127.0.0.1" in tcp_answer
    assert udp_answer.startswith(b"SIP/2.0 200 OK\r\n")
