"""``recproxy store copy --to s3`` (issue 20): move an installation's recordings from the
local disk to the bucket of ``[recording.s3]``.

Each recording folder under ``[recording] dir`` is copied file by file (the wrapped key
and every segment) to the object names the S3 store reads (``<prefix><id>/<file>``), so
the catalog, whose ``directory`` is relative to the recordings root, needs no change.
Each object is read back and compared (length and SHA-256) before it counts; one already
in the bucket with the same bytes is left alone, so the command can be run again after
an interruption and copies only what is missing.  Recordings still being written (the
catalog says ``recording``) are skipped and named.  ``--remove-local`` deletes each local
file once its copy is verified: what is left in the folder afterwards is what did not
copy.  Then set ``[recording] store = "s3"``.  ``recproxy serve`` must be stopped first:
the command refuses to run while a ``serve`` holds the recordings folder.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .config import Config
from .recording_state import RecordingState
from .segment_stores import claim_recordings, open_s3_store
from .startup import StartupError
from .storage.catalog import Catalog
from .storage.s3_store import CopyCount
from .storage.store import recording_folders

Options = Callable[[argparse.ArgumentParser], None]


def add_store_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], config_option: Options
) -> None:
    store = commands.add_parser("store", help="the segment store (local disk or S3 bucket)")
    store_commands = store.add_subparsers(dest="store_command", required=True)
    copy = store_commands.add_parser(
        "copy",
        help="copy the local recordings to the [recording.s3] bucket, each object read back "
        "and compared; safe to run again",
    )
    copy.add_argument("--to", choices=["s3"], required=True, help="where to copy (s3)")
    copy.add_argument(
        "--remove-local",
        action="store_true",
        help="delete each local file once its copy in the bucket is verified (a move)",
    )
    config_option(copy)


async def being_recorded(catalog: Catalog) -> set[str]:
    """The ids of the recordings the catalog says are still being written."""
    writing: set[str] = set()
    offset = 0
    while batch := await catalog.recordings.list_recordings(
        RecordingState.RECORDING, limit=500, offset=offset
    ):
        writing.update(row.id for row in batch)
        offset += len(batch)
    return writing


def store_copy(config: Config, *, remove_local: bool, writing: set[str]) -> int:
    """Copy every local recording but those ``writing`` into the bucket; print what was
    done.  Exit status 1 (the reason on stderr) when the bucket cannot be used or a copy
    fails, or when a ``serve`` process holds the recordings folder: a recording it starts
    during the copy would be copied in part and, with ``--remove-local``, deleted under
    its writer; so the copy holds the folder's lock alone while it runs."""
    s3 = config.recording.s3
    missing = [key for key in ("endpoint", "bucket") if not getattr(s3, key)]
    if missing:
        print(f"recproxy: recording.s3.{missing[0]}: required to copy to S3", file=sys.stderr)
        return 1
    try:
        held = claim_recordings(config, shared=False)
    except StartupError as exc:
        print(f"recproxy: {exc}", file=sys.stderr)
        return 1
    try:
        return _copy_all(config, remove_local=remove_local, writing=writing)
    finally:
        held.release()


def _copy_all(config: Config, *, remove_local: bool, writing: set[str]) -> int:
    s3 = config.recording.s3
    try:
        store = open_s3_store(config, fsync="none", uploads=False)
    except StartupError as exc:
        print(f"recproxy: {exc}", file=sys.stderr)
        return 1
    total, copied_recordings = CopyCount(), 0
    try:
        for folder in recording_folders(config.recording.dir):
            if folder.name in writing:
                print(f"skipped {folder.name}: still being recorded")
                continue
            try:
                count = store.copy_in(folder, remove=remove_local)
            except OSError as exc:
                print(f"recproxy: {folder.name}: not copied: {exc}", file=sys.stderr)
                return 1
            total.add(count)
            copied_recordings += 1
            print(
                f"{folder.name}: {count.copied} copied, {count.present} already there"
                + (", local files removed" if remove_local else "")
            )
    finally:
        store.close()
    print(
        f"{copied_recordings} recording(s): {total.copied} object(s) copied "
        f"({total.bytes} bytes), {total.present} already in the bucket; every one read "
        f"back and compared (bucket {s3.bucket}, prefix {s3.prefix!r})"
    )
    return 0
