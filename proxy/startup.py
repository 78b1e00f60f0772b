"""The one error both services raise when they cannot start."""

from __future__ import annotations


class StartupError(RuntimeError):
    """A service cannot start (a missing key, a wrong passphrase, a port in use...): the
    message says why, in one line, naming the setting."""
