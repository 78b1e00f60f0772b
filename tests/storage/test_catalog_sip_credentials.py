"""SIP credentials (migration 16) on a real SQLite catalog: only HA1 values, checked
before any SQL; set and remove audited in the same transaction; a disabled user has none
and can be given none."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from proxy.storage.catalog import (
    InvalidFieldError,
    NotFoundError,
    SqlCatalog,
    UserStateError,
)
from tests.catalog_backends import Backend

from .test_catalog import FakeClock, at
from .test_catalog_users import actions, add


@pytest.fixture
async def catalog(backend: Backend) -> AsyncIterator[SqlCatalog]:
    async with backend.catalog(clock=FakeClock(at(3600))) as opened:
        yield opened


SHA = "a" * 64
MD5 = "b" * 32


async def test_set_replace_lookup_and_remove_are_audited(catalog: SqlCatalog) -> None:
    await add(catalog)
    stored = await catalog.sip_credentials.set(
        "Alice", realm="gp.example", ha1_sha256=SHA, ha1_md5=MD5, by="root", at=at(5)
    )
    assert (stored.user, stored.realm, stored.set_at) == ("alice", "gp.example", at(5))
    await catalog.sip_credentials.set(
        "alice", realm="new.example", ha1_sha256="c" * 64, ha1_md5="d" * 32, by="root"
    )
    found = await catalog.sip_credentials.lookup("ALICE")
    assert found is not None and (found.realm, found.ha1_md5) == ("new.example", "d" * 32)
    assert await catalog.sip_credentials.realms() == {"new.example": ["alice"]}
    assert await catalog.sip_credentials.remove("alice", by="root") is True
    assert await catalog.sip_credentials.remove("alice", by="root") is False
    assert await catalog.sip_credentials.lookup("alice") is None
    assert [a for a in await actions(catalog) if "sip" in a[1]] == [
        ("root", "user.sip_password", "user:alice"),
        ("root", "user.sip_password", "user:alice"),
        ("root", "user.sip_password.remove", "user:alice"),
    ]


@pytest.mark.parametrize(
    ("sha", "md5"), [("A" * 64, MD5), (SHA, "b" * 31), ("secret", MD5), (SHA, "g" * 32)]
)
async def test_only_hex_digests_of_the_right_length_are_stored(
    catalog: SqlCatalog, sha: str, md5: str
) -> None:
    await add(catalog)
    before = await actions(catalog)
    with pytest.raises(InvalidFieldError):
        await catalog.sip_credentials.set(
            "alice", realm="gp.example", ha1_sha256=sha, ha1_md5=md5, by="root"
        )
    assert await catalog.sip_credentials.lookup("alice") is None
    assert await actions(catalog) == before


async def test_disabling_removes_them_and_none_can_be_set_after(catalog: SqlCatalog) -> None:
    await add(catalog)
    await catalog.sip_credentials.set(
        "alice", realm="gp.example", ha1_sha256=SHA, ha1_md5=MD5, by="root"
    )
    await catalog.users.disable("alice", by="root")
    assert await catalog.sip_credentials.lookup("alice") is None
    assert await catalog.sip_credentials.realms() == {}
    with pytest.raises(UserStateError):
        await catalog.sip_credentials.set(
            "alice", realm="gp.example", ha1_sha256=SHA, ha1_md5=MD5, by="root"
        )


async def test_an_unknown_user_is_not_found(catalog: SqlCatalog) -> None:
    with pytest.raises(NotFoundError):
        await catalog.sip_credentials.set(
            "nobody", realm="gp.example", ha1_sha256=SHA, ha1_md5=MD5, by="root"
        )
    with pytest.raises(NotFoundError):
        await catalog.sip_credentials.remove("nobody", by="root")
