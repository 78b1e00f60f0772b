"""Signed export bundles (issue 16): one folder a recipient can prove intact, offline.

A bundle is a folder of exported files plus three of its own:

- ``manifest.json``: canonical JSON (RFC 8785 for the types used: objects with sorted
  keys, no whitespace, UTF-8, integers and strings only) naming every other file with its
  size and SHA-256, the case, the recordings and parts, who exported it, when and why,
  and the SHA-256 of the signing key;
- ``manifest.sig``: canonical JSON holding the manifest's SHA-256 and the Ed25519
  signature, by the installation's export-signing key, of ``SIGNED_LABEL`` followed by
  that SHA-256 in hex.  Signing the digest (not the file) lets a verifier say which of
  the two files was altered: a signature that fails means ``manifest.sig``, a digest
  that differs means ``manifest.json``;
- ``signing-key.pub``: the signer's public key (PEM), so a recipient holding only the
  organisation's published SHA-256 of it can pin it.

:class:`BundleDraft` writes into a hidden sibling folder and renames it onto the
bundle's name only once every file, the manifest and the signature are written and
fsynced: a crash or a full disk leaves no folder under the bundle's name, so nothing
partial ever looks complete.  :func:`verify_bundle` checks a folder or a ZIP of it;
``docs/bundle-format.md`` specifies the format for an independent verifier.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import AsyncIterable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, BinaryIO, Self

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..storage import crypto
from ..storage.output_file import claim_output

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
SIGNING_KEY = "signing-key.pub"
RESERVED = frozenset({MANIFEST, SIGNATURE, SIGNING_KEY})
FORMAT = "recproxy-bundle"
VERSION = 1
SIGNED_LABEL = b"recproxy bundle manifest v1\n"
ALGORITHM = "Ed25519"
FILE_MODE = 0o600
FOLDER_MODE = 0o700
_READ_SIZE = 1 << 16
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")


class BundleError(Exception):
    """A bundle cannot be written where or as asked (one line, for the person)."""


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON for the types a manifest holds (floats are refused: the
    manifest has none, and their canonical form is where serialisers disagree)."""
    _refuse_floats(value)
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode()


def _refuse_floats(value: Any) -> None:
    if isinstance(value, float):
        raise ValueError("a manifest holds no floating-point numbers")
    if isinstance(value, dict):
        for item in value.values():
            _refuse_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_floats(item)


def check_file_name(name: str) -> str:
    """A bundle file's name: a relative POSIX path of plain parts, not a reserved name."""
    parts = name.split("/")
    if (
        not name
        or name in RESERVED
        or any(part in ("", ".", "..") for part in parts)
        or any(c in name for c in "\\\0")
    ):
        raise ValueError(f"{name!r} is not a bundle file name")
    return name


@dataclass(frozen=True, slots=True)
class Gap:
    """Audio missing from an interrupted recording, in milliseconds from its start."""

    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class BundleRecording:
    """One recording in a bundle: the parts released and the files made from them."""

    recording_id: str
    parts: tuple[int, ...]
    files: tuple[str, ...]
    state: str = "complete"  # the recording's state; "interrupted" ones list their gaps
    gaps: tuple[Gap, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "recording_id": self.recording_id,
            "parts": list(self.parts),
            "files": list(self.files),
            "state": self.state,
            "gaps": [{"start_ms": g.start_ms, "end_ms": g.end_ms} for g in self.gaps],
        }


@dataclass(frozen=True, slots=True)
class BundleInfo:
    """What a manifest says besides its files: the case, who exported it, when, why."""

    case_id: str
    exported_by: str
    exported_at: datetime
    purpose: str
    reason: str
    recordings: tuple[BundleRecording, ...]


@dataclass(frozen=True, slots=True)
class BundleFile:
    name: str
    size: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True, slots=True)
class SealedBundle:
    """A bundle in place: its folder, its listed files, and the manifest's SHA-256."""

    path: Path
    files: tuple[BundleFile, ...]
    manifest_sha256: str
    signing_key_sha256: str


