"""The ``recproxy`` command.

recproxy --version
recproxy serve [--config PATH] [--log-level LEVEL] [--log-format text|json]
recproxy records serve [--config PATH] [--log-level LEVEL] [--log-format text|json]
recproxy config check [--config PATH]
recproxy config history [--config PATH] [--json]
recproxy keygen --out DIR [--signing] [--no-passphrase] [--config PATH]
recproxy verify-bundle PATH [--public-key FILE | --fingerprint SHA256] [--config PATH]
recproxy recordings list [--config PATH] [--json]
recproxy audit verify [--config PATH]
recproxy audit show [--since ISO] [--actor A] [--action X] [--json] [--config PATH]
recproxy export ID --format wav|mp3|g711 --out PATH --reason TEXT [--channels ...] [--force]
                [--by NAME] [--purpose PURPOSE] [--part N]
recproxy holds place RECORDING_ID --kind KIND --reference REF --by USER [--review YYYY-MM-DD]
               [--note TEXT]
recproxy holds release HOLD_ID --by USER --reason TEXT
recproxy holds list [--json] [--due] [--active]
recproxy retention sweep [--config PATH] [--as-of ISO-8601] [--dry-run]
recproxy users add NAME --role ROLE [--team T ...] [--operator OPERATOR_ID] --password-stdin
               [--by NAME]
recproxy users list [--json]
recproxy users disable NAME [--by NAME]
recproxy users passwd NAME --password-stdin [--by NAME]
recproxy users sip-password NAME (--password-stdin | --remove) [--by NAME]
recproxy sar open --requester NAME --number NUMBER [--number ...] --from ISO --to ISO
             [--operator ID] --identity-check TEXT [--contact TEXT] [--received ISO]
             --by USER [--json]
recproxy sar show CASE --by USER [--json]
recproxy sar list [--state open|answered|closed] --by USER [--json]
recproxy sar decide CASE RECORDING_ID --release both|caller|refuse --by USER --reason TEXT
recproxy sar close CASE --by USER --reason TEXT
recproxy sar export CASE --out DIR --by USER [--zip] [--no-transcripts]
recproxy test-uas [--listen HOST:PORT]

Exit status: 0 done, 1 a failure the message explains, 2 bad usage, 78 (``EX_CONFIG``) a
configuration error, so a service manager does not restart into it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .catalog_setup import catalog_missing, catalog_name, make_catalog
from .config import LOG_FORMATS, LOG_LEVELS, Config, ConfigError, load_config
from .text_table import format_table

if TYPE_CHECKING:
    from .records.holds import HoldDesk
    from .records.sar_export import ExportProgress
    from .storage.catalog import Hold, RecordingSummary, SqlCatalog, User
    from .storage.store import SegmentStore

PASSPHRASE_ENV = "RECPROXY_KEY_PASSPHRASE"
EXIT_FAILURE = 1
EX_CONFIG = 78  # sysexits.h: configuration error (systemd: RestartPreventExitStatus=78)


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recproxy",
        description="SIP/RTP recording proxy: the caller hears why the call is recorded, "
        "then is connected, and both sides are recorded, encrypted, as the call happens.",
    )
    parser.add_argument("--version", action="version", version=f"recproxy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the proxy")
    _config_option(serve)
    _log_options(serve)
    _records_parser(commands)

    config = commands.add_parser("config", help="the configuration file")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser(
        "check", help="validate the config and the files it names, without starting"
    )
    _config_option(check)
    history = config_commands.add_parser(
        "history", help="the configuration versions serve has run under, and what changed"
    )
    _config_option(history)
    history.add_argument("--json", action="store_true", help="one JSON array")

    keygen = commands.add_parser("keygen", help="make the organisation's recording key pair")
    keygen.add_argument("--out", type=Path, required=True, metavar="DIR")
    keygen.add_argument(
        "--signing",
        action="store_true",
        help="make the export-signing key pair instead (Ed25519: signing.key, signing.pub)",
    )
    keygen.add_argument(
        "--no-passphrase",
        action="store_true",
        help=f"store the private key unencrypted (otherwise ${PASSPHRASE_ENV} is required)",
    )
    _config_option(keygen)  # the catalog whose audit log records the new key

    recordings = commands.add_parser("recordings", help="recordings in the catalog")
    rec_commands = recordings.add_subparsers(dest="recordings_command", required=True)
    listing = rec_commands.add_parser("list", help="list recordings (metadata only)")
    _by_option(listing)
    _config_option(listing)
    listing.add_argument("--json", action="store_true", help="one JSON array")
    listing.add_argument("--limit", type=int, default=1000)

    from .cli_db import add_db_commands  # issue 20: db upgrade | check | copy

    add_db_commands(commands, _config_option)

    audit = commands.add_parser("audit", help="the hash-chained audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    audit_verify = audit_commands.add_parser(
        "verify", help="walk the chain, check it against the anchor file, anchor its head"
    )
    _config_option(audit_verify)
    audit_show = audit_commands.add_parser("show", help="audit entries, oldest first")
    audit_show.add_argument("--since", metavar="ISO", help="at or after this time (UTC if no zone)")
    audit_show.add_argument("--actor", help="only this actor's entries")
    audit_show.add_argument("--action", help="only this action (custodian_export, search, ...)")
    audit_show.add_argument("--json", action="store_true", help="one JSON object a line")
    _by_option(audit_show)
    _config_option(audit_show)

    export = commands.add_parser("export", help="verify, decrypt and export a recording")
    export.add_argument("id", metavar="ID")
    export.add_argument(
        "--format",
        choices=("wav", "mp3", "g711"),
        required=True,
        help="wav: 16-bit PCM; mp3; g711: the G.711 bytes as received (a µ-law or A-law "
        "WAV; refused if the recording holds both laws, or for --channels mono)",
    )
    export.add_argument(
        "--out", type=Path, required=True, metavar="PATH", help="the file to write (mode 0600)"
    )
    export.add_argument("--force", action="store_true", help="replace an existing file")
    export.add_argument("--reason", required=True, help="why it is needed (recorded)")
    export.add_argument(
        "--by",
        metavar="NAME",
        help="the person this account exports for (logged beside the account name)",
    )
    export.add_argument(
        "--channels",
        choices=("stereo", "mono", "caller", "call_taker"),
        default="stereo",
        help="stereo (caller left), a mono mix, or one party only",
    )
    export.add_argument(
        "--purpose",
        default="accuracy",
        help="why, as one of [access] purposes (default accuracy; audited)",
    )
    export.add_argument(
        "--part",
        type=_part_number,
        metavar="N",
        help="only part N (from 1) of a transferred call: that call taker's time range",
    )
    _config_option(export)

    dnr = commands.add_parser(
        "dnr", help="the do-not-record list: callers who asked in writing not to be recorded"
    )
    dnr_commands = dnr.add_subparsers(dest="dnr_command", required=True)
    dnr_add = dnr_commands.add_parser("add", help="add a number (with the written request)")
    dnr_add.add_argument("number")
    dnr_add.add_argument("--reference", required=True, help="the letter, email or case")
    dnr_add.add_argument(
        "--replace", action="store_true", help="replace the reference of a number already listed"
    )
    _by_option(dnr_add)
    _config_option(dnr_add)
    dnr_remove = dnr_commands.add_parser("remove", help="remove a number")
    dnr_remove.add_argument("number")
    _by_option(dnr_remove)
    _config_option(dnr_remove)
    dnr_list = dnr_commands.add_parser("list", help="list the numbers")
    dnr_list.add_argument("--json", action="store_true")
    _by_option(dnr_list)
    _config_option(dnr_list)

    _holds_parser(commands)
    _users_parser(commands)
    _verify_bundle_parser(commands)
    _sar_parser(commands)
    _store_parser(commands)  # issue 20
    retention = commands.add_parser(
        "retention", help="delete recordings whose retention period is over"
    )
    retention_commands = retention.add_subparsers(dest="retention_command", required=True)
    sweep = retention_commands.add_parser(
        "sweep",
        help="crypto-shred every expired recording no hold keeps (what serve does each "
        "retention.sweep_interval_seconds)",
    )
    sweep.add_argument(
        "--as-of",
        metavar="ISO-8601",
        help="sweep as if it were this time (UTC when no offset is given; default: now)",
    )
    sweep.add_argument(
        "--dry-run", action="store_true", help="list what would be deleted; change nothing"
    )
    _by_option(sweep)
    _config_option(sweep)

    # issue 20: several nodes on one catalog
    recover = commands.add_parser(
        "recover",
        help="mark interrupted the recordings of a node that will not come back (run "
        "from another node sharing its catalog and store; never for a running node)",
    )
    recover.add_argument(
        "--node", required=True, metavar="NAME", help="the dead node's [node] name"
    )
    _config_option(recover)

    commands.add_parser(
        "operator-token",
        help="make an API token for a call taker: prints the token and the hash for the config",
    )

    uas = commands.add_parser(
        "test-uas",
        help="answer every SIP call (a loopback peer for SIPp, trunk and PBX checks)",
    )
    uas.add_argument(
        "--listen",
        type=_hostport,
        default=("127.0.0.1", 5070),
        metavar="HOST:PORT",
        help="address to listen on, UDP and TCP (default 127.0.0.1:5070)",
    )
    return parser


def _log_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        help="the least severe record logged, any case (default: logging.level, INFO)",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="text lines, or one JSON object a line (default: logging.format, text)",
    )


def _records_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    records = commands.add_parser(
        "records", help="the records service: the only process holding the private key"
    )
    record_commands = records.add_subparsers(dest="records_command", required=True)
    serve = record_commands.add_parser(
        "serve",
        help="run the records service (HTTP API on records.http_listen; passphrase from "
        f"${PASSPHRASE_ENV} or records.passphrase_file)",
    )
    _config_option(serve)
    _log_options(serve)
    # how `recproxy serve` starts its child: stop when the parent's pipe closes
    serve.add_argument("--until-stdin-closes", action="store_true", help=argparse.SUPPRESS)


def _holds_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    holds = commands.add_parser(
        "holds", help="holds: keep a recording past its retention (complaint, training...)"
    )
    hold_commands = holds.add_subparsers(dest="holds_command", required=True)
    place = hold_commands.add_parser("place", help="hold a recording (prints the hold's id)")
    place.add_argument("recording_id", metavar="RECORDING_ID")
    place.add_argument("--kind", required=True, help="one of holds.kinds")
    place.add_argument("--reference", required=True, help="the complaint, case or request")
    place.add_argument("--by", metavar="USER", help="who places the hold (required)")
    place.add_argument("--review", metavar="YYYY-MM-DD", help="when to review the hold")
    place.add_argument("--note", help="a note kept with the hold")
    _config_option(place)
    release = hold_commands.add_parser("release", help="release a hold")
    release.add_argument("hold_id", metavar="HOLD_ID")
    release.add_argument("--by", metavar="USER", help="who releases the hold (required)")
    release.add_argument("--reason", help="why the hold is released (required)")
    _config_option(release)
    listing = hold_commands.add_parser("list", help="list holds (due for review: marked)")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    listing.add_argument("--due", action="store_true", help="only holds due for review")
    listing.add_argument("--active", action="store_true", help="only holds not released")
    _by_option(listing)
    _config_option(listing)


def _users_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = commands.add_parser("users", help="accounts of the people who use the records")
    user_commands = users.add_subparsers(dest="users_command", required=True)
    by_help = "the person this account acts for (recorded beside the account name)"
    stdin_help = "read the password from the first line of stdin (there is no other way)"
    add = user_commands.add_parser("add", help="add a user (the first admin too)")
    add.add_argument("name", metavar="NAME", help="login name: a-z 0-9 . _ - (lower-cased)")
    add.add_argument("--role", required=True, help="staff, manager, records_officer, dpo, ...")
    add.add_argument(
        "--team", action="append", default=[], metavar="T", help="a team (repeat for more)"
    )
    add.add_argument(
        "--operator", metavar="OPERATOR_ID", help="staff: the operator identity calls record"
    )
    add.add_argument("--password-stdin", action="store_true", required=True, help=stdin_help)
    add.add_argument("--by", metavar="NAME", help=by_help)
    _config_option(add)
    listing = user_commands.add_parser("list", help="list users (never their passwords)")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    _by_option(listing)
    _config_option(listing)
    disable = user_commands.add_parser("disable", help="disable a user and end their sessions")
    disable.add_argument("name", metavar="NAME")
    disable.add_argument("--by", metavar="NAME", help=by_help)
    _config_option(disable)
    passwd = user_commands.add_parser("passwd", help="set a user's password (ends sessions)")
    passwd.add_argument("name", metavar="NAME")
    passwd.add_argument("--password-stdin", action="store_true", required=True, help=stdin_help)
    passwd.add_argument("--by", metavar="NAME", help=by_help)
    _config_option(passwd)
    sip = user_commands.add_parser(
        "sip-password", help="set or remove the password a user's SIP phone registers with"
    )
    sip.add_argument("name", metavar="NAME")
    how = sip.add_mutually_exclusive_group(required=True)
    how.add_argument("--password-stdin", action="store_true", help=stdin_help)
    how.add_argument("--remove", action="store_true", help="remove it: the phones cannot register")
    sip.add_argument("--by", metavar="NAME", help=by_help)
    _config_option(sip)


def _sar_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``recproxy sar ...``: subject access cases (handlers in :mod:`proxy.cli_sar`)."""
    from .cli_sar import add_sar_commands

    sar = commands.add_parser("sar", help="subject access requests: cases, decisions, bundles")
    sar_commands = sar.add_subparsers(dest="sar_command", required=True)
    add_sar_commands(sar_commands, _config_option)
    _sar_export_parser(sar_commands)


