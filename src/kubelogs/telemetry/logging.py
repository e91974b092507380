"""kubelogs' own logs on stderr: console or JSON lines, with repeats rate-limited.

Tracebacks are for developers: unless `tracebacks` is asked for (``kubelogs run --debug``
or ``KUBELOGS_DEBUG=1``), a logged exception is its one-line summary, so that no
traceback reaches an operator's terminal or log collector (DESIGN.md section 3).

A broken file or an unreachable server can fail thousands of times a minute; the same
message template from the same logger is written at most once per `RATE_LIMIT_SECONDS`,
and the next one that gets through says how many were suppressed (as Vector's
internal-event rate limiting does).
"""

from __future__ import annotations

import logging
import sys
import time

import msgspec

RATE_LIMIT_SECONDS = 10.0
_encode = msgspec.json.Encoder().encode


class RateLimitFilter(logging.Filter):
    def __init__(self, interval: float = RATE_LIMIT_SECONDS) -> None:
        super().__init__()
        self.interval = interval
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        n = self._suppressed.pop(key, 0)
        if n:
            record.suppressed = n
        if len(self._last) > 10000:
            self._last.clear()
        return True


def _one_line(exc_info: object) -> str:
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and exc_info[1] is not None:
        exc = exc_info[1]
        return f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return ""


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a record's `fields` (a dict given as
    ``extra={"fields": {...}}``) is added under ``fields`` for machines to read."""

    def __init__(self, tracebacks: bool = False) -> None:
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        suppressed = getattr(record, "suppressed", 0)
        if suppressed:
            doc["suppressed"] = suppressed
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc["fields"] = fields
        if record.exc_info:
            doc["error"] = (
                self.formatException(record.exc_info)
                if self.tracebacks
                else _one_line(record.exc_info)
            )
        return _encode(doc).decode()


class ConsoleFormatter(logging.Formatter):
    def __init__(self, tracebacks: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and not self.tracebacks:
            saved = record.exc_info, record.exc_text
            record.exc_info, record.exc_text = None, None
            try:
                text = f"{super().format(record)} ({_one_line(saved[0])})"
            finally:
                record.exc_info, record.exc_text = saved
        else:
            text = super().format(record)
        suppressed = getattr(record, "suppressed", 0)
        if suppressed:
            text += f" ({suppressed} similar messages suppressed)"
        return text


def setup_logging(level: str = "info", fmt: str = "console", *, tracebacks: bool = False) -> None:
    root = logging.getLogger("kubelogs")
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(tracebacks) if fmt == "json" else ConsoleFormatter(tracebacks)
    )
    handler.addFilter(RateLimitFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
