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

from kubelogs.buffer.sink import DiskBufferedSink, with_buffer
from kubelogs.config.base import BuildContext
from kubelogs.config.loader import Config
from kubelogs.pipeline.channels import Channel, FanOut
from kubelogs.pipeline.event import Batch
from kubelogs.pipeline.inflight import InFlight
from kubelogs.pipeline.runtime import Sink, Source, Transform
from kubelogs.pipeline.tap import TapHub, TapPoint
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
    outputs: dict[str, FanOut] | None = None
    """Named outputs (`route`: ``<id>.<name>`` in `inputs`), one fan-out each."""
    tap: TapPoint | None = None
    """Copies of this component's output for `kubelogs tap` (see pipeline/tap.py)."""
    output_taps: dict[str, TapPoint] | None = None
    """The taps of the named outputs, by name (``kubelogs tap <id>.<name>``)."""
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    """A source's own stop (set with the pipeline's; alone when a reload replaces it)."""
    task: asyncio.Task[None] | None = None
    started: bool = False
    """A transform whose `start()` succeeded (so `stop()` is due)."""
    inflight: InFlight = field(default_factory=InFlight)
    """A source's batches not yet resolved downstream (pipeline/inflight.py)."""
    collectors: list[Any] = field(default_factory=list)
    """Scrape-time collectors its build added (removed when a reload replaces it)."""


