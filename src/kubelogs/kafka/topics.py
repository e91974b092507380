"""Topic names with ``{field.path}`` references, resolved once per batch.

A batch holds the lines of one file, which share their Kubernetes metadata, so a topic
such as ``logs-{kubernetes.namespace}`` is resolved from the file's pre-encoded metadata
once per distinct metadata (cached), never per line.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from kubelogs.pipeline.event import Batch

_FIELD_REF = re.compile(r"\{([^{}]+)\}")
_TOPIC_ILLEGAL = re.compile(r"[^a-zA-Z0-9._-]")
_CACHE_SIZE = 4096


class TopicTemplate:
    """A topic name with ``{field.path}`` references, resolved once per batch from its
    file's metadata (events of a batch share it)."""

    def __init__(self, template: str, schema: str) -> None:
        self.template = template
        self.static = _FIELD_REF.search(template) is None
        self._schema = schema
        self._cache: dict[tuple[bytes, str], str] = {}

    def resolve(self, batch: Batch) -> str:
        if self.static:
            return self.template
        ctx = batch.ctx
        meta = ctx.meta_fluentd if self._schema == "fluentd" else ctx.meta_ecs
        key = (meta, ctx.path)
        name = self._cache.get(key)
        if name is None:
            try:
                doc: Any = msgspec.json.decode(b"{" + meta + b"}") if meta else {}
            except msgspec.DecodeError:
                doc = {}
            doc.setdefault("log", {"file": {"path": ctx.path}})
            name = _FIELD_REF.sub(lambda m: _lookup(doc, m.group(1)), self.template)
            name = _TOPIC_ILLEGAL.sub("_", name)[:249]
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = name
        return name


def _lookup(doc: Any, path: str) -> str:
    for part in path.strip().split("."):
        if not isinstance(doc, dict) or part not in doc:
            return "unknown"
        doc = doc[part]
    return str(doc) if isinstance(doc, str | int | float) and str(doc) else "unknown"
