"""The export output file: refused paths, a private temporary file, put in place whole."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from proxy.storage.output_file import OutputRefused, claim_output


def test_the_file_appears_only_when_complete_and_only_the_owner_can_read_it(
    tmp_path: Path,
) -> None:
    out = tmp_path / "call.wav"
    with claim_output(out) as stream:
        stream.write(b"audio")
        (temp,) = tmp_path.iterdir()
        assert not out.exists() and temp.name.startswith(".call.wav.")
        assert stat.S_IMODE(temp.stat().st_mode) == 0o600
    assert out.read_bytes() == b"audio"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["call.wav"]


def test_an_error_while_writing_removes_the_temporary_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), claim_output(tmp_path / "call.wav") as stream:
        stream.write(b"half")
        raise RuntimeError("encoder failed")
    assert os.listdir(tmp_path) == []


def test_a_file_that_appears_meanwhile_is_not_replaced_without_force(tmp_path: Path) -> None:
    out = tmp_path / "call.wav"
    with pytest.raises(OutputRefused, match="appeared"), claim_output(out) as stream:
        stream.write(b"ours")
        out.write_bytes(b"theirs")
    assert out.read_bytes() == b"theirs"
    assert os.listdir(tmp_path) == ["call.wav"]


def test_a_link_that_appears_meanwhile_is_replaced_not_written_through(tmp_path: Path) -> None:
    target, out = tmp_path / "target", tmp_path / "call.wav"
    target.write_bytes(b"keep")
    with claim_output(out, force=True) as stream:
        stream.write(b"ours")
        out.symlink_to(target)
    assert not out.is_symlink() and out.read_bytes() == b"ours"
    assert target.read_bytes() == b"keep"


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OutputRefused, match="does not exist"), claim_output(tmp_path / "no" / "x"):
        pass
