"""``throttle``: at most `threshold` events per `window` per key; the excess is dropped.

A noisy container (a crash loop printing the same error a thousand times a second) must
not crowd out the others at the sink. The key defaults to the container (namespace, pod,
container; the file path for files outside pods) and can be any template of fields
(``{kubernetes.namespace}``, ``{level}``). Windows are fixed and start at a key's first
event; within one, the first `threshold` events pass.

The excess is acknowledged at once and counted (`kubelogs_component_discarded_events_total`,
intentional). With ``summary: true`` the first event a key sends after a window in which
events were dropped carries the count: ``throttled: {dropped: N, window_s: W, key: K}``
and the flag ``throttled``. The summary rides on a real event (its own id and ack) rather
than a made-up one, so ids stay unique and checkpoints exact; a key that goes silent
reports its last drops in the metric only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, field_validator

from kubelogs.config.base import BuildContext, TransformConfig
from kubelogs.config.registry import register
from kubelogs.config.units import Duration
from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.telemetry.metrics import ComponentMetrics
from kubelogs.transforms.fields import FileFields, Template

_MAX_KEYS = 100_000
"""Keys remembered; beyond this, keys whose window has ended are forgotten."""


@register(
    "transform",
    "throttle",
    "Let at most N events per time window and key (default: per container) through.",
)
class ThrottleConfig(TransformConfig):
    """Rate-limit events per key."""

    type: Literal["throttle"]
    threshold: int = Field(ge=1)
    """Events per window and key that pass."""
    window: Duration = 1.0
    """Length of a window (``1s``, ``1m``)."""
    key: str | None = None
    """Template of the key, e.g. ``"{kubernetes.namespace}"`` or ``"{level}"``. Default:
    the container (namespace/pod/container), or the file for files outside pods."""
    summary: bool = False
    """Add ``throttled: {dropped, window_s, key}`` to the first event of a key after a
    window that dropped some."""

    @field_validator("window")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(f"{value!r} must be more than 0 seconds")
        return value

    @field_validator("key")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            Template.parse(value)
        return value

    def build(self, cx: BuildContext) -> ThrottleTransform:
        metrics = ComponentMetrics(cx.metrics, cx.component_id, "transform", "throttle")
        return ThrottleTransform(
            self.threshold,
            self.window,
            key=self.key,
            summary=self.summary,
            metrics=metrics,
        )


class _Window:
    __slots__ = ("count", "dropped", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.count = 0
        self.dropped = 0


def container_key(ctx: FileContext) -> str:
    if ctx.pod or ctx.namespace:
        return f"{ctx.namespace}/{ctx.pod}/{ctx.container}"
    return ctx.path


class ThrottleTransform:
    def __init__(
        self,
        threshold: int,
        window: float,
        *,
        key: str | None = None,
        summary: bool = False,
        metrics: ComponentMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.window = window
        self.template = Template.parse(key) if key is not None else None
        self.summary = summary
        self._metrics = metrics
        self._clock = clock
        self._values = FileFields()
        self._windows: dict[str, _Window] = {}
        self._pending: dict[str, int] = {}
        """Key -> events dropped in its last ended window, not reported yet."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def _window(self, key: str, now: float) -> _Window:
        w = self._windows.get(key)
        if w is None or now - w.start >= self.window:
            if w is not None and w.dropped and self.summary:
                self._pending[key] = self._pending.get(key, 0) + w.dropped
            if w is None and len(self._windows) >= _MAX_KEYS:
                self._forget(now)
            w = self._windows[key] = _Window(now)
        return w

    def _forget(self, now: float) -> None:
        ended = [k for k, w in self._windows.items() if now - w.start >= self.window]
        for k in ended or list(self._windows)[: len(self._windows) // 2]:
            del self._windows[k]

    def process(self, batch: Batch) -> Batch | None:
        n = len(batch)
        now = self._clock()
        if self.template is None:
            keys: list[str] | None = None
            key = container_key(batch.ctx)
        else:
            keys = self.template.render_batch(self._values, batch)
            key = keys[0] if n and keys.count(keys[0]) == n else ""
            if key or not n:
                keys = None
        kept: list[int]
        summaries: dict[int, dict[str, Any]] = {}
        if keys is None:
            w = self._window(key, now)
            take = min(n, max(0, self.threshold - w.count))
            w.count += take
            w.dropped += n - take
            kept = list(range(take))
            if take and key in self._pending:
                summaries[0] = self._summary(key)
        else:
            kept = []
            for i, k in enumerate(keys):
                w = self._window(k, now)
                if w.count < self.threshold:
                    w.count += 1
                    kept.append(i)
                    if k in self._pending:
                        summaries[i] = self._summary(k)
                else:
                    w.dropped += 1
        dropped = n - len(kept)
        if dropped and self._metrics is not None:
            self._metrics.discarded(dropped, intentional=True)
        if not kept:
            if batch.ack is not None:
                batch.ack.resolve()
            return None
        if summaries:
            batch = _with_summaries(batch, summaries)
        return batch.select(kept)

    def _summary(self, key: str) -> dict[str, Any]:
        return {"dropped": self._pending.pop(key), "window_s": self.window, "key": key}


def _with_summaries(batch: Batch, summaries: dict[int, dict[str, Any]]) -> Batch:
    fields = dict(batch.fields or {})
    flags = dict(batch.flags or {})
    for row, summary in summaries.items():
        fields[row] = {**fields.get(row, {}), "throttled": summary}
        flags[row] = (*flags.get(row, ()), "throttled")
    return batch.derive(fields=fields, flags=flags)
