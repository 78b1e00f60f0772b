"""Two recproxy nodes behind Kamailio's dispatcher, sharing one catalog and one
recordings store (issue 20).

A SIPp caller places short calls through Kamailio (40 on PostgreSQL + S3), a few at a
time, to one SIPp call taker; node B is killed with SIGKILL while it carries calls.  Then:

1. node A's calls all complete, with complete recordings (one decrypted: both channels
   hold the audio sent, its length the bridged time within 20 ms);
2. once the dispatcher's OPTIONS probes have marked B down, new calls all go to A and
   all succeed;
3. B's recordings cut by the kill are ``interrupted`` in the shared catalog once B has
   restarted (as systemd's ``Restart=on-failure`` would start it) and recovered its own
   — node A, running on, left them alone, and B's recovery leaves A's alone; the
   longest of them keeps its whole chunks, catalogued by B's recovery, and node A
   decrypts them (from the bucket, once B's spool has drained);
4. the records service's API of either node, and A's console, list both nodes' calls.

The shared catalog and store come from one fixture (``shared``) with two layouts: the
issue's — a PostgreSQL database and an S3 bucket (moto), each node spooling to its own
folder — and one SQLite file and recordings folder on this box.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg.rows import dict_row

from proxy.storage.store import recording_folders
from tests.pg_server import PgServer
from tests.s3_server import ACCESS_KEY, SECRET_KEY, S3Server, make_bucket

from . import audio
from .conftest import E2e
from .kamailio import Kamailio
from .proxy_process import (
    PortBlock,
    ProxyProcess,
    ProxySettings,
    export_wav,
    proxy_env,
    query,
    recproxy_command,
    reserve_ports,
    wait_for,
    write_config,
)
from .records_world import Api, Person, add_users
from .sipp import Sipp, play_pcap

AT_ONCE = 8
PRE_AUDIO_MS = 2600  # the 2 s notice and the call taker's ring, then the caller talks
TALK_S = 2.0  # each side's audio, then the caller hangs up
LENGTH_TOLERANCE_S = 0.02
OFFICER = Person("officer", "records_officer")
RUNNING = "SELECT id, started_at FROM recordings WHERE node = ? AND state = 'recording'"
#: node B is killed once one of its recordings has run this long: it has whole chunks
#: (1 s each) that recovery must find and catalogue
KILL_AFTER_MS = 1600


class SharedStorage:
    """What every node shares: the data folder (the recording keys, made by the first
    node to start) and the catalog and recordings store of one of two layouts."""

    folder: Path
    #: calls placed before B is killed (it dies while carrying some), and after it is
    #: marked down
    calls: tuple[int, int] = (20, 20)

    def configure(self, node_folder: Path, settings: ProxySettings) -> ProxySettings:
        """``settings`` with a node (its own folder ``node_folder``) on this storage."""
        raise NotImplementedError

    def rows(self, sql: str, *params: object) -> list[dict[str, Any]]:
        raise NotImplementedError

    def spool_empty(self, node_folder: Path) -> bool:
        """Everything the node wrote is where every node reads it."""
        return True


@dataclass(frozen=True)
class SqliteFolder(SharedStorage):
    """One SQLite file and one recordings folder on this box, shared by both nodes."""

    folder: Path
    # the 40 calls run on PostgreSQL + S3; this layout checks the same with
    # fewer (the suite's time)
    calls = (10, 6)

    def configure(self, node_folder: Path, settings: ProxySettings) -> ProxySettings:
        return replace(settings, data=str(self.folder))

    def rows(self, sql: str, *params: object) -> list[dict[str, Any]]:
        return [dict(row) for row in query(self.folder / "catalog.sqlite3", sql, *params)]


@dataclass(frozen=True)
class PostgresAndBucket(SharedStorage):
    """The issue's layout: the catalog on a PostgreSQL server (a fresh database of the
    session's server) and the segments in an S3 bucket (a fresh bucket on the module's
    moto server); each node spools to its own ``[recording] dir``."""

    folder: Path
    url: str
    endpoint: str
    bucket: str

    def configure(self, node_folder: Path, settings: ProxySettings) -> ProxySettings:
        return replace(
            settings,
            data=str(self.folder),
            recordings=str(node_folder / "spool"),
            catalog=f'url = "{self.url}"',
            recording=f'store = "s3"\n\n[recording.s3]\nendpoint = "{self.endpoint}"\n'
            f'bucket = "{self.bucket}"\nprefix = "site/"\n',
        )

    def rows(self, sql: str, *params: object) -> list[dict[str, Any]]:
        with psycopg.connect(self.url, row_factory=dict_row, connect_timeout=5) as conn:
            return conn.execute(sql.replace("?", "%s"), params).fetchall()

    def spool_empty(self, node_folder: Path) -> bool:
        return not recording_folders(node_folder / "spool")


@pytest.fixture(params=["sqlite", "postgresql+s3"])
def shared(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> SharedStorage:
    folder = tmp_path / "shared"
    folder.mkdir()
    if request.param == "sqlite":
        return SqliteFolder(folder)
    pg: PgServer = request.getfixturevalue("pg_server")
    s3: S3Server = request.getfixturevalue("s3_server")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)  # the nodes inherit the environment
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    bucket = f"nodes-{uuid.uuid4().hex[:10]}"
    make_bucket(s3.endpoint, bucket)
    return PostgresAndBucket(folder, pg.fresh_database(), s3.endpoint, bucket)


@dataclass
class Node:
    name: str
    ports: PortBlock
    config: Path

    def start(self, world: E2e) -> ProxyProcess:
        proxy = ProxyProcess(
            self.config, self.ports, self.config.parent / f"serve-{len(world.proxies)}.log"
        )
        world.proxies.append(proxy)
        proxy.wait_healthy()
        wait_for("its records service", lambda: "records service listening" in proxy.log_text(), 20)
        return proxy


def make_node(world: E2e, shared: SharedStorage, name: str) -> Node:
    folder = world.folder / name
    folder.mkdir()
    ports = reserve_ports()
    settings = ProxySettings(
        call_taker=f"sip:calltaker@127.0.0.1:{world.ports.taker_sip}",
        grace_seconds=5,
        extra=f'[node]\nname = "{name}"\n',
    )
    config = write_config(folder, ports, world.notice.path, shared.configure(folder, settings))
    return Node(name, ports, config)


def caller(world: E2e, label: str, port: int, calls: int, audio_pcap: str) -> Sipp:
    return world.run_sipp(
        label,
        "uac_call",
        {"pre_audio_ms": PRE_AUDIO_MS, "hold_ms": int(TALK_S * 1000) + 300,
         "audio": play_pcap(audio_pcap)},
        local_port=port,
        media_port=world.ports.caller_rtp,
        remote=("127.0.0.1", world.ports.sip),
        calls=calls,
        rate=4,
        limit=AT_ONCE,
        timeout_s=45,
    )  # fmt: skip


def now_ms() -> int:
    return int(time.time() * 1000)


def completed(run: Sipp) -> set[str]:
    """The Call-IDs whose BYE the caller saw answered 200: calls that ended normally."""
    return {
        str(m.call_id)
        for m in run.messages()
        if not m.sent and m.status == 200 and m.cseq_method == "BYE"
    }


def placed(run: Sipp) -> set[str]:
    return {str(m.call_id) for m in run.messages() if m.sent and m.method == "INVITE"}


def test_two_nodes_share_calls_and_a_killed_nodes_recordings_end_interrupted(
    e2e: E2e, shared: SharedStorage, dialogue: bytes
) -> None:
    world, started = e2e, time.monotonic()
    nodes = {name: make_node(world, shared, name) for name in ("node-a", "node-b")}
    try:
        _run(world, shared, nodes, dialogue)
    finally:
        for node in nodes.values():
            node.ports.release()
    assert time.monotonic() - started < 90  # about 60 s on CI's two cores


def _run(world: E2e, shared: SharedStorage, nodes: dict[str, Node], dialogue: bytes) -> None:
    a = nodes["node-a"].start(world)  # the first start makes the development keys
    b = nodes["node-b"].start(world)
    kamailio = Kamailio(world.folder, world.ports.sip, {n: v.ports.sip for n, v in nodes.items()})
    try:
        _calls(world, shared, nodes, kamailio, a, b, dialogue)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- kamailio log:\n{kamailio.log_text()[-3000:]}") from None
    finally:
        kamailio.stop()


def _calls(
    world: E2e,
    shared: SharedStorage,
    nodes: dict[str, Node],
    kamailio: Kamailio,
    a: ProxyProcess,
    b: ProxyProcess,
    dialogue: bytes,
) -> None:
    rate = audio.RATE
    caller_ulaw = dialogue[: int(TALK_S * rate)]
    taker_ulaw = dialogue[int(10 * rate) : int((10 + TALK_S) * rate)]
    taker = world.run_sipp(
        "taker", "uas_answer",
        {"ring_ms": 200, "audio": play_pcap(world.rtp_pcap("taker.pcap", taker_ulaw))},
        local_port=world.ports.taker_sip, media_port=world.ports.taker_rtp, calls=1000,
        timeout_s=120,
    )  # fmt: skip
    caller_pcap = world.rtp_pcap("caller.pcap", caller_ulaw)
    kamailio.wait_state("node-a", up=True, timeout=10)
    kamailio.wait_state("node-b", up=True, timeout=10)

    # -- before and during the kill ------------------------------------------------------
    before, after_kill = shared.calls
    first = caller(world, "before", world.ports.caller_sip, before, caller_pcap)

    def running_long_enough() -> bool:
        running = shared.rows(RUNNING, "node-b")
        oldest = min((int(r["started_at"]) for r in running), default=None)
        return len(running) >= 2 and oldest is not None and now_ms() - oldest >= KILL_AFTER_MS

    wait_for("recordings running on node B", running_long_enough, timeout=20)
    b.send_signal(signal.SIGKILL)
    b.wait(timeout=10)
    first.wait(timeout=60)  # the calls B carried fail; the others complete
    kamailio.wait_state("node-b", up=False, timeout=10)

    # -- (2) B is down: every new call goes to A, and succeeds ---------------------------
    second = caller(world, "after", world.ports.spare_sip(0), after_kill, caller_pcap)
    second.expect_success(timeout=60)
    a.wait_idle(timeout=15)
    calls_on_a = shared.rows("SELECT sip_call_id FROM calls WHERE node = ?", "node-a")
    assert placed(second) <= {r["sip_call_id"] for r in calls_on_a}, "a call went to B"

    # -- (1) A's calls complete, with complete recordings --------------------------------
    recordings = shared.rows(
        "SELECT r.id, r.state, r.node, c.sip_call_id, c.bridged_at, c.ended_at"
        " FROM recordings r JOIN calls c ON c.id = r.call_id"
    )
    mine = [r for r in recordings if r["node"] == "node-a"]
    theirs = [r for r in recordings if r["node"] == "node-b"]
    assert len(mine) + len(theirs) == len(recordings) and mine and theirs
    assert {r["state"] for r in mine} == {"complete"}, mine
    done = completed(first) | completed(second)
    assert {r["sip_call_id"] for r in mine} <= done
    # the calls lost are the ones B carried when it died: none of A's, at most those in flight
    lost = placed(first) - done
    every_call_on_a = shared.rows("SELECT sip_call_id FROM calls WHERE node = ?", "node-a")
    assert not lost & {r["sip_call_id"] for r in every_call_on_a}, lost
    assert len(lost) <= AT_ONCE and len(placed(first) | placed(second)) == before + after_kill
    cut = [r for r in theirs if r["state"] == "recording"]
    assert cut, "no recording of node B was running when it was killed"
    # A's recording that ended last (it overlapped the kill, or came after it)
    last = max(mine, key=lambda r: int(r["ended_at"]))
    _check_recording(world, nodes["node-a"].config, last, caller_ulaw, taker_ulaw)

    # -- (3) B restarts and recovers its own recordings; A's are untouched ---------------
    b = nodes["node-b"].start(world)
    kamailio.wait_state("node-b", up=True, timeout=10)
    after = {r["id"]: r for r in shared.rows("SELECT id, state, duration_ms FROM recordings")}
    assert {after[r["id"]]["state"] for r in cut} == {"interrupted"}
    assert {after[r["id"]]["state"] for r in mine} == {"complete"}
    assert "recording(s) marked interrupted after a crash" in b.log_text()
    # the longest of the cut recordings: its whole chunks survived, B's recovery
    # catalogued them (from its spool, or the bucket), and node A decrypts them
    longest = min(cut, key=lambda r: int(r["bridged_at"]))
    kept_ms = int(after[longest["id"]]["duration_ms"] or 0)
    assert kept_ms >= 1000, after[longest["id"]]
    segments = shared.rows("SELECT frames FROM segments WHERE recording_id = ?", longest["id"])
    assert sum(int(r["frames"]) for r in segments) * 1000 // audio.RATE == kept_ms, segments
    b_folder = nodes["node-b"].config.parent
    wait_for("node B's spool to drain", lambda: shared.spool_empty(b_folder), 20)
    wav = audio.read_wav(
        export_wav(nodes["node-a"].config, str(longest["id"]), world.folder / "cut.wav")
    )
    assert abs(wav.seconds - kept_ms / 1000) <= 0.002, (wav.seconds, kept_ms)
    assert float(np.sqrt(np.mean(wav.channel(0) ** 2))) > 0  # the caller was talking

    # -- (4) either node's records API, and A's console, list both nodes' calls ---------
    add_users(lambda *args, stdin: _run_cli(nodes["node-a"].config, *args, stdin=stdin), (OFFICER,))
    expected = {str(r["id"]) for r in recordings}
    for node in nodes.values():
        api = Api(node.ports.records_http)
        listed = api.get("/api/v1/recordings?size=200", api.bearer(OFFICER))
        assert listed.status == 200, listed
        assert expected <= {row["id"] for row in listed.json["recordings"]}, node.name
    console = Api(nodes["node-a"].ports.records_http)
    signed_in = console.login(OFFICER, kind="browser")
    assert signed_in.status == 200, signed_in
    cookie = signed_in.cookies["__Host-recproxy"]
    page = console.get("/console/search?size=200", cookie=cookie)
    assert page.status == 200, page
    html = page.body.decode()
    assert str(mine[0]["id"]) in html and str(theirs[0]["id"]) in html
    taker.stop()


def _run_cli(config: Path, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        recproxy_command(*args, "--config", str(config)),
        cwd=config.parent, env=proxy_env(), input=stdin, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip


def _check_recording(
    world: E2e, config: Path, row: dict[str, Any], caller_ulaw: bytes, taker_ulaw: bytes
) -> None:
    """Decrypted by the real ``recproxy export``: as long as the bridged call, the
    caller's audio on the left, the call taker's on the right."""
    wav = audio.read_wav(export_wav(config, str(row["id"]), world.folder / "node-a.wav"))
    assert (wav.channels, wav.rate) == (2, audio.RATE)
    bridged = (int(row["ended_at"]) - int(row["bridged_at"])) / 1000
    assert abs(wav.seconds - bridged) <= LENGTH_TOLERANCE_S, (wav.seconds, bridged)
    for channel, sent in ((0, caller_ulaw), (1, taker_ulaw)):
        placed_audio = audio.place(wav.channel(channel), audio.ulaw_decode(sent))
        assert len(placed_audio.good) >= len(placed_audio.inside) - 1, placed_audio
        assert float(np.sqrt(np.mean(wav.channel(channel) ** 2))) > 0
