"""Writing a bundle: a hidden draft folder beside the bundle's name, renamed onto it only
once every file, the manifest and its signature are written and fsynced."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Self, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ...storage import crypto
from ...storage.output_file import claim_output, fsync_folder
from .format import (
    FILE_MODE,
    FOLDER_MODE,
    MANIFEST,
    READ_SIZE,
    SIGNATURE,
    SIGNING_KEY,
    BundleFile,
    BundleInfo,
    canonical_json,
    check_file_name,
    folder_files,
    manifest_document,
    signature_document,
)

T = TypeVar("T")


async def in_worker(func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in a worker thread, awaited to its end even when the caller is
    cancelled: a draft must not be removed while a thread still writes into it (it could
    make the folder again, or rename a sealed bundle into place after the export ended)."""
    task = asyncio.ensure_future(asyncio.to_thread(func, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise


class BundleError(Exception):
    """A bundle cannot be written where or as asked (one line, for the person)."""


@dataclass(frozen=True, slots=True)
class SealedBundle:
    """A bundle in place: its folder, its listed files, and the manifest's SHA-256."""

    path: Path
    files: tuple[BundleFile, ...]
    manifest_sha256: str
    signing_key_sha256: str


class BundleDraft:
    """A bundle being written, in a hidden folder beside its final name.

    Use it as a context manager: leaving the block by an exception, or without
    :meth:`seal`, removes the draft; :meth:`seal` writes the manifest, signs it and
    renames the folder into place.  File writes are blocking: an event loop calls
    :meth:`add_stream`, which writes in a worker thread."""

    def __init__(self, out: Path) -> None:
        if not out.parent.is_dir():
            raise BundleError(f"{out}: folder {out.parent} does not exist")
        _check_free(out)
        try:
            self.folder = Path(
                tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
            )
        except OSError as exc:
            raise BundleError(f"cannot write in {out.parent}: {exc.strerror}") from None
        self.out = out
        self._files: dict[str, BundleFile] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def add(self, name: str, chunks: Iterable[bytes]) -> BundleFile:
        """Write one file from its bytes in pieces; its size and SHA-256."""
        with self._writing(name) as write:
            for chunk in chunks:
                write(chunk)
        return self._files[name]

    async def add_stream(self, name: str, chunks: AsyncIterable[bytes]) -> BundleFile:
        """:meth:`add` for an asynchronous source (a rendering's ``chunks()``); the disk
        is written by a worker thread, never on the event loop."""
        with self._writing(name) as write:
            async for chunk in chunks:
                await in_worker(write, chunk)
        return self._files[name]

    @contextlib.contextmanager
    def _writing(self, name: str) -> Iterator[Any]:
        check_file_name(name)
        if name in self._files:
            raise ValueError(f"{name} is already in the bundle")
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
        digest, size = hashlib.sha256(), 0
        with _new_file(path) as stream:

            def write(chunk: bytes) -> None:
                nonlocal size
                stream.write(chunk)
                digest.update(chunk)
                size += len(chunk)

            yield write
        self._files[name] = BundleFile(name, size, digest.hexdigest())

    def seal(self, info: BundleInfo, key: Ed25519PrivateKey) -> SealedBundle:
        """Write the manifest, its signature and the public key, then put the bundle in
        place.  Every file a recording names must have been added."""
        for recording in info.recordings:
            for name in recording.files:
                if name not in self._files:
                    raise ValueError(f"{recording.recording_id} names {name}, not in the bundle")
        public = key.public_key()
        manifest = canonical_json(manifest_document(info, self._files.values(), public))
        for name, data in (
            (MANIFEST, manifest),
            (SIGNATURE, signature_document(manifest, key)),
            (SIGNING_KEY, crypto.public_key_pem(public)),
        ):
            with _new_file(self.folder / name) as stream:
                stream.write(data)
        fsync_folder(self.folder)
        _check_free(self.out)
        try:
            os.rename(self.folder, self.out)
        except OSError as exc:
            raise BundleError(f"cannot put {self.out} in place: {exc.strerror}") from None
        fsync_folder(self.out.parent)
        return SealedBundle(
            self.out,
            tuple(sorted(self._files.values(), key=lambda f: f.name)),
            hashlib.sha256(manifest).hexdigest(),
            crypto.public_key_sha256(public),
        )


def _check_free(out: Path) -> None:
    if os.path.lexists(out):
        raise BundleError(f"{out} exists; a bundle is never written over anything")


@contextlib.contextmanager
def _new_file(path: Path) -> Iterator[BinaryIO]:
    """A new file, mode 0600, fsynced when the block ends."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    with os.fdopen(fd, "wb") as stream:
        yield stream
        stream.flush()
        os.fsync(stream.fileno())


def zip_bundle(bundle: Path, out: Path, *, force: bool = False) -> Path:
    """A ZIP of a sealed bundle folder: every file under one top folder named like the
    bundle, stored (audio does not compress), written whole or not at all."""
    names = sorted(folder_files(bundle))
    with claim_output(out, force=force) as stream, zipfile.ZipFile(stream, "w") as archive:
        for name in names:
            info = zipfile.ZipInfo(f"{bundle.name}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | FILE_MODE) << 16
            with (bundle / name).open("rb") as source, archive.open(info, "w") as target:
                shutil.copyfileobj(source, target, READ_SIZE)
    return out
