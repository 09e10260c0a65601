"""Structured logs: one JSON object per line, one line per HTTP request.

What a line may hold is decided here: route templates rather than raw paths (paths carry blob
ids and file names), the account id rather than the username, method names rather than
arguments. Credentials and message content never reach a log.

Push tokens travel in URLs (``?access_token=``, gateway.push.tokens), and uvicorn logs the path
and query of every WebSocket handshake: :class:`RedactTokens` rewrites the token out of every
record of uvicorn's loggers before any handler sees it, and out of every line this module
formats, whoever logged it.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson

ACCESS = logging.getLogger("gateway.access")
# The loggers that print request targets: uvicorn's (WebSocket handshakes at info, the HTTP
# access log if someone turns it on, ASGI message traces).
URL_LOGGERS = ("uvicorn.error", "uvicorn.access", "uvicorn.asgi")
# The parameter's name as a client may spell it: underscore plain or percent-encoded.
_TOKEN_PARAMETER = re.compile(r"(access(?:_|%5f)token=)[^&\s\"'#]*", re.IGNORECASE)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with the value of every ``access_token`` query parameter replaced."""
    if "token" not in text.lower():
        return text
    return _TOKEN_PARAMETER.sub(r"\g<1>" + REDACTED, text)


class RedactTokens(logging.Filter):
    """Rewrites a record whose message holds a push token; lets every record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # A format that does not fit its arguments: the handler would print them raw.
            record.msg, record.args = redact(str(record.msg)), None
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_REDACT = RedactTokens()


def redact_urls() -> None:
    """Install the redaction on the loggers that print URLs (idempotent)."""
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)


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
        return redact(orjson.dumps(entry, default=str).decode())


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    redact_urls()


def access(**fields: Any) -> None:
    """Log the one line of an HTTP request."""
    ACCESS.info("request", extra={"fields": fields})
