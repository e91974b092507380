"""``filter``: keep the events that match a condition in the search query language.

The condition is the query `kubelogs search` takes (DESIGN.md section 3), with the same
meaning on the documents the events become (`transforms.condition`). Dropped events are
acknowledged at once (their share of the batch's token is resolved when nothing is
kept), so the source's checkpoint moves past them; they are counted as intentional
discards.
"""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from kubelogs.config.base import BuildContext, TransformConfig
from kubelogs.config.registry import register
from kubelogs.pipeline.event import Batch
from kubelogs.telemetry.metrics import ComponentMetrics
from kubelogs.transforms.condition import Condition, checked_condition
from kubelogs.transforms.keep import keep_rows


@register(
    "transform",
    "filter",
    "Keep the events that match a condition written in the search query language.",
)
class FilterConfig(TransformConfig):
    """Keep matching events, drop (and acknowledge) the others."""

    type: Literal["filter"]
    condition: str
    """A query as `kubelogs search` takes it, e.g.
    ``kubernetes.namespace:payments and not "GET /healthz"``; events that match are kept."""

    @field_validator("condition")
    @classmethod
    def _check_condition(cls, value: str) -> str:
        return checked_condition(value)

    def build(self, cx: BuildContext) -> FilterTransform:
        metrics = ComponentMetrics(cx.metrics, cx.component_id, "transform", "filter")
        return FilterTransform(Condition(self.condition), metrics)


class FilterTransform:
    """Runtime: `process` keeps the selected rows (`Batch.select`, same ack token)."""

    def __init__(self, condition: Condition, metrics: ComponentMetrics | None = None) -> None:
        self.condition = condition
        self._metrics = metrics
        self.discarded = 0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def process(self, batch: Batch) -> Batch | None:
        rows = self.condition.select(batch)
        self.discarded += len(batch) - len(rows)
        return keep_rows(batch, rows, self._metrics)
