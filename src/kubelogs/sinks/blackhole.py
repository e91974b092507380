"""`blackhole`: counts and acknowledges events, writes nothing (benchmarks, dry runs)."""

from __future__ import annotations

from typing import Literal

from kubelogs.config.base import BuildContext, SinkConfig
from kubelogs.config.registry import register
from kubelogs.pipeline.runtime import Input
from kubelogs.telemetry.metrics import ComponentMetrics


@register("sink", "blackhole", "Counts and acknowledges events; writes nothing.")
class BlackholeConfig(SinkConfig):
    type: Literal["blackhole"]

    def build(self, cx: BuildContext) -> BlackholeSink:
        return BlackholeSink(ComponentMetrics(cx.metrics, cx.component_id, "sink", "blackhole"))


class BlackholeSink:
    def __init__(self, metrics: ComponentMetrics) -> None:
        self.metrics = metrics
        self.events = 0

    async def run(self, inp: Input) -> None:
        received, sent = self.metrics.received_events, self.metrics.sent_events
        async for batch in inp:
            n = len(batch)
            self.events += n
            received.inc(n)
            sent.inc(n)
            if batch.ack is not None:
                batch.ack.resolve()