@dataclass
class Pipeline:
    config: Config
    metrics: Metrics
    nodes: dict[str, Node] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    ready: bool = False
    grace_expired: bool = False
    """Set when draining was cut short: the exit is not "clean" then."""
    started_at: float = field(default_factory=time.time)
    task_group: asyncio.TaskGroup | None = None
    """Where a reload starts the tasks of the components it replaces (pipeline/swap.py)."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    """Every component task, including those a reload added (grace and summary read it)."""
    taps: TapHub | None = None

    def request_stop(self) -> None:
        self.stopping.set()
        for node in self.nodes.values():
            node.stop.set()


def build_pipeline(
    config: Config, metrics: Metrics | None = None, taps: TapHub | None = None
) -> Pipeline:
    """Instantiate every component (opens files, no tasks yet)."""
    metrics = metrics or Metrics()
    _prepare_data_dir(config)
    pipeline = Pipeline(config=config, metrics=metrics, taps=taps)
    for cid in config.components:
        pipeline.nodes[cid] = build_node(pipeline, config, cid)
    # Channels: one per consumer; outputs: one fan-out per producer.
    for node in pipeline.nodes.values():
        add_channel(pipeline, config, node)
    downstream: dict[str, list[Channel]] = {cid: [] for cid in pipeline.nodes}
    for node in pipeline.nodes.values():
        for up in node.inputs:
            assert node.channel is not None
            downstream.setdefault(up, []).append(node.channel)
    for node in pipeline.nodes.values():
        if node.kind != "sink":
            node.output = FanOut(downstream[node.id])
            names = getattr(node.runtime, "output_names", None)
            if names:
                node.outputs = {n: FanOut(downstream.get(f"{node.id}.{n}", [])) for n in names}
    if taps is not None:
        _add_taps(pipeline, taps)
    metrics.add_collector(lambda: _queue_gauges(pipeline))
    return pipeline


def build_node(pipeline: Pipeline, config: Config, cid: str) -> Node:
    """Build one component of `config` (no channel, no output, no task yet)."""
    comp = config.components[cid]
    metrics, taps = pipeline.metrics, pipeline.taps
    cx = BuildContext(
        component_id=cid,
        data_dir=config.root.data_dir,
        node_name=config.node_name,
        metrics=metrics,
        shared=pipeline.shared,
    )
    collectors = len(metrics.collectors)
    runtime = comp.build(cx)  # type: ignore[attr-defined]
    if comp.kind == "sink":
        runtime = with_buffer(runtime, comp, cx)  # a disk buffer in front, if configured
    return Node(
        id=cid,
        kind=comp.kind,
        type=comp.type,
        runtime=runtime,
        inputs=config.inputs.get(cid, []),
        metrics=ComponentMetrics(metrics, cid, comp.kind, comp.type),
        tap=taps.point(cid) if taps is not None and comp.kind != "sink" else None,
        collectors=metrics.collectors[collectors:],
    )


def add_channel(pipeline: Pipeline, config: Config, node: Node) -> None:
    """Give a transform or sink its input queue."""
    if node.kind != "source":
        buffer = getattr(config.components[node.id], "buffer", None)
        max_events = getattr(buffer, "max_events", None)
        node.channel = Channel(node.id, CHANNEL_CAPACITY, max_events)
        if node.kind == "sink" and not isinstance(node.runtime, DiskBufferedSink):
            # a memory buffer is the sink's input queue (a disk buffer sets its own)
            pipeline.metrics.queue_events.labels(node.id).set_function(_events_of(node.channel))


def _add_taps(pipeline: Pipeline, taps: TapHub) -> None:
    """Tell the hub what can be tapped: sources, transforms, and named outputs (whose
    component id alone is then not an output)."""
    components: dict[str, str] = {}
    for node in pipeline.nodes.values():
        if node.outputs is not None:
            node.tap = None
            node.output_taps = {n: taps.point(f"{node.id}.{n}") for n in node.outputs}
            components.update({f"{node.id}.{n}": node.kind for n in node.outputs})
        else:
            components[node.id] = node.kind
    taps.components = components


def _events_of(channel: Channel) -> Callable[[], float]:
    return lambda: float(channel.events)


def _prepare_data_dir(config: Config) -> None:
    """Create `data_dir` and prove it writable before any component opens a file in it.

    Without this an unwritable directory fails deep inside SQLite ("unable to open
    database file", no path); here the error names the key, the path and the errno.
    """
    import errno
    import tempfile

    from kubelogs.config.errors import ConfigError, ConfigInvalid
    from kubelogs.config.paths import writable_path_problems

    problems = writable_path_problems(config.root.data_dir, config.components)
    if problems:
        raise ConfigInvalid(config.source, problems)
    data_dir = config.root.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=data_dir, prefix=".kubelogs-write-test-"):
            pass
    except OSError as exc:
        code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        raise ConfigError(
            f"data_dir: cannot create or write in {str(data_dir)!r}: {exc.strerror} ({code})"
        ) from None


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
    try:
        for n in transforms:
            await n.runtime.start()
            n.started = True
        for n in nodes.values():
            prepare = getattr(n.runtime, "prepare", None) if n.kind == "source" else None
            if prepare is not None:
                await prepare()
        async with asyncio.TaskGroup() as tg:
            pipeline.task_group = tg
            pipeline_tasks = pipeline.tasks
            for n in nodes.values():
                if n.kind == "sink":
                    # sink: consumes its input channel until every upstream closed
                    start_task(pipeline, n)
            for n in transforms:
                # transform: applies process() to each batch and forwards it
                start_task(pipeline, n)
            for n in nodes.values():
                if n.kind == "source":
                    # source: reads until stopping is set
                    start_task(pipeline, n)
            pipeline.ready = True
            if on_ready is not None:
                await on_ready()
            # grace: once stop is requested, draining gets a deadline
            tg.create_task(_enforce_grace(pipeline, pipeline_tasks), name="grace-deadline")
            if pipeline.config.root.log.summary_interval > 0:
                tg.create_task(_summarize(pipeline, pipeline_tasks), name="summary")
    finally:
        pipeline.ready = False
        pipeline.task_group = None
        for n in [n for n in nodes.values() if n.kind == "transform"]:
            if n.started:
                n.started = False
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


def start_task(pipeline: Pipeline, n: Node) -> None:
    """Run one component in the pipeline's task group (at start, or after a reload)."""
    tg = pipeline.task_group
    assert tg is not None
    if n.kind == "sink":
        n.task = tg.create_task(_run_sink(n), name=f"sink:{n.id}")
    elif n.kind == "transform":
        n.task = tg.create_task(_run_transform(n), name=f"transform:{n.id}")
    else:
        if pipeline.stopping.is_set():
            n.stop.set()
        n.task = tg.create_task(_run_source(n, n.stop), name=f"source:{n.id}")
    pipeline.tasks.append(n.task)


async def _enforce_grace(pipeline: Pipeline, tasks: list[asyncio.Task[None]]) -> None:
    """Once stop is requested, give draining `shutdown_grace_period`, then cancel.

    Waits on the tasks themselves (no `gather` future): a gather cancelled with the
    task group would end as a never-retrieved `CancelledError` and asyncio would print
    "_GatheringFuture exception was never retrieved" on the way out.
    """
    pending: set[asyncio.Task[None]] = set(tasks)
    stop_wait = asyncio.create_task(pipeline.stopping.wait(), name="stop-requested")
    try:
        while pending and not stop_wait.done():
            await asyncio.wait({*pending, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            pending = {t for t in tasks if not t.done()}  # a reload may have added some
        if not pending:
            return
        grace = pipeline.config.root.shutdown_grace_period
        _, pending = await asyncio.wait(pending, timeout=grace)
        if pending:
            log.warning(
                "shutdown grace period of %.0fs ran out; unacknowledged data is read again "
                "on the next start",
                grace,
            )
            pipeline.grace_expired = True
            for t in pending:
                t.cancel()
    finally:
        stop_wait.cancel()


async def _summarize(pipeline: Pipeline, tasks: list[asyncio.Task[None]]) -> None:
    """Every `log.summary_interval`, one info line saying what the agent is doing; ends
    with the pipeline's tasks, so it never holds the shutdown."""
    interval = pipeline.config.root.log.summary_interval
    pending: set[asyncio.Task[None]] = set(tasks)
    previous: dict[str, tuple[float, float]] = {}
    while pending:
        await asyncio.wait(pending, timeout=interval)
        pending = {t for t in tasks if not t.done()}  # a reload may have added some
        if pending:
            text, fields, previous = _summary(pipeline, previous, interval)
            log.info("%s", text, extra={"fields": fields})


def _format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _summary(
    pipeline: Pipeline, previous: dict[str, tuple[float, float]], interval: float
) -> tuple[str, dict[str, Any], dict[str, tuple[float, float]]]:
    """The summary line, its fields for JSON logs, and the totals for the next delta.

    Read from the metrics registry (the numbers /metrics shows), once per interval.
    """
    received: dict[str, float] = {}
    sent: dict[str, float] = {}
    lag = 0.0
    files = 0
    for family in pipeline.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "kubelogs_component_received_events_total":
                cid = sample.labels["component_id"]
                received[cid] = received.get(cid, 0.0) + sample.value
            elif sample.name == "kubelogs_component_sent_events_total":
                cid = sample.labels["component_id"]
                sent[cid] = sent.get(cid, 0.0) + sample.value
            elif sample.name == "kubelogs_file_lag_bytes":
                lag += sample.value
                files += 1
    parts = []
    fields: dict[str, Any] = {"interval_s": interval, "components": {}}
    totals: dict[str, tuple[float, float]] = {}
    for cid in pipeline.nodes:
        r, o = received.get(cid, 0.0), sent.get(cid, 0.0)
        pr, po = previous.get(cid, (0.0, 0.0))
        totals[cid] = (r, o)
        parts.append(f"{cid} in {r - pr:.0f} out {o - po:.0f}")
        fields["components"][cid] = {
            "received_events": r - pr,
            "sent_events": o - po,
            "received_events_total": r,
            "sent_events_total": o,
        }
    fields["lag_bytes"] = lag
    fields["files"] = files
    text = (
        f"last {interval:g}s: " + ", ".join(parts) + f"; lag {_format_bytes(lag)} "
        f"in {files} file{'' if files == 1 else 's'}"
    )
    return text, fields, totals


class _CountingOutput:
    """A source's output that counts what the source emitted downstream.

    `kubelogs_component_sent_events_total` of a source is what it handed on, counted
    here where every source's batches pass, so no source has to remember to do it
    (the tailer counts what it received: lines read)."""

    def __init__(
        self,
        output: FanOut,
        metrics: ComponentMetrics,
        tap: TapPoint | None,
        inflight: InFlight | None = None,
    ) -> None:
        self._output = output
        self._sent = metrics.sent_events
        self._tap = tap
        self._inflight = inflight

    async def send(self, batch: Batch) -> None:
        if self._inflight is not None:
            self._inflight.track(batch)
        tap = self._tap
        if tap is not None and tap.subscribers:
            tap.publish(batch)
        await self._output.send(batch)
        self._sent.inc(len(batch))


async def _run_source(node: Node, stopping: asyncio.Event) -> None:
    assert node.output is not None and node.metrics is not None
    src: Source = node.runtime
    try:
        output = _CountingOutput(node.output, node.metrics, node.tap, node.inflight)
        await src.run(output, stopping)
    finally:
        node.output.close()


async def _run_transform(node: Node) -> None:
    assert node.channel is not None and node.output is not None and node.metrics is not None
    t: Transform = node.runtime
    received = node.metrics.received_events
    sent = node.metrics.sent_events
    if node.outputs is not None:
        await _run_router(node)
        return
    tap = node.tap
    try:
        async for batch in node.channel:
            received.inc(len(batch))
            out = t.process(batch)
            if out is not None:
                sent.inc(len(out))
                if tap is not None and tap.subscribers:
                    tap.publish(out)
                await node.output.send(out)
    finally:
        node.output.close()


async def _run_router(node: Node) -> None:
    """A transform with named outputs: `route(batch)` gives ``(output, batch)`` pairs,
    each holding its own share of the ack token."""
    assert node.channel is not None and node.output is not None and node.metrics is not None
    assert node.outputs is not None
    received = node.metrics.received_events
    sent = node.metrics.sent_events
    taps = node.output_taps or {}
    try:
        async for batch in node.channel:
            received.inc(len(batch))
            for name, out in node.runtime.route(batch):
                fan = node.outputs[name]
                if fan.consumers:
                    sent.inc(len(out))
                else:  # an output nobody reads (often `_unmatched`): dropped on purpose
                    node.metrics.discarded(len(out), intentional=True)
                tap = taps.get(name)
                if tap is not None and tap.subscribers:
                    tap.publish(out)
                await fan.send(out)
    finally:
        node.output.close()
        for fan in node.outputs.values():
            fan.close()


async def _run_sink(node: Node) -> None:
    assert node.channel is not None
    sink: Sink = node.runtime
    await sink.run(node.channel)
