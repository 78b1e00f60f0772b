"""``recproxy users add|list|disable|passwd`` (issue 15): the real command on a real
catalog.  The first admin is made on an empty folder; bad input is one line on stderr, a
non-zero exit, and nothing changed; no password or hash is ever printed or audited."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

PASSWORD = "correct horse battery"


def users(
    folder: Path, *args: str, password: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", "users", *args],
        cwd=folder,
        input="" if password is None else password + "\n",
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )


def catalog_state(folder: Path) -> list[tuple[object, ...]]:
    """Every user row (hash included) and audit entry: what "nothing changed" compares."""
    with sqlite3.connect(folder / "data" / "catalog.sqlite3") as db:
        rows = db.execute("SELECT * FROM users ORDER BY name").fetchall()
        rows += db.execute("SELECT * FROM user_teams ORDER BY user, team").fetchall()
        rows += db.execute("SELECT * FROM sessions").fetchall()
        return rows + db.execute("SELECT * FROM audit_log ORDER BY seq").fetchall()


def audit(folder: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(folder / "data" / "catalog.sqlite3") as db:
        query = "SELECT actor, action, object FROM audit_log ORDER BY seq"
        return [tuple(row) for row in db.execute(query)]


def listed(folder: Path) -> list[dict[str, object]]:
    result = users(folder, "list", "--json")
    assert result.returncode == 0, result.stderr
    value: list[dict[str, object]] = json.loads(result.stdout)
    return value


def refused(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert words in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder whose catalog has its first admin, made with the command."""
    made = users(tmp_path, "add", "Root.Admin", "--role", "admin", "--password-stdin",
                 password=PASSWORD)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout == "user root.admin added (admin)\n"
    return tmp_path


def test_users_round_trip(folder: Path) -> None:
    added = users(folder, "add", "dr_smith", "--role", "staff", "--team", "north", "--team",
                  "triage", "--operator", "op-17", "--by", "Jane Doe", "--password-stdin",
                  password="another long secret")  # fmt: skip
    assert added.returncode == 0 and added.stderr == "", added.stderr
    people = listed(folder)
    assert [(p["name"], p["role"], p["teams"], p["operator"]) for p in people] == [
        ("dr_smith", "staff", ["north", "triage"], "op-17"),
        ("root.admin", "admin", [], None),
    ]
    table = users(folder, "list")
    assert "dr_smith" in table.stdout and "north, triage" in table.stdout
    assert "active" in table.stdout
    with sqlite3.connect(folder / "data" / "catalog.sqlite3") as db:
        (before,) = db.execute("SELECT password_hash FROM users WHERE name = 'dr_smith'").fetchone()
    changed = users(folder, "passwd", "DR_SMITH", "--password-stdin",
                    password="a third long secret")  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    with sqlite3.connect(folder / "data" / "catalog.sqlite3") as db:
        (after,) = db.execute("SELECT password_hash FROM users WHERE name = 'dr_smith'").fetchone()
    assert before != after and after.startswith("$argon2id$")
    disabled = users(folder, "disable", "dr_smith", "--by", "Jane Doe")
    assert disabled.returncode == 0, disabled.stderr
    assert "disabled" in users(folder, "list").stdout
    assert listed(folder)[0]["disabled_at"] is not None
    changes = [entry for entry in audit(folder) if entry[1] != "users.list"]  # listings too
    assert [(action, obj) for _, action, obj in changes] == [
        ("user.add", "user:root.admin"),
        ("user.add", "user:dr_smith"),
        ("user.password", "user:dr_smith"),
        ("user.disable", "user:dr_smith"),
    ]
    assert changes[1][0].endswith("(by Jane Doe)") and changes[3][0].endswith("(by Jane Doe)")
    assert "(by" not in changes[2][0]  # no --by: the OS account alone


