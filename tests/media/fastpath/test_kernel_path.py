"""The kernel path with real legs, nftables and the ring, in a network namespace of the
test's own (set to forward, as ``auto`` needs): a bridged call goes to the kernel once
both legs latched, its packets reach the other party unchanged from our other leg and
reach the recorder from the ring, and it comes back to the relay when asked or when a
leg changes under it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable

import pytest

from proxy.media.fastpath import KernelPath, detect, not_ready, remove_tables
from proxy.media.fastpath.probe import capabilities, missing_permission
from proxy.media.relay import LegMode, MediaSession, PortAllocator, RtpLeg
from tests.e2e.netns import in_private_network
from tests.media.loopback_phone import Parties, Phone, rtp

STATUS = "Name:\tx\nCapEff:\t000001ffffffffff\n"
FORWARD = ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.accept_local=1"]


def test_permissions_are_read_from_proc() -> None:
    assert capabilities(STATUS) == 0x1FFFFFFFFFF
    assert missing_permission(STATUS, "1\n", "1\n") is None
    assert missing_permission(STATUS, "0\n", "1\n") == "net.ipv4.ip_forward is not 1"
    assert missing_permission(STATUS, "1\n", "0\n") == "net.ipv4.conf.all.accept_local is not 1"
    lacking = missing_permission("CapEff:\t0000000000001000\n", "1\n", "1\n")
    assert lacking == "the process lacks CAP_NET_RAW"
    assert missing_permission("CapEff:\t0\n", "1", "1") == (
        "the process lacks CAP_NET_ADMIN and CAP_NET_RAW"
    )


def test_off_is_off_and_a_host_that_does_not_forward_keeps_the_relay() -> None:
    assert detect("off", (20000, 20099)).path is None
    assert detect("off", (20000, 20099)).reason == 'media.fast_path is "off"'

    def in_a_new_namespace() -> str:  # ip_forward starts at 0 there
        return detect("auto", (20000, 20099)).reason

    assert in_private_network(in_a_new_namespace, timeout=20) == "net.ipv4.ip_forward is not 1"


class World(Parties):
    def __init__(self, path: KernelPath, session: MediaSession, a: RtpLeg, b: RtpLeg) -> None:
        super().__init__(a, b)
        self.path, self.session = path, session
        session.bridge()

    async def hand_over(self) -> None:
        """Both legs latched (one packet each), then the call offered: in the kernel."""
        self.caller.send(rtp(1), self.a.port)
        self.taker.send(rtp(1), self.b.port)
        await self.settle()
        self.path.offer(self.a, self.b)
        assert self.path.on_kernel(self.a)

    async def settle(self, seconds: float = 0.1) -> None:
        await asyncio.sleep(seconds)
        self.path.read()
        self.caller.drain()
        self.taker.drain()


def in_kernel_world(body: Callable[[World], Awaitable[None]], *, nat_grace: float = 1.0) -> None:
    def run() -> None:
        subprocess.run(FORWARD, check=True, timeout=10)

        async def main() -> None:
            detection = detect("auto", (20000, 20099))
            path = detection.path
            assert path is not None, detection.reason
            path.start(asyncio.get_running_loop())
            session = MediaSession(PortAllocator(20000, 20099), "127.0.0.1", nat_grace=nat_grace)
            a = await session.open_leg("caller")
            b = await session.open_leg("call_taker")
            try:
                await body(World(path, session, a, b))
            finally:
                path.close()
                session.close()
                remove_tables(path.nft)
                path.nft.close()
                path.ring.close()

        asyncio.run(main())

    in_private_network(run, timeout=60)


def legs_in_kernel() -> list[str]:
    """The ports whose source is in the kernel's ``sources`` set now."""
    listing = subprocess.run(
        ["nft", "-j", "list", "set", "ip", "recproxy", "sources"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    (entry,) = [item["set"] for item in json.loads(listing)["nftables"] if "set" in item]
    return [f"leg_{element['concat'][0]}" for element in entry.get("elem", [])]


async def _hand_over_and_back(world: World) -> None:
    a, b, path = world.a, world.b, world.path
    assert not_ready(a, b) == "not latched"
    path.offer(a, b)
    world.caller.send(rtp(1), a.port)
    world.taker.send(rtp(1), b.port)
    await world.settle(0.3)  # latched, then handed over at the next look
    assert path.on_kernel(a) and path.snapshot().calls == 1
    assert sorted(legs_in_kernel()) == [f"leg_{a.port}", f"leg_{b.port}"]
    relayed = (a.stats.packets_out, b.stats.packets_out)
    world.caller.received.clear()
    world.taker.received.clear()
    for seq in range(2, 12):
        world.caller.send(rtp(seq), a.port)
        world.taker.send(rtp(seq), b.port)
        await asyncio.sleep(0.002)
    await world.settle()
    # forwarded by the kernel, unchanged, from our other leg
    assert world.taker.received == [(rtp(seq), ("127.0.0.1", b.port)) for seq in range(2, 12)]
    assert [data for data, _ in world.caller.received] == [rtp(seq) for seq in range(2, 12)]
    assert (a.stats.packets_out, b.stats.packets_out) == relayed  # the relay sent none
    # recorded from the ring, each once, both directions
    assert world.recorded["a"] == list(range(1, 12)) and world.recorded["b"] == list(range(1, 12))
    assert path.snapshot().recorded == 20
    # the call taker's telephone-events still reach the call flow (and no one else)
    world.taker.send(rtp(12, pt=101), b.port)
    await world.settle()
    assert world.events == [12] and world.caller.received[-1][0] == rtp(11)
    # a stranger's packet meets the relay's latching; the call stays in the kernel
    stranger = Phone()
    stranger.send(rtp(99), a.port)
    await world.settle()
    assert a.stats.dropped_unknown_source == 1 and path.on_kernel(a)
    # asked back: the rules go at once, the relay forwards again
    path.withdraw(a)
    assert legs_in_kernel() == [] and path.snapshot().calls == 0
    world.caller.send(rtp(13), a.port)
    await world.settle()
    assert world.taker.received[-1] == (rtp(13), ("127.0.0.1", b.port))
    assert (a.stats.packets_in, b.stats.packets_in, world.recorded["a"]) == (
        12,
        12,
        [*range(1, 12), 13],
    )  # each once


def test_a_bridged_call_is_forwarded_by_the_kernel_and_recorded_from_the_ring() -> None:
    in_kernel_world(_hand_over_and_back)


async def _hold(world: World) -> None:
    a, path = world.a, world.path
    await world.hand_over()
    a.mode = LegMode.HOLD  # a re-INVITE: nothing more to the call taker
    world.caller.send(rtp(2), a.port)
    await world.settle()
    assert not path.on_kernel(a) and legs_in_kernel() == []
    world.taker.received.clear()
    world.caller.send(rtp(3), a.port)
    await world.settle()
    assert world.taker.received == []  # the relay holds it, as it would have
    assert world.recorded["a"] == [1, 2, 3]


def test_a_leg_that_changes_under_the_kernel_comes_back_to_the_relay() -> None:
    in_kernel_world(_hold)


async def _relatch(world: World) -> None:
    a, b, path = world.a, world.b, world.path
    await world.hand_over()
    moved = Phone()  # the caller's NAT gave it another port; the old one falls silent
    for seq in range(2, 40):  # 0.76 s, past the latch's grace (0.2 s here)
        moved.send(rtp(seq), a.port)
        await asyncio.sleep(0.02)
        path.read()
    await world.settle(0.3)  # handed back, then over again with the new source
    assert a.latched == ("127.0.0.1", moved.port)
    assert path.on_kernel(a) and path.snapshot().handed == 2
    world.taker.received.clear()
    before = b.stats.packets_out
    moved.send(rtp(40), a.port)
    await world.settle()
    assert world.taker.received == [(rtp(40), ("127.0.0.1", b.port))]
    assert b.stats.packets_out == before  # by the kernel
    assert world.recorded["a"][-1] == 40 and world.recorded["a"].count(40) == 1


def test_a_re_latch_hands_the_call_back_and_over_again_with_the_new_source() -> None:
    in_kernel_world(_relatch, nat_grace=0.2)


async def _srtp(world: World) -> None:
    a, b = world.a, world.b
    a.secure("AES_CM_128_HMAC_SHA1_80", b"k" * 30, b"k" * 30)
    world.caller.send(rtp(1), a.port)
    world.taker.send(rtp(1), b.port)
    await world.settle()
    world.path.offer(a, b)
    assert not_ready(a, b) == "srtp" and not world.path.on_kernel(a)
    await asyncio.sleep(0.25)
    assert legs_in_kernel() == []


@pytest.mark.parametrize("body", [_srtp])
def test_an_srtp_call_stays_on_the_relay(body: Callable[[World], Awaitable[None]]) -> None:
    in_kernel_world(body)


CRASHING = """
import os, signal
from proxy.media.fastpath import detect
path = detect("auto", (20000, 20099)).path
assert path is not None
path.nft.run("add element ip recproxy to_port { 20000 : 4000 }\\n")
print("ready", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_crash_takes_the_rules_with_it_and_a_second_owner_is_refused() -> None:
    def run() -> tuple[str, str, list[str]]:
        subprocess.run(FORWARD, check=True, timeout=10)
        first = detect("auto", (20000, 20099))
        second = detect("auto", (20000, 20099))  # the table is the first one's
        assert first.path is not None
        for path in (first.path,):
            path.ring.close()
            path.nft.close()  # as if the process ended: its socket closes
        crash = subprocess.run(
            [sys.executable, "-c", CRASHING], capture_output=True, text=True, timeout=30
        )
        listing = subprocess.run(
            ["nft", "list", "tables"], capture_output=True, text=True, timeout=10
        ).stdout
        return second.reason, crash.stdout, listing.split()

    refused, crashed, tables = in_private_network(run, timeout=40)
    assert refused.startswith("nftables refused our table"), refused
    assert crashed == "ready\n" and tables == []
