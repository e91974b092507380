"""Run a `forward` source in-process and see what it emits (for forward tests)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from kubelogs.config.base import BuildContext
from kubelogs.pipeline.event import Batch
from kubelogs.sources.forward import ForwardSource, ForwardSourceConfig
from kubelogs.telemetry.metrics import Metrics


class Collect:
    """A source's output that keeps every batch; `durable=True` resolves acks at once
    (as a sink that made the events durable), else they wait for `resolve_all`."""

    def __init__(self, *, durable: bool = True) -> None:
        self.durable = durable
        self.batches: list[Batch] = []
        self.changed = asyncio.Event()

    async def send(self, batch: Batch) -> None:
        self.batches.append(batch)
        if self.durable and batch.ack is not None:
            batch.ack.resolve()
        self.changed.set()

    def resolve_all(self) -> None:
        for b in self.batches:
            if b.ack is not None and b.ack.pending:
                b.ack.resolve()

    @property
    def messages(self) -> list[str]:
        return [m for b in self.batches for m in b.messages]

    def records(self) -> list[tuple[int, str, dict[str, Any]]]:
        out = []
        for b in self.batches:
            for i, m in enumerate(b.messages):
                out.append((b.times[i], m, (b.fields or {}).get(i, {})))
        return out

    async def wait_events(self, n: int, timeout: float = 20.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while len(self.messages) < n:
                self.changed.clear()
                await self.changed.wait()


def error_count(metrics: Metrics, error_type: str) -> float:
    total = 0.0
    for fam in metrics.registry.collect():
        if fam.name != "kubelogs_component_errors":
            continue
        for s in fam.samples:
            if s.name.endswith("_total") and s.labels.get("error_type") == error_type:
                total += s.value
    return total


@contextlib.asynccontextmanager
async def running_source(
    tmp: Path | None = None, *, durable: bool = True, **config: Any
) -> AsyncIterator[tuple[ForwardSource, Collect, Metrics]]:
    metrics = Metrics()
    cfg = ForwardSourceConfig.model_validate(
        {"type": "forward", "address": "127.0.0.1:0", **config}
    )
    cx = BuildContext(
        component_id="fwd", data_dir=tmp or Path("/nonexistent"), node_name="agg-1", metrics=metrics
    )
    src = cfg.build(cx)
    out = Collect(durable=durable)
    stopping = asyncio.Event()
    await src.prepare()
    task = asyncio.create_task(src.run(out, stopping))
    try:
        yield src, out, metrics
    finally:
        stopping.set()
        await task
