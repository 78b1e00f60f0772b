"""docs/operations.md's "Who may do what" table is what the policy answers: each cell is
read, turned into the situations it speaks of, and the policy is asked about each."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proxy.config import DEFAULT_PURPOSES
from proxy.records.policy import (
    AccessQuery,
    Action,
    Actor,
    BulkApproval,
    Grant,
    Role,
    Target,
    decide,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
WORDS = frozenset({"yes", "no", "own", "team", "grant", "approval"})
ME = "op-me"
PARTS = {
    "own": Target("rec-1", 0, operator=ME, team="red"),
    "team": Target("rec-1", 0, operator="op-mate", team="red"),
    "other": Target("rec-1", 0, operator="op-far", team="blue"),
}
GRANT = Grant("rec-1", "legal", NOW + timedelta(days=1), approved_by="officer")
APPROVAL = BulkApproval("dpo-2", NOW + timedelta(hours=1))


def table() -> dict[tuple[str, str], frozenset[str]]:
    """(action, role) → the words of its cell."""
    text = DOC.read_text("utf-8")
    section = text.split("## Who may do what", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[0] == "action"
    cells: dict[tuple[str, str], frozenset[str]] = {}
    for line in lines[2:]:
        action, *row = (cell.strip() for cell in line.strip("|").split("|"))
        for role, cell in zip(header[1:], row, strict=True):
            cells[(action.strip("`"), role)] = frozenset(re.split(r",\s*", cell))
    return cells


def test_the_table_has_every_action_and_role_once_in_known_words() -> None:
    cells = table()
    assert set(cells) == {(a.value, r.value) for a in Action for r in Role}
    assert all(words <= WORDS for words in cells.values()), cells


def situations(words: frozenset[str], bulk: bool) -> list[tuple[str, bool, bool, bool]]:
    """(part, with a grant, with a DPO approval, allowed?) as the cell's words say."""
    if bulk:
        return [
            ("other", False, False, "yes" in words),
            ("other", False, True, bool(words & {"yes", "approval"})),
        ]
    return [
        ("own", False, False, bool(words & {"yes", "own", "team"})),  # my part is my team's
        ("team", False, False, bool(words & {"yes", "team"})),
        ("other", False, False, "yes" in words),
        ("other", True, False, bool(words & {"yes", "grant"})),
    ]


@pytest.mark.parametrize("action, role", sorted(table()))
def test_the_policy_answers_as_the_table_says(action: str, role: str) -> None:
    words = table()[(action, role)]
    bulk = Action(action) in (Action.BULK_EXPORT, Action.BULK_PLAY)
    for part, granted, approved, allowed in situations(words, bulk):
        query = AccessQuery(
            Actor("me", Role(role), frozenset({"red"}), ME),
            Action(action),
            NOW,
            target=PARTS[part],
            purpose="legal",
            reason="solicitor's letter of 1 December",
            grants=(GRANT,) if granted else (),
            requester="someone-else",
            bulk_approval=APPROVAL if approved else None,
        )
        decision = decide(query, DEFAULT_PURPOSES)
        assert decision.allowed is allowed, (part, granted, approved, decision)
