"""``recproxy keygen --signing`` and ``recproxy verify-bundle``, run as the real command:
the key pair audited, a bundle checked offline against the trusted key (configured, a
file or a published SHA-256), exit 0 intact and 1 naming the first problem."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from proxy.records.actor import os_account
from proxy.records.bundle import BundleDraft, BundleInfo, BundleRecording, zip_bundle
from proxy.storage import crypto
from tests.cli.test_cli import recproxy

SECRET = "a long signing passphrase"
PASSPHRASE = {"RECPROXY_KEY_PASSPHRASE": SECRET}
CATALOG = Path("data") / "catalog.sqlite3"


def audit_entries(folder: Path) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(f"file:{folder / CATALOG}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT actor, action, object, detail FROM audit_log ORDER BY seq")
        return [tuple(row) for row in rows]


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """The installation's signing key pair where the default config looks for it."""
    made = recproxy("keygen", "--signing", "--out", "data/keys", cwd=tmp_path, env=PASSPHRASE)
    assert made.returncode == 0, made.stderr
    return tmp_path / "data" / "keys"


def make_bundle(folder: Path, key_file: Path, passphrase: bytes | None = SECRET.encode()) -> Path:
    key = crypto.load_signing_key(key_file, passphrase)
    out = folder / "SAR-7"
    with BundleDraft(out) as draft:
        draft.add("rec-1/caller.wav", [b"RIFF" + bytes(4000)])
        draft.add("rec-1/transcript.vtt", [b"WEBVTT\n\n00:00.000 --> 00:01.000\nCaller: hello\n"])
        draft.seal(
            BundleInfo(
                case_id="SAR-7",
                exported_by="dpo",
                exported_at=datetime(2026, 12, 7, tzinfo=UTC),
                purpose="subject_access",
                reason="letter of 1 December",
                recordings=(
                    BundleRecording("rec-1", (1,), ("rec-1/caller.wav", "rec-1/transcript.vtt")),
                ),
            ),
            key,
        )
    return out


def test_keygen_signing_makes_a_protected_ed25519_pair_audited_as_signing(
    tmp_path: Path, keys: Path
) -> None:
    private = (keys / "signing.key").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in private
    assert (keys / "signing.key").stat().st_mode & 0o077 == 0
    public = crypto.load_signing_public_key(keys / "signing.pub")
    digest = hashlib.sha256(crypto.public_key_bytes(public)).hexdigest()
    ((actor, action, obj, detail),) = audit_entries(tmp_path)
    assert (actor, action, obj) == (os_account(), "key.generate", f"key:{digest[:16]}")
    assert json.loads(detail) == {"public_key_sha256": digest, "kind": "signing"}
    assert not (keys / "recording.key").exists()  # the recording key is another command's
    with pytest.raises(crypto.WrongPassphrase):
        crypto.load_signing_key(keys / "signing.key", b"not it")
    with pytest.raises(crypto.PassphraseRequired):
        crypto.load_signing_key(keys / "signing.key", None)


def test_keygen_signing_never_overwrites_and_a_refusal_writes_nothing(
    tmp_path: Path, keys: Path
) -> None:
    before = (keys / "signing.key").read_bytes()
    again = recproxy("keygen", "--signing", "--out", "data/keys", cwd=tmp_path, env=PASSPHRASE)
    assert again.returncode == 1 and "never overwritten" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and "Traceback" not in again.stderr
    assert (keys / "signing.key").read_bytes() == before
    unprotected = recproxy(
        "keygen", "--signing", "--out", "other", cwd=tmp_path, env={"RECPROXY_KEY_PASSPHRASE": ""}
    )
    assert unprotected.returncode == 1 and "RECPROXY_KEY_PASSPHRASE" in unprotected.stderr
    assert not (tmp_path / "other" / "signing.key").exists()
    assert len(audit_entries(tmp_path)) == 1


