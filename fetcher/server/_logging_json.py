"""Structured logs: one JSON object per line, a request id on every line of a request.

The request id lives in a contextvar set by the RPC wrapper (fetcher.server._rpc_context), so
any log call made while serving a request carries it without being passed along.
Secrets are scrubbed from every line: URL passwords, bearer tokens, and the literal
values registered with `Redactor.add` (tokens read from env vars).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys
import traceback
from typing import Any, Final

#: The id of the request being served in this context ("" outside a request).
request_id: Final[contextvars.ContextVar[str]] = contextvars.ContextVar(
    "fetcher_request_id", default=""
)

# The attributes every LogRecord has: anything else was passed as `extra=` and is logged.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
) | {"message", "asctime", "taskName"}
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:@/\s]*:)[^@/\s]+(?=@)")
_BEARER = re.compile(r"(?i)(?P<head>bearer\s+)[A-Za-z0-9._~+/=-]+")
_MIN_SECRET = 4  # shorter literal "secrets" would scrub ordinary words


class Redactor:
    """Scrubs secrets from text: URL passwords, bearer tokens and registered literals."""

    def __init__(self) -> None:
        self._literals: set[str] = set()

    def add(self, secret: str) -> None:
        """Never let `secret` appear in a log line."""
        if len(secret) >= _MIN_SECRET:
            self._literals.add(secret)

    def scrub(self, text: str) -> str:
        """`text` with every secret replaced by ***."""
        text = _URL_PASSWORD.sub(r"\g<head>***", text)
        text = _BEARER.sub(r"\g<head>***", text)
        for secret in self._literals:
            if secret in text:
                text = text.replace(secret, "***")
        return text


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: ts, level, logger, msg, request_id, then extras."""

    def __init__(self, redactor: Redactor, static: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._redactor = redactor
        self._static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a JSON object on one line."""
        ts = dt.datetime.fromtimestamp(record.created, dt.UTC)
        out: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            out["request_id"] = rid
        out.update(self._static)
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, int | float | bool | None) else str(value)
        if record.exc_info:
            out["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        text = json.dumps(out, ensure_ascii=False, default=str)
        return self._redactor.scrub(text)


class TextFormatter(logging.Formatter):
    """Plain text lines (for a terminal) with the request id and secrets scrubbed."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one text line."""
        text = super().format(record)
        rid = request_id.get()
        return self._redactor.scrub(f"{text} [request_id={rid}]" if rid else text)


def configure_logging(
    fmt: str,
    level: int,
    redactor: Redactor,
    static: dict[str, Any] | None = None,
    stream: Any = None,
) -> None:
    """Replace the root logger's handlers with one writing `fmt` (json|text) lines to stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    formatter: logging.Formatter = (
        JsonFormatter(redactor, static) if fmt == "json" else TextFormatter(redactor)
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
