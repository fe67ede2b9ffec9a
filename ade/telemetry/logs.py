"""Log lines: text for a person at a terminal, one JSON object per line for a log shipper.

``ADE_LOG_FORMAT`` picks (``text`` or ``json``); unset, a terminal on stderr gets text and
anything else (a pipe, a file, journald, a container runtime) gets JSON. Structured fields travel
in ``extra={"ade_fields": {...}}`` (:func:`log_fields`): the JSON formatter puts them at the top
level of the object, the text formatter appends them as ``key=value``.

What may appear in a field is decided where the line is made (the access log, the job log):
ids, routes, statuses, durations, limits. Never a cell value, a document's content, a file name,
an error message written for the user, or a key.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

__all__ = [
    "FIELDS",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "log_fields",
    "resolve_log_format",
]

FIELDS = "ade_fields"
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_fields(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    """Log ``message`` with structured ``fields`` (None values are left out)."""
    if logger.isEnabledFor(level):
        clean = {k: v for k, v in fields.items() if v is not None}
        logger.log(level, message, extra={FIELDS: clean})


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, FIELDS, None)
    return fields if isinstance(fields, dict) else {}


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _fields(record)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return line


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", ...fields, "exc"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def resolve_log_format(configured: str | None, stream: IO[str] | None = None) -> str:
    if configured is not None:
        return configured
    stream = stream or sys.stderr
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def configure_logging(configured: str | None, stream: IO[str] | None = None) -> str:
    """Send INFO and above to ``stream`` (stderr) in the resolved format; returns it."""
    fmt = resolve_log_format(configured, stream)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return fmt
