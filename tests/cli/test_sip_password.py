"""``recproxy users sip-password`` (issue 18): the real command on a real catalog.  Only
HA1 values for the configured realm are stored, never the password; setting and
removing are audited; bad input is one line, exit 1 (2 for bad usage), nothing changed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from proxy.sip.digest import Algorithm, ha1

from .test_users import PASSWORD, audit, catalog_state, refused, users

SIP_PASSWORD = "phone secret 12345"


def write_config(folder: Path, realm: str) -> Path:
    path = folder / "recproxy.toml"
    path.write_text(f'[registrar]\nrealm = "{realm}"\n')
    return path


def sip_password(
    folder: Path, *args: str, password: str | None = SIP_PASSWORD
) -> tuple[int, str, str]:
    how = () if "--remove" in args else ("--password-stdin",)
    result = users(
        folder, "sip-password", *args, *how, "--config", "recproxy.toml", password=password
    )
    return result.returncode, result.stdout, result.stderr


def stored(folder: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(folder / "data" / "catalog.sqlite3") as db:
        return db.execute(
            "SELECT user, realm, ha1_sha256, ha1_md5 FROM sip_credentials ORDER BY user"
        ).fetchall()


def state(folder: Path) -> list[tuple[object, ...]]:
    return catalog_state(folder) + stored(folder)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A catalog with an admin and a staff user alice, and realm gp.example."""
    for name, role in (("root", "admin"), ("alice", "staff")):
        made = users(tmp_path, "add", name, "--role", role, "--password-stdin", password=PASSWORD)
        assert made.returncode == 0, made.stderr
    write_config(tmp_path, "gp.example")
    return tmp_path


def test_sets_only_ha1_values_for_the_realm_and_audits_it(folder: Path) -> None:
    status, out, err = sip_password(folder, "Alice", "--by", "Jane Doe")
    assert (status, err) == (0, ""), err
    assert out == "SIP password of alice set; its phones register sip:alice@gp.example\n"
    assert stored(folder) == [
        (
            "alice",
            "gp.example",
            ha1(Algorithm.SHA256, "alice", "gp.example", SIP_PASSWORD),
            ha1(Algorithm.MD5, "alice", "gp.example", SIP_PASSWORD),
        )
    ]
    raw = b"".join(p.read_bytes() for p in (folder / "data").glob("catalog.sqlite3*"))
    assert SIP_PASSWORD.encode() not in raw
    assert audit(folder)[-1][1:] == ("user.sip_password", "user:alice")
    with sqlite3.connect(folder / "data" / "catalog.sqlite3") as db:
        (detail,) = db.execute("SELECT detail FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    assert json.loads(detail) == {"realm": "gp.example"}


def test_setting_again_replaces_and_remove_removes(folder: Path) -> None:
    assert sip_password(folder, "alice")[0] == 0
    assert sip_password(folder, "alice", password="another phone secret")[0] == 0
    ((_, _, sha, _),) = stored(folder)
    assert sha == ha1(Algorithm.SHA256, "alice", "gp.example", "another phone secret")
    assert sip_password(folder, "alice", "--remove", password=None)[:2] == (
        0,
        "SIP password of alice removed\n",
    )
    assert stored(folder) == []
    assert audit(folder)[-1][1:] == ("user.sip_password.remove", "user:alice")
    before = state(folder)
    assert sip_password(folder, "alice", "--remove", password=None)[:2] == (
        0,
        "alice had no SIP password\n",
    )
    assert state(folder) == before  # nothing audited for nothing removed


def test_disabling_the_user_removes_its_sip_credentials(folder: Path) -> None:
    assert sip_password(folder, "alice")[0] == 0
    assert users(folder, "disable", "alice").returncode == 0
    assert stored(folder) == []
    status, _, err = sip_password(folder, "alice")
    assert status == 1 and "user alice is disabled" in err


@pytest.mark.parametrize(
    ("args", "password", "words"),
    [
        (("nobody",), SIP_PASSWORD, "user nobody does not exist"),
        (("alice",), "short", "at least 12 characters"),
        (("alice",), "", "no password on stdin"),
        (("nobody", "--remove"), None, "user nobody does not exist"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    folder: Path, args: tuple[str, ...], password: str | None, words: str
) -> None:
    before = state(folder)
    how = () if "--remove" in args else ("--password-stdin",)
    result = users(
        folder, "sip-password", *args, *how, "--config", "recproxy.toml", password=password
    )
    refused(result, words)
    assert state(folder) == before


def test_without_a_realm_it_refuses_naming_the_key(folder: Path) -> None:
    (folder / "recproxy.toml").write_text("[registrar]\nenabled = false\n")
    before = state(folder)
    result = users(
        folder, "sip-password", "alice", "--password-stdin", "--config", "recproxy.toml",
        password="x" * 20,
    )  # fmt: skip
    refused(result, "registrar.realm is not set")
    assert state(folder) == before


def test_password_and_remove_together_is_bad_usage(folder: Path) -> None:
    result = users(folder, "sip-password", "alice", "--password-stdin", "--remove")
    assert result.returncode == 2 and "not allowed with" in result.stderr


def test_a_changed_realm_names_the_passwords_to_set_again(folder: Path) -> None:
    made = users(folder, "add", "bob", "--role", "staff", "--password-stdin", password=PASSWORD)
    assert made.returncode == 0
    assert sip_password(folder, "alice")[0] == 0
    write_config(folder, "new.example")
    status, out, err = sip_password(folder, "bob")
    assert status == 0 and "sip:bob@new.example" in out
    assert err == (
        "recproxy: warning: the SIP passwords of alice were set for realm 'gp.example', not "
        "registrar.realm 'new.example': they cannot register until each is set again "
        "(users sip-password)\n"
    )
