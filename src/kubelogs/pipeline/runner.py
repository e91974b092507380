"""Build the component graph from a validated config and run it under one task group.

Start order: sinks, then transforms, then sources (nothing is read before someone can
take it). Stop order on SIGTERM/SIGINT: sources stop reading and return; their outputs
close; transforms drain and close theirs; sinks flush and resolve acks; then every
component's `close()` runs (sources write their final checkpoints there). If draining
takes longer than the grace period, the remaining tasks are cancelled: whatever was not
acknowledged is read again on the next start (at-least-once, deduplicated by event id).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from kubelogs.config.base import BuildContext
from kubelogs.config.loader import Config
from kubelogs.pipeline.channels import Channel, FanOut
from kubelogs.pipeline.runtime import Sink, Source, Transform
from kubelogs.telemetry.metrics import ComponentMetrics, Metrics

log = logging.getLogger("kubelogs.pipeline")

CHANNEL_CAPACITY = 8
"""Batches per input queue: about 8 x 256 KiB of log data, enough to keep a sink busy
while the source reads the next chunk, small enough to bound memory."""


@dataclass
class Node:
    id: str
    kind: str
    type: str
    runtime: Any
    inputs: list[str]
    channel: Channel | None = None
    output: FanOut | None = None
    metrics: ComponentMetrics | None = None


@dataclass
class Pipeline:
    config: Config
    metrics: Metrics
    nodes: dict[str, Node] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    ready: bool = False
    started_at: float = field(default_factory=time.time)

    def request_stop(self) -> None:
        self.stopping.set()


def build_pipeline(config: Config, metrics: Metrics | None = None) -> Pipeline:
    """Instantiate every component (opens files, no tasks yet)."""
    metrics = metrics or Metrics()
    data_dir = config.root.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from kubelogs.config.errors import ConfigError

        raise ConfigError(f"data_dir: cannot create {str(data_dir)!r}: {exc.strerror}") from None
    pipeline = Pipeline(config=config, metrics=metrics)
    node_name = config.node_name
    for cid, comp in config.components.items():
        cx = BuildContext(
            component_id=cid,
            data_dir=data_dir,
            node_name=node_name,
            metrics=metrics,
            shared=pipeline.shared,
        )
        runtime = comp.build(cx)  # type: ignore[attr-defined]
        pipeline.nodes[cid] = Node(
            id=cid,
            kind=comp.kind,
            type=comp.type,
            runtime=runtime,
            inputs=config.inputs.get(cid, []),
            metrics=ComponentMetrics(metrics, cid, comp.kind, comp.type),
        )
    # Channels: one per consumer; outputs: one fan-out per producer.
    for node in pipeline.nodes.values():
        if node.kind != "source":
            node.channel = Channel(node.id, CHANNEL_CAPACITY)
    downstream: dict[str, list[Channel]] = {cid: [] for cid in pipeline.nodes}
    for node in pipeline.nodes.values():
        for up in node.inputs:
            assert node.channel is not None
            downstream[up].append(node.channel)
    for node in pipeline.nodes.values():
        if node.kind != "sink":
            node.output = FanOut(downstream[node.id])
    metrics.add_collector(lambda: _queue_gauges(pipeline))
    return pipeline


def _queue_gauges(pipeline: Pipeline) -> list[Any]:
    from prometheus_client.core import GaugeMetricFamily

    g = GaugeMetricFamily(
        "kubelogs_channel_events",
        "Events waiting in a component's input queue.",
        labels=["component_id"],
    )
    for node in pipeline.nodes.values():
        if node.channel is not None:
            g.add_metric([node.id], node.channel.events)
    return [g]


async def run_pipeline(
    pipeline: Pipeline,
    *,
    on_ready: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run until every source has returned and every sink has drained.

    Resource handling: starts transforms' background work and closes every component at
    the end, also on error or cancellation. Error handling: a crashed component cancels
    its siblings (structured concurrency) and the error propagates to the caller.
    """
    nodes = pipeline.nodes
    transforms = [n for n in nodes.values() if n.kind == "transform"]
    started: list[Node] = []
    try:
        for n in transforms:
            await n.runtime.start()
            started.append(n)
        for n in nodes.values():
            prepare = getattr(n.runtime, "prepare", None) if n.kind == "source" else None
            if prepare is not None:
                await prepare()
        async with asyncio.TaskGroup() as tg:
            pipeline_tasks: list[asyncio.Task[None]] = []
            for n in nodes.values():
                if n.kind == "sink":
                    # sink: consumes its input channel until every upstream closed
                    pipeline_tasks.append(tg.create_task(_run_sink(n), name=f"sink:{n.id}"))
            for n in transforms:
                # transform: applies process() to each batch and forwards it
                pipeline_tasks.append(tg.create_task(_run_transform(n), name=f"transform:{n.id}"))
            for n in nodes.values():
                if n.kind == "source":
                    # source: reads until stopping is set
                    pipeline_tasks.append(
                        tg.create_task(_run_source(n, pipeline.stopping), name=f"source:{n.id}")
                    )
            pipeline.ready = True
            if on_ready is not None:
                await on_ready()
            # grace: once stop is requested, draining gets a deadline
            tg.create_task(_enforce_grace(pipeline, pipeline_tasks), name="grace-deadline")
    finally:
        pipeline.ready = False
        for n in transforms:
            if n in started:
                try:
                    await n.runtime.stop()
                except Exception:
                    log.exception("transform %s failed to stop cleanly", n.id)
        for n in nodes.values():
            close = getattr(n.runtime, "close", None)
            if close is not None:
                try:
                    await close()
                except Exception:
                    log.exception("component %s failed to close cleanly", n.id)


async def _enforce_grace(pipeline: Pipeline, tasks: list[asyncio.Task[None]]) -> None:
    waiter: asyncio.Future[object] = asyncio.ensure_future(
        asyncio.gather(*tasks, return_exceptions=True)
    )
    stop_wait: asyncio.Future[object] = asyncio.ensure_future(pipeline.stopping.wait())
    try:
        done, _ = await asyncio.wait([waiter, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        if waiter in done:
            return
        grace = pipeline.config.root.shutdown_grace_period
        finished, _ = await asyncio.wait({waiter}, timeout=grace)
        if not finished:
            log.warning(
                "shutdown grace period of %.0fs ran out; unacknowledged data is read again "
                "on the next start",
                grace,
            )
            for t in tasks:
                t.cancel()
    finally:
        stop_wait.cancel()
        if not waiter.done():
            waiter.cancel()


async def _run_source(node: Node, stopping: asyncio.Event) -> None:
    assert node.output is not None
    src: Source = node.runtime
    try:
        await src.run(node.output, stopping)
    finally:
        node.output.close()


async def _run_transform(node: Node) -> None:
    assert node.channel is not None and node.output is not None and node.metrics is not None
    t: Transform = node.runtime
    received = node.metrics.received_events
    sent = node.metrics.sent_events
    try:
        async for batch in node.channel:
            received.inc(len(batch))
            out = t.process(batch)
            if out is not None:
                sent.inc(len(out))
                await node.output.send(out)
    finally:
        node.output.close()


async def _run_sink(node: Node) -> None:
    assert node.channel is not None
    sink: Sink = node.runtime
    await sink.run(node.channel)
