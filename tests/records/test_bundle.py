"""Signed export bundles on real files: written whole or not at all, and any change to
any file — one byte, a file removed, a file added, another signer — found and named."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import shutil
import subprocess
import threading
import warnings
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proxy.records.bundle import (
    MANIFEST,
    RESERVED,
    SIGNATURE,
    SIGNING_KEY,
    BundleDraft,
    BundleError,
    BundleInfo,
    BundleRecording,
    Gap,
    Problem,
    TrustedKey,
    canonical_json,
    in_worker,
    verify_bundle,
    zip_bundle,
)
from proxy.records.bundle.format import signature_document
from proxy.storage import crypto
from tests.storage.faulty_store import tmpfs

AUDIO = bytes(range(256)) * 40  # 10 KiB standing in for a WAV
WHEN = datetime(2026, 12, 7, 3, 30, tzinfo=UTC)


def info(*files: str) -> BundleInfo:
    return BundleInfo(
        case_id="SAR-2026-7",
        exported_by="dpo (for J. Smith)",
        exported_at=WHEN,
        purpose="subject_access",
        reason="subject access request of 1 December",
        recordings=(
            BundleRecording("rec-1", (1,), files, state="interrupted", gaps=(Gap(4000, 5200),)),
        ),
    )


FILES = {
    "rec-1/caller.wav": AUDIO,
    "rec-1/caller.mp3": AUDIO[:3000],
    "rec-1/transcript.txt": b"Caller: hello, I'd like my records\n",
    "README.txt": b"",  # an empty file is a file too
}


def write_bundle(out: Path, key: Ed25519PrivateKey) -> None:
    with BundleDraft(out) as draft:
        for name, data in FILES.items():
            draft.add(name, [data[:100], data[100:]])
        draft.seal(info(*sorted(n for n in FILES if n.startswith("rec-1/"))), key)


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return crypto.generate_signing_key()


@pytest.fixture
def bundle(tmp_path: Path, key: Ed25519PrivateKey) -> Path:
    out = tmp_path / "SAR-2026-7"
    write_bundle(out, key)
    return out


def trusted(key: Ed25519PrivateKey) -> TrustedKey:
    return TrustedKey.of(key.public_key())


def all_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_a_sealed_bundle_verifies_and_its_manifest_lists_everything(
    bundle: Path, key: Ed25519PrivateKey
) -> None:
    assert all_files(bundle) == sorted([*FILES, *RESERVED])
    verdict = verify_bundle(bundle, trusted(key))
    assert verdict.intact and verdict.fault is None and verdict.pinned
    assert verdict.checked == tuple(sorted(FILES))
    assert verdict.signing_key_sha256 == crypto.public_key_sha256(key.public_key())
    manifest = json.loads((bundle / MANIFEST).read_bytes())
    assert canonical_json(manifest) == (bundle / MANIFEST).read_bytes()  # canonical form
    assert manifest["case_id"] == "SAR-2026-7" and manifest["exported_by"] == "dpo (for J. Smith)"
    assert manifest["exported_at"] == "2026-12-07T03:30:00.000000Z"
    assert (manifest["purpose"], manifest["reason"]) == (
        "subject_access",
        "subject access request of 1 December",
    )
    (recording,) = manifest["recordings"]
    assert recording["recording_id"] == "rec-1" and recording["parts"] == [1]
    assert recording["gaps"] == [{"start_ms": 4000, "end_ms": 5200}]
    assert {f["name"]: (f["size"], f["sha256"]) for f in manifest["files"]} == {
        name: (len(data), hashlib.sha256(data).hexdigest()) for name, data in FILES.items()
    }
    modes = {(bundle / name).stat().st_mode & 0o777 for name in all_files(bundle)}
    assert modes == {0o600} and bundle.stat().st_mode & 0o777 == 0o700


def test_its_zip_verifies_too_and_unzip_accepts_it(
    bundle: Path, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    archive = zip_bundle(bundle, tmp_path / "bundle.zip")
    assert subprocess.run(["unzip", "-tq", str(archive)], capture_output=True).returncode == 0
    with zipfile.ZipFile(archive) as opened:
        assert all(n.startswith("SAR-2026-7/") for n in opened.namelist())
    verdict = verify_bundle(archive, trusted(key))
    assert verdict.intact and verdict.checked == tuple(sorted(FILES))


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def offsets(size: int) -> list[int]:
    return [0, size // 2, size - 1]


@pytest.mark.parametrize("name", sorted(RESERVED))
def test_any_byte_of_the_manifest_its_signature_or_key_changed_is_named(
    bundle: Path, key: Ed25519PrivateKey, name: str
) -> None:
    original = (bundle / name).read_bytes()
    for offset in range(len(original)):  # every byte: these files are small
        flip(bundle / name, offset)
        verdict = verify_bundle(bundle, trusted(key))
        assert verdict.fault is not None and verdict.fault.name == name, (offset, verdict)
        assert verdict.fault.problem in (Problem.ALTERED, Problem.UNTRUSTED)
        (bundle / name).write_bytes(original)
    assert verify_bundle(bundle, trusted(key)).intact


@pytest.mark.parametrize("name", sorted(n for n in FILES if FILES[n]))
def test_any_byte_of_an_exported_file_changed_is_named(
    bundle: Path, key: Ed25519PrivateKey, name: str
) -> None:
    for offset in offsets(len(FILES[name])):
        flip(bundle / name, offset)
        fault = verify_bundle(bundle, trusted(key)).fault
        assert fault is not None and (fault.name, fault.problem) == (name, Problem.ALTERED)
        assert "SHA-256" in fault.why
        flip(bundle / name, offset)
    (bundle / name).write_bytes(FILES[name] + b"\0")  # one byte longer
    fault = verify_bundle(bundle, trusted(key)).fault
    assert fault is not None and (fault.name, fault.problem) == (name, Problem.ALTERED)


@pytest.mark.parametrize("name", sorted([*FILES, *RESERVED]))
def test_a_removed_file_is_named_missing(bundle: Path, key: Ed25519PrivateKey, name: str) -> None:
    (bundle / name).unlink()
    fault = verify_bundle(bundle, trusted(key)).fault
    assert fault is not None and (fault.name, fault.problem) == (name, Problem.MISSING)


@pytest.mark.parametrize(
    "added", ["notes.txt", "rec-1/other.wav", "zzz/deep/x", ".hidden", "rec-1/caller.wav.bak"]
)
def test_an_added_file_is_named_extra(bundle: Path, key: Ed25519PrivateKey, added: str) -> None:
    (bundle / added).parent.mkdir(parents=True, exist_ok=True)
    (bundle / added).write_bytes(b"")
    fault = verify_bundle(bundle, trusted(key)).fault
    assert fault is not None and (fault.name, fault.problem) == (added, Problem.EXTRA)


def test_an_added_link_is_extra_and_a_file_swapped_for_a_link_is_not_accepted(
    bundle: Path, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    (bundle / "link").symlink_to(bundle / "rec-1" / "caller.wav")
    fault = verify_bundle(bundle, trusted(key)).fault
    assert fault is not None and (fault.name, fault.problem) == ("link", Problem.EXTRA)
    (bundle / "link").unlink()
    outside = tmp_path / "same.wav"
    outside.write_bytes(AUDIO)  # the very bytes listed, but through a link
    (bundle / "rec-1" / "caller.wav").unlink()
    (bundle / "rec-1" / "caller.wav").symlink_to(outside)
    fault = verify_bundle(bundle, trusted(key)).fault
    assert fault is not None and fault.name == "rec-1/caller.wav"
    assert (fault.problem, fault.why) == (Problem.ALTERED, "not a regular file (a link?)")


def rezip(archive: Path, edit: Callable[[str, bytes], Iterator[tuple[str, bytes]]]) -> Path:
    changed = archive.with_name("changed.zip")
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(changed, "w") as target:
        for entry in source.infolist():
            for name, data in edit(entry.filename, source.read(entry)):
                target.writestr(name, data)
    return changed


def test_a_zip_with_a_file_altered_removed_added_or_doubled_names_it(
    bundle: Path, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    archive = zip_bundle(bundle, tmp_path / "bundle.zip")
    wav = "SAR-2026-7/rec-1/caller.wav"

    def altered(name: str, data: bytes) -> Iterator[tuple[str, bytes]]:
        yield name, (b"X" + data[1:]) if name == wav else data

    def removed(name: str, data: bytes) -> Iterator[tuple[str, bytes]]:
        if name != wav:
            yield name, data

    def added(name: str, data: bytes) -> Iterator[tuple[str, bytes]]:
        yield name, data
        if name == wav:
            yield "SAR-2026-7/rec-1/extra.wav", data

    def doubled(name: str, data: bytes) -> Iterator[tuple[str, bytes]]:
        yield name, data
        if name == wav:
            yield name, data

    for edit, problem in (
        (altered, Problem.ALTERED),
        (removed, Problem.MISSING),
        (added, Problem.EXTRA),
        (doubled, Problem.EXTRA),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns of the duplicate name
            changed = rezip(archive, edit)
        fault = verify_bundle(changed, trusted(key)).fault
        name = "rec-1/extra.wav" if edit is added else "rec-1/caller.wav"
        assert fault is not None and (fault.name, fault.problem) == (name, problem), edit


def test_a_bundle_signed_by_another_key_fails(
    tmp_path: Path, key: Ed25519PrivateKey, bundle: Path
) -> None:
    other = crypto.generate_signing_key()
    forged = tmp_path / "forged"
    write_bundle(forged, other)
    assert verify_bundle(forged, trusted(other)).intact  # whole, but not ours
    fault = verify_bundle(forged, trusted(key)).fault
    assert fault is not None and (fault.name, fault.problem) == (SIGNING_KEY, Problem.UNTRUSTED)
    assert crypto.public_key_sha256(other.public_key()) in fault.why
    # our public key put beside another key's signature: the signature is named
    shutil.copy(bundle / SIGNING_KEY, forged / SIGNING_KEY)
    fault = verify_bundle(forged, trusted(key)).fault
    assert fault is not None and (fault.name, fault.problem) == (SIGNATURE, Problem.ALTERED)


def test_without_a_trusted_key_the_verdict_says_it_was_not_pinned(bundle: Path) -> None:
    verdict = verify_bundle(bundle)
    assert verdict.intact and not verdict.pinned


def test_a_bad_trusted_key_digest_is_refused() -> None:
    with pytest.raises(ValueError, match="64 hex digits"):
        TrustedKey("abc")


def test_an_independent_verifier_with_openssl_and_sha256sum_agrees(
    bundle: Path, tmp_path: Path
) -> None:
    """The recipe of docs/bundle-format.md, run as written with other tools."""
    digest = subprocess.run(
        ["sha256sum", str(bundle / MANIFEST)], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    record = json.loads((bundle / SIGNATURE).read_bytes())
    assert record["manifest_sha256"] == digest
    (tmp_path / "message").write_bytes(b"recproxy bundle manifest v1\n" + digest.encode())
    (tmp_path / "sig.bin").write_bytes(bytes.fromhex(record["signature"]))
    command = [
        "openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(bundle / SIGNING_KEY),
        "-rawin", "-in", str(tmp_path / "message"), "-sigfile", str(tmp_path / "sig.bin"),
    ]  # fmt: skip
    good = subprocess.run(command, capture_output=True, text=True)
    assert good.returncode == 0 and "Verified Successfully" in good.stdout, good.stderr
    (tmp_path / "message").write_bytes(b"recproxy bundle manifest v1\n" + b"0" * 64)
    assert subprocess.run(command, capture_output=True).returncode != 0


def test_a_failed_draft_leaves_nothing(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    out = tmp_path / "bundle"
    with pytest.raises(RuntimeError), BundleDraft(out) as draft:
        draft.add("a.wav", [AUDIO])
        raise RuntimeError("the rendering failed")
    with BundleDraft(out) as draft:
        draft.add("a.wav", [AUDIO])  # never sealed
    assert os.listdir(tmp_path) == []


def test_a_recording_naming_a_file_not_added_is_refused_and_leaves_nothing(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    with (
        pytest.raises(ValueError, match=r"names rec-1/caller\.wav"),
        BundleDraft(tmp_path / "b") as draft,
    ):
        draft.seal(info("rec-1/caller.wav"), key)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["", "/abs", "../up", "a//b", "a/./b", MANIFEST, "a\\b"])
def test_a_bad_file_name_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError), BundleDraft(tmp_path / "b") as draft:
        draft.add(name, [b"x"])
    assert os.listdir(tmp_path) == []


def test_an_existing_name_is_never_written_over(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    (tmp_path / "b").mkdir()  # even an empty folder, which rename would replace
    with pytest.raises(BundleError, match="exists"):
        BundleDraft(tmp_path / "b")
    with pytest.raises(BundleError, match="does not exist"):
        BundleDraft(tmp_path / "no" / "b")
    with BundleDraft(tmp_path / "c") as draft:
        draft.add("a.wav", [AUDIO])
        (tmp_path / "c").mkdir()  # appeared meanwhile
        with pytest.raises(BundleError, match="exists"):
            draft.seal(info(), key)
    assert sorted(os.listdir(tmp_path)) == ["b", "c"] and os.listdir(tmp_path / "c") == []


def test_a_disk_that_fills_during_export_leaves_no_bundle_and_no_draft(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    with tmpfs(tmp_path / "tiny") as disk:
        with pytest.raises(OSError) as full, BundleDraft(disk / "bundle") as draft:
            draft.add("small.txt", [b"fits"])
            draft.add("big.wav", (AUDIO for _ in range(40)))  # 400 KiB into 64 KiB
        assert full.value.errno == errno.ENOSPC
        assert os.listdir(disk) == []  # neither the bundle nor its hidden draft
        write_bundle(disk / "after", key)  # the space came back
        assert verify_bundle(disk / "after", trusted(key)).intact


async def test_a_stream_is_written_off_the_event_loop(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(AUDIO), 1000):
            yield AUDIO[start : start + 1000]

    with BundleDraft(tmp_path / "b") as draft:
        written = await draft.add_stream("a.wav", chunks())
        draft.seal(info("a.wav"), key)
    assert written.size == len(AUDIO)
    assert (tmp_path / "b" / "a.wav").read_bytes() == AUDIO


def test_a_byte_changed_inside_the_zip_names_the_file_it_belongs_to(
    bundle: Path, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    archive = zip_bundle(bundle, tmp_path / "bundle.zip")
    original = archive.read_bytes()
    with zipfile.ZipFile(archive) as opened:
        entries = [(i.filename, i.header_offset, i.file_size) for i in opened.infolist()]
    for filename, header, size in entries:
        if size == 0:
            continue
        name = filename.removeprefix("SAR-2026-7/")
        local_name_length = int.from_bytes(original[header + 26 : header + 28], "little")
        extra_length = int.from_bytes(original[header + 28 : header + 30], "little")
        data_start = header + 30 + local_name_length + extra_length  # stored: the bytes as is
        flip(archive, data_start + size // 2)
        fault = verify_bundle(archive, trusted(key)).fault
        assert fault is not None and fault.name == name, (name, fault)
        assert fault.problem is Problem.ALTERED
        archive.write_bytes(original)
    assert verify_bundle(archive, trusted(key)).intact


@pytest.mark.parametrize("drop", ["signing_key_sha256", "files", "recordings", "format"])
def test_a_signed_manifest_of_the_wrong_shape_is_named_not_trusted(
    tmp_path: Path, key: Ed25519PrivateKey, bundle: Path, drop: str
) -> None:
    """Even signed by the trusted key (a signer's bug), a manifest must have its shape."""
    manifest = json.loads((bundle / MANIFEST).read_bytes())
    del manifest[drop]
    (bundle / MANIFEST).write_bytes(canonical_json(manifest))
    (bundle / SIGNATURE).write_bytes(signature_document(canonical_json(manifest), key))
    fault = verify_bundle(bundle, trusted(key)).fault
    assert fault is not None and (fault.name, fault.problem) == (MANIFEST, Problem.ALTERED)
    assert fault.why == "signed, but not a valid manifest"


async def test_a_cancelled_write_lets_its_worker_finish_before_the_draft_goes(
    tmp_path: Path,
) -> None:
    """Cancelled while a worker thread writes into the draft, the export waits for the
    thread before the draft is removed: nothing is made again under a removed draft."""
    started, finished = threading.Event(), threading.Event()

    def slow_write() -> None:
        started.set()
        threading.Event().wait(0.3)
        finished.set()

    writing = asyncio.ensure_future(in_worker(slow_write))
    await asyncio.to_thread(started.wait, 5)
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    assert finished.is_set()  # the cancellation reached the caller only after the thread
    assert await in_worker(lambda: 42) == 42
