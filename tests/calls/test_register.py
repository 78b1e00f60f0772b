"""REGISTER's transaction user (:mod:`proxy.calls.register`) on a real SIP core and a real
SQLite catalog: disabled it answers 403; enabled it looks the SIP credentials up off the
loop, registers a phone that answers right, refuses a disabled user's, warns about a
password set for another realm, and answers 503 when the catalog cannot be read or too
many look-ups are pending."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.calls import register as register_module
from proxy.calls.register import RegisterDesk
from proxy.config import Config, build_config
from proxy.sip.core import ALLOWED_METHODS, CoreSettings, SipCore
from proxy.sip.digest import Algorithm, ha1
from proxy.sip.events import RequestReceived
from proxy.sip.message import Response, parse_message
from proxy.storage.catalog import NewUser, Role, SqliteCatalog
from tests.sip.test_registrar import authorization, register

REALM = "gp.example"
PASSWORD = "phone secret 12345"
PHONE = ("192.0.2.10", 5070)


def config(enabled: bool = True) -> Config:
    raw = {"enabled": enabled, "realm": REALM, "algorithms": ["SHA-256", "MD5"]}
    return build_config({"registrar": raw, "sip": {"advertise": "127.0.0.2"}}, base=Path("/"))


@pytest.fixture
async def catalog(tmp_path: Path) -> AsyncIterator[SqliteCatalog]:
    async with SqliteCatalog(tmp_path / "catalog.sqlite3") as opened:
        for name in ("alice", "bob"):
            await opened.users.add(NewUser(name, Role.STAFF, "argon2-hash"), by="test")
        await opened.sip_credentials.set(
            "alice",
            realm=REALM,
            ha1_sha256=ha1(Algorithm.SHA256, "alice", REALM, PASSWORD),
            ha1_md5=ha1(Algorithm.MD5, "alice", REALM, PASSWORD),
            by="test",
        )
        yield opened


class Desk:
    """A RegisterDesk behind a SipCore: bytes in, the response out."""

    def __init__(self, catalog: SqliteCatalog, enabled: bool = True) -> None:
        cfg = config(enabled)
        methods = (*ALLOWED_METHODS, "REGISTER") if enabled else ALLOWED_METHODS
        refused = () if enabled else ("REGISTER",)
        self.core = SipCore(
            CoreSettings(host="127.0.0.2", allowed_methods=methods, refused_by_tu=refused)
        )
        loop = asyncio.get_running_loop()
        self.desk = RegisterDesk(cfg, self.core, catalog, flush=lambda: None, now=loop.time)

    async def send(self, data: bytes) -> Response:
        self.core.receive_datagram(data, PHONE, asyncio.get_running_loop().time())
        while (event := self.core.next_event()) is not None:
            assert isinstance(event, RequestReceived)
            self.desk.on_register(event)
        for _ in range(200):  # the catalog answers in its own thread: bounded wait
            out = self.core.datagrams_to_send()
            if out:
                (only,) = out
                response = parse_message(only.data)
                assert isinstance(response, Response)
                return response
            await asyncio.sleep(0.01)
        raise AssertionError("no response within 2 s")

    async def challenge_and_answer(self, user: str = "alice", password: str = PASSWORD) -> Response:
        challenge = await self.send(register(1, user=user))
        assert challenge.status == 401
        value = challenge.headers.get_all("www-authenticate")[0]
        header = authorization(value, user=user, password=password)
        return await self.send(register(2, user=user, headers=(header,)))


async def test_disabled_answers_403_registrar_disabled(catalog: SqliteCatalog) -> None:
    response = await Desk(catalog, enabled=False).send(register())
    assert (response.status, response.reason) == (403, "Forbidden (registrar disabled)")


async def test_a_phone_with_the_right_password_is_registered(
    catalog: SqliteCatalog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.calls.register")
    desk = Desk(catalog)
    ok = await desk.challenge_and_answer()
    assert ok.status == 200 and ok.headers.get_all("contact") == [
        "<sip:alice@192.0.2.10:5070>;expires=3600"
    ]
    (contact,) = desk.desk.contacts_for("sip:alice@gp.example")
    assert str(contact.uri) == "sip:alice@192.0.2.10:5070"
    snapshot = desk.desk.snapshot()
    assert snapshot is not None and snapshot.bindings == 1
    assert "REGISTER sip:alice@gp.example from 192.0.2.10:5070 (digest SHA-256)" in caplog.text


async def test_a_user_without_a_sip_password_or_disabled_is_not_registered(
    catalog: SqliteCatalog,
) -> None:
    desk = Desk(catalog)
    assert (await desk.challenge_and_answer(user="bob")).status == 401  # no SIP password
    await catalog.users.disable("alice", by="test")
    assert (await desk.challenge_and_answer()).status == 401
    assert desk.desk.contacts_for("sip:alice@gp.example") == []


async def test_a_password_set_for_another_realm_is_refused_and_said(
    catalog: SqliteCatalog, caplog: pytest.LogCaptureFixture
) -> None:
    await catalog.sip_credentials.set(
        "alice",
        realm="old.example",
        ha1_sha256=ha1(Algorithm.SHA256, "alice", "old.example", PASSWORD),
        ha1_md5=ha1(Algorithm.MD5, "alice", "old.example", PASSWORD),
        by="test",
    )
    assert (await Desk(catalog).challenge_and_answer()).status == 401
    assert "set for realm 'old.example', not registrar.realm 'gp.example'" in caplog.text


async def test_a_catalog_that_cannot_be_read_gives_503(catalog: SqliteCatalog) -> None:
    desk = Desk(catalog)
    challenge = await desk.send(register(1))
    await catalog.close()
    header = authorization(challenge.headers.get_all("www-authenticate")[0])
    response = await desk.send(register(2, headers=(header,)))
    assert response.status == 503 and response.headers.get("retry-after") == "30"


async def test_past_the_pending_lookups_cap_it_answers_503_at_once(
    catalog: SqliteCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(register_module, "MAX_LOOKUPS", 0)
    desk = Desk(catalog)
    challenge = await desk.send(register(1))
    header = authorization(challenge.headers.get_all("www-authenticate")[0])
    response = await desk.send(register(2, headers=(header,)))
    assert (response.status, response.reason) == (503, "Service Unavailable (busy)")


async def test_a_username_that_is_not_utf8_is_answered_400(catalog: SqliteCatalog) -> None:
    """Such a name used to reach SQLite as a surrogate, whose UnicodeEncodeError killed the
    task and left the REGISTER's transaction unanswered for ever."""
    desk = Desk(catalog)
    challenge = await desk.send(register(1))
    header = authorization(challenge.headers.get_all("www-authenticate")[0], user="alQx")
    data = register(2, headers=(header,)).replace(b'username="alQx"', b'username="al\xffx"')
    response = await desk.send(data)
    assert response.status == 400


async def test_an_unexpected_error_in_the_look_up_is_still_answered(
    catalog: SqliteCatalog, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(user: str) -> None:
        raise UnicodeEncodeError("utf-8", user, 0, 1, "surrogates not allowed")

    monkeypatch.setattr(catalog.sip_credentials, "lookup", broken)
    desk = Desk(catalog)
    challenge = await desk.send(register(1))
    header = authorization(challenge.headers.get_all("www-authenticate")[0])
    response = await desk.send(register(2, headers=(header,)))
    assert (response.status, response.reason) == (500, "Server Internal Error")
    assert "not completed (answered 500): UnicodeEncodeError" in caplog.text
