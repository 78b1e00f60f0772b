"""``recproxy config check``: everything ``serve`` would refuse to start on, found without
starting — no socket bound, no key made, no folder or catalog created.

Beyond the file itself (``load_config``), it reads what the file points at: every notice
prompt must load as audio, and a public key that exists must be one.  A missing key pair
is not a problem (``serve`` makes a development pair, with a warning), only reported.
The transcript model is verified the way the records service verifies it before loading
it: a model that is not installed is only reported (WAV and MP3 copies do not need it),
but a configured ``[transcripts] model_path`` that is missing or fails its SHA-256 is a
problem, found here rather than at the first subject access request.
"""

from __future__ import annotations

from pathlib import Path

from .app import StartupError, load_notice, tls_settings
from .config import Config, ConfigError
from .config_version import version_of
from .records.transcripts.model import (
    ModelMismatch,
    TranscriptionUnavailable,
    locate_model,
    read_verified,
)
from .sip.tls import TlsSetupError, load_contexts
from .storage import crypto
from .text_table import format_table


def check_config(config: Config) -> list[str]:
    """The summary lines of a config ``serve`` can start on; raises ``ConfigError``
    listing every problem found in what the config points at."""
    problems: list[str] = []
    prompts: list[str] = []
    digests: dict[Path, str] = {}
    for key, path in config.prompt_files():
        try:
            prompt = load_notice(path, key)
        except StartupError as exc:
            problems.append(str(exc))
        else:
            prompts.append(f"{key} {path} ({prompt.duration_ms / 1000:.1f} s)")
            digests[path] = prompt.sha256
    public = config.recording.public_key
    key_line = f"{public}"
    if public.exists():
        try:
            key_line += f" (fingerprint {crypto.key_fingerprint(crypto.load_public_key(public))})"
        except crypto.StorageCryptoError as exc:
            problems.append(f"recording.public_key: {exc}")
    elif config.recording.private_key.exists():
        problems.append(
            f"recording.public_key {public} is missing but a private key exists at "
            f"{config.recording.private_key}"
        )
    else:
        key_line += " (missing: serve makes a development key pair on first start)"
    signing_line = _signing_key_line(config, problems)
    tls_line = _tls_line(config, problems)
    transcripts_line = _transcripts_line(config, problems)
    if problems:
        raise ConfigError(*problems)
    sip = config.sip
    rows = [
        ("config", f"{config.source or 'defaults'}"),
        ("version", version_of(config, digests).short),
        ("sip", f"{_address(sip.listen)} {'+'.join(sip.transports)}, advertise {sip.advertise}"),
        ("sip tls", tls_line),
        ("call taker", ", ".join(config.routing.hunt_group)),  # in order (issue 18)
        ("http", _address(config.http.listen)),
        *(("prompt", line) for line in prompts),
        ("public key", key_line),
        ("signing key", signing_line),
        ("recordings", str(config.recording.dir)),
        ("catalog", str(config.catalog.path)),
        ("transcripts", transcripts_line),
        (
            "policy",
            f"{len(config.routing.rules)} routing rules, {len(config.services)} services, "
            f"{len(config.operators)} operators",
        ),
        ("logging", f"{config.logging.level} {config.logging.format}"),
        *(("warning", line) for line in config.warnings),
    ]
    return format_table(("checked", "value"), rows)


def _signing_key_line(config: Config, problems: list[str]) -> str:
    """The export-signing public key: its SHA-256 (what recipients pin), or that it is
    still to be made; a file there that is not an Ed25519 public key is a problem."""
    public = config.export.signing_public_key
    if not public.exists():
        return f"{public} (missing: recproxy keygen --signing makes it, for export bundles)"
    try:
        key = crypto.load_signing_public_key(public)
    except crypto.StorageCryptoError as exc:
        problems.append(f"export.signing_public_key: {exc}")
        return str(public)
    return f"{public} (sha256 {crypto.public_key_sha256(key)})"


def _transcripts_line(config: Config, problems: list[str]) -> str:
    """The transcript model, verified as it would be loaded: its origin and SHA-256, or
    why transcripts are unavailable (a problem when the model was configured, or when an
    installed model fails its published hash)."""
    settings = config.transcripts
    try:
        model = read_verified(locate_model(settings.model_path, settings.model_sha256))
    except TranscriptionUnavailable as exc:
        if settings.model_path is not None or isinstance(exc, ModelMismatch):
            key = "transcripts.model_path" if settings.model_path is not None else "transcripts"
            problems.append(f"{key}: {exc}")
        return f"unavailable: {exc}"
    checked = "verified" if settings.model_sha256 or settings.model_path is None else "unchecked"
    return f"{model.origin} (model.bin sha256 {model.sha256[:16]}…, {checked})"


def _tls_line(config: Config, problems: list[str]) -> str:
    """SIP over TLS: off, or where it listens once its certificate, key and CA bundle
    loaded (a file that does not is a problem naming its key)."""
    settings = tls_settings(config)
    if settings is None or config.sip.tls_listen is None:
        return "off"
    try:
        load_contexts(settings)
    except TlsSetupError as exc:
        problems.append(str(exc))
    return f"{_address(config.sip.tls_listen)}, certificate {settings.cert}"


def _address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
