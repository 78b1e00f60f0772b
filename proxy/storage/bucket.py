"""One S3-compatible bucket, spoken to from synchronous code through a thread of its own.

The ``SegmentStore`` seam is called synchronously: from the writer thread, from the
retention sweeper and readers (through ``asyncio.to_thread``), and from the records
process.  aiobotocore is asyncio-only, so :class:`Bucket` runs one event loop in a daemon
thread and each synchronous method submits a coroutine to it and waits for the answer
(bounded by a timeout).  The S3 store's uploader runs as tasks on the same loop
(:meth:`Bucket.spawn`), so one client and its connection pool serve both.

aiobotocore rather than the minio SDK: it is asyncio-native (the minio SDK is synchronous
and would need a thread per request), it is botocore underneath (the request signing,
retries, checksums and error codes every S3-compatible server is tested against), and it
speaks the object lock and version APIs by their AWS names.  MinIO, Ceph RGW and AWS S3
all accept it.

Every failure becomes :class:`BucketError` (an ``OSError``, as the seam promises) naming
the object it was about; a missing object is ``FileNotFoundError``.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import errno
import hashlib
import logging
import threading
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)

LockMode = Literal["off", "governance", "compliance"]
LOCK_MODES: tuple[LockMode, ...] = ("off", "governance", "compliance")

_T = TypeVar("_T")
_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchVersion"}
_NO_LOCK = {"ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration"}
_REFUSED = {"AccessDenied", "InvalidRequest", "ObjectLocked"}  # what a lock answers


class BucketError(OSError):
    """A bucket request failed (network, credentials, the server); ``filename`` is the
    object key or the bucket."""


@dataclass(frozen=True, slots=True)
class BucketSettings:
    """Where the bucket is, and who we are to it (credentials never come from the TOML)."""

    endpoint: str
    bucket: str
    region: str
    access_key_id: str | None = None
    secret_access_key: str | None = None
    timeout_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class Deleted:
    """What deleting every version of an object did: versions gone, and the versions an
    object lock refused."""

    removed: int
    refused: int


@dataclass(frozen=True, slots=True)
class ObjectLock:
    """A bucket's object-lock configuration: enabled, and its default retention rule
    ("COMPLIANCE, 1 days"), which would lock every object put, the wrapped key too."""

    enabled: bool
    default_retention: str | None = None


def _describe(rule: dict[str, Any]) -> str:
    period = f"{rule['Days']} days" if "Days" in rule else f"{rule.get('Years')} years"
    return f"{rule.get('Mode', '?')}, {period}"


class Bucket:
    """A bucket client on a loop thread of its own (see the module docstring).
    :meth:`close` stops the thread; closing twice is harmless."""

    def __init__(self, settings: BucketSettings) -> None:
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="s3-bucket", daemon=True
        )
        self._thread.start()
        self._exit = contextlib.AsyncExitStack()
        self._client: Any = None
        try:
            self._client = self.call(self._open())
        except BaseException:
            self._stop_thread()
            raise

    async def _open(self) -> Any:
        s = self.settings
        config = AioConfig(
            connect_timeout=min(5.0, s.timeout_seconds),
            read_timeout=s.timeout_seconds,
            retries={"max_attempts": 2, "mode": "standard"},
            # our own SHA-256 check reads every object back; no CRC trailer needed
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return await self._exit.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=s.endpoint,
                region_name=s.region,
                aws_access_key_id=s.access_key_id,
                aws_secret_access_key=s.secret_access_key,
                config=config,
            )
        )

    # --- from other threads -------------------------------------------------------------

    def call(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        """Run ``coro`` on the bucket's loop and wait for it (never from that loop)."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        wait = timeout if timeout is not None else self.settings.timeout_seconds * 2
        try:
            return future.result(wait)
        except TimeoutError:
            future.cancel()
            raise BucketError(
                errno.ETIMEDOUT, "the bucket did not answer", self.settings.bucket
            ) from None

    def spawn(self, coro: Coroutine[Any, Any, None]) -> concurrent.futures.Future[None]:
        """Start ``coro`` as a task on the bucket's loop (the uploader's workers)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def call_soon(self, callback: Any, *args: object) -> None:
        self._loop.call_soon_threadsafe(callback, *args)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self.call(self._exit.aclose(), timeout=10)
        self._stop_thread()

    def _stop_thread(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()

    # --- coroutines, on the bucket's loop -------------------------------------------------

    async def check(self) -> ObjectLock:
        """The bucket is there and answers; returns its object-lock configuration."""
        await self._request(
            self.settings.bucket, self._client.head_bucket(Bucket=self.settings.bucket)
        )
        try:
            answer = await self._client.get_object_lock_configuration(Bucket=self.settings.bucket)
        except ClientError as exc:
            if _code(exc) in _NO_LOCK:
                return ObjectLock(enabled=False)
            raise _error(exc, self.settings.bucket) from None
        except BotoCoreError as exc:
            raise _error(exc, self.settings.bucket) from None
        config = answer.get("ObjectLockConfiguration", {})
        default = config.get("Rule", {}).get("DefaultRetention")
        return ObjectLock(
            enabled=config.get("ObjectLockEnabled") == "Enabled",
            default_retention=_describe(default) if default else None,
        )

    async def put(
        self,
        key: str,
        data: bytes,
        *,
        lock: LockMode = "off",
        retain_until: datetime | None = None,
    ) -> None:
        """Store ``data`` at ``key``; with a lock mode and a date, under retention."""
        # S3 asks for an integrity header on every put to a bucket with object lock (with
        # or without lock headers): Content-MD5 is the one all S3-compatible servers take
        extra: dict[str, Any] = {
            "ContentMD5": base64.b64encode(hashlib.md5(data).digest()).decode()
        }
        if lock != "off" and retain_until is not None:
            extra["ObjectLockMode"] = lock.upper()
            extra["ObjectLockRetainUntilDate"] = retain_until
        await self._request(
            key,
            self._client.put_object(Bucket=self.settings.bucket, Key=key, Body=data, **extra),
        )

    async def get(self, key: str) -> bytes:
        answer = await self._request(
            key, self._client.get_object(Bucket=self.settings.bucket, Key=key)
        )
        async with answer["Body"] as stream:
            try:
                return bytes(await stream.read())
            except (TimeoutError, BotoCoreError, OSError) as exc:
                raise BucketError(errno.EIO, f"reading the object: {exc}", key) from None

    async def head(self, key: str) -> dict[str, Any] | None:
        """The object's metadata (retention included), or None when there is none."""
        try:
            answer: dict[str, Any] = await self._request(
                key, self._client.head_object(Bucket=self.settings.bucket, Key=key)
            )
        except FileNotFoundError:
            return None
        return answer

    async def keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (all pages)."""
        found: list[str] = []
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            answer = await self._request(
                prefix,
                self._client.list_objects_v2(Bucket=self.settings.bucket, Prefix=prefix, **extra),
            )
            found.extend(item["Key"] for item in answer.get("Contents", ()))
            token = answer.get("NextContinuationToken")
            if not answer.get("IsTruncated") or not token:
                return found

    async def delete_all_versions(self, prefix: str) -> Deleted:
        """Delete every version (and delete marker) of every key under ``prefix``.  A plain
        DELETE in a versioned bucket (object lock needs versioning) only adds a delete
        marker and leaves the bytes readable, which would defeat crypto-shredding; so each
        version goes by its id.  Versions a lock refuses are counted, not raised."""
        removed = refused = 0
        marker: dict[str, str] = {}
        while True:
            answer = await self._request(
                prefix,
                self._client.list_object_versions(
                    Bucket=self.settings.bucket, Prefix=prefix, **marker
                ),
            )
            for item in [*answer.get("Versions", ()), *answer.get("DeleteMarkers", ())]:
                try:
                    await self._request(
                        item["Key"],
                        self._client.delete_object(
                            Bucket=self.settings.bucket,
                            Key=item["Key"],
                            VersionId=item["VersionId"],
                        ),
                    )
                    removed += 1
                except _Refused:
                    refused += 1
            if not answer.get("IsTruncated"):
                return Deleted(removed, refused)
            marker = {
                "KeyMarker": answer["NextKeyMarker"],
                "VersionIdMarker": answer["NextVersionIdMarker"],
            }

    async def _request(self, about: str, request: Awaitable[Any]) -> Any:
        try:
            return await request
        except ClientError as exc:
            raise _error(exc, about) from None
        except (TimeoutError, BotoCoreError, OSError) as exc:
            raise BucketError(errno.EIO, f"{self.settings.endpoint}: {exc}", about) from None


class _Refused(BucketError):
    """An object lock (or the bucket's policy) refused a deletion."""


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _error(exc: ClientError | BotoCoreError, about: str) -> OSError:
    if isinstance(exc, BotoCoreError):
        return BucketError(errno.EIO, str(exc), about)
    code = _code(exc)
    message = exc.response.get("Error", {}).get("Message") or code
    if code in _MISSING or code == "NoSuchBucket":
        return FileNotFoundError(errno.ENOENT, f"{code}: {message}", about)
    if code in _REFUSED:
        return _Refused(errno.EACCES, f"{code}: {message}", about)
    return BucketError(errno.EIO, f"{code}: {message}", about)