def test_no_password_or_hash_is_printed_or_audited(folder: Path) -> None:
    with sqlite3.connect(folder / "data" / "catalog.sqlite3") as db:
        (stored,) = db.execute("SELECT password_hash FROM users").fetchone()
        entries = repr(db.execute("SELECT * FROM audit_log").fetchall())
        dump = "\n".join(db.iterdump())
    outputs = [users(folder, "list", "--json"), users(folder, "list")]
    for result in outputs:
        assert stored not in result.stdout and "argon2" not in result.stdout
        assert "password_hash" not in result.stdout
    assert PASSWORD not in dump and "argon2" not in entries


def test_a_staff_user_without_operator_is_added_with_a_warning(folder: Path) -> None:
    added = users(folder, "add", "temp", "--role", "staff", "--password-stdin", password=PASSWORD)
    assert added.returncode == 0
    assert "warning: staff user temp has no --operator" in added.stderr
    assert [p["name"] for p in listed(folder)] == ["root.admin", "temp"]


@pytest.mark.parametrize(
    "args, password, words",
    [
        (("add", "bob", "--role", "king"), PASSWORD, "role must be one of staff, manager"),
        (("add", "bob smith", "--role", "staff"), PASSWORD, "user name must be 1-64"),
        (("add", "x" * 65, "--role", "staff"), PASSWORD, "user name must be 1-64"),
        (("add", "bob'; DROP TABLE users;--", "--role", "staff"), PASSWORD, "user name"),
        (("add", "bob", "--role", "staff"), "short", "at least 12 characters"),
        (("add", "bobbybobbybob", "--role", "staff"), "BobbyBobbyBob", "not be the user name"),
        (("add", "bob", "--role", "staff"), "", "no password on stdin"),
        (("add", "ROOT.ADMIN", "--role", "dpo"), PASSWORD, "user root.admin already exists"),
        (("add", "bob", "--role", "staff", "--by", "  "), PASSWORD, "--by must name"),
        (("disable", "zed"), None, "user zed does not exist"),
        (("passwd", "zed"), PASSWORD, "user zed does not exist"),
        (("passwd", "root.admin"), "short", "at least 12 characters"),
        (("passwd", "root.admin"), "", "no password on stdin"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    folder: Path, args: tuple[str, ...], password: str | None, words: str
) -> None:
    before = catalog_state(folder)
    stdin = ("--password-stdin",) if password is not None else ()
    refused(users(folder, *args, *stdin, password=password), words)
    assert catalog_state(folder) == before


def test_disabling_twice_is_refused(folder: Path) -> None:
    assert users(folder, "disable", "root.admin").returncode == 0
    before = catalog_state(folder)
    refused(users(folder, "disable", "root.admin"), "already disabled")
    assert catalog_state(folder) == before


def test_a_password_is_only_read_from_stdin(folder: Path) -> None:
    before = catalog_state(folder)
    result = users(folder, "add", "bob", "--role", "staff", password=PASSWORD)
    assert result.returncode == 2 and "--password-stdin" in result.stderr
    assert catalog_state(folder) == before


def test_listing_or_changing_without_a_catalog_is_refused(tmp_path: Path) -> None:
    for args in (("list",), ("disable", "bob")):
        refused(users(tmp_path, *args), "no catalog at")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "name, role, password, words",
    [
        ("admin", "root", PASSWORD, "role must be one of"),
        ("ad min", "admin", PASSWORD, "user name"),
        ("admin", "admin", "admin", "at least 12"),
    ],
)
def test_a_refused_first_admin_leaves_no_catalog(
    tmp_path: Path, name: str, role: str, password: str, words: str
) -> None:
    refused(
        users(tmp_path, "add", name, "--role", role, "--password-stdin", password=password), words
    )
    assert not (tmp_path / "data").exists()


def test_the_catalog_the_first_admin_makes_is_owner_only(folder: Path) -> None:
    data = folder / "data"  # the hashes are in it: made under umask 077 whatever the caller's
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in [data, *data.iterdir()]}
    assert modes.pop("data") == 0o700
    assert modes and set(modes.values()) == {0o600}, modes
