"""Configuration: TOML in, typed and validated settings out.

Every key has a default, so ``recproxy serve`` runs with no file at all.  An unknown key
or a bad value stops start-up with a ``ConfigError`` that names the key
(``recording.segment_seconds: must be an integer from 1 to 3600, got 0``).  Relative paths
resolve against the config file's folder (against the working directory when there is no
file).  ``docs/configuration.md`` documents every key.
"""

from __future__ import annotations

import hashlib
import ipaddress
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGE_ROOT = Path(__file__).resolve().parent
PROMPTS_DIR = PACKAGE_ROOT.parent / "prompts"


class ConfigError(ValueError):
    """A configuration problem, naming the key."""


Address = tuple[str, int]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class SipSettings:
    listen: Address = ("0.0.0.0", 5060)
    advertise: str = "127.0.0.1"
    trusted_peers: tuple[Network, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    transports: tuple[str, ...] = ("udp", "tcp")
    user_agent: str = "recproxy"

    def is_trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.trusted_peers)


@dataclass(frozen=True)
class RoutingSettings:
    call_taker: str = "sip:calltaker@127.0.0.1:5070"
    ring_timeout_seconds: float = 60.0


@dataclass(frozen=True)
class NoticeSettings:
    prompt: Path = PROMPTS_DIR / "notice-en-GB.wav"
    mode: str = "answer"  # "answer": 200 then notice; "early-media": 183 then notice
    ringback: str = "uk"  # "uk" | "eu"


@dataclass(frozen=True)
class MediaSettings:
    rtp_ports: tuple[int, int] = (20000, 20999)
    jitter_ms: int = 60


@dataclass(frozen=True)
class RecordingSettings:
    dir: Path = Path("data/recordings")
    segment_seconds: int = 10
    public_key: Path = Path("data/keys/recording.pub")
    private_key: Path = Path("data/keys/recording.key")
    encoding: str = "ulaw"  # "ulaw" | "pcm16"
    fsync: str = "chunk"  # "chunk" | "segment" | "none"
    pause_mode: str = "silence"  # "silence" | "skip"


@dataclass(frozen=True)
class CatalogSettings:
    path: Path = Path("data/catalog.sqlite3")


@dataclass(frozen=True)
class HttpSettings:
    listen: Address = ("127.0.0.1", 8080)


@dataclass(frozen=True)
class ShutdownSettings:
    grace_seconds: float = 30.0


@dataclass(frozen=True)
class Config:
    sip: SipSettings = field(default_factory=SipSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    notice: NoticeSettings = field(default_factory=NoticeSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    catalog: CatalogSettings = field(default_factory=CatalogSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    shutdown: ShutdownSettings = field(default_factory=ShutdownSettings)
    source: Path | None = None  # the file it came from
    version: str = "defaults"  # SHA-256 of the file (P22: each call records it)

    @property
    def data_dir(self) -> Path:
        return self.catalog.path.parent


# ---------------------------------------------------------------------------------------
# Value parsers: each takes the raw TOML value and returns the typed one or raises
# ValueError with a message that completes "<key>: ...".


def _int(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}, got {value!r}")
        return value

    return parse


def _number(low: float, high: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"must be from {low:g} to {high:g}, got {value!r}")
        return float(value)

    return parse


def _choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(map(repr, options))}, got {value!r}")
        return str(value)

    return parse


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value


def parse_hostport(value: Any) -> Address:
    """``"host:port"`` or ``"[v6]:port"``."""
    if not isinstance(value, str):
        raise ValueError(f'must be a string "HOST:PORT", got {value!r}')
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f'must be "HOST:PORT", got {value!r}')
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"host must be an IP address, got {host!r}") from None
        host = "127.0.0.1"
    return host, int(port)


def _ip(value: Any) -> str:
    text = _text(value)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"must be an IP address, got {value!r}") from None
    return text


def _networks(value: Any) -> tuple[Network, ...]:
    if not isinstance(value, list):
        raise ValueError(f"must be a list of CIDR strings, got {value!r}")
    networks: list[Network] = []
    for item in value:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except (TypeError, ValueError):
            raise ValueError(f'{item!r} is not a CIDR network like "10.0.0.0/8"') from None
    return tuple(networks)


def _transports(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f'must be a non-empty list of "udp"/"tcp", got {value!r}')
    out: list[str] = []
    for item in value:
        if item not in ("udp", "tcp"):
            raise ValueError(f'{item!r} is not "udp" or "tcp"')
        out.append(item)
    return tuple(out)


