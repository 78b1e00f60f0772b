"""docs/recording-format.md is enough to read a recording: an independent reader.

The reader below is written from the document alone — ``struct`` and the
``cryptography`` primitives, no ``proxy.storage`` code — and the constants it needs
(magics, struct layouts, the HKDF label) are taken out of the document's text, so the
document and the files cannot drift apart unnoticed.  The files are made by the real
writer.
"""

from __future__ import annotations

import ast
import re
import struct
import uuid
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .conftest import MakeRecording, repo_root

DOC = (repo_root() / "docs" / "recording-format.md").read_text(encoding="utf-8")


def doc_value(pattern: str) -> str:
    """The first group of ``pattern`` in the document's text."""
    match = re.search(pattern, DOC, re.S)
    assert match, f"the document does not say {pattern!r}"
    return match.group(1)


MAGICS = re.findall(r"\|\s*magic\s*\|\s*ASCII `([^`]+)`", DOC)  # key file, then segment
KEY_MAGIC, SEGMENT_MAGIC = (m.encode("ascii") for m in MAGICS[:2])
HEADER = struct.Struct(doc_value(r'struct\.Struct\("([^"]+)"\)` for bytes 0.51'))
CHUNK_PREFIX = struct.Struct(doc_value(r'struct\.Struct\("([^"]+)"\)` for the 21-byte prefix'))
NONCE = struct.Struct(doc_value(r'chunk nonce\(s, c\)\s*=.*?struct "([^"]+)"'))
HKDF_LABEL = doc_value(r"label is the \d+ ASCII bytes `([^`]+)`").encode("ascii")


def ulaw_to_linear(codes: np.ndarray) -> np.ndarray:
    """§4 "Encodings", word for word."""
    u = (~codes.astype(np.int32)) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 7
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign, -magnitude, magnitude).astype(np.int16)


def alaw_to_linear(codes: np.ndarray) -> np.ndarray:
    """§4 "Encodings", word for word."""
    a = codes.astype(np.int32) ^ 0x55
    segment = (a >> 4) & 7
    mantissa = a & 0x0F
    magnitude = np.where(
        segment == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(segment - 1, 0)
    )
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


LAWS = {0: ulaw_to_linear, 8: alaw_to_linear}  # §4: a codec tag is the law's payload type


def unwrap(key_file: bytes, private_key: X25519PrivateKey, recording_id: uuid.UUID) -> bytes:
    """§2, "Unwrapping"."""
    assert len(key_file) == 150
    assert key_file[0:8] == KEY_MAGIC and key_file[8] == 1 and key_file[9] == 1
    assert key_file[10:26] == recording_id.bytes
    recipient, ephemeral = key_file[26:58], key_file[58:90]
    nonce, wrapped = key_file[90:102], key_file[102:150]
    shared = private_key.exchange(X25519PublicKey.from_public_bytes(ephemeral))
    kek = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=ephemeral + recipient,
        info=HKDF_LABEL + recording_id.bytes,
    ).derive(shared)
    return AESGCM(kek).decrypt(nonce, wrapped, recording_id.bytes)


