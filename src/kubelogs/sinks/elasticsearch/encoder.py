"""Batch -> bulk items: a ``create`` action line and a document line per event. Pure.

The documents are the shared encoder's (`codecs.document`, DESIGN.md section 5), so the
bytes indexed are the bytes the `file` sink writes. The action line carries the target
index and the event's deterministic ``_id`` (`Batch.event_id`), which makes a resend a
``409`` rather than a second document.

Index names are resolved per batch, not per line: everything a ``{field.path}``
reference usually names (namespace, pod, labels) is file metadata, shared by the whole
batch, and strftime codes depend on the time only, so names are formatted once per
distinct day (or second, when the pattern has a time-of-day code). Rows with parsed
fields are resolved on their own when the pattern refers to a field the metadata lacks.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from kubelogs.codecs.document import Schema, encode_documents
from kubelogs.pipeline.event import Batch

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode

_REF = re.compile(r"\{([^{}]*)\}")
_FIELD = re.compile(r"^[A-Za-z0-9_@][A-Za-z0-9_.@/-]*$")
_TIME_OF_DAY = re.compile(r"%[HIMSpfXcTRrsz]")
_FORBIDDEN = re.compile(r'[\\/*?"<>| ,#:]')
MISSING = "unknown"
"""What a ``{field}`` reference without a fallback becomes when the field is missing."""
NS = 1_000_000_000
DAY_NS = 86_400 * NS


def sanitize_index(name: str) -> str:
    """Lower-case, forbidden characters to ``_``, no leading ``-_+``: a name the cluster
    accepts (an invalid name would reject every document of a pod for good)."""
    name = _FORBIDDEN.sub("_", name.lower()).lstrip("-_+")
    if name in ("", ".", ".."):
        return "kubelogs"
    return name[:255]


def get_path(doc: Mapping[str, Any], path: str) -> Any:
    """`a.b.c` in nested objects, also when a key itself holds dots."""
    cur: Any = doc
    rest = path
    while rest:
        if not isinstance(cur, Mapping):
            return None
        if rest in cur:
            return cur[rest]
        head, dot, rest = rest.partition(".")
        if not dot:
            return None
        cur = cur.get(head)
    return cur


@dataclass(frozen=True)
class _Ref:
    path: str
    fallback: str | None


class IndexPattern:
    """A compiled ``index`` (or data stream) pattern: literal text, strftime codes on the
    event's UTC time, and ``{field.path}`` / ``{field.path:-fallback}`` references."""

    def __init__(self, pattern: str) -> None:
        if not pattern.strip():
            raise ValueError("must not be empty")
        self.pattern = pattern
        self.parts: list[str | _Ref] = []
        pos = 0
        for m in _REF.finditer(pattern):
            self.parts.append(pattern[pos : m.start()])
            body = m.group(1)
            path, sep, fallback = body.partition(":-")
            path = path.strip()
            if not _FIELD.match(path):
                raise ValueError(
                    f"{{{body}}} is not a field reference like {{kubernetes.pod.name}}"
                )
            self.parts.append(_Ref(path, fallback if sep else None))
            pos = m.end()
        tail = pattern[pos:]
        if "{" in tail or "}" in tail:
            raise ValueError(f"unbalanced brace in {pattern!r}")
        self.parts.append(tail)
        self.refs = [p for p in self.parts if isinstance(p, _Ref)]
        self.has_time = "%" in pattern
        self.time_key = NS if _TIME_OF_DAY.search(pattern) else DAY_NS
        try:
            time.strftime(pattern.replace("{", "").replace("}", ""), time.gmtime(0))
        except ValueError as exc:
            raise ValueError(f"bad strftime code in {pattern!r}: {exc}") from None

    def literal_prefix(self) -> str:
        """The constant start of every name (for the template's index pattern)."""
        first = self.parts[0]
        assert isinstance(first, str)
        return sanitize_index(first.split("%", 1)[0]) if first.split("%", 1)[0] else ""

    def fill(self, lookup: Callable[[str], Any]) -> str:
        """The pattern with its field references replaced (strftime codes kept)."""
        if not self.refs:
            return self.pattern
        out: list[str] = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
                continue
            value = lookup(p.path)
            if value is None or value == "" or isinstance(value, (dict, list)):
                out.append(p.fallback if p.fallback is not None else MISSING)
            else:
                out.append(str(value).replace("%", "%%"))
        return "".join(out)


