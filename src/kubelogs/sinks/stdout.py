"""`stdout`: documents as NDJSON on standard output (debugging, piping into other tools)."""

from __future__ import annotations

import sys
from functools import partial
from typing import Literal

from pydantic import Field

from kubelogs.config.base import BuildContext, SinkConfig
from kubelogs.config.registry import register
from kubelogs.pipeline.runtime import Input
from kubelogs.sinks.ndjson_writer import run_ndjson, write_stream
from kubelogs.telemetry.metrics import ComponentMetrics


@register("sink", "stdout", "Documents as NDJSON on standard output.")
class StdoutConfig(SinkConfig):
    type: Literal["stdout"]
    schema_: Literal["ecs", "fluentd"] = Field("ecs", alias="schema")
    """Field names: ``ecs`` (Filebeat-style) or ``fluentd``
    (fluent-plugin-kubernetes_metadata_filter)."""

    def build(self, cx: BuildContext) -> StdoutSink:
        return StdoutSink(self, ComponentMetrics(cx.metrics, cx.component_id, "sink", "stdout"))


class StdoutSink:
    def __init__(self, config: StdoutConfig, metrics: ComponentMetrics) -> None:
        self.config = config
        self.metrics = metrics

    async def run(self, inp: Input) -> None:
        await run_ndjson(
            inp,
            partial(write_stream, sys.stdout.buffer),
            schema=self.config.schema_,
            metrics=self.metrics,
        )