async def _store_copy(args: argparse.Namespace) -> int:
    """``recproxy store copy --to s3``: recordings still being written are skipped."""
    from .cli_store import being_recorded, store_copy

    config = _load(args)
    writing: set[str] = set()
    if not catalog_missing(config.catalog):
        async with _catalog(config) as catalog:
            writing = await being_recorded(catalog)
    return await asyncio.to_thread(
        store_copy, config, remove_local=args.remove_local, writing=writing
    )


def _store_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``recproxy store copy --to s3`` (issue 20; :mod:`proxy.cli_store`)."""
    from .cli_store import add_store_commands

    add_store_commands(commands, _config_option)


def _verify_bundle_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verify = commands.add_parser(
        "verify-bundle",
        help="check an export bundle (folder or ZIP) offline: its signature, every file",
    )
    verify.add_argument("path", type=Path, metavar="PATH", help="the bundle folder or its ZIP")
    trust = verify.add_mutually_exclusive_group()
    trust.add_argument(
        "--public-key",
        type=Path,
        metavar="FILE",
        help="the signing public key to trust (default: export.signing_public_key)",
    )
    trust.add_argument(
        "--fingerprint",
        type=_key_sha256,
        metavar="SHA256",
        help="the SHA-256 of the signing key to trust, as the organisation publishes it",
    )
    _config_option(verify)


# -- sar export (issue 16, part 1): its parser, handler and progress bar ----------------


def _sar_export_parser(sar_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = sar_commands.add_parser(
        "export",
        help="write the case's released calls as a signed bundle (WAV, MP3, transcripts)",
    )
    export.add_argument("case", metavar="CASE", help="the case id (SAR-YYYY-NNNN)")
    export.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="the bundle folder to create"
    )
    export.add_argument(
        "--by",
        required=True,
        metavar="USER",
        help="the records officer's or DPO's account exporting it (audited)",
    )
    export.add_argument("--zip", action="store_true", help="also write DIR.zip of the bundle")
    export.add_argument(
        "--no-transcripts",
        action="store_true",
        help="audio only: no transcript model needed",
    )
    _config_option(export)


async def _sar_export(args: argparse.Namespace) -> int:
    """Export a case's bundle as the account ``--by``; a bar on a terminal's stderr."""
    from .cli_sar import SarCommandError, sar_actor
    from .records.custody import key_passphrase, load_signing_key
    from .records.errors import (
        AccessDenied,
        AccessRequestConflict,
        InvalidAccessRequest,
        RecordingUnreadable,
        RecordNotFound,
    )
    from .records.export import ExportError, private_key_file
    from .records.gate import Gate
    from .records.sar_export import SarExporter, SarExportError
    from .startup import StartupError

    config = _load(args)
    async with _existing_catalog(config) as catalog, _segment_store(config) as store:
        try:
            actor = await sar_actor(catalog, args.by)
        except SarCommandError as exc:
            raise CliError(str(exc)) from None
        try:
            passphrase = key_passphrase(config.records.passphrase_file)
            private_key = private_key_file(config.recording.private_key, passphrase)()
            signing_key = load_signing_key(config)
        except (StartupError, ExportError) as exc:
            raise CliError(str(exc)) from None
        exporter = SarExporter(
            Gate(catalog, config.access),
            catalog,
            recordings_dir=config.recording.dir,
            private_key=private_key,
            signing_key=signing_key,
            transcripts=config.transcripts,
            store=store,
        )
        try:
            done = await exporter.export(
                actor,
                args.case,
                args.out,
                make_zip=args.zip,
                transcripts=not args.no_transcripts,
                progress=_show_sar_progress if sys.stderr.isatty() else None,
            )
        except (
            AccessDenied,
            AccessRequestConflict,
            InvalidAccessRequest,
            RecordingUnreadable,
            RecordNotFound,
            SarExportError,
        ) as exc:
            raise CliError(str(exc)) from None
    calls = len(done.export.recording_ids)
    print(f"bundle {done.bundle.path} for case {args.case}")
    print(f"manifest sha256 {done.bundle.manifest_sha256}")
    print(f"{calls} call{'s' if calls != 1 else ''}, {len(done.bundle.files)} files")
    if done.zip_path is not None:
        print(f"zip {done.zip_path}")
    return 0


def sar_progress_line(progress: ExportProgress, width: int = 20) -> str:
    """``[#####.....] 2/4 calls  transcript  <recording id>``: one line of the bar."""
    filled = width * progress.done // max(progress.total, 1)
    line = f"[{'#' * filled}{'.' * (width - filled)}] {progress.done}/{progress.total} calls"
    line += f"  {progress.stage}"
    return line if progress.recording_id is None else f"{line}  {progress.recording_id}"


def _show_sar_progress(progress: ExportProgress) -> None:
    """The bar, rewritten in place (a carriage return, the line, then erase what is
    left of a longer one); a line feed once done."""
    end = "\n" if progress.stage == "done" else ""
    print(f"\r{sar_progress_line(progress)}\x1b[K", end=end, file=sys.stderr, flush=True)


# -- end sar export ----------------------------------------------------------------------


def _key_sha256(text: str) -> str:
    """``--fingerprint``: the 64 hex digits of a signing key's SHA-256 (spaces and
    colons allowed, as it may be copied from a letter)."""
    digits = text.replace(":", "").replace(" ", "").lower()
    if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
        raise argparse.ArgumentTypeError(f"{text!r} is not the 64 hex digits of a key's SHA-256")
    return digits


def _part_number(text: str) -> int:
    """A part number for ``--part``: a whole number from 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a part number (1, 2, ...)")
    return int(text)


def _by_option(parser: argparse.ArgumentParser) -> None:
    """``--by``: the person the account running a metadata command acts for, kept
    beside the account's name in the command's audit entry."""
    parser.add_argument(
        "--by",
        metavar="NAME",
        help="the person this account acts for (recorded beside the account name)",
    )


def _acting(args: argparse.Namespace) -> str:
    """Who a command's audit entry names: the OS account, and ``--by`` if given."""
    from .records.actor import actor_name

    try:
        return actor_name(getattr(args, "by", None))
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="PATH", help="TOML config file")


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(0o077)  # the catalog, keys, recordings and exports: owner-only, always
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "records":
            return _records_serve(args)
        if args.command == "config" and args.config_command == "history":
            return asyncio.run(_config_history(args))
        if args.command == "config":
            return _config_check(args)
        if args.command == "keygen":
            return asyncio.run(_keygen(args))
        if args.command == "verify-bundle":
            return _verify_bundle(args)
        if args.command == "recordings":
            return asyncio.run(_recordings_list(args))
        if args.command == "sar" and args.sar_command == "export":
            return asyncio.run(_sar_export(args))
        if args.command == "audit":
            return asyncio.run(_audit(args))
        if args.command == "db":
            return _db(args)
        if args.command == "export":
            return asyncio.run(_export(args))
        if args.command == "dnr":
            return asyncio.run(_dnr(args))
        if args.command == "holds":
            return asyncio.run(_holds(args))
        if args.command == "retention":
            return asyncio.run(_retention_sweep(args))
        if args.command == "store":  # issue 20
            return asyncio.run(_store_copy(args))
        if args.command == "users":
            return asyncio.run(_users(args))
        if args.command == "sar":
            return asyncio.run(_sar(args))
        if args.command == "recover":
            return asyncio.run(_recover(args))
        if args.command == "operator-token":
            return _operator_token()
        if args.command == "test-uas":
            from .tools.uas import serve as serve_uas

            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(serve_uas(*args.listen))
            return 0
    except ConfigError as exc:
        print(f"recproxy: {exc}", file=sys.stderr)
        return EX_CONFIG
    except CliError as exc:
        print(f"recproxy: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return 2  # pragma: no cover - argparse rejects unknown commands


async def _recover(args: argparse.Namespace) -> int:
    """``recproxy recover --node NAME`` (:mod:`.cli_recover`)."""
    from .cli_recover import RecoverRefused, recover_node

    config = _load(args)
    async with _existing_catalog(config) as catalog, _segment_store(config) as store:
        try:
            done = await recover_node(config, catalog, store, args.node, actor=_acting(args))
        except RecoverRefused as exc:
            raise CliError(str(exc)) from None
    print(f"node {done.node}: {len(done.interrupted)} recording(s) marked interrupted")
    for rid in done.interrupted:
        print(f"  {rid}")
    if done.uncatalogued:
        print(f"{len(done.uncatalogued)} recording folder(s) no catalog row names (kept):")
        for rid in done.uncatalogued:
            print(f"  {rid}")
    return 0


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config)


