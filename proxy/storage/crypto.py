"""The organisation key pair, the wrapping of per-recording data keys, and the
installation's export-signing key.

Every recording is encrypted under its own random 32-byte *data key*.  The data key is
stored beside the audio only in wrapped form: encrypted to the organisation's X25519
public key (ephemeral X25519 key agreement, HKDF-SHA256, AES-256-GCM).  The proxy
process holds only the public key, so a stolen recording host yields no audio; playback
and export unwrap with the private key, kept by the access service under a passphrase.

The wrapped-key layout (the ``key`` file of a recording) is specified byte by byte in
``docs/recording-format.md``; the constants below are the ones it names.

The export-signing key (Ed25519, ``recproxy keygen --signing``) signs the manifest of
every export bundle (:mod:`proxy.records.bundle`), so that a recipient can later prove
the bundle is what the installation exported.  Its files use the same PEM forms and the
same passphrase handling as the organisation key; only the key type differs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import struct
import uuid
from pathlib import Path

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

log = logging.getLogger(__name__)

DATA_KEY_SIZE = 32
WRAP_MAGIC = b"RECPXKEY"
WRAP_VERSION = 1
WRAP_SCHEME_X25519_HKDF_SHA256_AES256GCM = 1
WRAP_HKDF_LABEL = b"recproxy key-wrap v1"
# magic, version, scheme, recording id, recipient public key, ephemeral public key, nonce
_WRAP_HEAD = struct.Struct(">8sBB16s32s32s12s")
WRAPPED_KEY_SIZE = _WRAP_HEAD.size + DATA_KEY_SIZE + 16  # 150 bytes

_PRIVATE_KEY_MODE = 0o600
_PUBLIC_KEY_MODE = 0o644


class StorageCryptoError(Exception):
    """Base class of the key errors of ``proxy.storage.crypto``."""


class KeyFileError(StorageCryptoError):
    """A key file cannot be read or does not hold a usable key."""


class PassphraseRequired(KeyFileError):
    """The private key file is encrypted and no passphrase was given."""


class WrongPassphrase(KeyFileError):
    """The passphrase does not decrypt the private key file."""


class NotX25519Key(KeyFileError):
    """The file holds a key, but not an X25519 key."""


class NotEd25519Key(KeyFileError):
    """The file holds a key, but not an Ed25519 (export-signing) key."""


class WrappedKeyError(StorageCryptoError):
    """A wrapped data key is malformed, altered, or belongs to another recording."""


class WrongPrivateKey(WrappedKeyError):
    """The data key was wrapped to another organisation key than the one given."""


def generate_keypair() -> tuple[X25519PrivateKey, X25519PublicKey]:
    """A fresh organisation key pair."""
    private = X25519PrivateKey.generate()
    return private, private.public_key()


PublicKey = X25519PublicKey | Ed25519PublicKey
PrivateKey = X25519PrivateKey | Ed25519PrivateKey


def public_key_bytes(key: PublicKey) -> bytes:
    """The 32-byte raw form of a public key (RFC 7748)."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_sha256(key: PublicKey) -> str:
    """SHA-256 of the raw public key, in hex: how the audit log names a key."""
    return hashlib.sha256(public_key_bytes(key)).hexdigest()


def key_fingerprint(key: PublicKey) -> str:
    """A short, stable name for a public key: the first 16 hex digits of SHA-256(raw)."""
    return public_key_sha256(key)[:16]