def test_the_signing_and_recording_keys_are_not_taken_for_each_other(tmp_path: Path) -> None:
    made = recproxy("keygen", "--out", "k", "--no-passphrase", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    with pytest.raises(crypto.NotEd25519Key):
        crypto.load_signing_key(tmp_path / "k" / "recording.key", None)
    with pytest.raises(crypto.NotEd25519Key):
        crypto.load_signing_public_key(tmp_path / "k" / "recording.pub")
    signing = recproxy("keygen", "--signing", "--out", "k", "--no-passphrase", cwd=tmp_path)
    assert signing.returncode == 0, signing.stderr
    with pytest.raises(crypto.NotX25519Key):
        crypto.load_private_key(tmp_path / "k" / "signing.key", None)


def test_verify_bundle_trusts_the_configured_key_and_prints_what_it_checked(
    tmp_path: Path, keys: Path
) -> None:
    bundle = make_bundle(tmp_path, keys / "signing.key")
    done = recproxy("verify-bundle", "SAR-7", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    digest = crypto.public_key_sha256(crypto.load_signing_public_key(keys / "signing.pub"))
    assert "bundle intact: case SAR-7, 2 file(s) of 1 recording(s)" in done.stdout
    assert f"signed by key {digest}" in done.stdout
    assert "ok rec-1/caller.wav" in done.stdout and "ok rec-1/transcript.vtt" in done.stdout
    zip_bundle(bundle, tmp_path / "SAR-7.zip")
    assert recproxy("verify-bundle", "SAR-7.zip", cwd=tmp_path).returncode == 0


def test_a_recipient_pins_the_key_by_file_or_by_its_published_sha256(
    tmp_path: Path, keys: Path
) -> None:
    make_bundle(tmp_path, keys / "signing.key")
    recipient = tmp_path / "recipient"  # no config, no data/: only the bundle and the key
    recipient.mkdir()
    (tmp_path / "SAR-7").rename(recipient / "SAR-7")
    (keys / "signing.pub").rename(recipient / "published.pub")
    digest = crypto.public_key_sha256(crypto.load_signing_public_key(recipient / "published.pub"))
    unpinned = recproxy("verify-bundle", "SAR-7", cwd=recipient)
    assert unpinned.returncode == 1 and "no trusted signing key" in unpinned.stderr
    assert "--fingerprint" in unpinned.stderr
    by_file = recproxy("verify-bundle", "SAR-7", "--public-key", "published.pub", cwd=recipient)
    assert by_file.returncode == 0, by_file.stderr
    spaced = " ".join(digest[i : i + 4] for i in range(0, 64, 4)).upper()  # as on a letter
    by_digest = recproxy("verify-bundle", "SAR-7", "--fingerprint", spaced, cwd=recipient)
    assert by_digest.returncode == 0, by_digest.stderr
    assert "(trusted: --fingerprint)" in by_digest.stdout
    assert not (recipient / "data").exists()  # offline and read-only: no catalog made


def test_an_altered_removed_or_added_file_fails_naming_it(tmp_path: Path, keys: Path) -> None:
    bundle = make_bundle(tmp_path, keys / "signing.key")
    wav = bundle / "rec-1" / "caller.wav"
    original = wav.read_bytes()
    wav.write_bytes(original[:-1] + b"\x01")
    cases = []
    cases.append(("rec-1/caller.wav: altered", recproxy("verify-bundle", "SAR-7", cwd=tmp_path)))
    wav.unlink()
    cases.append(("rec-1/caller.wav: missing", recproxy("verify-bundle", "SAR-7", cwd=tmp_path)))
    wav.write_bytes(original)
    (bundle / "rec-1" / "note.txt").write_text("added")
    cases.append(("rec-1/note.txt: extra", recproxy("verify-bundle", "SAR-7", cwd=tmp_path)))
    for expected, result in cases:
        assert result.returncode == 1, (expected, result.stdout)
        assert result.stdout == "" and "Traceback" not in result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("recproxy: bundle SAR-7 is not intact: " + expected), line


def test_a_bundle_signed_by_another_key_fails(tmp_path: Path, keys: Path) -> None:
    other = recproxy("keygen", "--signing", "--out", "other", "--no-passphrase", cwd=tmp_path)
    assert other.returncode == 0, other.stderr
    make_bundle(tmp_path, tmp_path / "other" / "signing.key", passphrase=None)
    refused = recproxy("verify-bundle", "SAR-7", cwd=tmp_path)  # the configured key
    assert refused.returncode == 1
    assert "signing-key.pub: untrusted: signed by key" in refused.stderr
    mine = recproxy("verify-bundle", "SAR-7", "--public-key", "other/signing.pub", cwd=tmp_path)
    assert mine.returncode == 0, mine.stderr


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["nothing-here"], 1, "nothing-here: no such bundle folder or ZIP"),
        (["not-a-zip.txt"], 1, "not-a-zip.txt: not a bundle folder or a readable ZIP"),
        (["SAR-7", "--public-key", "nope.pub"], 1, "cannot read public key file nope.pub"),
        (["SAR-7", "--public-key", "data/keys/signing.key"], 1, "does not hold a PEM public key"),
        (["SAR-7", "--fingerprint", "abc"], 2, "is not the 64 hex digits"),
        (["SAR-7", "--fingerprint", "0" * 64, "--public-key", "x"], 2, "not allowed with"),
    ],
)
def test_bad_input_is_one_clear_line(
    tmp_path: Path, keys: Path, args: list[str], status: int, message: str
) -> None:
    make_bundle(tmp_path, keys / "signing.key")
    (tmp_path / "not-a-zip.txt").write_text("hello")
    result = recproxy("verify-bundle", *args, cwd=tmp_path)
    assert result.returncode == status, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
    if status == 1:
        assert len(result.stderr.strip().splitlines()) == 1


def test_a_wrong_pin_fails_naming_the_signing_key(tmp_path: Path, keys: Path) -> None:
    make_bundle(tmp_path, keys / "signing.key")
    result = recproxy("verify-bundle", "SAR-7", "--fingerprint", "ab" * 32, cwd=tmp_path)
    assert result.returncode == 1
    assert "signing-key.pub: untrusted: signed by key" in result.stderr
    assert f"not the trusted key {'ab' * 32}" in result.stderr


def test_config_check_shows_the_signing_key_to_publish_or_that_it_is_missing(
    tmp_path: Path,
) -> None:
    missing = recproxy("config", "check", cwd=tmp_path)
    assert missing.returncode == 0, missing.stderr
    assert any(
        line.split()[:2] == ["signing", "key"] and "missing: recproxy keygen --signing" in line
        for line in missing.stdout.splitlines()
    ), missing.stdout
    made = recproxy("keygen", "--signing", "--out", "data/keys", "--no-passphrase", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    digest = crypto.public_key_sha256(
        crypto.load_signing_public_key(tmp_path / "data" / "keys" / "signing.pub")
    )
    shown = recproxy("config", "check", cwd=tmp_path)
    assert shown.returncode == 0 and f"(sha256 {digest})" in shown.stdout, shown.stderr


def test_config_check_refuses_a_signing_public_key_of_another_kind(tmp_path: Path) -> None:
    made = recproxy("keygen", "--out", "keys", "--no-passphrase", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    (tmp_path / "c.toml").write_text('[export]\nsigning_public_key = "keys/recording.pub"\n')
    refused = recproxy("config", "check", "--config", "c.toml", cwd=tmp_path)
    assert refused.returncode == 78
    assert "export.signing_public_key: " in refused.stderr and "not an Ed25519" in refused.stderr
