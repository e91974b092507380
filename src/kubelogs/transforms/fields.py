"""Field values of events in a batch, by the dotted names documents and queries use.

Transforms that read a field (`sample`'s key, `throttle`'s key template, `modify`'s
``{field.path}`` templates, `redact`'s fields) look it up as `kubelogs search` would find
it in the document (`store.matcher.get_field`): the row's columns (``message``,
``stream``, ``@timestamp``, ``log.offset``), then its parsed fields, then what the file
shares (``kubernetes.*``, ``host.*``, ``log.file.path``), decoded once per context.
A template whose references are all file fields is rendered once per batch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

from kubelogs.codecs.document import render_file_fields
from kubelogs.codecs.timestamps import format_timestamp
from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.store.matcher import get_field, is_missing

__all__ = [
    "FileFields",
    "Template",
    "decode_members",
    "encode_members",
    "nests",
    "pop_path",
    "remove_path",
    "set_path",
    "to_text",
]

ROW_FIELDS = ("message", "stream", "@timestamp", "log.offset", "log.flags")
_REF_RE = re.compile(r"\{([^{}]+)\}")
_MAX_CONTEXTS = 4096
RESERVED_TOP = frozenset(
    {"@timestamp", "message", "stream", "log", "kubernetes", "host", "docker", "time"}
)
"""Top-level names kubelogs writes itself (a parsed field by such a name is renamed
``<name>_parsed`` in documents): paths under them stay one dotted key, but for the
members of a parsed ``log`` object (``log.level``, see `nests`)."""
LOG_OWN = frozenset({"file", "offset", "flags"})
"""Members of the document's ``log`` object kubelogs writes itself; a parsed ``log``
object's other members (``level``) are written beside them (`codecs.document`)."""


class FileFields:
    """Decoded file fields per context (cached; a file's context is shared by its batches)."""

    def __init__(self) -> None:
        self._docs: dict[tuple[str, bytes], dict[str, Any]] = {}

    def doc(self, ctx: FileContext) -> dict[str, Any]:
        key = (ctx.path, ctx.meta_ecs)
        doc = self._docs.get(key)
        if doc is None:
            if len(self._docs) >= _MAX_CONTEXTS:
                del self._docs[next(iter(self._docs))]
            raw = render_file_fields("ecs", path=ctx.path, meta=ctx.meta_ecs)
            doc = self._docs[key] = msgspec.json.decode(raw)
        return doc

    def value(self, batch: Batch, row: int, path: str) -> Any:
        """The value of `path` for event `row` (`is_missing` when it has none)."""
        if path in ROW_FIELDS:
            if path == "message":
                return batch.messages[row]
            if path == "stream":
                return batch.streams[row] or None
            if path == "@timestamp":
                return format_timestamp(batch.times[row])
            if path == "log.offset":
                return batch.offsets[row]
            flags = batch.flags.get(row) if batch.flags else None
            return list(flags) if flags else None
        if batch.fields:
            own = batch.fields.get(row)
            if own:
                head, _, rest = path.partition(".")
                if head == "log" and rest:
                    # A literal dotted key first, as `get_field` reads the document;
                    # then a parsed `log` object, written inside the document's `log`
                    # (`codecs.document`): `log.level` is the parser's level.
                    found = own.get(path)
                    parsed_log = own.get("log")
                    if (
                        is_missing(found)
                        and isinstance(parsed_log, dict)
                        and rest.split(".", 1)[0] not in LOG_OWN
                    ):
                        found = get_field(parsed_log, rest)
                elif head in RESERVED_TOP:
                    # documents rename such parsed keys (`message` -> `message_parsed`);
                    # only a literal dotted key is found under this name
                    found = own.get(path) if path not in RESERVED_TOP else None
                else:
                    found = get_field(own, path)
                if not is_missing(found):
                    return found
        return get_field(self.doc(batch.ctx), path)


def to_text(value: Any) -> str:
    """A field value as template text: strings as they are, missing as empty, the rest
    as JSON."""
    if is_missing(value):
        return ""
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


