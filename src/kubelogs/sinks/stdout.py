"""`stdout`: documents as NDJSON on standard output (debugging, piping into other tools)."""

from __future__ import annotations

import asyncio
import errno
import os
import select
import stat
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
        write = run_ndjson(
            inp,
            partial(write_stream, sys.stdout.buffer),
            schema=self.config.schema_,
            metrics=self.metrics,
        )
        fd = _pipe_fd()
        if fd is None:
            await write
            return
        async with asyncio.TaskGroup() as tg:
            writer = tg.create_task(write)
            tg.create_task(_fail_when_reader_is_gone(fd, writer))


READER_CHECK_INTERVAL = 0.5
"""Seconds between checks that the reading end of a stdout pipe is still open."""


def _pipe_fd() -> int | None:
    """stdout's descriptor if it is a pipe (the only kind whose reader can go away)."""
    try:
        fd = sys.stdout.fileno()
        return fd if stat.S_ISFIFO(os.fstat(fd).st_mode) else None
    except (OSError, ValueError, AttributeError):
        return None


async def _fail_when_reader_is_gone(fd: int, writer: asyncio.Task[None]) -> None:
    """`kubelogs run … | head -1`: once `head` exits, a tailing agent with nothing new
    to write would otherwise run forever. poll() reports POLLERR on a pipe's write end
    whose reader closed; the sink then fails as a write would, with BrokenPipeError,
    which the command line treats as a quiet, successful end."""
    poller = select.poll()
    poller.register(fd, 0)  # no events asked: only POLLERR/POLLHUP are reported
    while not writer.done():
        if poller.poll(0):
            raise BrokenPipeError(errno.EPIPE, "the reader of standard output is gone")
        await asyncio.sleep(READER_CHECK_INTERVAL)