def manifest_document(
    info: BundleInfo, files: Iterable[BundleFile], signing_key: Ed25519PublicKey
) -> dict[str, Any]:
    """The manifest as a JSON value (files sorted by name)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "case_id": info.case_id,
        "exported_by": info.exported_by,
        "exported_at": info.exported_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "purpose": info.purpose,
        "reason": info.reason,
        "recordings": [recording.as_dict() for recording in info.recordings],
        "files": [f.as_dict() for f in sorted(files, key=lambda f: f.name)],
        "signing_key_sha256": crypto.public_key_sha256(signing_key),
    }


def signature_document(manifest: bytes, key: Ed25519PrivateKey) -> bytes:
    """``manifest.sig``'s bytes for the manifest ``manifest``."""
    digest = hashlib.sha256(manifest).hexdigest()
    signature = key.sign(SIGNED_LABEL + digest.encode())
    return canonical_json(
        {"algorithm": ALGORITHM, "manifest_sha256": digest, "signature": signature.hex()}
    )


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
        import asyncio

        with self._writing(name) as write:
            async for chunk in chunks:
                await asyncio.to_thread(write, chunk)
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
        _fsync_folder(self.folder)
        _check_free(self.out)
        try:
            os.rename(self.folder, self.out)
        except OSError as exc:
            raise BundleError(f"cannot put {self.out} in place: {exc.strerror}") from None
        _fsync_folder(self.out.parent)
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


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def zip_bundle(bundle: Path, out: Path, *, force: bool = False) -> Path:
    """A ZIP of a sealed bundle folder: every file under one top folder named like the
    bundle, stored (audio does not compress), written whole or not at all."""
    names = sorted(_folder_files(bundle))
    with claim_output(out, force=force) as stream, zipfile.ZipFile(stream, "w") as archive:
        for name in names:
            info = zipfile.ZipInfo(f"{bundle.name}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | FILE_MODE) << 16
            with (bundle / name).open("rb") as source, archive.open(info, "w") as target:
                shutil.copyfileobj(source, target, _READ_SIZE)
    return out


# ---------------------------------------------------------------------------------------
# Verifying


class Problem(Enum):
    ALTERED = "altered"
    MISSING = "missing"
    EXTRA = "extra"
    UNTRUSTED = "untrusted"  # signed, but not by the key the verifier trusts


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """The signing key a verifier trusts, by the SHA-256 of its raw public key (the
    value ``recproxy keygen --signing`` prints and audits)."""

    sha256: str

    def __post_init__(self) -> None:
        if _HEX64.fullmatch(self.sha256) is None:
            raise ValueError(f"{self.sha256!r} is not the 64 hex digits of a key's SHA-256")

    @classmethod
    def of(cls, key: Ed25519PublicKey) -> TrustedKey:
        return cls(crypto.public_key_sha256(key))


@dataclass(frozen=True, slots=True)
class BundleFault:
    """The first thing wrong with a bundle: which file, and how."""

    name: str
    problem: Problem
    why: str

    def __str__(self) -> str:
        return f"{self.name}: {self.problem.value}: {self.why}"


@dataclass(frozen=True, slots=True)
class BundleVerdict:
    """What :func:`verify_bundle` found.  ``fault`` is None when the bundle is intact;
    ``manifest`` is the signed manifest once its signature checked out."""

    signing_key_sha256: str | None
    pinned: bool  # checked against a trusted key (else only against the bundle's own)
    manifest: Mapping[str, Any] | None = None
    fault: BundleFault | None = None
    checked: tuple[str, ...] = field(default=())

    @property
    def intact(self) -> bool:
        return self.fault is None


class _Source:
    """A bundle's files by name, from a folder or a ZIP, read without following links."""

    def names(self) -> list[str]:
        raise NotImplementedError

    def size(self, name: str) -> int | None:
        raise NotImplementedError

    def chunks(self, name: str, limit: int) -> Iterator[bytes]:
        raise NotImplementedError

    def read(self, name: str, limit: int = 1 << 20) -> bytes | None:
        if self.size(name) is None:
            return None
        return b"".join(self.chunks(name, limit))


class _Folder(_Source):
    def __init__(self, root: Path) -> None:
        self.root = root

    def names(self) -> list[str]:
        return _folder_files(self.root, regular_only=False)

    def size(self, name: str) -> int | None:
        try:
            found = os.lstat(self.root / name)
        except OSError:
            return None
        return found.st_size if stat.S_ISREG(found.st_mode) else None

    def chunks(self, name: str, limit: int) -> Iterator[bytes]:
        fd = os.open(self.root / name, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as stream:
            while limit > 0 and (chunk := stream.read(min(_READ_SIZE, limit))):
                limit -= len(chunk)
                yield chunk


class _Zip(_Source):
    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        entries = [i for i in archive.infolist() if not i.is_dir()]
        tops = {i.filename.split("/", 1)[0] for i in entries if "/" in i.filename}
        flat = any("/" not in i.filename for i in entries)
        self.prefix = f"{tops.pop()}/" if len(tops) == 1 and not flat else ""
        self.entries: dict[str, list[zipfile.ZipInfo]] = {}
        for info in entries:
            self.entries.setdefault(info.filename.removeprefix(self.prefix), []).append(info)

    def names(self) -> list[str]:
        # an entry given twice is the same name twice: the second one is extra
        return [name for name, infos in self.entries.items() for _ in infos]

    def size(self, name: str) -> int | None:
        infos = self.entries.get(name)
        return infos[0].file_size if infos else None

    def chunks(self, name: str, limit: int) -> Iterator[bytes]:
        with self.archive.open(self.entries[name][0]) as stream:
            while limit > 0 and (chunk := stream.read(min(_READ_SIZE, limit))):
                limit -= len(chunk)
                yield chunk


def _folder_files(root: Path, *, regular_only: bool = True) -> list[str]:
    """Every non-folder entry under ``root`` (links and special files too, unless
    ``regular_only``), as POSIX paths relative to it."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        base = Path(folder).relative_to(root)
        for name in sorted(files):
            relative = (base / name).as_posix()
            if not regular_only or stat.S_ISREG(os.lstat(root / relative).st_mode):
                found.append(relative)
    return found


def verify_bundle(path: Path, trusted: TrustedKey | None = None) -> BundleVerdict:
    """Check a bundle folder, or a ZIP of one, offline.

    In order: the signature file, the signing key (against ``trusted`` when given; with
    none the bundle's own key is used and ``pinned`` is False), the signature, the
    manifest's SHA-256, then every file in name order — listed and present, the same
    size and SHA-256 — and no file beyond those listed.  The verdict names the first
    fault.  ``OSError`` or ``zipfile.BadZipFile`` when ``path`` cannot be read at all."""
    if path.is_dir():
        return _verify(_Folder(path), trusted)
    with zipfile.ZipFile(path) as archive:
        return _verify(_Zip(archive), trusted)


def _verify(source: _Source, trusted: TrustedKey | None) -> BundleVerdict:
    pinned = trusted is not None
    verdict = _Verdicts(pinned)
    signed = source.read(SIGNATURE)
    if signed is None:
        return verdict.fault(SIGNATURE, Problem.MISSING, "the bundle has no signature")
    record = _signature_record(signed)
    if record is None:
        return verdict.fault(SIGNATURE, Problem.ALTERED, "not a recproxy manifest signature")
    digest, signature = record
    pem = source.read(SIGNING_KEY)
    if pem is None:
        return verdict.fault(SIGNING_KEY, Problem.MISSING, "the signer's public key is missing")
    try:
        key = crypto.parse_signing_public_key(pem, SIGNING_KEY)
    except crypto.KeyFileError:
        return verdict.fault(SIGNING_KEY, Problem.ALTERED, "not an Ed25519 public key")
    if crypto.public_key_pem(key) != pem:
        return verdict.fault(SIGNING_KEY, Problem.ALTERED, "not the key's canonical PEM form")
    key_sha256 = crypto.public_key_sha256(key)
    verdict.key_sha256 = key_sha256
    if trusted is not None and key_sha256 != trusted.sha256:
        return verdict.fault(
            SIGNING_KEY,
            Problem.UNTRUSTED,
            f"signed by key {key_sha256}, not the trusted key {trusted.sha256}",
        )
    if not crypto.signature_valid(key, signature, SIGNED_LABEL + digest.encode()):
        return verdict.fault(
            SIGNATURE, Problem.ALTERED, f"the signature does not verify with {SIGNING_KEY}"
        )
    manifest_bytes = source.read(MANIFEST, limit=64 << 20)
    if manifest_bytes is None:
        return verdict.fault(MANIFEST, Problem.MISSING, "the signed manifest is missing")
    if hashlib.sha256(manifest_bytes).hexdigest() != digest:
        return verdict.fault(MANIFEST, Problem.ALTERED, "its SHA-256 is not the one signed")
    manifest = _manifest(manifest_bytes)
    if manifest is None or manifest["signing_key_sha256"] != key_sha256:
        return verdict.fault(MANIFEST, Problem.ALTERED, "signed, but not a valid manifest")
    verdict.manifest = manifest
    return _check_files(source, manifest, verdict)


def _check_files(source: _Source, manifest: Mapping[str, Any], verdict: _Verdicts) -> BundleVerdict:
    listed = {entry["name"]: entry for entry in manifest["files"]}
    present = [name for name in source.names() if name not in RESERVED]
    seen: set[str] = set()
    extra = []
    for name in present:
        if name in seen or name not in listed:
            extra.append(name)
        seen.add(name)
    for name in sorted({*listed, *extra}):
        if name in extra:
            return verdict.fault(name, Problem.EXTRA, "not listed in the manifest")
        entry = listed[name]
        size = source.size(name)
        if size is None:
            return verdict.fault(name, Problem.MISSING, "listed in the manifest, not in the bundle")
        if size != entry["size"]:
            return verdict.fault(
                name, Problem.ALTERED, f"{size} bytes, the manifest says {entry['size']}"
            )
        digest = hashlib.sha256()
        try:
            for chunk in source.chunks(name, entry["size"] + 1):
                digest.update(chunk)
        except (OSError, zipfile.BadZipFile) as exc:
            return verdict.fault(name, Problem.ALTERED, f"unreadable: {exc}")
        if digest.hexdigest() != entry["sha256"]:
            return verdict.fault(name, Problem.ALTERED, "its SHA-256 is not the manifest's")
    return verdict.done(tuple(sorted(listed)))


class _Verdicts:
    """The verdict being built: the key found so far, and the manifest once signed."""

    def __init__(self, pinned: bool) -> None:
        self.pinned = pinned
        self.key_sha256: str | None = None
        self.manifest: Mapping[str, Any] | None = None

    def fault(self, name: str, problem: Problem, why: str) -> BundleVerdict:
        return BundleVerdict(
            self.key_sha256, self.pinned, self.manifest, BundleFault(name, problem, why)
        )

    def done(self, checked: tuple[str, ...]) -> BundleVerdict:
        return BundleVerdict(self.key_sha256, self.pinned, self.manifest, None, checked)


def _signature_record(data: bytes) -> tuple[str, bytes] | None:
    """The signed digest and the signature of ``manifest.sig``, if it is exactly the
    canonical form the signer writes (any other byte sequence is an alteration)."""
    try:
        record = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if (
        not isinstance(record, dict)
        or set(record) != {"algorithm", "manifest_sha256", "signature"}
        or record["algorithm"] != ALGORITHM
        or not isinstance(record["manifest_sha256"], str)
        or not isinstance(record["signature"], str)
        or _HEX64.fullmatch(record["manifest_sha256"]) is None
        or _HEX128.fullmatch(record["signature"]) is None
        or canonical_json(record) != data
    ):
        return None
    return record["manifest_sha256"], bytes.fromhex(record["signature"])


def _manifest(data: bytes) -> Mapping[str, Any] | None:
    """The manifest's value when it has the shape :func:`manifest_document` writes."""
    try:
        manifest = json.loads(data)
        files = manifest["files"]
        names = [check_file_name(entry["name"]) for entry in files]
        good = (
            manifest["format"] == FORMAT
            and manifest["version"] == VERSION
            and len(set(names)) == len(names)
            and all(
                isinstance(entry["size"], int)
                and isinstance(entry["sha256"], str)
                and _HEX64.fullmatch(entry["sha256"]) is not None
                for entry in files
            )
        )
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        return None
    return manifest if good and isinstance(manifest, dict) else None
