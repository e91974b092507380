"""``modify``: set, copy, rename and remove fields; add static fields (cluster name).

What can change, and where it lives (why the split): an event's *parsed fields* and its
*message* are per row, so they are changed per row (a new dict per changed row; the
batch's dicts are shared with other consumers and never mutated). What the file shares
(``kubernetes.*``, ``host.*``, and static fields) lives once in the batch's
`FileContext` as pre-encoded JSON: changing it derives a new context once per file
(`FileContext.with_meta`, cached), so adding ``cluster.name`` to every event costs
nothing per line. The columns kubelogs writes itself (``@timestamp``, ``stream``,
``log.file``, ``log.offset``, ``log.flags``) cannot be changed here; other ``log.*``
members (``log.level``) are parsed fields, and every dotted target is written nested
(``log: {level: ...}``), where the parsers put their fields and queries find them.

Operations run in this order: `static`, `copy`, `rename`, `set`, `remove`. `set` values
are templates: ``"{kubernetes.namespace}-{level}"`` (a missing field renders empty).
A metadata field can only be `set` from file fields (the same for every line of a file);
`static` values are also written into the ``fluentd`` layout under the same names.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from kubelogs.config.base import BuildContext, TransformConfig
from kubelogs.config.registry import register
from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.store.matcher import is_missing
from kubelogs.transforms.fields import (
    RESERVED_TOP,
    FileFields,
    Template,
    decode_members,
    encode_members,
    nests,
    pop_path,
    remove_path,
    set_path,
)

_META_ROOTS = frozenset({"kubernetes", "host"})
_FIXED = ("@timestamp", "stream", "log", "time", "docker")
"""Fields kubelogs writes per row or per schema: never a target (but ``log.*`` members
other than kubelogs' own, see `_fixed`)."""
_MAX_CONTEXTS = 4096


def _root(path: str) -> str:
    return path.split(".", 1)[0]


def _fixed(path: str) -> bool:
    """Whether kubelogs writes `path` itself. ``log.level`` (any ``log.*`` member but
    ``file``, ``offset`` and ``flags``) is a parsed field, written inside the document's
    ``log`` object as the parsers write it; ``message.x`` would turn the message into an
    object."""
    root = _root(path)
    if root == "log":
        return not nests(path)
    return root in _FIXED or (root == "message" and path != "message")


@register(
    "transform",
    "modify",
    "Set (with {field} templates), copy, rename and remove fields; add static fields.",
)
class ModifyConfig(TransformConfig):
    """Change event fields; see the module documentation for what can change."""

    type: Literal["modify"]
    static: dict[str, Any] = Field(default_factory=dict)
    """Fields added to every event, once per file (``cluster.name: prod-eu``)."""
    copy_fields: dict[str, str] = Field(default_factory=dict, alias="copy")
    """``from: to``: the value of a field (message, metadata, parsed) into a parsed field."""
    rename: dict[str, str] = Field(default_factory=dict)
    """``from: to`` for parsed fields (the old name is removed)."""
    set: dict[str, str] = Field(default_factory=dict)
    """``field: template``; ``message`` may be set too."""
    remove: list[str] = Field(default_factory=list)
    """Parsed fields, or metadata such as ``kubernetes.labels``."""

    @model_validator(mode="after")
    def _check(self) -> ModifyConfig:
        problems: list[str] = []
        meta_roots = _META_ROOTS | {_root(k) for k in self.static}
        for key in self.static:
            if _root(key) in RESERVED_TOP - _META_ROOTS or key in _META_ROOTS:
                problems.append(f"static.{key}: written by kubelogs itself; choose another name")
        for section, targets in (
            ("copy", self.copy_fields.values()),
            ("rename", self.rename.values()),
        ):
            for target in targets:
                if target == "message" or _fixed(target) or _root(target) in meta_roots:
                    problems.append(
                        f"{section}: {target!r} cannot be a target (use a parsed field)"
                    )
        for source in self.rename:
            if source == "message" or _fixed(source) or _root(source) in meta_roots:
                problems.append(f"rename.{source}: only parsed fields can be renamed (use copy)")
        for target, template in self.set.items():
            try:
                parsed = Template.parse(template)
            except ValueError as exc:
                problems.append(f"set.{target}: {exc}")
                continue
            if _fixed(target):
                problems.append(f"set.{target}: written by kubelogs itself")
            elif _root(target) in meta_roots and not all(
                _root(f) in meta_roots or f.startswith("log.file") for f in parsed.fields
            ):
                problems.append(
                    f"set.{target}: a metadata field is the same for every line of a file, so "
                    "its template may only read file fields (kubernetes.*, host.*, log.file.path)"
                )
        for path in self.remove:
            if path == "message" or _fixed(path):
                problems.append(f"remove: {path!r} is written by kubelogs itself")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def build(self, cx: BuildContext) -> ModifyTransform:
        return ModifyTransform(
            static=self.static,
            copy=self.copy_fields,
            rename=self.rename,
            set=self.set,
            remove=self.remove,
        )


class ModifyTransform:
    def __init__(
        self,
        *,
        static: dict[str, Any] | None = None,
        copy: dict[str, str] | None = None,
        rename: dict[str, str] | None = None,
        set: dict[str, str] | None = None,
        remove: list[str] | None = None,
    ) -> None:
        self.static = dict(static or {})
        self._meta_roots = _META_ROOTS | {_root(k) for k in self.static}
        templates = {k: Template.parse(v) for k, v in (set or {}).items()}
        self.meta_set = {k: t for k, t in templates.items() if self.is_meta(k)}
        self.row_set = {k: t for k, t in templates.items() if not self.is_meta(k)}
        self.copy = dict(copy or {})
        self.rename = dict(rename or {})
        self.meta_remove = [p for p in remove or () if self.is_meta(p)]
        self.row_remove = [p for p in remove or () if not self.is_meta(p)]
        self._values = FileFields()
        self._contexts: dict[int, tuple[FileContext, FileContext]] = {}
        self._meta_changes = bool(self.static or self.meta_set or self.meta_remove)
        self._row_changes = bool(self.copy or self.rename or self.row_set or self.row_remove)

    def is_meta(self, path: str) -> bool:
        """Whether `path` is a file (metadata) field rather than a parsed one."""
        return _root(path) in self._meta_roots

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def process(self, batch: Batch) -> Batch | None:
        if self._row_changes:
            batch = self._rows(batch)
        if self._meta_changes:
            batch = batch.derive(ctx=self._context(batch.ctx))
        return batch

    # -- per file -----------------------------------------------------------------

    def _context(self, ctx: FileContext) -> FileContext:
        hit = self._contexts.get(id(ctx))
        if hit is not None and hit[0] is ctx:
            return hit[1]
        ecs = decode_members(ctx.meta_ecs)
        fluentd = decode_members(ctx.meta_fluentd)
        for path, value in self.static.items():
            set_path(ecs, path, value, nested=True)
            set_path(fluentd, path, value, nested=True)
        for path, template in self.meta_set.items():
            value = template.render_batch(self._values, _one_row(ctx))[0]
            set_path(ecs, path, value, nested=True)
        for path in self.meta_remove:
            remove_path(ecs, path)
        new = ctx.with_meta(meta_ecs=encode_members(ecs), meta_fluentd=encode_members(fluentd))
        if len(self._contexts) >= _MAX_CONTEXTS:
            del self._contexts[next(iter(self._contexts))]
        self._contexts[id(ctx)] = (ctx, new)
        return new

    # -- per row ------------------------------------------------------------------

    def _rows(self, batch: Batch) -> Batch:
        """copy and rename, then the templates of `set` (which see their results),
        then remove; a new fields dict for every row that changes."""
        n = len(batch)
        fields = dict(batch.fields or {})
        if self.copy or self.rename:
            rows = range(n) if self.copy else [i for i, f in fields.items() if f]
            for i in rows:
                own = fields.get(i)
                f = dict(own) if own else {}
                for source, target in self.copy.items():
                    value = self._values.value(batch, i, source)
                    if not is_missing(value):
                        set_path(f, target, value)
                for source, target in self.rename.items():
                    value = pop_path(f, source)
                    if not is_missing(value):
                        set_path(f, target, value)
                fields[i] = f
            batch = batch.derive(fields={i: f for i, f in fields.items() if f} or None)
        rendered = {k: t.render_batch(self._values, batch) for k, t in self.row_set.items()}
        new_message = rendered.pop("message", None)
        if rendered or self.row_remove:
            rows = range(n) if rendered else [i for i, f in fields.items() if f]
            # Rows without fields of their own that get the same values share one dict
            # (documents are encoded from it; nothing mutates a batch's dicts).
            shared: dict[tuple[str, ...], dict[str, Any]] = {}
            if rendered and all(self.row_set[k].per_file() for k in rendered):
                # Templates of file fields: one value for every row without fields.
                own_rows = [i for i, f in fields.items() if f]
                plain = [i for i in rows if not fields.get(i)] if own_rows else rows
                if plain:
                    key = tuple(values[plain[0]] for values in rendered.values())
                    base: dict[str, Any] = {}
                    for target, value in zip(rendered, key, strict=True):
                        set_path(base, target, value)
                    for path in self.row_remove:
                        remove_path(base, path)
                    fields.update(dict.fromkeys(plain, base))
                    rows = own_rows
            for i in rows:
                own = fields.get(i)
                if not own:
                    key = tuple(values[i] for values in rendered.values())
                    cached = shared.get(key)
                    if cached is None:
                        cached = shared[key] = {}
                        for target, value in zip(rendered, key, strict=True):
                            set_path(cached, target, value)
                        for path in self.row_remove:
                            remove_path(cached, path)
                    fields[i] = cached
                    continue
                f = dict(own)
                for target, values in rendered.items():
                    set_path(f, target, values[i])
                for path in self.row_remove:
                    remove_path(f, path)
                fields[i] = f
        changes: dict[str, Any] = {"fields": {i: f for i, f in fields.items() if f} or None}
        if new_message is not None:
            changes["messages"] = new_message
        return batch.derive(**changes)


def _one_row(ctx: FileContext) -> Batch:
    return Batch(ctx=ctx, times=[0], messages=[""], streams=[""], offsets=[0])
