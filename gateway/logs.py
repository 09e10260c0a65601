"""Structured logs: one JSON object per line, one line per HTTP request.

What a line may hold is decided here: route templates rather than raw paths (paths carry blob
ids and file names), the account id rather than the username, method names rather than
arguments. Credentials and message content never reach a log.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

ACCESS = logging.getLogger("gateway.access")


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line; extra fields come from ``record.fields``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def access(**fields: Any) -> None:
    """Log the one line of an HTTP request."""
    ACCESS.info("request", extra={"fields": fields})
