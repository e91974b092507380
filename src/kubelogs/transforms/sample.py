"""``sample``: keep 1 event in `rate`, chosen by a stable hash of a key.

Why a hash and not a counter: the same key always gets the same answer, on every node
and after a restart, so all lines of one trace (``key: trace.id``) are kept or dropped
together, and a resend after a crash keeps the same events. The default key is the
event id (file identity and offset): a uniform 1-in-N sample that is still
deterministic. An event without the key field is sampled by its event id.

The hash is CRC-32 (`zlib.crc32`, C speed; not Python's `hash`, which is salted per
process). Dropped events are acknowledged and counted as intentional discards.
"""

from __future__ import annotations

import zlib
from typing import Literal

from pydantic import Field

from kubelogs.config.base import BuildContext, TransformConfig
from kubelogs.config.registry import register
from kubelogs.pipeline.event import Batch
from kubelogs.store.matcher import get_field, is_missing
from kubelogs.telemetry.metrics import ComponentMetrics
from kubelogs.transforms.fields import FileFields, to_text
from kubelogs.transforms.keep import keep_rows


@register(
    "transform",
    "sample",
    "Keep one event in N, chosen by a stable hash of a key (default: the event id).",
)
class SampleConfig(TransformConfig):
    """Deterministic 1-in-N sampling."""

    type: Literal["sample"]
    rate: int = Field(ge=1)
    """Keep one event in `rate` (1 keeps everything)."""
    key: str | None = None
    """Field whose value is hashed (``trace.id``, ``kubernetes.pod.uid``, ``message``);
    events with the same value are kept or dropped together. Default: the event id."""

    def build(self, cx: BuildContext) -> SampleTransform:
        metrics = ComponentMetrics(cx.metrics, cx.component_id, "transform", "sample")
        return SampleTransform(self.rate, self.key, metrics)


def _keep(text: str, rate: int) -> bool:
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % rate == 0


class SampleTransform:
    def __init__(
        self, rate: int, key: str | None = None, metrics: ComponentMetrics | None = None
    ) -> None:
        self.rate = rate
        self.key = key
        self._values = FileFields()
        self._metrics = metrics

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def process(self, batch: Batch) -> Batch | None:
        if self.rate == 1:
            return batch
        return keep_rows(batch, self._kept(batch), self._metrics)

    def _kept(self, batch: Batch) -> list[int]:
        rate = self.rate
        key = self.key
        if key is None:
            return self._by_id(batch, range(len(batch)))
        if key == "message":
            return [i for i, m in enumerate(batch.messages) if _keep(m, rate)]
        values = self._values
        constant = values.doc(batch.ctx)
        shared = get_field(constant, key)
        fields = batch.fields or {}
        if not fields and key not in ("stream", "@timestamp", "log.offset", "log.flags"):
            if is_missing(shared):
                return self._by_id(batch, range(len(batch)))
            return list(range(len(batch))) if _keep(to_text(shared), rate) else []
        kept: list[int] = []
        missing: list[int] = []
        for i in range(len(batch)):
            value = values.value(batch, i, key)
            if is_missing(value):
                missing.append(i)
            elif _keep(to_text(value), rate):
                kept.append(i)
        if missing:
            kept = sorted(kept + self._by_id(batch, missing))
        return kept

    def _by_id(self, batch: Batch, rows: range | list[int]) -> list[int]:
        """Rows whose event id (``<prefix>-<hex offset>``) hashes to a kept value: the
        prefix's CRC is computed once and continued with each offset."""
        rate = self.rate
        base = zlib.crc32(f"{batch.ctx.id_prefix}-".encode())
        crc = zlib.crc32
        offsets = batch.offsets
        return [i for i in rows if crc(b"%x" % offsets[i], base) % rate == 0]
