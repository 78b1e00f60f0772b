"""The segment store a process uses, built from ``[recording]``: the local disk (the
default) or an S3-compatible bucket through a local spool (issue 20).

Every process that touches recordings' files builds its store here — ``serve`` (the
writer, recovery, the retention sweeper), the records service (playback, export, subject
access, integrity) and the command line — so they all read the same recording the same
way.  Only ``serve`` uploads (``uploads=True``): the others read and delete, and leave the
spool to it.  What the spool held at start is queued by ``S3SegmentStore.resume()``, which
``serve`` calls once start-up recovery has looked at the spool.

Credentials are read from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or from
``[recording.s3] credentials_file`` (``[default]`` section of an AWS-style INI file, the
file wins), never from the TOML.  A wrong endpoint, a missing bucket, or an object lock
asked of a bucket without one fails start-up naming the setting.

``serve`` holds the recordings folder's lock (``SERVE_LOCK``) for its life: shared with
the other nodes writing to the local disk there, alone when it is an S3 node's spool (a
second uploader would upload and delete the first one's open segments), and ``store
copy`` refuses to run while any ``serve`` holds it.
"""

from __future__ import annotations

import configparser
import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from .config import Config, S3Settings
from .startup import StartupError
from .storage.bucket import Bucket, BucketSettings, LockMode
from .storage.file_lock import HeldLock, InUseError, claim
from .storage.s3_store import S3SegmentStore
from .storage.store import SERVE_LOCK, FsyncPolicy, LocalDiskStore, SegmentStore

log = logging.getLogger(__name__)

ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"


@contextlib.contextmanager
def segment_store(config: Config, *, uploads: bool = False) -> Iterator[SegmentStore]:
    """The configured store, closed on leaving.  ``uploads``: this process runs the
    uploader (``serve`` only; what the spool already holds waits for
    ``S3SegmentStore.resume()``); raises ``StartupError`` when the bucket cannot be
    used."""
    fsync: FsyncPolicy = config.recording.fsync  # type: ignore[assignment]
    if config.recording.store != "s3":
        held = claim_recordings(config, shared=True) if uploads else None
        try:
            yield LocalDiskStore(fsync=fsync)
        finally:
            if held is not None:
                held.release()
        return
    store = open_s3_store(config, fsync=fsync, uploads=uploads)
    try:
        yield store
    finally:
        store.close()


def open_s3_store(config: Config, *, fsync: FsyncPolicy, uploads: bool) -> S3SegmentStore:
    """Connect to the bucket, check it, and (``uploads``) start the uploader."""
    s3 = config.recording.s3
    key_id, secret = credentials(s3)
    try:
        bucket = Bucket(BucketSettings(s3.endpoint, s3.bucket, s3.region, key_id, secret))
    except Exception as exc:  # botocore refuses a malformed endpoint here
        raise StartupError(f"recording.s3.endpoint {s3.endpoint}: {exc}") from None
    try:
        locked = _check(bucket, s3)
        lock: LockMode = s3.object_lock  # type: ignore[assignment]
        store = S3SegmentStore(
            bucket,
            config.recording.dir,
            prefix=s3.prefix,
            fsync=fsync,
            lock=lock,
            retain_until=config.retention.expires,
        )
        store.start(uploads=uploads, resume=False)
    except InUseError:
        bucket.close()
        raise StartupError(
            f"recording.dir {config.recording.dir} is in use by another recproxy process: "
            'with store = "s3" it is this node\'s upload spool, and each node needs its own'
        ) from None
    except BaseException:
        bucket.close()
        raise
    if uploads:
        log.info(
            "segments: S3 bucket %s at %s (prefix %r, object lock %s; the bucket %s object "
            "lock), spooled in %s",
            s3.bucket,
            s3.endpoint,
            s3.prefix,
            s3.object_lock,
            "has" if locked else "has no",
            config.recording.dir,
        )
    return store


def claim_recordings(config: Config, *, shared: bool) -> HeldLock:
    """The recordings folder's ``serve`` lock (``SERVE_LOCK``): shared by ``serve``
    nodes writing to the local disk, exclusive for ``store copy``.  Raises
    ``StartupError`` naming ``recording.dir`` when a conflicting process holds it."""
    root = config.recording.dir
    root.mkdir(parents=True, exist_ok=True)
    try:
        return claim(root / SERVE_LOCK, shared=shared)
    except InUseError:
        holder = (
            'a recproxy node with store = "s3" (its upload spool) or "recproxy store copy"'
            if shared
            else "a running recproxy serve: stop it first"
        )
        raise StartupError(f"recording.dir {root} is in use by {holder}") from None


def _check(bucket: Bucket, s3: S3Settings) -> bool:
    """The bucket answers and exists; an object lock asked of it must be possible; and it
    has no default retention rule, which would lock the wrapped key as well: a key
    that cannot be deleted makes crypto-shredding impossible (recproxy locks each
    segment itself, ``object_lock``, and never the key)."""
    try:
        found = bucket.call(bucket.check(), timeout=20)
    except FileNotFoundError:
        raise StartupError(
            f"recording.s3.bucket {s3.bucket!r}: no such bucket at {s3.endpoint}"
        ) from None
    except OSError as exc:
        raise StartupError(
            f"recording.s3.endpoint {s3.endpoint}: bucket {s3.bucket!r} cannot be reached: "
            f"{exc.strerror or exc}"
        ) from None
    if found.default_retention is not None:
        raise StartupError(
            f"recording.s3.bucket {s3.bucket!r} has a default object-lock retention rule "
            f"({found.default_retention}): it would lock each recording's wrapped key too, "
            "and crypto-shredding must delete that key; remove the bucket's default rule "
            "(recording.s3.object_lock locks the segments, never the key)"
        )
    locked = found.enabled
    if s3.object_lock != "off" and not locked:
        raise StartupError(
            f"recording.s3.object_lock = {s3.object_lock!r}, but bucket {s3.bucket!r} has no "
            "object lock (it can only be enabled when a bucket is created)"
        )
    if not locked:
        log.info("segments: bucket %s has no object lock", s3.bucket)
    return bool(locked)


def credentials(s3: S3Settings) -> tuple[str | None, str | None]:
    """The access key id and secret: from ``credentials_file`` if set, else the
    environment (None each when neither gives them: botocore's own chain then)."""
    if s3.credentials_file is None:
        return os.environ.get(ACCESS_KEY_ENV), os.environ.get(SECRET_KEY_ENV)
    path = Path(s3.credentials_file)
    parser = configparser.ConfigParser()
    try:
        with path.open(encoding="utf-8") as file:
            parser.read_file(file)
    except (OSError, configparser.Error) as exc:
        raise StartupError(f"recording.s3.credentials_file {path}: {exc}") from None
    section = parser["default"] if parser.has_section("default") else None
    key_id = section.get("aws_access_key_id") if section is not None else None
    secret = section.get("aws_secret_access_key") if section is not None else None
    if not key_id or not secret:
        raise StartupError(
            f"recording.s3.credentials_file {path}: needs aws_access_key_id and "
            "aws_secret_access_key in a [default] section"
        )
    return key_id, secret
