"""Log records on stderr with their ``extra=`` details: text (key=value) or JSON lines.

``log.error("linux apply failed, rolled back", extra={"plan": pid, "error": str(exc)})``
prints ``... ERROR shadowcast.act.linux: linux apply failed, rolled back plan=p1 error='...'``
(the standard formatter drops ``extra``), or one JSON object per line with ``--log-format
json`` (``log_format: json`` in the settings).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
FORMATS = ("text", "json")


def fields(details: dict[str, Any]) -> dict[str, Any]:
    """``details`` made safe to pass as ``extra=``: a key a LogRecord already has (``created``,
    ``name``, ``msg``, ...) would make ``logging`` raise KeyError at the call, and only when the
    level is enabled; such keys get a ``detail_`` prefix instead."""
    return {(f"detail_{k}" if k in _STANDARD else k): v for k, v in details.items()}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller passed with ``extra=`` (in the order given)."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _value(v: Any) -> str:
    text = v if isinstance(v, str) else repr(v) if not isinstance(v, int | float) else str(v)
    if text == "" or any(c.isspace() or c in "='\"" for c in text):
        return repr(text)
    return text


class KeyValueFormatter(logging.Formatter):
    """The usual one-line format, then `` key=value`` for each extra field."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = extra_fields(record)
        if extra:
            head, sep, tail = line.partition("\n")  # keep a traceback below the first line
            line = head + "".join(f" {k}={_value(v)}" for k, v in extra.items()) + sep + tail
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for k, v in extra_fields(record).items():
            doc.setdefault(k, v)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup_logging(level: str, fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send every record at ``level`` and above to stderr in ``fmt`` (text or json)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_shadowcast", False)]:
        root.removeHandler(old)
    handler._shadowcast = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
