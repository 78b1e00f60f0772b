"""Verifying a bundle, a folder or a ZIP of it, offline: the signature against a trusted
key, then every file against the signed manifest; the first fault, named."""

from __future__ import annotations

import abc
import hashlib
import os
import stat
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ...storage import crypto
from .format import (
    HEX64,
    MANIFEST,
    READ_SIZE,
    RESERVED,
    SIGNATURE,
    SIGNED_LABEL,
    SIGNING_KEY,
    folder_files,
    parse_manifest,
    signature_record,
)


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
        if HEX64.fullmatch(self.sha256) is None:
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


class _Unreadable(Exception):
    """A bundle file that is there but cannot be read (a ZIP entry failing its CRC)."""

    def __init__(self, name: str, cause: Exception) -> None:
        super().__init__(f"unreadable: {cause}")
        self.name = name


class _Source(abc.ABC):
    """A bundle's files by name, from a folder or a ZIP, read without following links."""

    @abc.abstractmethod
    def names(self) -> list[str]:
        """Every file's name, once per copy (a name twice is an extra file)."""

    @abc.abstractmethod
    def size(self, name: str) -> int | None:
        """A regular file's size; None when there is none of that name."""

    @abc.abstractmethod
    def chunks(self, name: str, limit: int) -> Iterator[bytes]:
        """The file's first ``limit`` bytes at most, in pieces."""

    def read(self, name: str, limit: int = 1 << 20) -> bytes | None:
        if self.size(name) is None:
            return None
        try:
            return b"".join(self.chunks(name, limit))
        except (OSError, zipfile.BadZipFile) as exc:
            raise _Unreadable(name, exc) from exc


class _Folder(_Source):
    def __init__(self, root: Path) -> None:
        self.root = root

    def names(self) -> list[str]:
        return folder_files(self.root, regular_only=False)

    def size(self, name: str) -> int | None:
        try:
            found = os.lstat(self.root / name)
        except OSError:
            return None
        return found.st_size if stat.S_ISREG(found.st_mode) else None

    def chunks(self, name: str, limit: int) -> Iterator[bytes]:
        fd = os.open(self.root / name, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as stream:
            while limit > 0 and (chunk := stream.read(min(READ_SIZE, limit))):
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
            while limit > 0 and (chunk := stream.read(min(READ_SIZE, limit))):
                limit -= len(chunk)
                yield chunk


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
    verdict = _Verdicts(pinned=trusted is not None)
    try:
        return _verify_signed(source, trusted, verdict)
    except _Unreadable as exc:
        return verdict.fault(exc.name, Problem.ALTERED, str(exc))


def _verify_signed(
    source: _Source, trusted: TrustedKey | None, verdict: _Verdicts
) -> BundleVerdict:
    signed = source.read(SIGNATURE)
    if signed is None:
        return verdict.fault(SIGNATURE, Problem.MISSING, "the bundle has no signature")
    record = signature_record(signed)
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
    manifest = parse_manifest(manifest_bytes)
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
        if size is None and name in seen:
            return verdict.fault(name, Problem.ALTERED, "not a regular file (a link?)")
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
            raise _Unreadable(name, exc) from exc
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