class IndexResolver:
    """Index names of a batch's events, with the caches that keep it per batch."""

    def __init__(self, pattern: IndexPattern, schema: Schema) -> None:
        self.default = pattern
        self.schema = schema
        self._patterns: dict[str, IndexPattern] = {}
        self._meta: dict[bytes, dict[str, Any]] = {}
        self._names: dict[tuple[str, int], bytes] = {}

    def _pattern_for(self, batch: Batch) -> IndexPattern:
        override = batch.ctx.extra.get("index")
        if not override:
            return self.default
        pat = self._patterns.get(override)
        if pat is None:
            try:
                pat = IndexPattern(override)
            except ValueError:
                pat = IndexPattern(override.replace("{", "(").replace("}", ")").replace("%", "_"))
            if len(self._patterns) > 1024:
                self._patterns.clear()
            self._patterns[override] = pat
        return pat

    def _meta_doc(self, batch: Batch) -> dict[str, Any]:
        ctx = batch.ctx
        meta = ctx.meta_fluentd if self.schema == "fluentd" else ctx.meta_ecs
        doc = self._meta.get(meta)
        if doc is None:
            try:
                doc = _decode(b"{" + meta + b"}") if meta else {}
            except msgspec.DecodeError:
                doc = {}
            if not isinstance(doc, dict):
                doc = {}
            if self.schema == "ecs":
                doc.setdefault("log", {"file": {"path": ctx.path}})
            if len(self._meta) > 4096:
                self._meta.clear()
            self._meta[meta] = doc
        return doc

    def names(self, batch: Batch) -> list[bytes]:
        """One JSON-encoded index name per event (already quoted, for splicing)."""
        pat = self._pattern_for(batch)
        n = len(batch)
        meta = self._meta_doc(batch) if pat.refs else {}
        base = pat.fill(lambda path: get_path(meta, path))
        fields = batch.fields if pat.refs else None
        times = batch.times
        if not pat.has_time and not fields:
            return [self._format(base, 0, has_time=False)] * n
        out: list[bytes] = []
        key = pat.time_key
        for i in range(n):
            template = base
            if fields and i in fields:
                row = fields[i]

                def lookup(path: str, row: Mapping[str, Any] = row) -> Any:
                    value = get_path(meta, path)
                    return value if value is not None else get_path(row, path)

                template = pat.fill(lookup)
            out.append(self._format(template, times[i] // key * key, has_time=pat.has_time))
        return out

    def _format(self, template: str, t_ns: int, *, has_time: bool) -> bytes:
        k = (template, t_ns)
        name = self._names.get(k)
        if name is None:
            if has_time:
                text = time.strftime(template, time.gmtime(t_ns // NS))
            else:
                text = template.replace("%%", "%")  # `fill` escaped field values
            name = _encode(sanitize_index(text))
            if len(self._names) > 8192:
                self._names.clear()
            self._names[k] = name
        return name


@dataclass(slots=True)
class EncodedBatch:
    """Bulk items of one batch: ``actions[i]`` + ``docs[i]`` is event i's pair of lines
    (each without its newline)."""

    actions: list[bytes]
    docs: list[bytes]


def encode_batch(batch: Batch, resolver: IndexResolver, schema: Schema) -> EncodedBatch:
    """The ``create`` action and the document of every event of `batch`."""
    docs = encode_documents(batch, schema)
    names = resolver.names(batch)
    prefix = batch.ctx.id_prefix
    actions = [
        b'{"create":{"_index":' + name + b',"_id":"' + f"{prefix}-{off:x}".encode() + b'"}}'
        for name, off in zip(names, batch.offsets, strict=True)
    ]
    return EncodedBatch(actions, docs)


def action_line(index: str, doc_id: str) -> bytes:
    """A ``create`` action line (for replaying dead letters)."""
    return _encode({"create": {"_index": index, "_id": doc_id}})


def parse_action(action: bytes) -> tuple[str, str]:
    """(index, _id) of an action line written by `encode_batch` or `action_line`."""
    obj = _decode(action)
    body = obj.get("create") or {}
    return str(body.get("_index", "")), str(body.get("_id", ""))
