"""``recproxy sar open|show|list|decide|close``: subject access cases from the command
line, through the same :class:`~proxy.records.sar.SarDesk` the records service uses.

Every step, reads included, is done by a named user ACCOUNT (``--by USER``, required):
the gate decides with that account's role and audits the decision under its name, as it
would for the person signed in to the API.  The other metadata commands' ``--by`` only
names a person beside the OS account; here it must be an account, because the policy
turns on its role (only the DPO decides, records officers and the DPO do the rest).
An unknown or disabled account is refused before anything is asked.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from .text_table import format_table

if TYPE_CHECKING:
    from .config import Config
    from .records.policy import Actor
    from .records.sar import CaseView
    from .storage.catalog import Catalog, SarCase


class SarCommandError(Exception):
    """One line for the person: the ``recproxy`` command prints it and exits 1.  (Not
    the command's own ``CliError``: ``python -m proxy.cli`` runs that module as
    ``__main__``, so a class imported back from it would be another class.)"""


Options = Callable[[argparse.ArgumentParser], None]


def add_sar_commands(
    sar_commands: argparse._SubParsersAction[argparse.ArgumentParser], config_option: Options
) -> None:
    """The ``sar`` group's commands but ``export`` (see ``_sar_export_parser``);
    ``config_option`` adds the command line's ``--config``."""

    def _common(parser: argparse.ArgumentParser, who: str) -> None:
        parser.add_argument("--by", required=True, metavar="USER", help=f"a user account: {who}")
        config_option(parser)

    opening = sar_commands.add_parser(
        "open", help="open a case: its search attaches the requester's calls (prints its id)"
    )
    opening.add_argument("--requester", required=True, metavar="NAME", help="who asks")
    opening.add_argument(
        "--number",
        action="append",
        required=True,
        metavar="NUMBER",
        help="a number they call from, any form (repeat for more, up to 10)",
    )
    opening.add_argument(
        "--from", dest="window_from", required=True, metavar="ISO", help="search from"
    )
    opening.add_argument(
        "--to", dest="window_to", required=True, metavar="ISO", help="search to (excluded)"
    )
    opening.add_argument("--operator", metavar="ID", help="only calls this operator took")
    opening.add_argument(
        "--identity-check", required=True, metavar="TEXT", help="how their identity was checked"
    )
    opening.add_argument("--contact", metavar="TEXT", help="how to reach the requester")
    opening.add_argument(
        "--received", metavar="ISO", help="when the request was received (default: now)"
    )
    _json_option(opening, "the case as JSON instead of its id")
    _common(opening, "the records officer or DPO opening it")

    show = sar_commands.add_parser("show", help="a case, its calls and the decisions")
    show.add_argument("case", metavar="CASE")
    _json_option(show, "the case as JSON")
    _common(show, "who reads it (audited)")

    listing = sar_commands.add_parser("list", help="cases, soonest deadline first")
    listing.add_argument("--state", metavar="open|answered|closed", help="only cases in it")
    _json_option(listing, "one JSON array")
    _common(listing, "who reads them (audited)")

    decide = sar_commands.add_parser("decide", help="the DPO's decision on one call")
    decide.add_argument("case", metavar="CASE")
    decide.add_argument("recording_id", metavar="RECORDING_ID")
    decide.add_argument(
        "--release", required=True, metavar="both|caller|refuse", help="what is released"
    )
    decide.add_argument("--reason", required=True, metavar="TEXT", help="why (recorded)")
    _common(decide, "the DPO deciding")

    close = sar_commands.add_parser("close", help="close a case (its holds are released)")
    close.add_argument("case", metavar="CASE")
    close.add_argument("--reason", required=True, metavar="TEXT", help="why (recorded)")
    _common(close, "the records officer or DPO closing it")


def _json_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=what)


async def sar_actor(catalog: Catalog, name: str) -> Actor:
    """The account ``--by`` names, as the policy sees it; ``SarCommandError`` when there
    is no such account or it is disabled (nothing asked, nothing audited)."""
    from .records.gate import actor_for

    user = await catalog.users.get(name.strip().lower())
    if user is None:
        raise SarCommandError(f"no user account {name!r} (recproxy users list)")
    if user.disabled:
        raise SarCommandError(f"user account {user.name} is disabled")
    return actor_for(user)


