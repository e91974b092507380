"""Helpers of the disk-buffer tests: batches with known ids, a sink that records what it
was given and acknowledges when told to."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kubelogs.buffer.sink import DiskBufferedSink
from kubelogs.config.base import BuildContext
from kubelogs.config.buffer import DiskBufferConfig
from kubelogs.pipeline.acks import AckToken
from kubelogs.pipeline.event import Batch, FileContext, make_id_prefix
from kubelogs.pipeline.runtime import Input
from kubelogs.telemetry.metrics import Metrics


def ctx(n: int = 0) -> FileContext:
    path = f"/var/log/pods/ns_pod-{n}_uid/c/0.log"
    return FileContext(
        source_id="src",
        path=path,
        file_key=f"1:{n}:fp",
        id_prefix=make_id_prefix("node-1", path),
        node="node-1",
        namespace="ns",
        pod=f"pod-{n}",
        meta_ecs=b'"kubernetes":{"namespace":"ns"}',
        meta_fluentd=b'"kubernetes":{"namespace_name":"ns"}',
        extra={"parser": "json"},
    )


def batch(first: int, n: int, *, file: int = 0, on_ack: Callable[[], None] | None = None) -> Batch:
    """Events `first`..`first+n-1` of one file; offsets are 100 * the event number."""
    return Batch(
        ctx=ctx(file),
        times=[1_700_000_000_000_000_000 + i for i in range(first, first + n)],
        messages=[f"line {i} " + "x" * 40 for i in range(first, first + n)],
        streams=["stdout"] * n,
        offsets=[100 * i for i in range(first, first + n)],
        flags={0: ("truncated",)},
        fields={n - 1: {"level": "info", "n": n}},
        ack=AckToken(on_ack or (lambda: None)),
        end_offset=100 * (first + n),
    )


class RecordingSink:
    """Keeps every batch it is given; acknowledges at once while `healthy`, else holds
    them (a sink whose store is down) until `heal()`."""

    def __init__(self, *, healthy: bool = True) -> None:
        self.batches: list[Batch] = []
        self.healthy = healthy
        self.held: list[Batch] = []
        self.closed = False

    def offsets(self) -> list[int]:
        return [o for b in self.batches for o in b.offsets]

    def heal(self) -> None:
        self.healthy = True
        held, self.held = self.held, []
        for b in held:
            assert b.ack is not None
            b.ack.resolve()

    async def run(self, inp: Input) -> None:
        async for b in inp:
            self.batches.append(b)
            if self.healthy:
                assert b.ack is not None
                b.ack.resolve()
            else:
                self.held.append(b)

    async def close(self) -> None:
        self.closed = True


def buffered(
    tmp: Path,
    sink: RecordingSink,
    *,
    max_size: int = 64 * 1024 * 1024,
    when_full: str = "block",
    segment_size: int | None = None,
    metrics: Metrics | None = None,
    fsync_interval: float = 0.01,
    component_id: str = "out",
    shared: dict[str, object] | None = None,
) -> DiskBufferedSink:
    config = DiskBufferConfig.model_validate(
        {
            "type": "disk",
            "max_size": max_size,
            "when_full": when_full,
            "fsync_interval": fsync_interval,
        }
    )
    cx = BuildContext(
        component_id=component_id,
        data_dir=tmp,
        node_name="node-1",
        metrics=metrics or Metrics(),
        shared={} if shared is None else shared,
    )
    return DiskBufferedSink(sink, config, cx, segment_size=segment_size)  # type: ignore[arg-type]
