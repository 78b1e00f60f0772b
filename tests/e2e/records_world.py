"""A world of real recordings behind a running records service, for the issue 15
acceptance tests (``test_role_matrix.py``, ``test_records_security.py``).

``build_world`` starts ``recproxy serve`` (its records service as the child, on the
block's port +99) with two operators in two teams — ann (team red) and bob (team blue)
— and places three real SIPp calls:

* **A**: a call taken by ann;
* **B**: a call taken by bob (dialled 7002, routed to bob's phone);
* **T**: a call ann takes and blind-transfers to bob (REFER): one recording, two parts.

Then it makes one user per role with the real ``recproxy users add`` (staff linked to
each operator, a manager of each team, a records officer, the DPO, an admin,
maintenance, and a staff user who is disabled once signed in) and signs each in with a
bearer token.  ``Api`` speaks HTTP to the records service with ``http.client`` — the
path is sent as given, so tests can put anything in it — and ``Catalog`` reads the
shared SQLite catalog to check what changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from . import audio
from .conftest import E2e, end_world, new_world
from .proxy_process import (
    ProxyProcess,
    ProxySettings,
    proxy_env,
    recproxy_command,
    wait_for,
    write_config,
)
from .proxy_process import catalog as open_catalog
from .test_recording_control import answering, dialling, pause, play
from .test_transfer import refer_and_follow, taker

RATE = audio.RATE
PROBLEM_JSON = "application/problem+json"
COOKIE = "__Host-recproxy"
CSRF_HEADER = "X-CSRF-Token"
BOB_NUMBER = "7002"  # dialled for call B: routed to bob's phone


@dataclass(frozen=True)
class Person:
    """A user the world makes: name, role, teams, operator, and a password of its own."""

    name: str
    role: str
    teams: tuple[str, ...] = ()
    operator: str | None = None

    @property
    def password(self) -> str:
        return f"pw-{self.name}-{hashlib.sha256(self.name.encode()).hexdigest()[:16]}"


PEOPLE = (
    Person("staff_ann", "staff", ("red",), "ann"),
    Person("staff_bob", "staff", ("blue",), "bob"),
    Person("mgr_red", "manager", ("red",)),
    Person("mgr_blue", "manager", ("blue",)),
    Person("officer", "records_officer"),
    Person("dpo", "dpo"),
    Person("admin", "admin"),
    Person("maint", "maintenance"),
    Person("gone", "staff", ("red",), "ann"),  # disabled once signed in
)
BY_NAME = {person.name: person for person in PEOPLE}


# ---------------------------------------------------------------------------------------
# HTTP


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes
    cookies: Mapping[str, str] = field(default_factory=dict)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def is_problem(self) -> bool:
        return self.headers.get("content-type", "").startswith(PROBLEM_JSON)

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.body[:400]!r})"


class Api:
    """The records service at 127.0.0.1:``port``; one connection a request."""

    def __init__(self, port: int) -> None:
        self.port = port

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        cookie: str | None = None,
        csrf: str | None = None,
        body: Any = None,
        raw_body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30,
    ) -> Answer:
        sent = dict(headers or {})
        data = raw_body
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if cookie is not None:
            sent["Cookie"] = f"{COOKIE}={cookie}"
        if csrf is not None:
            sent[CSRF_HEADER] = csrf
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=data, headers=sent)
            response = connection.getresponse()
            payload = response.read()
            cookies = {}
            for name, value in response.getheaders():
                if name.lower() == "set-cookie":
                    key, _, rest = value.partition("=")
                    cookies[key.strip()] = rest.split(";", 1)[0]
            return Answer(
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                payload,
                cookies,
            )
        finally:
            connection.close()

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> Answer:
        return self.request("GET", path, token=token, **kwargs)

    def post(self, path: str, token: str | None = None, body: Any = None, **kw: Any) -> Answer:
        return self.request("POST", path, token=token, body=body, **kw)

    def login(self, person: Person, *, kind: str = "bearer") -> Answer:
        return self.post(
            "/api/v1/login",
            body={"username": person.name, "password": person.password, "kind": kind},
        )

    def bearer(self, person: Person) -> str:
        answer = self.login(person)
        assert answer.status == 200, (person.name, answer)
        token = answer.json["token"]
        assert isinstance(token, str)
        return token


# ---------------------------------------------------------------------------------------
# The catalog, read from the side


class Catalog:
    """Read-only looks at the shared catalog (SQLite in WAL mode)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self, sql: str, *params: object) -> list[dict[str, Any]]:
        with open_catalog(self.path) as connection:
            return [dict(row) for row in connection.execute(sql, params)]

    def last_seq(self) -> int:
        (row,) = self.rows("SELECT coalesce(max(seq), 0) AS seq FROM audit_log")
        return int(row["seq"])

    def audit_since(self, seq: int) -> list[dict[str, Any]]:
        entries = self.rows("SELECT * FROM audit_log WHERE seq > ? ORDER BY seq", seq)
        for entry in entries:
            entry["detail"] = json.loads(entry["detail"])
        return entries

    def dump(self, *, leave_out: frozenset[str]) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table but ``leave_out``, to compare before and after."""
        with open_catalog(self.path) as connection:
            tables = [
                str(row[0])
                for row in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
                )
            ]
            return {
                table: sorted(
                    (tuple(row) for row in connection.execute(f'SELECT * FROM "{table}"')),
                    key=repr,
                )
                for table in tables
                if table not in leave_out
            }

    def write(self, sql: str, *params: object) -> int:
        """One change made as test setup (what no API offers, e.g. an expired grant)."""
        connection = sqlite3.connect(self.path, timeout=10)
        try:
            with connection:
                return connection.execute(sql, params).rowcount
        finally:
            connection.close()


# ---------------------------------------------------------------------------------------
# The world


@dataclass
class Recordings:
    """The three recordings' ids (``transfer`` has parts 1, ann's, and 2, bob's)."""

    ann: str
    bob: str
    transfer: str