def _write_new_file(path: Path, data: bytes, mode: int, overwrite: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def save_private_key(
    path: str | os.PathLike[str],
    key: PrivateKey,
    passphrase: bytes | None,
    *,
    overwrite: bool = False,
) -> None:
    """Write the private key as PKCS#8 PEM, file mode 0600.

    With a passphrase the PEM is encrypted (``BestAvailableEncryption``).  An existing
    file is refused unless ``overwrite`` is set: losing the organisation key loses every
    recording made under it.
    """
    if passphrase is not None and not passphrase:
        raise ValueError("the passphrase must not be empty (use None for an unencrypted key)")
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase is not None
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    _write_new_file(Path(path), pem, _PRIVATE_KEY_MODE, overwrite)


def load_private_key(path: str | os.PathLike[str], passphrase: bytes | None) -> X25519PrivateKey:
    """Read an organisation private key written by :func:`save_private_key`.

    Raises :class:`PassphraseRequired`, :class:`WrongPassphrase`, :class:`NotX25519Key` or
    :class:`KeyFileError` (unreadable file, not a PEM private key), each naming the file.
    """
    key = _load_pem_private_key(Path(path), passphrase)
    if not isinstance(key, X25519PrivateKey):
        raise NotX25519Key(f"{path} holds a {type(key).__name__}, not an X25519 private key")
    return key


def load_signing_key(path: str | os.PathLike[str], passphrase: bytes | None) -> Ed25519PrivateKey:
    """Read an export-signing private key; the errors of :func:`load_private_key`, with
    :class:`NotEd25519Key` for a key of another type (the recording key, say)."""
    key = _load_pem_private_key(Path(path), passphrase)
    if not isinstance(key, Ed25519PrivateKey):
        raise NotEd25519Key(f"{path} holds a {type(key).__name__}, not an Ed25519 signing key")
    return key


def _load_pem_private_key(path: Path, passphrase: bytes | None) -> object:
    """Any PEM private key in ``path``, decrypted with ``passphrase`` if it is encrypted."""
    try:
        pem = path.read_bytes()
        mode = path.stat().st_mode
    except OSError as exc:
        raise KeyFileError(f"cannot read private key file {path}: {exc.strerror}") from exc
    if mode & 0o077:
        log.warning("private key file %s is readable by other users (mode %o)", path, mode & 0o777)
    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in pem
    if encrypted and passphrase is None:
        raise PassphraseRequired(f"private key file {path} is encrypted: a passphrase is needed")
    try:
        key = serialization.load_pem_private_key(pem, passphrase if encrypted else None)
    except ValueError as exc:
        if encrypted:
            raise WrongPassphrase(f"wrong passphrase for private key file {path}") from exc
        raise KeyFileError(f"{path} does not hold a PEM private key: {exc}") from exc
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{path} does not hold a usable private key: {exc}") from exc
    if passphrase is not None and not encrypted:
        log.warning("private key file %s is not encrypted; the passphrase was not needed", path)
    return key


def save_public_key(
    path: str | os.PathLike[str], key: PublicKey, *, overwrite: bool = False
) -> None:
    """Write the public key as PEM SubjectPublicKeyInfo (what the proxy is configured with)."""
    _write_new_file(Path(path), public_key_pem(key), _PUBLIC_KEY_MODE, overwrite)


def public_key_pem(key: PublicKey) -> bytes:
    """The one PEM SubjectPublicKeyInfo text of a public key (what its file holds)."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(path: str | os.PathLike[str]) -> X25519PublicKey:
    """Read an organisation public key written by :func:`save_public_key`."""
    key = _load_pem_public_key(Path(path))
    if not isinstance(key, X25519PublicKey):
        raise NotX25519Key(f"{path} holds a {type(key).__name__}, not an X25519 public key")
    return key


def load_signing_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Read an export-signing public key (``signing.pub``, a bundle's ``signing-key.pub``)."""
    return parse_signing_public_key(_read_public_pem(Path(path)), str(path))


def parse_signing_public_key(pem: bytes, where: str) -> Ed25519PublicKey:
    """The Ed25519 public key of a PEM text; :class:`KeyFileError` naming ``where``."""
    key = _parse_pem_public_key(pem, where)
    if not isinstance(key, Ed25519PublicKey):
        raise NotEd25519Key(f"{where} holds a {type(key).__name__}, not an Ed25519 public key")
    return key


def _read_public_pem(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read public key file {path}: {exc.strerror}") from exc


def _load_pem_public_key(path: Path) -> object:
    return _parse_pem_public_key(_read_public_pem(path), str(path))


def _parse_pem_public_key(pem: bytes, where: str) -> object:
    try:
        return serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{where} does not hold a PEM public key: {exc}") from exc


def generate_signing_key() -> Ed25519PrivateKey:
    """A fresh export-signing key (its public half: ``.public_key()``)."""
    return Ed25519PrivateKey.generate()


def signature_valid(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is ``key``'s Ed25519 signature of ``message``."""
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def new_data_key() -> bytes:
    """A fresh random AES-256 data key for one recording."""
    return secrets.token_bytes(DATA_KEY_SIZE)


def _kek(shared: bytes, ephemeral: bytes, recipient: bytes, recording_id: uuid.UUID) -> bytes:
    """The key-encryption key: HKDF-SHA256 over the X25519 shared secret."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=ephemeral + recipient,
        info=WRAP_HKDF_LABEL + recording_id.bytes,
    ).derive(shared)


def wrap_key(data_key: bytes, public_key: X25519PublicKey, recording_id: uuid.UUID) -> bytes:
    """Encrypt ``data_key`` to ``public_key`` for one recording: the ``key`` file's bytes."""
    if len(data_key) != DATA_KEY_SIZE:
        raise ValueError(f"a data key is {DATA_KEY_SIZE} bytes, not {len(data_key)}")
    ephemeral = X25519PrivateKey.generate()
    ephemeral_raw = public_key_bytes(ephemeral.public_key())
    recipient_raw = public_key_bytes(public_key)
    kek = _kek(ephemeral.exchange(public_key), ephemeral_raw, recipient_raw, recording_id)
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(kek).encrypt(nonce, data_key, recording_id.bytes)
    head = _WRAP_HEAD.pack(
        WRAP_MAGIC,
        WRAP_VERSION,
        WRAP_SCHEME_X25519_HKDF_SHA256_AES256GCM,
        recording_id.bytes,
        recipient_raw,
        ephemeral_raw,
        nonce,
    )
    return head + sealed


def wrapped_key_recording_id(blob: bytes) -> uuid.UUID:
    """The recording id a wrapped key names (unauthenticated: for messages and checks)."""
    _check_wrapped_layout(blob)
    return uuid.UUID(bytes=blob[10:26])


def _check_wrapped_layout(blob: bytes) -> None:
    if len(blob) != WRAPPED_KEY_SIZE:
        raise WrappedKeyError(f"a wrapped key is {WRAPPED_KEY_SIZE} bytes, this one {len(blob)}")
    magic, version, scheme = blob[:8], blob[8], blob[9]
    if magic != WRAP_MAGIC:
        raise WrappedKeyError(f"not a wrapped recording key (magic {magic!r})")
    if version != WRAP_VERSION:
        raise WrappedKeyError(f"unsupported wrapped-key version {version}")
    if scheme != WRAP_SCHEME_X25519_HKDF_SHA256_AES256GCM:
        raise WrappedKeyError(f"unsupported key-wrapping scheme {scheme}")


def unwrap_key(blob: bytes, private_key: X25519PrivateKey, recording_id: uuid.UUID) -> bytes:
    """The data key inside ``blob``, which must have been wrapped for ``recording_id``.

    Raises :class:`WrongPrivateKey` when the blob was wrapped to another organisation key,
    and :class:`WrappedKeyError` when it is malformed, altered, or another recording's.
    """
    _check_wrapped_layout(blob)
    _, _, _, rec_raw, recipient_raw, ephemeral_raw, nonce = _WRAP_HEAD.unpack_from(blob)
    if rec_raw != recording_id.bytes:
        raise WrappedKeyError(
            f"the wrapped key names recording {uuid.UUID(bytes=rec_raw)}, not {recording_id}"
        )
    own_raw = public_key_bytes(private_key.public_key())
    if recipient_raw != own_raw:
        theirs = hashlib.sha256(recipient_raw).hexdigest()[:16]
        ours = hashlib.sha256(own_raw).hexdigest()[:16]
        raise WrongPrivateKey(
            f"recording {recording_id} was wrapped to organisation key {theirs}; "
            f"the private key given is {ours}"
        )
    try:
        ephemeral = X25519PublicKey.from_public_bytes(ephemeral_raw)
        shared = private_key.exchange(ephemeral)
    except ValueError as exc:
        raise WrappedKeyError(
            f"wrapped key of recording {recording_id}: bad ephemeral key"
        ) from exc
    kek = _kek(shared, ephemeral_raw, recipient_raw, recording_id)
    try:
        data_key = AESGCM(kek).decrypt(nonce, blob[_WRAP_HEAD.size :], recording_id.bytes)
    except InvalidTag as exc:
        raise WrappedKeyError(
            f"wrapped key of recording {recording_id} failed authentication (damaged or altered)"
        ) from exc
    return data_key