def _sip_uri(value: Any) -> str:
    text = _text(value)
    if not text.lower().startswith(("sip:", "sips:")) or ("@" not in text and ":" not in text[4:]):
        raise ValueError(f'must be a SIP URI like "sip:desk@192.0.2.10:5060", got {value!r}')
    from .sip.errors import RemoteSipError
    from .sip.uri import SipUri, parse_uri

    try:
        uri = parse_uri(text)
    except RemoteSipError:
        raise ValueError(f"is not a valid SIP URI: {value!r}") from None
    if not isinstance(uri, SipUri):
        raise ValueError(f"must be a sip: URI, got {value!r}")
    return text


def _port_range(value: Any) -> tuple[int, int]:
    if not isinstance(value, str) or value.count("-") != 1:
        raise ValueError(f'must be "LOW-HIGH" like "20000-20999", got {value!r}')
    low_text, high_text = value.split("-")
    if not (low_text.strip().isdigit() and high_text.strip().isdigit()):
        raise ValueError(f'must be "LOW-HIGH" like "20000-20999", got {value!r}')
    low, high = int(low_text), int(high_text)
    if not 1024 <= low < high <= 65535 or high - low < 3:
        raise ValueError(
            f"must be a range within 1024-65535 holding at least 2 port pairs, got {value!r}"
        )
    return low, high


PathParser = Callable[[Any], Path]


def _path(base: Path) -> PathParser:
    def parse(value: Any) -> Path:
        text = _text(value)
        path = Path(text).expanduser()
        return path if path.is_absolute() else (base / path)

    return parse


# section → key → (dataclass field, parser factory given the base folder)
_Parser = Callable[[Any], Any]


def _schema(base: Path) -> Mapping[str, Mapping[str, _Parser]]:
    path = _path(base)
    return {
        "sip": {
            "listen": parse_hostport,
            "advertise": _ip,
            "trusted_peers": _networks,
            "transports": _transports,
            "user_agent": _text,
        },
        "routing": {
            "call_taker": _sip_uri,
            "ring_timeout_seconds": _number(1, 600),
        },
        "notice": {
            "prompt": path,
            "mode": _choice("answer", "early-media"),
            "ringback": _choice("uk", "eu"),
        },
        "media": {
            "rtp_ports": _port_range,
            "jitter_ms": _int(20, 200),
        },
        "recording": {
            "dir": path,
            "segment_seconds": _int(1, 3600),
            "public_key": path,
            "private_key": path,
            "encoding": _choice("ulaw", "pcm16"),
            "fsync": _choice("chunk", "segment", "none"),
            "pause_mode": _choice("silence", "skip"),
        },
        "catalog": {"path": path},
        "http": {"listen": parse_hostport},
        "shutdown": {"grace_seconds": _number(0, 3600)},
    }


_SECTIONS: Mapping[str, type] = {
    "sip": SipSettings,
    "routing": RoutingSettings,
    "notice": NoticeSettings,
    "media": MediaSettings,
    "recording": RecordingSettings,
    "catalog": CatalogSettings,
    "http": HttpSettings,
    "shutdown": ShutdownSettings,
}

_DEFAULT_PATHS = {
    ("recording", "dir"),
    ("recording", "public_key"),
    ("recording", "private_key"),
    ("catalog", "path"),
}


def build_config(
    data: Mapping[str, Any], *, base: Path, source: Path | None = None, version: str = "defaults"
) -> Config:
    """Validate a parsed TOML document.  ``base`` is where relative paths start."""
    schema = _schema(base)
    sections: dict[str, Any] = {}
    for name, value in data.items():
        if name not in schema:
            raise ConfigError(f"{name}: unknown section (known: {', '.join(schema)})")
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: must be a table [{name}]")
    for name, cls in _SECTIONS.items():
        raw = data.get(name, {})
        keys = schema[name]
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in keys:
                raise ConfigError(f"{name}.{key}: unknown key (known: {', '.join(keys)})")
            try:
                values[key] = keys[key](value)
            except ValueError as exc:
                raise ConfigError(f"{name}.{key}: {exc}") from None
        for section_key in keys:
            if (name, section_key) in _DEFAULT_PATHS and section_key not in values:
                default = getattr(cls(), section_key)
                values[section_key] = base / default
        sections[name] = cls(**values)
    return Config(**sections, source=source, version=version)


def load_config(path: Path | None = None, *, cwd: Path | None = None) -> Config:
    """Load ``path`` (or the embedded defaults when None)."""
    if path is None:
        return build_config({}, base=(cwd or Path.cwd()).resolve())
    path = path.expanduser().resolve()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    version = hashlib.sha256(raw).hexdigest()[:16]
    return build_config(data, base=path.parent, source=path, version=version)
