"""The worker's side of a take and a give-back read in one pass of its control socket
(the call flow asked the call back at once): ``R`` must mean the worker neither reads
nor holds the call's sockets any more.  A real worker loop, real loopback sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from proxy.media.workers.protocol import (
    LegHandOver,
    Returned,
    Take,
    encode_give_back,
    encode_take,
    parse_message,
)
from proxy.media.workers.worker import Worker
from tests.media.loopback_phone import rtp


def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def control() -> Iterator[tuple[socket.socket, socket.socket]]:
    pool_side, worker_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    yield pool_side, worker_side
    pool_side.close()
    worker_side.close()


def received(pool_side: socket.socket) -> list[object]:
    pool_side.setblocking(False)
    messages: list[object] = []
    for _ in range(100):
        try:
            messages.append(parse_message(pool_side.recv(65536)))
        except BlockingIOError:
            break
    return messages


async def test_a_give_back_read_with_its_take_returns_the_sockets(
    control: tuple[socket.socket, socket.socket],
) -> None:
    pool_side, worker_side = control
    leg_a, leg_b, party = udp(), udp(), udp()
    source = party.getsockname()
    take = Take(7, (LegHandOver(source, None, None), LegHandOver(source, None, None)))
    socket.send_fds(pool_side, [encode_take(take)], [leg_a.fileno(), leg_b.fileno()])
    pool_side.send(encode_give_back(7))  # both wait in the socket: one read pass
    worker = Worker(worker_side, asyncio.get_running_loop())
    try:
        await asyncio.sleep(0.2)
        messages = received(pool_side)
        returned = [m for m in messages if isinstance(m, Returned)]
        assert [m.call for m in returned] == [7] and returned[0].reason == "asked"
        assert 7 not in worker.calls
        # the call process reads its socket again: the party's packet reaches it
        party.sendto(rtp(1), leg_a.getsockname())
        await asyncio.sleep(0.1)
        leg_a.setblocking(False)
        assert leg_a.recv(2048) == rtp(1)
        assert received(pool_side) == []  # nothing of it went up from the worker
        # the call ends here: its port is free (the worker holds no duplicate)
        port = leg_a.getsockname()[1]
        leg_a.close()
        again = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            again.bind(("127.0.0.1", port))
        finally:
            again.close()
    finally:
        worker_side.close()
        for sock in (leg_a, leg_b, party):
            sock.close()
