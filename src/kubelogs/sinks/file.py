"""`file`: documents appended as NDJSON to a file (at-least-once).

The file is opened in append mode; each group of batches is one write followed by a
flush (and `fsync` when asked, for power-loss safety at a throughput cost). A resend
after a crash appends the resent lines again: downstream readers that need exactly-once
use the event ids of a store sink instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import BinaryIO, Literal

from pydantic import Field

from kubelogs.config.base import BuildContext, SinkConfig
from kubelogs.config.registry import register
from kubelogs.pipeline.runtime import Input
from kubelogs.sinks.ndjson_writer import run_ndjson
from kubelogs.telemetry.metrics import ComponentMetrics

log = logging.getLogger("kubelogs.sinks")


@register("sink", "file", "Documents appended to a file as NDJSON.")
class FileSinkConfig(SinkConfig):
    type: Literal["file"]
    path: Path
    """The NDJSON file; its directory is created if missing."""
    schema_: Literal["ecs", "fluentd"] = Field("ecs", alias="schema")
    """Field names: ``ecs`` or ``fluentd``."""
    fsync: bool = False
    """fsync after each write: survives power loss, costs throughput. A process crash
    (even kill -9) never loses written data either way."""

    def build(self, cx: BuildContext) -> FileSink:
        return FileSink(self, ComponentMetrics(cx.metrics, cx.component_id, "sink", "file"))


def _cut_torn_tail(path: Path) -> None:
    """A crash in the middle of a write leaves a last line without its newline. It was
    never acknowledged, so it will be sent again: cut it off, so that the next document
    does not run into it and every line stays one valid JSON document."""
    try:
        with open(path, "r+b") as f:
            size = f.seek(0, 2)
            if size == 0:
                return
            pos = size
            while pos > 0:
                step = min(65536, pos)
                f.seek(pos - step)
                chunk = f.read(step)
                nl = chunk.rfind(b"\n")
                if nl >= 0:
                    cut = pos - step + nl + 1
                    break
                pos -= step
            else:
                cut = 0
            if cut != size:
                log.warning("%s ended with a torn line (%d bytes); cut it off", path, size - cut)
                f.truncate(cut)
    except FileNotFoundError:
        return


class FileSink:
    def __init__(self, config: FileSinkConfig, metrics: ComponentMetrics) -> None:
        self.config = config
        self.metrics = metrics
        config.path.parent.mkdir(parents=True, exist_ok=True)
        _cut_torn_tail(config.path)
        self._stream: BinaryIO = open(config.path, "ab")  # noqa: SIM115 (closed in close())

    async def run(self, inp: Input) -> None:
        await run_ndjson(
            inp,
            self._stream,
            schema=self.config.schema_,
            fsync=self.config.fsync,
            metrics=self.metrics,
        )

    async def close(self) -> None:
        self._stream.close()