@dataclass
class World:
    e2e: E2e
    proxy: ProxyProcess
    api: Api
    catalog: Catalog
    recordings: Recordings
    tokens: dict[str, str]
    ann_transfer_audio: bytes  # what ann sent in the transferred call (µ-law)
    bob_transfer_audio: bytes  # and what bob sent once it was his
    passphrase: str | None
    secrets: set[str] = field(default_factory=set)  # every secret the run used

    def token(self, name: str) -> str:
        return self.tokens[name]

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """A real ``recproxy`` command against the world's configuration."""
        return subprocess.run(
            recproxy_command(*args, "--config", str(self.e2e.config_path)),
            cwd=self.e2e.folder,
            env=proxy_env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def logs(self) -> str:
        """Everything the run logged: ``serve`` and its records child share one file."""
        return "\n".join(proxy.log_text() for proxy in self.e2e.proxies)


def operators_toml(e2e: E2e) -> str:
    ann, bob = (hashlib.sha256(f"{n}-token".encode()).hexdigest() for n in ("ann", "bob"))
    ports = e2e.ports
    return f"""\
[[routing.rules]]
match = "{BOB_NUMBER}"
call_taker = "sip:bob@127.0.0.1:{ports.spare_sip(1)}"

[[operators]]
name = "ann"
token_sha256 = "{ann}"
identities = ["sip:calltaker@127.0.0.1:{ports.taker_sip}"]
team = "red"

[[operators]]
name = "bob"
token_sha256 = "{bob}"
identities = ["sip:bob@127.0.0.1:{ports.spare_sip(0)}", "sip:bob@127.0.0.1:{ports.spare_sip(1)}"]
team = "blue"
"""


def start_proxy(e2e: E2e, extra: str, passphrase: str | None = None) -> ProxyProcess:
    """``serve`` with the operators and ``extra``; with ``passphrase``, its development
    key is made protected by it (``records.passphrase_file``)."""
    e2e.config = write_config(
        e2e.folder,
        e2e.ports,
        e2e.notice.path,
        ProxySettings(extra=operators_toml(e2e) + extra, records_child="on"),
    )
    if passphrase is not None:
        secret = e2e.folder / "passphrase.txt"
        secret.write_text(passphrase + "\n")
        secret.chmod(0o600)
        text = e2e.config.read_text()
        e2e.config.write_text(
            text.replace("[records]\n", f'[records]\npassphrase_file = "{secret}"\n', 1)
        )
    proxy = e2e.proxy(restart=True)
    wait_for("the records service", lambda: "records service listening" in proxy.log_text(), 30)
    return proxy


def _calls(e2e: E2e, dialogue: bytes) -> tuple[bytes, bytes]:
    """The three calls (B and T together, then A); ann's and bob's audio in T."""
    ports = e2e.ports
    ann_audio, bob_audio = dialogue[12 * RATE : 15 * RATE], dialogue[18 * RATE : 21 * RATE]
    bob_phone = f"sip:bob@127.0.0.1:{ports.spare_sip(0)}"
    # B: a caller dials bob's number; bob answers and talks
    bob_direct = answering(
        e2e, "bob_direct", play(e2e.rtp_pcap("bob_direct.pcap", dialogue[4 * RATE : 6 * RATE])),
        sip_port=ports.spare_sip(1), media_port=ports.spare_media(3), user="bob",
    )  # fmt: skip
    caller_b = dialling(
        e2e, "caller_b", from_user="01632960124", dialled=BOB_NUMBER,
        audio_pcap=e2e.rtp_pcap("caller_b.pcap", dialogue[0 : 2 * RATE]),
        pre_audio_ms=2800, hold_ms=1500,
        sip_port=ports.spare_sip(2), media_port=ports.spare_media(2),
    )  # fmt: skip
    # T: ann talks, then transfers to bob, who talks
    bob = taker(
        e2e, "bob_target", play(e2e.rtp_pcap("bob.pcap", bob_audio)),
        sip_port=ports.spare_sip(0), media_port=ports.spare_media(1), user="bob",
    )  # fmt: skip
    ann = taker(
        e2e, "ann_transfer", play(e2e.rtp_pcap("ann.pcap", ann_audio)) + pause(3500)
        + refer_and_follow(bob_phone),
        sip_port=ports.taker_sip, media_port=ports.taker_rtp, user="calltaker",
    )  # fmt: skip
    caller_t = e2e.caller(
        audio_pcap=e2e.rtp_pcap("caller_t.pcap", dialogue[0 : 8 * RATE]),
        label="caller_t",
        pre_audio_ms=2800,
        hold_ms=9500,
    )
    for run in (caller_b, bob_direct, caller_t, ann, bob):
        run.expect_success(timeout=45)
    # A: ann takes a call of her own
    ann_direct = answering(
        e2e, "ann_direct", play(e2e.rtp_pcap("ann_direct.pcap", dialogue[8 * RATE : 10 * RATE])),
        sip_port=ports.taker_sip, media_port=ports.taker_rtp,
    )  # fmt: skip
    caller_a = e2e.caller(
        audio_pcap=e2e.rtp_pcap("caller_a.pcap", dialogue[0 : 2 * RATE]),
        label="caller_a",
        pre_audio_ms=2800,
        hold_ms=1500,
    )
    caller_a.expect_success(timeout=30)
    ann_direct.expect_success(timeout=10)
    return ann_audio, bob_audio


def _recordings(catalog: Catalog) -> Recordings:
    parts = catalog.rows(
        "SELECT r.id, r.state, group_concat(p.operator, ',') AS operators"
        " FROM recordings r JOIN recording_parts p ON p.recording_id = r.id"
        " GROUP BY r.id ORDER BY r.id"
    )
    by_operators = {row["operators"]: row for row in parts}
    assert sorted(by_operators) == ["ann", "ann,bob", "bob"], parts
    # every call is recorded whole; on a loaded machine SIPp may send a packet late enough
    # to mark a recording degraded (it keeps its audio): the worlds test access, not quality
    assert all(row["state"] in ("complete", "degraded") for row in parts), parts
    return Recordings(
        ann=by_operators["ann"]["id"],
        bob=by_operators["bob"]["id"],
        transfer=by_operators["ann,bob"]["id"],
    )


def add_users(world_run: Any, people: tuple[Person, ...]) -> None:
    for person in people:
        args = ["users", "add", person.name, "--role", person.role, "--password-stdin"]
        for team in person.teams:
            args += ["--team", team]
        if person.operator:
            args += ["--operator", person.operator]
        done = world_run(*args, stdin=person.password + "\n")
        assert done.returncode == 0, (person.name, done.stderr)


def build_world(
    e2e: E2e, dialogue: bytes, *, extra: str = "", passphrase: str | None = None
) -> World:
    """The world (see the module docstring), every person signed in; ``gone`` disabled."""
    proxy = start_proxy(e2e, extra, passphrase)
    ann_audio, bob_audio = _calls(e2e, dialogue)
    proxy.wait_idle()
    catalog = Catalog(proxy.catalog_path)
    world = World(
        e2e, proxy, Api(e2e.ports.records_http), catalog, _recordings(catalog), {}, ann_audio,
        bob_audio, passphrase,
    )  # fmt: skip
    add_users(world.run, PEOPLE)
    for person in PEOPLE:
        world.tokens[person.name] = world.api.bearer(person)
    done = world.run("users", "disable", "gone")
    assert done.returncode == 0, done.stderr
    world.secrets |= {p.password for p in PEOPLE} | set(world.tokens.values())
    if passphrase is not None:
        world.secrets.add(passphrase)
    return world


@contextlib.contextmanager
def running_world(
    folder: Path, dialogue: bytes, *, extra: str = "", passphrase: str | None = None
) -> Iterator[World]:
    """``build_world`` in ``folder`` with its own ports, everything ended on leaving (a
    module-scoped fixture's body)."""
    e2e = new_world(folder)
    try:
        yield build_world(e2e, dialogue, extra=extra, passphrase=passphrase)
    finally:
        end_world(e2e)


def audio_path(
    recording_id: str, *, purpose: str, reason: str, fmt: str = "wav", part: int | None = None
) -> str:
    query = {"purpose": purpose, "reason": reason, "format": fmt}
    if part is not None:
        query["part"] = str(part)
    return f"/api/v1/recordings/{recording_id}/audio?{urlencode(query)}"


def wait_until(deadline: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``deadline`` (bounded by it)."""
    left = deadline - time.monotonic()
    if left > 0:
        time.sleep(left)


def items(answer: Answer, key: str) -> list[dict[str, Any]]:
    """The rows of a listing answer: ``{"recordings": [...]}``, ``{"entries": [...]}``..."""
    rows = answer.json[key]
    assert isinstance(rows, list), answer
    return rows
