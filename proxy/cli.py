"""The ``recproxy`` command.

recproxy --version
recproxy serve [--config PATH] [--log-level LEVEL] [--log-format text|json]
recproxy config check [--config PATH]
recproxy keygen --out DIR [--no-passphrase]
recproxy recordings list [--config PATH] [--json]
recproxy export ID --format wav|mp3|g711 --out PATH --reason TEXT [--channels ...] [--force]
                [--by NAME]
recproxy retention sweep [--config PATH] [--as-of ISO-8601] [--dry-run]
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
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .config import LOG_FORMATS, LOG_LEVELS, Config, ConfigError, load_config
from .text_table import format_table

if TYPE_CHECKING:
    from .storage.catalog import RecordingSummary

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
    serve.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        help="the least severe record logged, any case (default: logging.level, INFO)",
    )
    serve.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="text lines, or one JSON object a line (default: logging.format, text)",
    )

    config = commands.add_parser("config", help="the configuration file")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser(
        "check", help="validate the config and the files it names, without starting"
    )
    _config_option(check)

    keygen = commands.add_parser("keygen", help="make the organisation's recording key pair")
    keygen.add_argument("--out", type=Path, required=True, metavar="DIR")
    keygen.add_argument(
        "--no-passphrase",
        action="store_true",
        help=f"store the private key unencrypted (otherwise ${PASSPHRASE_ENV} is required)",
    )

    recordings = commands.add_parser("recordings", help="recordings in the catalog")
    rec_commands = recordings.add_subparsers(dest="recordings_command", required=True)
    listing = rec_commands.add_parser("list", help="list recordings (metadata only)")
    _config_option(listing)
    listing.add_argument("--json", action="store_true", help="one JSON array")
    listing.add_argument("--limit", type=int, default=1000)

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
    _config_option(dnr_add)
    dnr_remove = dnr_commands.add_parser("remove", help="remove a number")
    dnr_remove.add_argument("number")
    _config_option(dnr_remove)
    dnr_list = dnr_commands.add_parser("list", help="list the numbers")
    dnr_list.add_argument("--json", action="store_true")
    _config_option(dnr_list)

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
    _config_option(sweep)

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


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="PATH", help="TOML config file")


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(0o077)  # the catalog, keys, recordings and exports: owner-only, always
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "config":
            return _config_check(args)
        if args.command == "keygen":
            return _keygen(args)
        if args.command == "recordings":
            return asyncio.run(_recordings_list(args))
        if args.command == "export":
            return asyncio.run(_export(args))
        if args.command == "dnr":
            return asyncio.run(_dnr(args))
        if args.command == "retention":
            return asyncio.run(_retention_sweep(args))
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


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config)


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
        "config %s (version %s), event loop %s",
        config.source or "defaults",
        config.version,
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


def _config_check(args: argparse.Namespace) -> int:
    from .config_check import check_config

    summary = check_config(_load(args))
    print("OK")
    for line in summary:
        print(f"  {line}")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from .storage import crypto

    passphrase = os.environ.get(PASSPHRASE_ENV)
    if not args.no_passphrase and not passphrase:
        raise CliError(
            f"set {PASSPHRASE_ENV} to the passphrase that protects the private key "
            "(or pass --no-passphrase)"
        )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out / "recording.key", out / "recording.pub"
    private, public = crypto.generate_keypair()
    try:
        crypto.save_private_key(
            private_path,
            private,
            None if args.no_passphrase else passphrase.encode(),  # type: ignore[union-attr]
        )
        crypto.save_public_key(public_path, public)
    except (FileExistsError, crypto.StorageCryptoError) as exc:
        raise CliError(f"{exc} (keys are never overwritten: losing one loses recordings)") from None
    print(f"private key: {private_path}  (keep it off the proxy host)")
    print(f"public key:  {public_path}  (set recording.public_key to this)")
    print(f"fingerprint: {crypto.key_fingerprint(public)}")
    return 0


def _listed(row: RecordingSummary) -> dict[str, object]:
    """One recording of ``recordings list --json``."""
    listed = row.as_dict()
    listed["expires_at"] = _utc(row.expires_at)
    listed["deleted_at"] = _utc(row.deleted_at)  # state "deleted": when, and why
    listed["deleted_reason"] = row.deleted_reason
    return listed


def _utc(value: datetime | None) -> str | None:
    from .storage.catalog import format_utc

    return None if value is None else format_utc(value)


async def _recordings_list(args: argparse.Namespace) -> int:
    from .storage.catalog import SqliteCatalog, format_utc

    config = _load(args)
    if not config.catalog.path.exists():
        raise CliError(f"no catalog at {config.catalog.path} (has the proxy run yet?)")
    async with SqliteCatalog(config.catalog.path) as catalog:
        rows = await catalog.recordings.list_recordings(limit=args.limit)
    if args.json:
        print(json.dumps([_listed(row) for row in rows], indent=2))
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


async def _export(args: argparse.Namespace) -> int:
    from .records.actor import actor_name
    from .records.export import ExportError, ExportRequest, export_recording, private_key_file
    from .storage.catalog import SqliteCatalog

    config = _load(args)
    try:
        actor = actor_name(args.by)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    request = ExportRequest(
        recording_id=args.id,
        format=args.format,
        channels=args.channels,
        out=args.out,
        reason=args.reason,
        actor=actor,
        force=args.force,
    )

    async with SqliteCatalog(config.catalog.path) as catalog:
        try:
            done = await export_recording(
                catalog,
                request,
                recordings_dir=config.recording.dir,
                private_key=private_key_file(
                    config.recording.private_key, os.environ.get(PASSPHRASE_ENV)
                ),
            )
        except ExportError as exc:
            raise CliError(str(exc)) from None
    print(
        f"exported {args.id}: {done.duration_s:.2f} s, {args.channels}, "
        f"{args.format} → {done.out} (logged: {actor}, {request.reason.strip()!r})"
    )
    return 0


async def _dnr(args: argparse.Namespace) -> int:
    from .config import NumberError
    from .records.actor import os_account
    from .storage.catalog import DuplicateError, SqliteCatalog

    config = _load(args)
    config.catalog.path.parent.mkdir(parents=True, exist_ok=True)
    async with SqliteCatalog(config.catalog.path) as catalog:
        if args.dnr_command == "add":
            try:
                number = config.numbers.e164(args.number)
            except NumberError as exc:
                raise CliError(str(exc)) from None
            try:
                entry = await catalog.do_not_record.add(
                    number,
                    reference=args.reference,
                    added_by=os_account(),
                    replace=args.replace,
                )
            except DuplicateError as exc:
                raise CliError(f"{exc} (--replace replaces its reference)") from None
            print(f"{entry.number} will not be recorded (reference: {entry.reference})")
        elif args.dnr_command == "remove":
            number = config.numbers.normalise(args.number)
            if not await catalog.do_not_record.remove(number):
                # an entry listed before numbers were normalised by the library (as
                # +4401234567890) goes by the text `dnr list` shows
                number = args.number
                if not await catalog.do_not_record.remove(number):
                    raise CliError(f"{number} is not on the do-not-record list")
            print(f"{number} removed: calls from it are recorded again")
        else:
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


def _as_of(text: str | None) -> datetime | None:
    """``--as-of``: ISO 8601, a date or a time; UTC when it names no offset."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(
            f"--as-of: {text!r} is not an ISO 8601 date or time (e.g. 2029-06-01T00:00:00Z)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


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
    from .records.actor import os_account
    from .records.retention import RetentionSweeper
    from .storage.catalog import SqliteCatalog
    from .storage.store import LocalDiskStore

    config = _load(args)
    as_of = _as_of(args.as_of)
    if not config.catalog.path.exists():
        raise CliError(f"no catalog at {config.catalog.path} (has the proxy run yet?)")
    async with SqliteCatalog(config.catalog.path) as catalog:
        sweeper = RetentionSweeper(
            catalog.retention,
            catalog.audit,
            LocalDiskStore(),
            config.recording.dir,
            config.retention,
            actor=os_account(),
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


def _operator_token() -> int:
    import secrets

    from .control.api import token_hash

    token = secrets.token_urlsafe(24)
    print(f"token (give it to the call taker): {token}")
    print(f'token_sha256 = "{token_hash(token)}"   # put this in their [[operators]] entry')
    return 0


if __name__ == "__main__":
    sys.exit(main())
