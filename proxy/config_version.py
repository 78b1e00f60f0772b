"""The configuration's version (P22): what the proxy runs under, as one hash.

The *effective* configuration — every key of :class:`~proxy.config.Config`, defaults
included, plus the SHA-256 of each prompt file it names — is flattened to key paths
(``media.jitter_ms``, ``services.general.prompt``, ``operators.alice.team``,
``routing.rules[0].match``) and serialised canonically: JSON, sorted keys, no
whitespace (``version_of_settings``).  Its SHA-256 is the version.  So a file's
comments, key order or layout do not change the version; a changed value, a default
that changed between releases, or a prompt re-recorded under the same name does.

Secrets never enter it.  The settings are redacted *before* hashing, so the stored
settings reproduce the version exactly (anyone can check a row of ``config history``)
and the version is no oracle for guessing a secret.  A redacted key keeps only whether
it is set.  The price: replacing one secret by another is not a new version.

Pure: the prompt files' digests are handed in (the app factory and ``config check``
have each prompt loaded already), so this module reads no file.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .config import Config
from .storage.catalog.config_versions import version_of_settings

#: Key paths (``fnmatch`` patterns) whose values are never stored or hashed.  Operator
#: tokens are hashes already, but a hash of a short token can be guessed; a webhook URL
#: may carry the receiver's token in its path or query.
SECRET_KEYS: frozenset[str] = frozenset({"operators.*.token_sha256", "webhook.url"})

#: Fields of ``Config`` that say where it came from, not how the proxy behaves.
NOT_SETTINGS: frozenset[str] = frozenset({"source", "warnings"})

#: How many hex digits of a version people read (logs, ``config history``).
SHORT = 12

SET, NOT_SET = "set", "not set"

Scalar = str | int | float | bool | None
Settings = dict[str, Any]  # key path -> a JSON value (a scalar or a list of scalars)


@dataclass(frozen=True, slots=True)
class EffectiveConfig:
    """A version and the redacted, flattened settings it is the hash of."""

    version: str
    settings: Mapping[str, Any]

    @property
    def short(self) -> str:
        return self.version[:SHORT]


def effective_settings(config: Config, prompt_sha256: Mapping[Path, str]) -> Settings:
    """Every key of ``config`` by its path, secrets redacted, with ``KEY.sha256`` beside
    each prompt key (``prompt_sha256`` maps each file ``config.prompt_files()`` names to
    the digest of its bytes; a file missing from it is a ``KeyError``)."""
    flat: Settings = {}
    for item in dataclasses.fields(config):
        if item.name not in NOT_SETTINGS:
            _flatten(item.name, getattr(config, item.name), flat)
    for key, path in config.prompt_files():
        flat[f"{key}.sha256"] = prompt_sha256[path]
    return {key: (_redacted(value) if is_secret(key) else value) for key, value in flat.items()}


def version_of(config: Config, prompt_sha256: Mapping[Path, str]) -> EffectiveConfig:
    settings = effective_settings(config, prompt_sha256)
    return EffectiveConfig(version_of_settings(settings), settings)


def is_secret(key: str) -> bool:
    return any(fnmatchcase(key, pattern) for pattern in SECRET_KEYS)


def _redacted(value: Any) -> str:
    return NOT_SET if value in (None, "", []) else SET


def _flatten(key: str, value: Any, into: Settings) -> None:
    """``value`` under ``key``: a settings dataclass or a mapping by its keys, a tuple
    of settings by each one's ``name`` (operators) or else its place (routing rules,
    where order matters), anything else as one JSON value."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            _flatten(f"{key}.{item.name}", getattr(value, item.name), into)
    elif isinstance(value, Mapping):
        for name, item in value.items():
            _flatten(f"{key}.{name}", item, into)
    elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
        for i, item in enumerate(value):
            name = getattr(item, "name", None)
            _flatten(f"{key}.{name}" if isinstance(name, str) else f"{key}[{i}]", item, into)
    else:
        into[key] = _json(key, value)


def _json(key: str, value: Any) -> Scalar | list[Scalar]:
    if isinstance(value, tuple):
        return [_scalar(key, item) for item in value]
    if isinstance(value, frozenset):
        return sorted(_scalar(key, item) for item in value)  # type: ignore[type-var]
    return _scalar(key, value)


def _scalar(key: str, value: Any) -> Scalar:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Path | ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    if isinstance(value, re.Pattern):
        return str(value.pattern)
    if isinstance(value, time):  # access.working_hours
        return value.isoformat("minutes")
    if isinstance(value, ZoneInfo):  # access.timezone
        return value.key
    # a new kind of setting must say how it is written, or it would slip out of the hash
    raise TypeError(f"{key}: no canonical form for {type(value).__name__}")
