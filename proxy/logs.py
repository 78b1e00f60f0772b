"""Where log records go, and in what form: readable lines or JSON for log shippers.

``configure_logging(level, fmt)`` sets up the root logger once per process, from
``[logging]`` in the config or the command line's ``--log-level``/``--log-format``.  The
JSON form is one object per line with exactly ``time``, ``level``, ``logger``,
``message`` and, when the record carries one, ``exception``: a record's ``args`` and
any ``extra`` attributes are never copied out, so nothing reaches the log shipper that
the message itself does not say.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in the text are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        entry = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Send every record at ``level`` (a name, e.g. ``"INFO"``) or above to ``stream``
    (standard error by default) as ``fmt``: ``"text"`` or ``"json"``."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
