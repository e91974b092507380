"""``route``: named outputs by condition, ``<id>.<NAME>`` and ``<id>._unmatched``.

Each route is a condition in the search query language (`transforms.condition`). An
event goes to every route it matches (so ``errors`` and ``payments`` can both get a
payments error), and to ``_unmatched`` when it matches none. Other components read an
output by its dotted name in `inputs` (``inputs: [split.errors]``); the loader refuses
unknown route names.

Acks: one batch in becomes at most one batch per output, each holding one share of the
batch's token (forked for every output beyond the first); an output nobody reads
resolves its share at once (`FanOut` without channels), so events that go nowhere are
acknowledged, never held.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator

from kubelogs.config.base import BuildContext, TransformConfig
from kubelogs.config.registry import register
from kubelogs.pipeline.event import Batch
from kubelogs.telemetry.metrics import ComponentMetrics
from kubelogs.transforms.condition import Condition, checked_condition

UNMATCHED = "_unmatched"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


@register(
    "transform",
    "route",
    "Send events to named outputs (<id>.<name>, <id>._unmatched) by conditions in the "
    "search query language.",
)
class RouteConfig(TransformConfig):
    """Split events into named outputs; an event may go to several."""

    type: Literal["route"]
    routes: dict[str, str]
    """``NAME: condition``; the outputs are ``<id>.<NAME>`` and ``<id>._unmatched``
    (events that match no route)."""

    @field_validator("routes")
    @classmethod
    def _check_routes(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("at least one route is required")
        for name, condition in value.items():
            if not _NAME_RE.fullmatch(name):
                raise ValueError(
                    f"route name {name!r}: use letters, digits, _ and - (not starting with _; "
                    f"{UNMATCHED} is the output of events no route matches)"
                )
            try:
                checked_condition(condition)
            except ValueError as exc:
                raise ValueError(f"routes.{name}: {exc}") from None
        return value

    def build(self, cx: BuildContext) -> RouteTransform:
        metrics = ComponentMetrics(cx.metrics, cx.component_id, "transform", "route")
        return RouteTransform({k: Condition(v) for k, v in self.routes.items()}, metrics)


def output_names(routes: dict[str, str]) -> list[str]:
    """The named outputs of a route transform with these `routes`."""
    return [*routes, UNMATCHED]


class RouteTransform:
    """Runtime: `route` splits a batch into ``(output name, batch)`` pairs."""

    def __init__(
        self, routes: dict[str, Condition], metrics: ComponentMetrics | None = None
    ) -> None:
        self.routes = routes
        self.output_names: tuple[str, ...] = (*routes, UNMATCHED)
        self._metrics = metrics

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def process(self, batch: Batch) -> Batch | None:
        """Unused by the runner (it calls `route`); every event, unchanged."""
        return batch

    def route(self, batch: Batch) -> list[tuple[str, Batch]]:
        n = len(batch)
        out: list[tuple[str, Batch]] = []
        matched: set[int] = set()
        for name, condition in self.routes.items():
            rows = condition.select(batch)
            if rows:
                matched.update(rows)
                out.append((name, batch.select(rows)))
        if len(matched) < n:
            rest = [i for i in range(n) if i not in matched] if matched else range(n)
            out.append((UNMATCHED, batch.select(rest)))
        token = batch.ack
        if token is not None:
            if not out:
                token.resolve()
            elif len(out) > 1:
                token.fork(len(out) - 1)
        return out
