"""A file of decrypted audio, written so that nobody else can read it and no half of it
is ever found under its name.

``claim_output(path, force=...)`` first inspects ``path`` without following it: a
symbolic link, a folder or a special file (FIFO, device, socket) is refused, and so is an
existing file unless ``force``.  Nothing has been written or logged at that point, so a
refusal leaves no trace.  It then creates a temporary file beside ``path`` (same folder,
so the same filesystem) with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode 0600, whatever the
umask.  The caller writes into it; on success it is fsynced and renamed onto ``path``
(without ``force`` by a hard link, which fails rather than replace a file that appeared
meanwhile); on any error it is removed.  A process killed mid-write leaves only the
hidden ``.NAME.*.part`` file, mode 0600, never a partial file under the final name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

OUTPUT_MODE = 0o600
TEMP_SUFFIX = ".part"


class OutputRefused(Exception):
    """The output path is not a place to write decrypted audio to."""


def check_output_path(path: Path, *, force: bool) -> None:
    """Refuse a path that is a link, a folder, a special file, or (without ``force``) an
    existing file; also a missing parent folder.  Never follows ``path``."""
    if not path.parent.is_dir():
        raise OutputRefused(f"{path}: folder {path.parent} does not exist")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise OutputRefused(f"{path} is a symbolic link; name the file itself")
    if stat.S_ISDIR(mode):
        raise OutputRefused(f"{path} is a folder; name a file to write")
    if not stat.S_ISREG(mode):
        raise OutputRefused(f"{path} is a special file (FIFO, device or socket)")
    if not force:
        raise OutputRefused(f"{path} exists; pass --force to replace it")


@contextlib.contextmanager
def claim_output(path: Path, *, force: bool = False) -> Iterator[BinaryIO]:
    """A private temporary file beside ``path``, put in place when the block succeeds."""
    check_output_path(path, force=force)
    try:
        # mkstemp opens with O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, mode 0600
        fd, temp_name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent
        )
    except OSError as exc:
        raise OutputRefused(f"cannot write in {path.parent}: {exc.strerror}") from None
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as stream:
            os.fchmod(fd, OUTPUT_MODE)
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        _put_in_place(temp, path, force=force)
    finally:
        temp.unlink(missing_ok=True)


def _put_in_place(temp: Path, path: Path, *, force: bool) -> None:
    try:
        if force:
            os.replace(temp, path)  # replaces a link or file itself, never writes through it
        else:
            os.link(temp, path)
    except FileExistsError:
        raise OutputRefused(
            f"{path} appeared while exporting; pass --force to replace it"
        ) from None
    except IsADirectoryError:
        raise OutputRefused(f"{path} became a folder while exporting") from None
    except OSError as exc:
        raise OutputRefused(f"cannot put {path} in place: {exc.strerror}") from None
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make the rename durable (a crash after it must not bring back the old name)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems cannot fsync a folder
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)