async def run_sar(args: argparse.Namespace, config: Config, catalog: Catalog) -> int:
    """Run one ``sar`` command (but ``export``) on the open ``catalog``;
    ``SarCommandError`` for any refusal."""
    from .records.errors import (
        AccessDenied,
        AccessRequestConflict,
        InvalidAccessRequest,
        RecordNotFound,
    )
    from .records.gate import Gate
    from .records.sar import SarDesk

    actor = await sar_actor(catalog, args.by)
    gate = Gate(catalog, config.access)
    desk = SarDesk(gate, catalog, config.numbers, config.sar)
    try:
        if args.sar_command == "open":
            view = await desk.open(
                actor,
                requester=args.requester,
                identity_check=args.identity_check,
                number=args.number,
                window_from=args.window_from,
                window_to=args.window_to,
                operator=args.operator,
                contact=args.contact,
                received=args.received,
            )
            _print_opened(view, gate.now(), as_json=args.json)
        elif args.sar_command == "show":
            _print_case(await desk.show(actor, args.case), gate.now(), as_json=args.json)
        elif args.sar_command == "list":
            _print_cases(await desk.cases(actor, args.state), gate.now(), as_json=args.json)
        elif args.sar_command == "decide":
            case = await desk.decide(actor, args.case, args.recording_id, args.release, args.reason)
            decided = case.recording(args.recording_id)
            release = "-" if decided is None or decided.release is None else decided.release
            print(f"{case.id}: recording {args.recording_id}: {release}")
        else:
            case = await desk.close(actor, args.case, args.reason)
            print(f"{case.id} closed; its holds are released")
    except (AccessDenied, AccessRequestConflict, InvalidAccessRequest, RecordNotFound) as exc:
        raise SarCommandError(str(exc)) from None
    return 0


def _print_opened(view: CaseView, now: datetime, *, as_json: bool) -> None:
    """The id (or the case as JSON) on stdout, for scripts; a summary on stderr."""
    from .records.sar import describe_deadline

    case = view.case
    print(json.dumps(view.as_dict(), indent=2) if as_json else case.id)
    calls = len(case.recordings)
    print(
        f"recproxy: {case.id}: {calls} call{'s' if calls != 1 else ''} attached; "
        f"{describe_deadline(case, now)}",
        file=sys.stderr,
    )


def _print_case(view: CaseView, now: datetime, *, as_json: bool) -> None:
    from .records.sar import describe_deadline
    from .storage.catalog import format_utc

    if as_json:
        print(json.dumps(view.as_dict(), indent=2))
        return
    case = view.case
    lines = [
        f"case:           {case.id} ({case.state.value})",
        f"requester:      {case.requester}" + (f" ({case.contact})" if case.contact else ""),
        f"identity check: {case.identity_check}",
        f"numbers:        {', '.join(case.numbers)}",
        f"window:         {format_utc(case.window_from)} to {format_utc(case.window_to)}"
        + (f", operator {case.operator}" if case.operator else ""),
        f"received:       {format_utc(case.received_at)}",
        f"deadline:       {describe_deadline(case, now)}",
        f"opened by:      {case.opened_by} at {format_utc(case.opened_at)}",
    ]
    if case.closed_at is not None:
        lines.append(f"closed by:      {case.closed_by} at {format_utc(case.closed_at)}")
    print("\n".join(lines))
    print()
    if not case.recordings:
        print("no calls attached")
        return
    header = ("recording", "call time", "caller", "operators", "duration", "state", "release",
              "by", "reason")  # fmt: skip
    rows = []
    for attached in case.recordings:
        hit = view.calls.get(attached.recording_id)
        operators = "" if hit is None else ", ".join(p.operator or "-" for p in hit.parts)
        seconds = None if hit is None or hit.duration_ms is None else hit.duration_ms / 1000
        rows.append((
            attached.recording_id,
            "-" if hit is None else f"{hit.call_started_at:%Y-%m-%d %H:%M:%S}Z",
            "-" if hit is None else hit.caller,
            operators or "-",
            "-" if seconds is None else f"{seconds:.0f} s",
            "-" if hit is None else hit.state.value,
            "undecided" if attached.release is None else attached.release.value,
            attached.decided_by or "-",
            attached.decision_reason or "-",
        ))  # fmt: skip
    print("\n".join(format_table(header, rows, right=("duration",))))


def _print_cases(cases: Sequence[SarCase], now: datetime, *, as_json: bool) -> None:
    from .records.sar import describe_deadline

    if as_json:
        print(json.dumps([c.as_dict() | {"deadline": describe_deadline(c, now)} for c in cases]))
        return
    if not cases:
        print("no cases")
        return
    header = ("case", "state", "requester", "calls", "undecided", "deadline")
    rows = [
        (c.id, c.state.value, c.requester, str(len(c.recordings)), str(len(c.undecided)),
         describe_deadline(c, now))
        for c in cases
    ]  # fmt: skip
    print("\n".join(format_table(header, rows, right=("calls", "undecided"))))
