"""recproxy: a SIP/RTP recording proxy."""

from importlib.metadata import PackageNotFoundError, version

try:  # one source of truth: the version in pyproject.toml, as installed
    __version__ = version("recproxy")
except PackageNotFoundError:  # pragma: no cover - a checkout run without installing
    __version__ = "0+unknown"
