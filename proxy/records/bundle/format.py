"""The bundle format (``docs/bundle-format.md``): the reserved names, canonical JSON, the
manifest and signature documents, and the typed values a manifest is made from."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ...storage import crypto

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
READ_SIZE = 1 << 16
HEX64 = re.compile(r"[0-9a-f]{64}")
HEX128 = re.compile(r"[0-9a-f]{128}")


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


def folder_files(root: Path, *, regular_only: bool = True) -> list[str]:
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


def signature_record(data: bytes) -> tuple[str, bytes] | None:
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
        or HEX64.fullmatch(record["manifest_sha256"]) is None
        or HEX128.fullmatch(record["signature"]) is None
        or canonical_json(record) != data
    ):
        return None
    return record["manifest_sha256"], bytes.fromhex(record["signature"])


def parse_manifest(data: bytes) -> Mapping[str, Any] | None:
    """The manifest's value when it has the shape :func:`manifest_document` writes."""
    try:
        manifest = json.loads(data)
        files = manifest["files"]
        names = [check_file_name(entry["name"]) for entry in files]
        good = (
            manifest["format"] == FORMAT
            and manifest["version"] == VERSION
            and isinstance(manifest["signing_key_sha256"], str)
            and isinstance(manifest["recordings"], list)
            and len(set(names)) == len(names)
            and all(
                isinstance(entry["size"], int)
                and isinstance(entry["sha256"], str)
                and HEX64.fullmatch(entry["sha256"]) is not None
                for entry in files
            )
        )
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        return None
    return manifest if good and isinstance(manifest, dict) else None
