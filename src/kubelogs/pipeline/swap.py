"""Partial reload: restart only the components a new configuration changed.

Which components restart (`plan_swap`):

- a component whose own settings (everything but `inputs`) changed, whose `inputs`
  changed, that was added or that was removed: it is *changed*;
- an unchanged **transform** that feeds a changed component (in the old or the new
  graph) restarts with it, and so on upstream until only sources are left. That keeps
  the per-edge drain below free of deadlocks: the only running producers whose output
  must be re-pointed are sources, which can simply be held (a held transform could block
  a draining transform upstream of it, which waits on it). Transforms are cheap to
  restart (a `throttle` window starts anew, the pod watcher is shared);
- everything else keeps running: a file source keeps its open files, read positions and
  multiline groups, a sink its connections, queues and disk buffer.

A partial swap is impossible when `data_dir`, `node_name` or `log.summary_interval`
changed (every component was built with them) or when nothing would keep running; the
supervisor then restarts the whole pipeline (pipeline/reload.py) and logs why.

How a swap keeps every line exactly once (`swap`), with *region* = the components that
restart:

1. the input queue of every kept component that a region component feeds gets an extra
   producer (a *hold*), so that it does not end when its old producers close;
2. every kept source that feeds the region is paused (`FanOut.pause`: its send in
   progress completes first, so a batch goes wholly to the old consumers or wholly to the
   new ones), and its edges into the old region are cut;
3. the region's sources are told to stop (their own stop event, not the pipeline's);
4. the old region drains as at shutdown: with every producer closed or cut, transforms
   and sinks read their queues to the end, sinks resolve the acks; then the swap waits
   until every batch the region's sources sent is resolved (`InFlight`), also by kept
   sinks downstream;
5. the old region is closed (sinks, transforms, then sources, which write their final
   checkpoints) and the new region is built; if a component cannot be built, the ones
   built are closed and the old region is built again from the old config (the error is
   logged; the running configuration stays the old one);
6. the new region is wired (new queues; kept sources attach to them), started (sources
   resume from the checkpoints the old ones just wrote, so a changed source neither
   skips nor repeats), the holds are released and the paused sources resume.

Every batch is read once by a source that keeps running and delivered to the consumers
wired when it was sent; a restarted source resumes exactly where the acknowledged data
ends. Per file, batches keep their order (a replacement starts only after its
predecessor ended), which the local store's per-file high-water mark relies on.

If the drain takes longer than `shutdown_grace_period` (a sink that cannot deliver), the
swap gives up: the whole pipeline is cancelled and restarted from its checkpoints, as a
shutdown cut short by the grace period (at-least-once for what was in flight).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubelogs.buffer.sink import DiskBufferedSink
from kubelogs.config.loader import Config
from kubelogs.pipeline.channels import Channel, FanOut
from kubelogs.pipeline.runner import (
    Node,
    Pipeline,
    _add_taps,
    add_channel,
    build_node,
    start_task,
)

log = logging.getLogger("kubelogs.reload")

_GLOBAL_KEYS = ("data_dir", "node_name")


class SwapTimeout(Exception):
    """The old components did not drain within `shutdown_grace_period`."""


@dataclass
class Plan:
    """What a partial reload restarts."""

    changed: list[str]
    """Components whose settings or inputs changed, added or removed."""
    old_region: list[str]
    """Components of the running pipeline that stop (changed ones, and the transforms
    restarted with them)."""
    new_region: list[str]
    """Components of the new config that start."""
    kept: list[str]
    """Components that keep running."""

    @property
    def restarted(self) -> list[str]:
        """Components stopped and started again (in both configs)."""
        return sorted(set(self.old_region) & set(self.new_region))

    @property
    def region(self) -> list[str]:
        """Every component stopped, started or both."""
        return sorted(set(self.old_region) | set(self.new_region))


@dataclass
class SwapResult:
    config: Config
    """The configuration now running: the new one, or the old one if it was restored."""
    error: str | None = None
    """Why a new component could not be built (the old ones were restored)."""
    paused: float = 0.0
    """Seconds the kept sources that feed the region were held."""
    drained: float = 0.0
    """Seconds the old region took to drain."""
    restored: list[str] = field(default_factory=list)


def owner(config: Config, up: str) -> str:
    """The component of an input (``route.errors`` is an output of ``route``)."""
    if up in config.components:
        return up
    return up.rsplit(".", 1)[0]


def _settings(config: Config, cid: str) -> tuple[str, dict[str, Any]]:
    comp = config.components[cid]
    dump = comp.model_dump(mode="json")
    dump.pop("inputs", None)
    return comp.kind, dump


def plan_swap(old: Config, new: Config) -> Plan | str:
    """The components to restart, or why only a whole-pipeline restart will do."""
    a, b = old.root.model_dump(mode="json"), new.root.model_dump(mode="json")
    for key in _GLOBAL_KEYS:
        if a.get(key) != b.get(key):
            return f"{key} changed"
    if old.node_name != new.node_name:
        return "node_name changed"
    if old.root.log.summary_interval != new.root.log.summary_interval:
        return "log.summary_interval changed"
    ids = set(old.components) | set(new.components)
    changed = {
        cid
        for cid in ids
        if cid not in old.components
        or cid not in new.components
        or _settings(old, cid) != _settings(new, cid)
        or old.inputs.get(cid, []) != new.inputs.get(cid, [])
    }
    kept = sorted(set(old.components) & set(new.components) - changed)
    if not kept:
        return "no component would keep running"
    return Plan(
        changed=sorted(changed),
        old_region=[cid for cid in old.components if cid in changed],
        new_region=[cid for cid in new.components if cid in changed],
        kept=kept,
    )


def _feeds(config: Config, producer: str, consumers: Iterable[str]) -> bool:
    return any(
        owner(config, up) == producer
        for cid in consumers
        for up in config.inputs.get(cid, [])
        if cid in config.components
    )


def _upstream(config: Config, of: Iterable[str]) -> set[str]:
    """Every component that feeds one of `of`, directly or through others."""
    seen: set[str] = set()
    todo = [cid for cid in of if cid in config.components]
    while todo:
        for up in config.inputs.get(todo.pop(), []):
            producer = owner(config, up)
            if producer not in seen:
                seen.add(producer)
                todo.append(producer)
    return seen


async def swap(pipeline: Pipeline, new: Config, plan: Plan) -> SwapResult:
    """Apply `plan` (from `plan_swap(pipeline.config, new)`) to the running pipeline.

    Raises `SwapTimeout` when the old components do not drain in time (the caller then
    restarts the whole pipeline); any other exception leaves the pipeline unusable too.
    """
    old = pipeline.config
    nodes = pipeline.nodes
    region = set(plan.changed)
    leaving = [nodes[cid] for cid in plan.old_region]
    kept = [nodes[cid] for cid in plan.kept]
    grace = old.root.shutdown_grace_period
    # 1. holds on the kept consumers the region feeds (their inputs are the same in both)
    held: list[Channel] = []
    for n in kept:
        if n.channel is not None and any(
            owner(cfg, up) in region for cfg in (old, new) for up in cfg.inputs.get(n.id, [])
        ):
            n.channel.add_producer()
            held.append(n.channel)
    # 2. pause the kept producers that feed the region, and the kept sources upstream of
    #    it; a paused transform's queue is unbounded meanwhile, so that the old region's
    #    producers upstream of it drain into it
    upstream = _upstream(old, region) | _upstream(new, region)
    to_pause = [
        n
        for n in kept
        if _feeds(old, n.id, region)
        or _feeds(new, n.id, region)
        or (n.kind == "source" and n.id in upstream)
    ]
    widened = [
        (n.channel, n.channel.widen())
        for n in to_pause
        if n.kind == "transform" and n.channel is not None
    ]
    paused: list[FanOut] = []
    for n in to_pause:
        for fan in _fans(n):
            await fan.pause()
            paused.append(fan)
    began = time.monotonic()
    leaving_channels = [n.channel for n in leaving if n.channel is not None]
    for fan in paused:
        for ch in leaving_channels:
            fan.detach(ch)
    # 3. + 4. stop the region's sources and let the old region drain
    for n in leaving:
        if n.kind == "source":
            n.stop.set()
    await _drain(leaving, grace)
    drained = time.monotonic() - began
    # 5. close the old transforms and sinks (sources: once their batches are resolved),
    #    build the new region, or the old one again
    sources = [n for n in leaving if n.kind == "source"]
    await _close(pipeline, [n for n in leaving if n.kind != "source"])
    for n in leaving:
        del nodes[n.id]
    result = SwapResult(config=new, drained=drained)
    try:
        fresh = await _build(pipeline, new, plan.new_region)
    except Exception as exc:
        log.error(
            "reload: cannot build %s; the previous configuration is kept (the changed "
            "components are started again as they were)",
            exc,
        )
        result = SwapResult(
            config=old, error=str(exc), drained=drained, restored=list(plan.old_region)
        )
        fresh = await _build(pipeline, old, plan.old_region)
    target = result.config
    # 6. wire, start, release
    for n in fresh:
        add_channel(pipeline, target, n)
    nodes.update({n.id: n for n in fresh})
    for n in fresh:
        if n.kind != "sink":
            n.output = FanOut(_consumers(pipeline, target, n.id))
            names = getattr(n.runtime, "output_names", None)
            if names:
                n.outputs = {x: FanOut(_consumers(pipeline, target, f"{n.id}.{x}")) for x in names}
    fresh_ids = {n.id for n in fresh}
    for n in kept:
        for key, fan in _keyed_fans(n):
            for ch in _consumers(pipeline, target, key):
                if any(c.id in fresh_ids and c.channel is ch for c in fresh):
                    fan.attach(ch)
    if pipeline.taps is not None:
        _add_taps(pipeline, pipeline.taps)
    pipeline.config = target
    for n in fresh:
        if n.kind == "transform":
            await n.runtime.start()
            n.started = True
    for kind in ("sink", "transform"):
        for n in fresh:
            if n.kind == kind:
                start_task(pipeline, n)
    for ch in held:
        ch.close_producer()
    for ch, bounds in widened:
        ch.narrow(bounds)
    for fan in paused:
        fan.resume()
    result.paused = time.monotonic() - began
    # 7. a replaced source: its successor starts where the acknowledged data ends
    if sources:
        try:
            async with asyncio.timeout(grace):
                for n in sources:
                    await n.inflight.wait_idle()
        except TimeoutError:
            raise SwapTimeout(
                "the batches of the replaced sources were not acknowledged within "
                f"shutdown_grace_period ({grace:g}s)"
            ) from None
        await _close(pipeline, sources)
    for n in fresh:
        prepare = getattr(n.runtime, "prepare", None) if n.kind == "source" else None
        if prepare is not None:
            await prepare()
    for n in fresh:
        if n.kind == "source":
            start_task(pipeline, n)
    return result


async def _drain(leaving: list[Node], grace: float) -> None:
    """Wait for the old components' tasks to end (inputs closed, queues read)."""
    tasks = [n.task for n in leaving if n.task is not None]
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=grace)
        if pending:
            raise SwapTimeout(
                f"the changed components did not drain within shutdown_grace_period ({grace:g}s)"
            )
    for t in tasks:
        if not t.cancelled() and t.exception() is not None:
            raise t.exception()  # type: ignore[misc]


