"""The organisation key pair on disk, and data keys wrapped to it."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from proxy.storage.crypto import (
    WRAPPED_KEY_SIZE,
    KeyFileError,
    NotX25519Key,
    PassphraseRequired,
    WrappedKeyError,
    WrongPassphrase,
    WrongPrivateKey,
    generate_keypair,
    load_private_key,
    load_public_key,
    new_data_key,
    public_key_bytes,
    save_private_key,
    save_public_key,
    unwrap_key,
    wrap_key,
)

RID = uuid.UUID("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0")


def test_private_key_round_trip_with_passphrase_is_mode_0600(tmp_path: Path) -> None:
    private, public = generate_keypair()
    path = tmp_path / "org.pem"
    save_private_key(path, private, b"correct horse")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    loaded = load_private_key(path, b"correct horse")
    assert public_key_bytes(loaded.public_key()) == public_key_bytes(public)


def test_wrong_passphrase_and_missing_passphrase_fail_clearly(tmp_path: Path) -> None:
    private, _ = generate_keypair()
    path = tmp_path / "org.pem"
    save_private_key(path, private, b"correct horse")
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        load_private_key(path, b"battery staple")
    with pytest.raises(PassphraseRequired, match="passphrase is needed"):
        load_private_key(path, None)


def test_unencrypted_private_key_loads_without_passphrase(tmp_path: Path) -> None:
    private, _ = generate_keypair()
    path = tmp_path / "org.pem"
    save_private_key(path, private, None)
    assert b"BEGIN PRIVATE KEY" in path.read_bytes()
    assert isinstance(load_private_key(path, None), X25519PrivateKey)


def test_existing_private_key_is_never_overwritten_by_default(tmp_path: Path) -> None:
    private, _ = generate_keypair()
    path = tmp_path / "org.pem"
    save_private_key(path, private, b"pw")
    with pytest.raises(FileExistsError):
        save_private_key(path, generate_keypair()[0], b"pw")
    save_private_key(path, private, b"pw2", overwrite=True)
    load_private_key(path, b"pw2")


def test_a_key_of_another_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ed.pem"
    path.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(NotX25519Key, match="not an X25519"):
        load_private_key(path, None)
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a key")
    with pytest.raises(KeyFileError):
        load_private_key(garbage, None)
    with pytest.raises(KeyFileError):
        load_private_key(tmp_path / "missing.pem", None)


def test_public_key_round_trip(tmp_path: Path) -> None:
    _, public = generate_keypair()
    path = tmp_path / "org.pub.pem"
    save_public_key(path, public)
    assert b"BEGIN PUBLIC KEY" in path.read_bytes()
    assert public_key_bytes(load_public_key(path)) == public_key_bytes(public)
    with pytest.raises(KeyFileError):
        load_public_key(tmp_path / "nothing.pem")


def test_wrap_and_unwrap(keypair: tuple[X25519PrivateKey, X25519PublicKey]) -> None:
    private, public = keypair
    data_key = new_data_key()
    blob = wrap_key(data_key, public, RID)
    assert len(blob) == WRAPPED_KEY_SIZE == 150
    assert data_key not in blob
    assert unwrap_key(blob, private, RID) == data_key
    assert wrap_key(data_key, public, RID) != blob  # a fresh ephemeral key every time


def test_a_wrapped_key_of_another_recording_fails(
    keypair: tuple[X25519PrivateKey, X25519PublicKey],
) -> None:
    private, public = keypair
    blob = wrap_key(new_data_key(), public, RID)
    other = uuid.uuid4()
    with pytest.raises(WrappedKeyError, match="names recording"):
        unwrap_key(blob, private, other)
    # Rewriting the id field does not help: it is bound by HKDF info and the AAD.
    forged = blob[:10] + other.bytes + blob[26:]
    with pytest.raises(WrappedKeyError, match="authentication"):
        unwrap_key(forged, private, other)


def test_the_wrong_private_key_is_named_as_such(
    keypair: tuple[X25519PrivateKey, X25519PublicKey],
) -> None:
    _, public = keypair
    blob = wrap_key(new_data_key(), public, RID)
    with pytest.raises(WrongPrivateKey, match="wrapped to organisation key"):
        unwrap_key(blob, generate_keypair()[0], RID)


def test_every_byte_of_a_wrapped_key_is_protected(
    keypair: tuple[X25519PrivateKey, X25519PublicKey],
) -> None:
    private, public = keypair
    blob = wrap_key(new_data_key(), public, RID)
    for position in range(len(blob)):
        damaged = bytearray(blob)
        damaged[position] ^= 0x04
        with pytest.raises(WrappedKeyError):
            unwrap_key(bytes(damaged), private, RID)
    with pytest.raises(WrappedKeyError):
        unwrap_key(blob[:-1], private, RID)
