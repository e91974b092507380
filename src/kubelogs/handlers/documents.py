"""A `logging.LogRecord` as the document both application handlers send.

One shape for `ForwardHandler` and `HttpHandler`, so an aggregator stores the same
fields whichever way an application ships: the formatted message, ECS `log.level` and
`log.logger`, every `extra=` attribute as a field, and `error.*` for an exception.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)
"""Attributes every record has; anything else on a record came from `extra=`."""


def record_document(handler: logging.Handler, record: logging.LogRecord) -> dict[str, Any]:
    """The record's fields (no time and no id: each handler adds those its own way)."""
    message = handler.format(record) if handler.formatter is not None else record.getMessage()
    doc: dict[str, Any] = {
        "message": message,
        "log": {"level": record.levelname, "logger": record.name},
    }
    for key, value in record.__dict__.items():
        if key not in STANDARD_ATTRS and not key.startswith("_"):
            doc[key] = value
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        doc["error"] = {
            "type": type(exc).__name__,
            "message": str(exc),
            "stack_trace": "".join(traceback.format_exception(*record.exc_info)),
        }
    return doc