def _fans(n: Node) -> list[FanOut]:
    return [fan for _, fan in _keyed_fans(n)]


def _keyed_fans(n: Node) -> list[tuple[str, FanOut]]:
    """A component's outputs with the name `inputs` gives them (``route.errors``)."""
    fans = [(n.id, n.output)] if n.output is not None else []
    return fans + [(f"{n.id}.{x}", fan) for x, fan in (n.outputs or {}).items()]


def _consumers(pipeline: Pipeline, config: Config, producer: str) -> list[Channel]:
    """The input queues of the components of `config` that read `producer`."""
    out = []
    for cid, ups in config.inputs.items():
        node = pipeline.nodes.get(cid)
        if producer in ups and node is not None and node.channel is not None:
            out.append(node.channel)
    return out


async def _build(pipeline: Pipeline, config: Config, ids: list[str]) -> list[Node]:
    """Build `ids` of `config`; on an error close what was built and raise it."""
    built: list[Node] = []
    try:
        for cid in ids:
            built.append(build_node(pipeline, config, cid))
    except Exception:
        await _close(pipeline, built)
        raise
    return built


async def _close(pipeline: Pipeline, leaving: list[Node]) -> None:
    """Stop and close the drained components as the runner does at shutdown: sinks,
    transforms, then sources (whose `close` writes the final checkpoints)."""
    order = {"sink": 0, "transform": 1, "source": 2}
    for n in sorted(leaving, key=lambda n: order[n.kind]):
        if n.kind == "transform" and n.started:
            n.started = False
            try:
                await n.runtime.stop()
            except Exception:
                log.exception("transform %s failed to stop cleanly", n.id)
        close = getattr(n.runtime, "close", None)
        if close is not None:
            try:
                await close()
            except Exception:
                log.exception("component %s failed to close cleanly", n.id)
        _forget_metrics(pipeline, n, replaced=True)


def _forget_metrics(pipeline: Pipeline, n: Node, *, replaced: bool) -> None:
    """Unregister the gauges of a component that is gone (its successor has its own)."""
    metrics = pipeline.metrics
    keep_collectors = False
    if isinstance(n.runtime, DiskBufferedSink):
        group = pipeline.shared.get("disk_buffers")
        if isinstance(group, list) and n.runtime in group:
            group.remove(n.runtime)
            keep_collectors = bool(group)  # one collector reports the whole group
    if not keep_collectors:
        for collector in n.collectors:
            metrics.remove_collector(collector)
    if replaced and n.kind == "sink":
        try:
            metrics.queue_events.remove(n.id)
        except KeyError:
            pass