@contextlib.asynccontextmanager
async def _segment_store(config: Config) -> AsyncIterator[SegmentStore]:
    """Issue 20: the configured segment store (disk or bucket) for a command that reads
    or deletes recordings; a bucket that cannot be used is a ``CliError``."""
    from .segment_stores import segment_store
    from .startup import StartupError

    try:
        with segment_store(config) as store:
            yield store
    except StartupError as exc:
        raise CliError(str(exc)) from None


def _db(args: argparse.Namespace) -> int:
    """``recproxy db ...`` (issue 20; handlers in :mod:`proxy.cli_db`)."""
    from .cli_db import DbCommandError, run_db

    try:
        return asyncio.run(run_db(args, _load(args)))
    except DbCommandError as exc:
        raise CliError(str(exc)) from None


def _catalog(config: Config) -> SqlCatalog:
    """The configured catalog (SQLite or PostgreSQL); the command line's SQLite writes
    are ``FULL`` (each survives a power cut)."""
    return make_catalog(config.catalog, synchronous="FULL")


def _existing_catalog(config: Config) -> SqlCatalog:
    """:func:`_catalog` for a command that reads what ``serve`` wrote: a SQLite file that
    is not there yet is a ``CliError``, not a new empty catalog."""
    if catalog_missing(config.catalog):
        raise CliError(f"no catalog at {catalog_name(config.catalog)} (has the proxy run yet?)")
    return _catalog(config)


