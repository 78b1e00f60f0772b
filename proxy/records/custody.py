"""Custody of the recording private key (issue 15): only the key holder — the records
service, or the short-lived process that makes the development key pair — ever reads or
writes it; the SIP-facing call proxy reads only the public key.

The passphrase comes from ``RECPROXY_KEY_PASSPHRASE`` when it is set and not empty, else
from ``records.passphrase_file``: the environment is what the operator gave this one run
(and what ``recproxy export`` reads too), the file the service's standing default.

``python -m proxy.records.custody PUBLIC PRIVATE SIGNING_PRIVATE SIGNING_PUBLIC
[PASSPHRASE_FILE]`` makes the development key pair in its own process (see
:func:`make_development_keys`), so that the call proxy never has the private key in its
memory, not even once, at first start; and, when the installation has no export-signing
key either, a development signing key pair beside it (so subject access bundles can be
signed on the embedded defaults), protected by the same passphrase.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..config import Config
from ..startup import StartupError
from ..storage import crypto

PASSPHRASE_ENV = "RECPROXY_KEY_PASSPHRASE"
PROTECTED = "passphrase-protected"  # what the key-making process prints when it is
KEYGEN_TIMEOUT = 60.0  # seconds: key generation takes milliseconds; a hang is a fault

Key = TypeVar("Key", X25519PrivateKey, Ed25519PrivateKey)


def key_passphrase(passphrase_file: Path | None) -> bytes | None:
    """The private key's passphrase: the environment's, else the file's first line, else
    None (an unprotected key).  ``StartupError`` naming the key when the file cannot be
    read or is empty."""
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env:
        return from_env.encode()
    if passphrase_file is None:
        return None
    try:
        text = passphrase_file.read_bytes()
    except OSError as exc:
        raise StartupError(
            f"records.passphrase_file {passphrase_file}: {exc.strerror or exc}"
        ) from None
    line = text.splitlines()[0] if text.strip() else b""
    if not line:
        raise StartupError(f"records.passphrase_file {passphrase_file}: the file is empty")
    return line


def load_private_key(config: Config) -> X25519PrivateKey:
    """The recording private key, unlocked with its passphrase; ``StartupError`` naming
    ``recording.private_key`` when it is missing, unreadable or the passphrase is wrong."""
    path = config.recording.private_key
    return _unlocked(config, "recording.private_key", path, crypto.load_private_key)


def load_signing_key(config: Config) -> Ed25519PrivateKey:
    """The export-signing private key (``export.signing_key``), unlocked with the same
    passphrase as the recording key; ``StartupError`` naming the key as above."""
    path = config.export.signing_key
    return _unlocked(config, "export.signing_key", path, crypto.load_signing_key)


def _unlocked(
    config: Config, setting: str, path: Path, load: Callable[[Path, bytes | None], Key]
) -> Key:
    passphrase = key_passphrase(config.records.passphrase_file)
    try:
        return load(path, passphrase)
    except crypto.StorageCryptoError as exc:
        hint = ""
        if isinstance(exc, crypto.PassphraseRequired | crypto.WrongPassphrase):
            hint = f" (set {PASSPHRASE_ENV} or records.passphrase_file)"
        raise StartupError(f"{setting} {path}: {exc}{hint}") from None


def make_development_keys(config: Config) -> bool:
    """Make the development key pair at ``recording.public_key`` and
    ``recording.private_key`` in a short-lived child process (this one never holds the
    private key); whether the private key is passphrase-protected.  ``StartupError`` with
    the child's own line when it fails."""
    passphrase_file = config.records.passphrase_file
    command = [
        sys.executable,
        "-m",
        "proxy.records.custody",
        str(config.recording.public_key),
        str(config.recording.private_key),
        str(config.export.signing_key),
        str(config.export.signing_public_key),
        *([str(passphrase_file)] if passphrase_file is not None else []),
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=KEYGEN_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StartupError(
            f"recording.private_key: cannot make the development key: {exc}"
        ) from None
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise StartupError(why[0])
    return done.stdout.strip() == PROTECTED


def _make(
    public: Path, private: Path, signing: tuple[Path, Path], passphrase_file: Path | None
) -> bool:
    """Make and save a new key pair (and a signing key pair, when there is none at
    ``signing``: private, public); whether they are passphrase-protected."""
    passphrase = key_passphrase(passphrase_file)
    private_key, public_key = crypto.generate_keypair()
    try:
        private.parent.mkdir(parents=True, exist_ok=True)
        public.parent.mkdir(parents=True, exist_ok=True)
        crypto.save_private_key(private, private_key, passphrase)
        crypto.save_public_key(public, public_key)
    except OSError as exc:
        raise StartupError(f"recording.private_key {private}: {exc.strerror or exc}") from None
    signing_private, signing_public = signing
    if not signing_private.exists() and not signing_public.exists():
        signing_key = crypto.generate_signing_key()
        try:
            signing_private.parent.mkdir(parents=True, exist_ok=True)
            signing_public.parent.mkdir(parents=True, exist_ok=True)
            crypto.save_private_key(signing_private, signing_key, passphrase)
            crypto.save_public_key(signing_public, signing_key.public_key())
        except OSError as exc:
            raise StartupError(
                f"export.signing_key {signing_private}: {exc.strerror or exc}"
            ) from None
    return passphrase is not None


def main(argv: list[str]) -> int:
    """The key holder's side of :func:`make_development_keys`."""
    public, private, signing = Path(argv[0]), Path(argv[1]), (Path(argv[2]), Path(argv[3]))
    try:
        protected = _make(public, private, signing, Path(argv[4]) if len(argv) > 4 else None)
    except StartupError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(PROTECTED if protected else "unprotected")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
