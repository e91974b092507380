"""``python``: a user function changes, filters or splits events.

``function: "mymodule:transform"`` is imported from `path` (a directory, or the module's
file) when the agent starts. Two shapes:

- ``mode: batch`` (default, fast): ``transform(batch) -> Batch | None``. The function
  gets a `kubelogs.pipeline.event.Batch` (columns: ``messages``, ``streams``, ``times``,
  ``offsets``, sparse ``fields``/``flags``; ``ctx`` for the file) and returns a batch:
  the same, a changed copy (``batch.derive(messages=...)``; the input's lists are shared
  with other consumers and must not be mutated), some rows (``batch.select(rows)``), or
  None to drop them all.
- ``mode: event`` (convenient, slower): ``transform(event) -> dict | list[dict] | None``
  per event, where ``event`` is a fresh dict: ``message``, ``stream``, ``time``
  (nanoseconds), ``fields`` (a dict of parsed fields), ``flags`` (a list), ``file`` (the
  path) and ``meta`` (the file's metadata as decoded JSON, shared: read only). Return
  the event (changed or not), None to drop it, or a list to split it into several
  events. Split events get ids ``offset``, ``offset + 1``, ... inside the event's own
  bytes, so ids stay unique and stable across restarts; at most as many parts as the
  message has bytes are kept (the rest are dropped and the event flagged
  ``split_truncated``).

Whatever the user code does, the agent goes on: an exception flags the events it was
given (``log.flags: transform_error``) and lets them through unchanged, a wrong return
type counts as an exception, an error is logged (rate-limited, one line) and counted in
``kubelogs_component_errors_total{error_type="transform_error"}``. Acks never depend on
user code: the batch's token stays with what is returned (the runner forwards it), and
is resolved here when nothing is. Only user code that never returns could stall the
pipeline; that cannot be interrupted safely inside one process.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import msgspec
from pydantic import field_validator, model_validator

from kubelogs.config.base import BuildContext, TransformConfig
from kubelogs.config.errors import ConfigError
from kubelogs.config.registry import register
from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.telemetry.metrics import ComponentMetrics

log = logging.getLogger("kubelogs.transforms.python")

ERROR_FLAG = "transform_error"
_FUNCTION_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):([A-Za-z_]\w*)")

BatchFunction = Callable[[Batch], Any]
EventFunction = Callable[[dict[str, Any]], Any]


@register(
    "transform",
    "python",
    "Change, filter or split events with your own Python function (per batch or per event).",
)
class PythonConfig(TransformConfig):
    """Run a user function on every batch (or event)."""

    type: Literal["python"]
    function: str
    """``module:function``, e.g. ``my_transforms:drop_debug``."""
    path: Path | None = None
    """Directory the module is imported from (or the module's ``.py`` file). Default:
    the normal import path."""
    mode: Literal["batch", "event"] = "batch"
    """``batch``: the function gets a Batch; ``event``: one dict per event (slower)."""

    @field_validator("function")
    @classmethod
    def _shape(cls, value: str) -> str:
        if not _FUNCTION_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not module:function (e.g. my_transforms:process)")
        return value

    @model_validator(mode="after")
    def _module_exists(self) -> PythonConfig:
        module = self.function.split(":", 1)[0]
        if self.path is not None:
            if _module_file(self.path, module) is None:
                raise ValueError(
                    f"path: no module {module!r} in {str(self.path)!r} "
                    f"(looked for {module.replace('.', '/')}.py and its package)"
                )
        elif importlib.util.find_spec(module.split(".")[0]) is None:
            raise ValueError(f"function: module {module!r} is not importable; set path")
        return self

    def build(self, cx: BuildContext) -> PythonTransform:
        fn = load_function(self.function, self.path, cx.component_id)
        metrics = ComponentMetrics(cx.metrics, cx.component_id, "transform", "python")
        return PythonTransform(fn, mode=self.mode, metrics=metrics, name=cx.component_id)


def _module_file(path: Path, module: str) -> Path | None:
    if path.is_file():
        return path if path.suffix == ".py" and path.stem == module.split(".")[-1] else None
    base = path / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def load_function(spec: str, path: Path | None, component_id: str) -> Callable[..., Any]:
    """Import ``module:function``; `ConfigError` naming the component when it fails."""
    module_name, _, attr = spec.partition(":")
    where = f"transforms.{component_id}.function"
    try:
        if path is not None:
            root = path.parent if path.is_file() else path
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
        module = importlib.import_module(module_name)
    except Exception as exc:  # user code: anything can happen at import
        raise ConfigError(f"{where}: importing {module_name!r} failed: {exc!r}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"{where}: {module_name!r} has no function {attr!r}")
    return fn  # type: ignore[no-any-return]


class PythonTransform:
    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        mode: Literal["batch", "event"] = "batch",
        metrics: ComponentMetrics | None = None,
        name: str = "python",
    ) -> None:
        self.fn = fn
        self.mode = mode
        self.name = name
        self._metrics = metrics
        self.errors = 0
        self._meta: dict[bytes, Any] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def process(self, batch: Batch) -> Batch | None:
        n = len(batch)
        if self.mode == "event":
            out = self._events(batch)
        else:
            try:
                result = self.fn(batch)
                if result is not None and not isinstance(result, Batch):
                    raise TypeError(f"returned {type(result).__name__}, not a Batch or None")
            except Exception as exc:
                self._failed(exc)
                return _flag_all(batch)
            out = result
        if out is None or len(out) == 0:
            if batch.ack is not None:
                batch.ack.resolve()
            if self._metrics is not None:
                self._metrics.discarded(n, intentional=True)
            return None
        if out.ack is not batch.ack:
            out = out.derive(ack=batch.ack)
        if len(out) < n and self._metrics is not None:
            self._metrics.discarded(n - len(out), intentional=True)
        return out

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        if self._metrics is not None:
            self._metrics.error(ERROR_FLAG, "processing")
        log.warning(
            "python transform %s: user function raised %s: %s; events passed on flagged %s",
            self.name,
            type(exc).__name__,
            exc,
            ERROR_FLAG,
        )

    def _meta_of(self, ctx: FileContext) -> Any:
        meta = self._meta.get(ctx.meta_ecs)
        if meta is None:
            if len(self._meta) > 4096:
                self._meta.clear()
            raw = b"{" + ctx.meta_ecs + b"}"
            meta = self._meta[ctx.meta_ecs] = msgspec.json.decode(raw)
        return meta

    def _events(self, batch: Batch) -> Batch | None:
        fn = self.fn
        meta = self._meta_of(batch.ctx)
        path = batch.ctx.path
        flags_in = batch.flags or {}
        fields_in = batch.fields or {}
        times: list[int] = []
        messages: list[str] = []
        streams: list[str] = []
        offsets: list[int] = []
        tstrs: list[bytes] | None = [] if batch.tstrs is not None else None
        flags: dict[int, tuple[str, ...]] = {}
        fields: dict[int, dict[str, Any]] = {}

        def emit(row: int, ev: Any, offset: int, extra_flag: str | None = None) -> None:
            if not isinstance(ev, dict):
                raise TypeError(f"returned {type(ev).__name__} in place of an event dict")
            message = ev.get("message", "")
            t = ev.get("time", batch.times[row])
            if not isinstance(message, str) or not isinstance(t, int):
                raise TypeError("an event needs a str message and an int time (nanoseconds)")
            stream = ev.get("stream", "")
            out = len(messages)
            times.append(t)
            messages.append(message)
            streams.append(stream if isinstance(stream, str) else "")
            offsets.append(offset)
            if tstrs is not None:
                assert batch.tstrs is not None
                tstrs.append(batch.tstrs[row] if t == batch.times[row] else b"")
            ev_fields = ev.get("fields")
            if isinstance(ev_fields, dict) and ev_fields:
                fields[out] = ev_fields
            ev_flags = tuple(str(f) for f in ev.get("flags") or ())
            if extra_flag:
                ev_flags = (*ev_flags, extra_flag)
            if ev_flags:
                flags[out] = ev_flags

        for i in range(len(batch)):
            event = {
                "message": batch.messages[i],
                "stream": batch.streams[i],
                "time": batch.times[i],
                "fields": dict(fields_in.get(i) or {}),
                "flags": list(flags_in.get(i, ())),
                "file": path,
                "meta": meta,
            }
            mark = len(messages)
            try:
                result = fn(event)
                if result is None:
                    continue
                if isinstance(result, list):
                    room = len(batch.messages[i].encode("utf-8", "surrogatepass")) + 1
                    for j, part in enumerate(result[:room]):
                        cut = "split_truncated" if j == room - 1 and len(result) > room else None
                        emit(i, part, batch.offsets[i] + j, cut)
                else:
                    emit(i, result, batch.offsets[i])
            except Exception as exc:
                self._failed(exc)
                _truncate(mark, times, messages, streams, offsets, tstrs, flags, fields)
                emit(
                    i,
                    {
                        "message": batch.messages[i],
                        "stream": batch.streams[i],
                        "time": batch.times[i],
                        "fields": fields_in.get(i),
                        "flags": list(flags_in.get(i, ())),
                    },
                    batch.offsets[i],
                    ERROR_FLAG,
                )
        if not messages:
            return None
        return Batch(
            ctx=batch.ctx,
            times=times,
            messages=messages,
            streams=streams,
            offsets=offsets,
            flags=flags or None,
            fields=fields or None,
            ack=batch.ack,
            end_offset=batch.end_offset,
            tstrs=tstrs if tstrs is not None and all(tstrs) else None,
        )


def _truncate(mark: int, *columns: Any) -> None:
    """Undo the events a failing row had emitted before it raised."""
    for col in columns:
        if isinstance(col, list):
            del col[mark:]
        elif isinstance(col, dict):
            for k in [k for k in col if k >= mark]:
                del col[k]


def _flag_all(batch: Batch) -> Batch:
    flags = dict(batch.flags or {})
    for i in range(len(batch)):
        flags[i] = (*flags.get(i, ()), ERROR_FLAG)
    return batch.derive(flags=flags)