@dataclass(frozen=True, slots=True)
class Template:
    """``"{kubernetes.namespace}/{kubernetes.pod.name}"``: literal text and references.

    ``{{`` and ``}}`` are literal braces. A reference to a field an event lacks renders
    as the empty string."""

    text: str
    parts: tuple[str, ...]
    """Literal text and field names alternating, starting with literal text."""

    @classmethod
    def parse(cls, text: str) -> Template:
        escaped = text.replace("{{", "\x00").replace("}}", "\x01")
        pieces = _REF_RE.split(escaped)
        for i in range(0, len(pieces), 2):
            if "{" in pieces[i] or "}" in pieces[i]:
                raise ValueError(
                    f"{text!r}: unbalanced brace; write {{{{ or }}}} for a literal one"
                )
        parts = tuple(
            p.replace("\x00", "{").replace("\x01", "}") if i % 2 == 0 else p.strip()
            for i, p in enumerate(pieces)
        )
        return cls(text, parts)

    @property
    def fields(self) -> tuple[str, ...]:
        return self.parts[1::2]

    def per_file(self) -> bool:
        """Whether every reference is a field the file shares (rendered once per batch).

        Parsed fields could shadow any name, so this also needs rows without parsed
        fields: see `render_batch`."""
        return not any(
            f == r or f.startswith(r + ".") or r.startswith(f + ".")
            for f in self.fields
            for r in ROW_FIELDS
        )

    def render(self, values: FileFields, batch: Batch, row: int) -> str:
        parts = self.parts
        if len(parts) == 1:
            return parts[0]
        out = [parts[0]]
        for i in range(1, len(parts), 2):
            out.append(to_text(values.value(batch, row, parts[i])))
            out.append(parts[i + 1])
        return "".join(out)

    def render_batch(self, values: FileFields, batch: Batch) -> list[str]:
        """The template for every row; once per batch when it only reads file fields
        and the batch has no parsed fields."""
        n = len(batch)
        if len(self.parts) == 1:
            return [self.parts[0]] * n
        if not self.per_file():
            return [self.render(values, batch, i) for i in range(n)]
        parts = self.parts
        doc = values.doc(batch.ctx)
        out = [parts[0]]
        for i in range(1, len(parts), 2):
            out.append(to_text(get_field(doc, parts[i])))
            out.append(parts[i + 1])
        rendered = [("".join(out))] * n
        names = self._shadowing_names()
        for row, own in (batch.fields or {}).items():
            if own and any(k in own for k in names):
                rendered[row] = self.render(values, batch, row)
        return rendered

    def _shadowing_names(self) -> tuple[str, ...]:
        """Parsed field names that would stand in for a referenced file field in a
        document (a literal dotted key, or a prefix that is not a name kubelogs
        writes itself, which documents rename)."""
        out: list[str] = []
        for f in self.fields:
            parts = f.split(".")
            out += [".".join(parts[: k + 1]) for k in range(len(parts))]
            if len(parts) > 1 and parts[0] == "log" and parts[1] not in LOG_OWN:
                out.append("log")  # a parsed `log` object's members join the document's
        return tuple(p for p in dict.fromkeys(out) if p not in RESERVED_TOP or p == "log")


def set_path(d: dict[str, Any], path: str, value: Any, *, nested: bool | None = None) -> None:
    """Set `path` in `d` (a fresh dict), copying the dicts on the way (they may be
    shared), where documents and queries read a dotted name: ``http.status`` into an
    ``http`` object, and ``log.level`` (any ``log.*`` member but kubelogs' own
    ``file``/``offset``/``flags``) into the parsed ``log`` object that documents write
    inside their own ``log`` (`codecs.document`), as the parsers do. A literal dotted
    key of that name is replaced, so the event keeps one value. Paths under another
    name kubelogs writes itself (``kubernetes.x`` among row fields) stay one dotted key:
    documents would rename such an object ``<name>_parsed``."""
    if "." not in path:
        d[path] = value
        return
    if nested is None:
        nested = nests(path)
    if not nested:
        d[path] = value
        return
    d.pop(path, None)
    head, _, rest = path.partition(".")
    child = d.get(head)
    child = dict(child) if isinstance(child, dict) else {}
    set_path(child, rest, value, nested=True)
    d[head] = child


def nests(path: str) -> bool:
    """Whether a parsed field `path` (dotted) is written as nested objects (see
    `set_path`)."""
    head, _, rest = path.partition(".")
    if head not in RESERVED_TOP:
        return True
    return head == "log" and bool(rest) and rest.split(".", 1)[0] not in LOG_OWN


def pop_path(d: dict[str, Any], path: str) -> Any:
    value = get_field(d, path)
    if not is_missing(value):
        remove_path(d, path)
    return value


def remove_path(d: dict[str, Any], path: str) -> None:
    """Remove `path` from `d` (a fresh dict, inner dicts copied): a literal dotted key
    and the nested value both, so no value of that name is left to find."""
    d.pop(path, None)
    head, dot, rest = path.partition(".")
    if not dot:
        return
    child = d.get(head)
    if isinstance(child, dict):
        child = dict(child)
        remove_path(child, rest)
        if child:
            d[head] = child
        else:
            del d[head]


def decode_members(members: bytes) -> dict[str, Any]:
    """A file's pre-encoded metadata members (`FileContext.meta_ecs`) as a dict."""
    if not members:
        return {}
    value = msgspec.json.decode(b"{" + members + b"}")
    return value if isinstance(value, dict) else {}


def encode_members(obj: dict[str, Any]) -> bytes:
    """`decode_members` undone: the members without their braces."""
    return msgspec.json.encode(obj)[1:-1] if obj else b""