def _serve(args: argparse.Namespace) -> int:
    from .app import StartupError, serve
    from .config_check import check_config
    from .logs import configure_logging

    config = _load(args)
    check_config(config)  # a missing prompt is a config error (78), not a restartable failure
    configure_logging(
        args.log_level or config.logging.level, args.log_format or config.logging.format
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        uvloop = None  # type: ignore[assignment]
    log = logging.getLogger("recproxy")
    log.info(
        "config %s, event loop %s",
        config.source or "defaults",
        "uvloop" if uvloop is not None else "asyncio",
    )
    for warning in config.warnings:
        log.warning("config %s", warning)
    try:
        if uvloop is not None:
            uvloop.run(serve(config))
        else:  # pragma: no cover
            asyncio.run(serve(config))
    except StartupError as exc:
        raise CliError(str(exc)) from None
    except KeyboardInterrupt:
        pass
    return 0


def _records_serve(args: argparse.Namespace) -> int:
    from .logs import configure_logging
    from .records_service import serve_records
    from .startup import StartupError

    config = _load(args)
    configure_logging(
        args.log_level or config.logging.level, args.log_format or config.logging.format
    )
    try:
        asyncio.run(serve_records(config, until_stdin_closes=args.until_stdin_closes))
    except StartupError as exc:
        raise CliError(f"records service: {exc}") from None
    except KeyboardInterrupt:
        pass
    return 0


def _config_check(args: argparse.Namespace) -> int:
    from .config_check import check_config

    summary = check_config(_load(args))
    print("OK")
    for line in summary:
        print(f"  {line}")
    return 0


async def _config_history(args: argparse.Namespace) -> int:
    from .config_version import SHORT
    from .storage.catalog import format_utc
    from .storage.catalog.config_versions import diff

    config = _load(args)
    async with _existing_catalog(config) as catalog:
        versions = await catalog.config_versions.history()
    changes = [
        None if before is None else diff(before.version, before.settings, v.version, v.settings)
        for before, v in zip([None, *versions], versions, strict=False)
    ]
    if args.json:
        listed = []
        for version, change in zip(versions, changes, strict=True):
            detail = (
                change.detail()
                if change
                else {"from": None, "changed": {}, "added": {}, "removed": {}}
            )
            listed.append({
                "version": version.version,
                "first_seen_at": format_utc(version.first_seen_at),
                "last_seen_at": format_utc(version.last_seen_at),
                "previous": detail["from"],
                "changed": detail["changed"],
                "added": detail["added"],
                "removed": detail["removed"],
            })  # fmt: skip
        print(json.dumps(listed, indent=2))
    elif not versions:
        print("no configuration versions yet (serve records one each time it starts)")
    else:
        rows = [
            (
                format_utc(version.first_seen_at),
                version.version[:SHORT],
                "(first)" if change is None else ", ".join(change.keys),
            )
            for version, change in zip(versions, changes, strict=True)
        ]
        print("\n".join(format_table(("first seen (UTC)", "version", "changed keys"), rows)))
    return 0


async def _keygen(args: argparse.Namespace) -> int:
    from .records.actor import os_account
    from .records.keys import audit_key_generated
    from .storage import crypto

    config = _load(args)
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if not args.no_passphrase and not passphrase:
        raise CliError(
            f"set {PASSPHRASE_ENV} to the passphrase that protects the private key "
            "(or pass --no-passphrase)"
        )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    private: crypto.PrivateKey
    public: crypto.PublicKey
    if args.signing:
        private_path, public_path = out / "signing.key", out / "signing.pub"
        private = crypto.generate_signing_key()
        public = private.public_key()
        setting = "export.signing_public_key"
    else:
        private_path, public_path = out / "recording.key", out / "recording.pub"
        private, public = crypto.generate_keypair()
        setting = "recording.public_key"
    try:
        crypto.save_private_key(
            private_path,
            private,
            None if args.no_passphrase else passphrase.encode(),  # type: ignore[union-attr]
        )
        crypto.save_public_key(public_path, public)
    except (FileExistsError, crypto.StorageCryptoError) as exc:
        raise CliError(f"{exc} (keys are never overwritten: losing one loses recordings)") from None
    config.catalog.path.parent.mkdir(parents=True, exist_ok=True)
    async with _catalog(config) as catalog:
        await audit_key_generated(catalog.audit, public, actor=os_account())
    print(f"private key: {private_path}  (keep it off the proxy host)")
    print(f"public key:  {public_path}  (set {setting} to this)")
    print(f"fingerprint: {crypto.key_fingerprint(public)}")
    if args.signing:  # what recipients pin: verify-bundle --fingerprint
        print(f"sha256:      {crypto.public_key_sha256(public)}  (publish it)")
    return 0


def _listed(row: RecordingSummary, held: Mapping[str, list[dict[str, str]]]) -> dict[str, object]:
    """One recording of ``recordings list --json``, with its active holds."""
    listed = row.as_dict()
    listed["holds"] = held.get(row.id, [])
    listed["expires_at"] = _utc(row.expires_at)
    listed["deleted_at"] = _utc(row.deleted_at)  # state "deleted": when, and why
    listed["deleted_reason"] = row.deleted_reason
    return listed


def _utc(value: datetime | None) -> str | None:
    from .storage.catalog import format_utc

    return None if value is None else format_utc(value)


async def _recordings_list(args: argparse.Namespace) -> int:
    from .storage.catalog import format_utc

    config = _load(args)
    async with _existing_catalog(config) as catalog:
        # a metadata search is audited (P5) before anything is shown
        await catalog.audit.append(actor=_acting(args), action="search", detail=_filters(args))
        rows = await catalog.recordings.list_recordings(limit=args.limit)
        held: dict[str, list[dict[str, str]]] = {}
        for hold in await catalog.holds.holds(active_only=True):
            brief = {"id": hold.id, "kind": hold.kind, "reference": hold.reference}
            held.setdefault(hold.recording_id, []).append(brief)
    if args.json:
        print(json.dumps([_listed(row, held) for row in rows], indent=2))
        return 0
    if not rows:
        print("no recordings")
        return 0
    header = ("id", "started (UTC)", "caller", "callee", "duration", "state", "segments")
    cells = [
        (
            row.id,
            format_utc(row.started_at),
            row.caller,
            row.callee,
            f"{row.duration_ms / 1000:.1f}s",
            row.state.value,
            str(row.segments),
        )
        for row in rows
    ]
    print("\n".join(format_table(header, cells, right=("duration", "segments"))))
    return 0


def _filters(args: argparse.Namespace) -> dict[str, object]:
    """The search's filters, as its audit entry keeps them."""
    return {"limit": args.limit}


async def _audit(args: argparse.Namespace) -> int:
    from .records.audit import check_and_anchor
    from .storage.catalog import format_utc, parse_utc
    from .storage.catalog.anchor import AnchorFileError, anchor_path
    from .storage.catalog.values import utc_now

    config = _load(args)
    since = None
    if args.audit_command == "show" and args.since is not None:
        try:
            since = parse_utc(args.since)
        except ValueError as exc:
            raise CliError(f"--since: {exc}") from None
    async with _existing_catalog(config) as catalog:
        if args.audit_command == "verify":
            anchors = anchor_path(config.catalog.path)
            try:
                check = await check_and_anchor(catalog.audit, anchors, utc_now())
            except AnchorFileError as exc:
                raise CliError(f"anchor file: {exc}") from None
            if not check.intact:
                raise CliError(f"audit chain broken at entry {check.broken_at}: {check.why}")
            anchored = f", anchored in {anchors}" if check.anchored else ""
            print(
                f"audit chain intact: {check.count} entries, "
                f"head {check.head.seq} {check.head.sha256}{anchored}"
            )
            return 0
        entries = await catalog.audit.entries(since=since, actor=args.actor, action=args.action)
        # the reading is audited before anything is shown (and is not among what it shows)
        filters = {"since": args.since, "actor": args.actor, "action": args.action}
        await catalog.audit.append(actor=_acting(args), action="audit.show", detail=filters)
    if args.json:
        for e in entries:
            print(json.dumps(e.as_dict(), ensure_ascii=False))
        return 0
    if not entries:
        print("no audit entries")
        return 0
    header = ("seq", "at (UTC)", "actor", "action", "object", "reason")
    cells = [
        (str(e.seq), format_utc(e.at), e.actor, e.action, e.object or "", e.reason or "")
        for e in entries
    ]
    print("\n".join(format_table(header, cells, right=("seq",))))
    return 0


async def _export(args: argparse.Namespace) -> int:
    from .records.actor import by_name, os_account
    from .records.custody import key_passphrase
    from .records.export import (
        ExportError,
        ExportRequest,
        InvalidExportRequest,
        export_recording,
        private_key_file,
    )
    from .startup import StartupError

    config = _load(args)
    try:
        by = by_name(args.by)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    request = ExportRequest(
        recording_id=args.id,
        format=args.format,
        channels=args.channels,
        out=args.out,
        reason=args.reason,
        account=os_account(),
        by=by,
        purpose=args.purpose,
        part=args.part,
        force=args.force,
    )

    try:
        passphrase = key_passphrase(config.records.passphrase_file)
    except StartupError as exc:
        raise CliError(str(exc)) from None
    async with _catalog(config) as catalog, _segment_store(config) as store:
        try:
            done = await export_recording(
                catalog,
                request,
                recordings_dir=config.recording.dir,
                private_key=private_key_file(config.recording.private_key, passphrase),
                access=config.access,
                store=store,
            )
        except InvalidExportRequest as exc:
            print(f"recproxy: {exc}", file=sys.stderr)
            return 2
        except ExportError as exc:
            raise CliError(str(exc)) from None
    part = "" if args.part is None else f" part {args.part},"
    print(
        f"exported {args.id}:{part} {done.duration_s:.2f} s, {args.channels}, "
        f"{args.format} → {done.out} sha256 {done.sha256} (logged: {request.actor}, "
        f"{args.purpose}, {request.reason.strip()!r})"
    )
    if done.flagged:
        print("outside [access] working hours: flagged for the DPO (outside_working_hours)")
    return 0


async def _dnr(args: argparse.Namespace) -> int:
    from .config import NumberError
    from .storage.catalog import DuplicateError

    config = _load(args)
    config.catalog.path.parent.mkdir(parents=True, exist_ok=True)
    async with _catalog(config) as catalog:
        if args.dnr_command == "add":
            try:
                number = config.numbers.e164(args.number)
            except NumberError as exc:
                raise CliError(str(exc)) from None
            try:
                entry = await catalog.do_not_record.add(
                    number,
                    reference=args.reference,
                    added_by=_acting(args),
                    replace=args.replace,
                )
            except DuplicateError as exc:
                raise CliError(f"{exc} (--replace replaces its reference)") from None
            print(f"{entry.number} will not be recorded (reference: {entry.reference})")
        elif args.dnr_command == "remove":
            number = config.numbers.normalise(args.number)
            if not await catalog.do_not_record.remove(number, by=_acting(args)):
                # an entry listed before numbers were normalised by the library (as
                # +4401234567890) goes by the text `dnr list` shows
                number = args.number
                if not await catalog.do_not_record.remove(number, by=_acting(args)):
                    raise CliError(f"{number} is not on the do-not-record list")
            print(f"{number} removed: calls from it are recorded again")
        else:
            await catalog.audit.append(actor=_acting(args), action="dnr.list")
            entries = await catalog.do_not_record.entries()
            if args.json:
                print(json.dumps([
                    {
                        "number": e.number,
                        "reference": e.reference,
                        "added_by": e.added_by,
                        "added_at": e.added_at.isoformat().replace("+00:00", "Z"),
                    }
                    for e in entries
                ], indent=2))  # fmt: skip
            elif entries:
                rows = [
                    (e.number, f"{e.added_at:%Y-%m-%d}", e.added_by, e.reference) for e in entries
                ]
                print("\n".join(format_table(("number", "added", "by", "reference"), rows)))
    return 0


async def _holds(args: argparse.Namespace) -> int:
    from .records.errors import HoldRefused, InvalidHoldRequest, RecordNotFound
    from .records.holds import HoldDesk

    config = _load(args)
    async with _existing_catalog(config) as catalog:
        desk = HoldDesk(catalog.holds, config.holds.kinds)
        try:
            if args.holds_command == "place":
                hold = await desk.place(
                    args.recording_id,
                    kind=args.kind,
                    reference=args.reference,
                    by=args.by,
                    review=args.review,
                    note=args.note,
                )
                print(hold.id)
            elif args.holds_command == "release":
                hold = await desk.release(args.hold_id, by=args.by, reason=args.reason)
                print(f"hold {hold.id} released (recording {hold.recording_id})")
            else:
                filters = {"due": args.due, "active": args.active}
                await catalog.audit.append(actor=_acting(args), action="holds.list", detail=filters)
                holds = await desk.listing(due_only=args.due, active_only=args.active)
                _print_holds(desk, holds, as_json=args.json)
        except (RecordNotFound, InvalidHoldRequest, HoldRefused) as exc:
            raise CliError(str(exc)) from None
    return 0


def _print_holds(desk: HoldDesk, holds: Sequence[Hold], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps([desk.describe(hold) for hold in holds], indent=2))
        return
    if not holds:
        print("no holds")
        return
    header = ("id", "recording", "kind", "reference", "placed by", "placed", "review", "released")
    cells = [
        (
            hold.id,
            hold.recording_id,
            hold.kind,
            hold.reference,
            hold.placed_by,
            f"{hold.placed_at:%Y-%m-%d}",
            f"{hold.review_on or '-'}{' DUE' if desk.due(hold) else ''}",
            "-" if hold.released_at is None else f"{hold.released_at:%Y-%m-%d}",
        )
        for hold in holds
    ]
    print("\n".join(format_table(header, cells)))


async def _sar(args: argparse.Namespace) -> int:
    from .cli_sar import SarCommandError, run_sar

    config = _load(args)
    async with _existing_catalog(config) as catalog:
        try:
            return await run_sar(args, config, catalog)
        except SarCommandError as exc:
            raise CliError(str(exc)) from None


def _password_from_stdin() -> str:
    """The first line of stdin, without its line ending (a password may hold spaces)."""
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise CliError("no password on stdin (--password-stdin reads its first line)")
    return line


async def _users(args: argparse.Namespace) -> int:
    from .records.accounts import AccountError, Accounts, UnknownUser, check_new_user
    from .storage.catalog import Role
    from .storage.catalog.values import utc_now

    config = _load(args)
    by = _acting(args)
    if args.users_command == "sip-password":
        return await _sip_password(args, config, by)
    password = _password_from_stdin() if args.users_command in ("add", "passwd") else ""
    if args.users_command == "add":
        try:  # before the catalog is made: a refused first admin leaves no trace
            check_new_user(args.name, args.role, password)
        except AccountError as exc:
            raise CliError(str(exc)) from None
        config.catalog.path.parent.mkdir(parents=True, exist_ok=True)  # the first admin
    elif catalog_missing(config.catalog):
        raise CliError(f"no catalog at {catalog_name(config.catalog)} (no users yet: users add)")
    async with _catalog(config) as catalog:
        accounts = Accounts(catalog.users, config.accounts)
        try:
            if args.users_command == "add":
                user = await accounts.add_user(
                    args.name,
                    role_name=args.role,
                    password=password,
                    by=by,
                    teams=args.team,
                    operator=args.operator,
                )
                print(f"user {user.name} added ({user.role.value})")
                if user.role is Role.STAFF and user.operator is None:
                    print(
                        f"recproxy: warning: staff user {user.name} has no --operator: "
                        "no call is known to be theirs",
                        file=sys.stderr,
                    )
            elif args.users_command == "passwd":
                user = await accounts.set_password(args.name, password, by=by)
                print(f"password of {user.name} changed; their sessions are ended")
            elif args.users_command == "disable":
                user = await accounts.disable(args.name, by=by)
                print(f"user {user.name} disabled; their sessions are ended")
            else:
                await catalog.audit.append(actor=by, action="users.list")
                _print_users(await accounts.users(), utc_now(), as_json=args.json)
        except (AccountError, UnknownUser) as exc:
            raise CliError(str(exc)) from None
    return 0


async def _sip_password(args: argparse.Namespace, config: Config, by: str) -> int:
    """``users sip-password``: the password a user's phones register with (its HA1
    values for ``[registrar] realm``), or ``--remove`` it."""
    from .records.accounts import AccountError, UnknownUser
    from .records.sip_passwords import SipPasswords, address_of_record

    password = "" if args.remove else _password_from_stdin()
    if catalog_missing(config.catalog):
        raise CliError(f"no catalog at {catalog_name(config.catalog)} (no users yet: users add)")
    async with _catalog(config) as catalog:
        try:
            passwords = SipPasswords(catalog.users, catalog.sip_credentials, config.registrar.realm)
            if args.remove:
                removed = await passwords.remove(args.name, by=by)
                print(
                    f"SIP password of {args.name.lower()} removed"
                    if removed
                    else f"{args.name.lower()} had no SIP password"
                )
                return 0
            done = await passwords.set(args.name, password, by=by)
        except (AccountError, UnknownUser) as exc:
            raise CliError(str(exc)) from None
    user = done.credentials.user
    aor = address_of_record(user, passwords.realm)
    print(f"SIP password of {user} set; its phones register {aor}")
    for realm, names in done.other_realms.items():
        print(
            f"recproxy: warning: the SIP passwords of {', '.join(names)} were set for realm "
            f"{realm!r}, not registrar.realm {passwords.realm!r}: they cannot register until "
            "each is set again (users sip-password)",
            file=sys.stderr,
        )
    return 0


def _print_users(users: Sequence[User], now: datetime, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps([user.as_dict(now) for user in users], indent=2))
        return
    if not users:
        print("no users")
        return
    header = ("name", "role", "teams", "operator", "created", "state")
    cells = [
        (
            user.name,
            user.role.value,
            ", ".join(user.teams) or "-",
            user.operator or "-",
            f"{user.created_at:%Y-%m-%d}",
            "disabled"
            if user.disabled
            else (f"locked until {user.locked_until:%H:%M}Z" if user.locked(now) else "active"),
        )
        for user in users
    ]
    print("\n".join(format_table(header, cells)))


def _as_of(text: str | None) -> datetime | None:
    """``--as-of``: ISO 8601, a date or a time; UTC when it names no offset."""
    from .storage.catalog import parse_utc

    if text is None:
        return None
    try:
        return parse_utc(text)
    except ValueError:
        raise CliError(
            f"--as-of: {text!r} is not an ISO 8601 date or time (e.g. 2029-06-01T00:00:00Z)"
        ) from None


#: Test-only: ``retention sweep`` stops after this step (1-4) of its first recording,
#: says so on stderr and waits to be killed.  Unset (always, in production): inert.
PAUSE_AFTER_STEP_ENV = "RECPROXY_TEST_PAUSE_AFTER_STEP"


def _pause_after_step() -> Callable[[int, str], None] | None:
    wanted = os.environ.get(PAUSE_AFTER_STEP_ENV)
    if wanted is None:
        return None

    def pause(step: int, recording_id: str) -> None:
        if str(step) == wanted:
            print(f"paused after step {step} of {recording_id}", file=sys.stderr, flush=True)
            time.sleep(60)  # bounded: the test kills us long before

    return pause


def _progress_bar(done: int, total: int) -> None:
    width = 30
    filled = width * done // max(total, 1)
    bar = "#" * filled + "." * (width - filled)
    end = "\n" if done >= total else ""
    print(f"\r[{bar}] {done}/{total}", end=end, file=sys.stderr, flush=True)


async def _retention_sweep(args: argparse.Namespace) -> int:
    from .records.retention import RetentionSweeper

    config = _load(args)
    as_of = _as_of(args.as_of)
    async with _existing_catalog(config) as catalog, _segment_store(config) as store:
        sweeper = RetentionSweeper(
            catalog.retention,
            catalog.audit,
            store,
            config.recording.dir,
            config.retention,
            actor=_acting(args),
            after_step=_pause_after_step(),
        )
        report = await sweeper.sweep(
            as_of,
            dry_run=args.dry_run,
            progress=_progress_bar if sys.stderr.isatty() else None,
        )
    if args.dry_run:
        for recording_id in report.deleted:
            print(f"would delete {recording_id}")
    print(report.summary())
    return EXIT_FAILURE if report.failed else 0


def _verify_bundle(args: argparse.Namespace) -> int:
    """Check a bundle offline against the trusted signing key: ``--public-key``,
    ``--fingerprint``, else the configured ``export.signing_public_key``.  A bundle is
    never judged by its own key alone: anyone can sign a bundle with a key of their own."""
    import zipfile

    from .records.bundle import TrustedKey, verify_bundle
    from .storage import crypto

    config = _load(args)
    if args.fingerprint is not None:
        trusted, source = TrustedKey(args.fingerprint), "--fingerprint"
    else:
        key_file = args.public_key or config.export.signing_public_key
        if args.public_key is None and not key_file.exists():
            raise CliError(
                f"no trusted signing key: {key_file} (export.signing_public_key) does not "
                "exist; pass --public-key FILE or --fingerprint SHA256 as the organisation "
                "publishes it"
            )
        try:
            trusted = TrustedKey.of(crypto.load_signing_public_key(key_file))
        except crypto.KeyFileError as exc:
            raise CliError(str(exc)) from None
        source = str(key_file)
    try:
        verdict = verify_bundle(args.path, trusted)
    except FileNotFoundError:
        raise CliError(f"{args.path}: no such bundle folder or ZIP") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise CliError(f"{args.path}: not a bundle folder or a readable ZIP ({exc})") from None
    if verdict.fault is not None:
        raise CliError(f"bundle {args.path} is not intact: {verdict.fault}")
    manifest = verdict.manifest or {}
    print(
        f"bundle intact: case {manifest.get('case_id')}, {len(verdict.checked)} file(s) of "
        f"{len(manifest.get('recordings', []))} recording(s), exported by "
        f"{manifest.get('exported_by')} at {manifest.get('exported_at')} "
        f"({manifest.get('purpose')}: {manifest.get('reason')})"
    )
    print(f"signed by key {verdict.signing_key_sha256} (trusted: {source})")
    for name in verdict.checked:
        print(f"  ok {name}")
    return 0


def _operator_token() -> int:
    import secrets

    from .control.api import token_hash

    token = secrets.token_urlsafe(24)
    print(f"token (give it to the call taker): {token}")
    print(f'token_sha256 = "{token_hash(token)}"   # put this in their [[operators]] entry')
    return 0


if __name__ == "__main__":
    sys.exit(main())