def read_recording(
    directory: Path, private_key: X25519PrivateKey
) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """§1-§6: every segment, every chunk; returns the (frames, 2) audio, the (frames, 2)
    G.711 bytes with their (frames, 2) laws stacked (None for PCM16), and the final flag."""
    recording_id = uuid.UUID(directory.name)
    aead = AESGCM(unwrap((directory / "key").read_bytes(), private_key, recording_id))
    names = sorted(p.name for p in directory.iterdir() if re.fullmatch(r"seg-\d{6,}\.rec", p.name))
    assert names == [f"seg-{i:06d}.rec" for i in range(len(names))]
    frames: list[np.ndarray] = []
    wire: list[np.ndarray] = []
    total, final = 0, False
    for s, name in enumerate(names):
        data = (directory / name).read_bytes()
        assert not final, "a segment after the final chunk"
        (magic, version, encoding, channels, reserved, rate, rid, index, f, k, start_ms) = (
            HEADER.unpack_from(data)
        )
        assert (magic, channels, reserved, rate) == (SEGMENT_MAGIC, 2, 0, 8000)
        assert (version, encoding) in {(1, 1), (1, 2), (2, 2), (2, 3)}
        assert (rid, index) == (recording_id.bytes, s)
        tags = 2 if encoding == 3 else 0
        assert start_ms > 0
        header = data[:68]
        header_nonce = NONCE.pack(0x02, s, 0)
        aead.decrypt(header_nonce, data[52:68], data[:52])  # the header tag
        pos, c = 68, 0
        while pos < len(data):
            size, check, flags, nonce = CHUNK_PREFIX.unpack_from(data, pos)
            assert size ^ check == 0xFFFFFFFF and flags & 0xFE == 0
            assert nonce == NONCE.pack(0x01, s, c)
            body = data[pos + 21 : pos + 21 + size]
            assert len(body) == size
            plaintext = aead.decrypt(nonce, body, header + struct.pack(">IB", c, flags))
            first_frame = struct.unpack(">Q", plaintext[:8])[0]
            assert first_frame == (s * k + c) * f == total
            audio = plaintext[8 + tags :]
            if encoding == 2:
                block = np.frombuffer(audio, dtype="<i2").astype(np.int16).reshape(-1, 2)
            else:
                laws = tuple(plaintext[8 : 8 + tags]) or (0, 0)  # encoding 1: µ-law
                codes = np.frombuffer(audio, dtype=np.uint8).reshape(-1, 2)
                block = np.stack([LAWS[law](codes[:, ch]) for ch, law in enumerate(laws)], axis=1)
                wire.append(np.stack([codes, np.broadcast_to(laws, codes.shape)]))
            assert len(block) == f or flags & 1
            frames.append(block)
            total += len(block)
            final = bool(flags & 1)
            pos += 21 + size
            c += 1
        assert final or c == k
    return np.concatenate(frames), np.concatenate(wire, axis=1) if wire else None, final


def test_the_document_gives_the_layouts() -> None:
    assert (KEY_MAGIC, SEGMENT_MAGIC) == (b"RECPXKEY", b"RECPXSEG")
    assert (HEADER.size, CHUNK_PREFIX.size, NONCE.size) == (52, 21, 12)
    assert HKDF_LABEL == b"recproxy key-wrap v1"


@pytest.mark.parametrize("encoding", ["g711", "pcm16"])
def test_an_independent_reader_decodes_what_the_writer_wrote(
    make_recording: MakeRecording, private_key: X25519PrivateKey, encoding: str
) -> None:
    rng = np.random.default_rng(21)
    if encoding == "g711":  # µ-law values, so that storage is exact
        audio = ulaw_to_linear(rng.integers(0, 256, size=(21 * 8000 + 333, 2), dtype=np.uint8))
    else:
        audio = rng.integers(-32768, 32768, size=(21 * 8000 + 333, 2), dtype=np.int16)
    directory = make_recording(audio, encoding=encoding)
    decoded, _, final = read_recording(directory, private_key)
    assert final
    np.testing.assert_array_equal(decoded, audio)


def test_an_independent_reader_gets_the_wire_bytes_of_each_law(
    make_recording: MakeRecording, private_key: X25519PrivateKey
) -> None:
    """Caller A-law, call taker µ-law, every code of each: the bytes come back as sent."""
    codes = np.tile(np.arange(256, dtype=np.uint16), 40)
    wire = np.stack([codes | 0x0800, codes[::-1]], axis=1)  # §4 tags in the high byte
    directory = make_recording(wire, chunk_seconds=0.5, segment_seconds=1)
    decoded, stored, final = read_recording(directory, private_key)
    assert final and stored is not None
    np.testing.assert_array_equal(stored[0], wire & 0xFF)
    np.testing.assert_array_equal(stored[1], np.broadcast_to((8, 0), wire.shape))
    np.testing.assert_array_equal(decoded[:, 0], alaw_to_linear(codes))
    np.testing.assert_array_equal(decoded[:, 1], ulaw_to_linear(codes[::-1]))


def test_an_independent_reader_reads_format_1() -> None:
    fixture = Path(__file__).parent / "fixtures" / "format-v1"
    key = X25519PrivateKey.from_private_bytes((fixture / "private_key.raw").read_bytes())
    directory = next(p for p in fixture.iterdir() if p.is_dir())
    decoded, _, final = read_recording(directory, key)
    assert final
    sent = np.frombuffer((fixture / "audio.ulaw").read_bytes(), dtype=np.uint8).reshape(-1, 2)
    np.testing.assert_array_equal(decoded, ulaw_to_linear(sent))  # format 1: 0x7F became 0xFF


def test_the_independent_reader_uses_no_project_code() -> None:
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    modules = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    }
    modules |= {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not any(m.startswith("proxy") for m in modules), modules
