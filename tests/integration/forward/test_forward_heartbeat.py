"""UDP heartbeats of the `forward` sink against the `forward` source: a server whose
answers stop (its TCP still working) is taken out of rotation and the traffic moves -
also the chunks it held unacked - and it comes back when it answers again; every file's
events reach each server in order, none is lost."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from kubelogs.config.base import BuildContext
from kubelogs.pipeline.acks import AckToken
from kubelogs.pipeline.channels import Channel
from kubelogs.pipeline.event import Batch
from kubelogs.sinks.forward import ForwardSinkConfig
from kubelogs.telemetry.metrics import Metrics
from support.forward import Collect, error_count, running_source
from support.store_docs import make_batches

# fast heartbeats; a threshold that a loaded CI machine does not reach by accident
# (phi 8 after ~18 intervals of silence: 1.8 s)
HEARTBEAT = {
    "type": "udp",
    "interval": "100ms",
    "phi_threshold": 8,
    "hard_timeout": "10s",
    "recover_samples": 3,
}


async def wait_until(cond: Any, timeout: float = 30.0) -> None:  # noqa: ASYNC109
    """Poll a gauge or a list: they have no event to wait on."""
    async with asyncio.timeout(timeout):
        while not cond():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def open_sink(**config: Any) -> AsyncIterator[tuple[Channel, Metrics]]:
    """A forward sink whose input stays open: batches are added phase by phase."""
    metrics = Metrics()
    cfg = ForwardSinkConfig.model_validate({"type": "forward", "inputs": ["x"], **config})
    sink = cfg.build(
        BuildContext(
            component_id="sink", data_dir=Path("/nonexistent"), node_name="n1", metrics=metrics
        )
    )
    ch = Channel("sink", 64)
    ch.add_producer()
    task = asyncio.create_task(sink.run(ch))
    try:
        yield ch, metrics
    finally:
        ch.close_producer()
        await asyncio.wait_for(task, 30)


def up(metrics: Metrics, port: int) -> float | None:
    return metrics.registry.get_sample_value(
        "kubelogs_forward_server_up", {"component_id": "sink", "server": f"127.0.0.1:{port}"}
    )


def detached(metrics: Metrics, port: int) -> float:
    return (
        metrics.registry.get_sample_value(
            "kubelogs_forward_server_down_total",
            {"component_id": "sink", "server": f"127.0.0.1:{port}", "reason": "heartbeat"},
        )
        or 0.0
    )


def phases(n: int, containers: int = 3) -> list[list[Batch]]:
    """`n` groups of batches; each file's batches in order, group after group."""
    batches = make_batches(lines=900, per_batch=50, containers=containers)
    by_file: dict[str, list[Batch]] = {}
    for b in batches:
        by_file.setdefault(b.ctx.id_prefix, []).append(b)
    groups: list[list[Batch]] = [[] for _ in range(n)]
    for file_batches in by_file.values():
        size = -(-len(file_batches) // n)
        for k in range(n):
            groups[k].extend(file_batches[k * size : (k + 1) * size])
    return groups


def ids(batches: list[Batch]) -> list[str]:
    return [b.event_id(i) for b in batches for i in range(len(b))]


def assert_in_order_per_file(out: Collect) -> None:
    """What the receiving store needs: each file's offsets arrive increasing."""
    last: dict[str, int] = {}
    for b in out.batches:
        for off in b.offsets:
            assert off > last.get(b.ctx.id_prefix, -1), "a file's events arrived out of order"
            last[b.ctx.id_prefix] = off


async def test_silent_server_leaves_the_rotation_and_comes_back() -> None:
    g1, g2, g3, g4 = phases(4)
    acked: list[str] = []

    def tracked(group: list[Batch]) -> list[Batch]:
        return [b.derive(ack=AckToken(lambda b=b: acked.extend(ids([b])))) for b in group]

    async with (
        running_source(durable=True) as (a, out_a, _),
        running_source() as (b, out_b, _),
        open_sink(
            servers=[f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"],
            balance="failover",
            heartbeat=HEARTBEAT,
        ) as (ch, metrics),
    ):
        # 1. both answer: everything goes to the first server
        for batch in tracked(g1):
            await ch.put(batch)
        await wait_until(lambda: len(acked) == len(ids(g1)))
        assert sorted(ids(g1)) == sorted(ids(out_a.batches))
        assert [] == out_b.batches
        assert 1 == up(metrics, a.port)

        # 2. A holds the next chunks unacked, then stops answering heartbeats (its TCP
        # still works): it is taken out and the lane resends its unacked chunks to B
        out_a.durable = False
        for batch in tracked(g2):
            await ch.put(batch)
        await out_a.wait_events(1)
        await a.server.answer_heartbeats(False)
        await wait_until(lambda: up(metrics, a.port) == 0)
        await wait_until(lambda: len(acked) == len(ids(g1 + g2)))
        assert 1 == detached(metrics, a.port)
        assert set(ids(g2)) == set(ids(out_b.batches))

        # 3. new traffic goes to B
        for batch in tracked(g3):
            await ch.put(batch)
        await wait_until(lambda: len(acked) == len(ids(g1 + g2 + g3)))
        assert set(ids(g2 + g3)) == set(ids(out_b.batches))

        # 4. A answers again: back in rotation, and the lane goes home to it
        await a.server.answer_heartbeats(True)
        await wait_until(lambda: up(metrics, a.port) == 1)
        out_a.durable = True
        out_a.resolve_all()  # too late for the closed connection: a no-op for the sender
        for batch in tracked(g4):
            await ch.put(batch)
        await wait_until(lambda: len(acked) == len(ids(g1 + g2 + g3 + g4)))
        assert set(ids(g4)) <= set(ids(out_a.batches))
        assert not set(ids(g4)) & set(ids(out_b.batches))

    assert sorted(acked) == sorted(ids(g1 + g2 + g3 + g4))  # each batch acked once
    assert set(ids(out_a.batches)) | set(ids(out_b.batches)) == set(acked)
    for out in (out_a, out_b):
        assert_in_order_per_file(out)
    # moving was not a failure: no error, no backoff
    assert 0 == sum(error_count(metrics, t) for t in ("connection", "connect", "ack_timeout"))


async def test_round_robin_lanes_move_to_the_answering_server() -> None:
    (g1,) = phases(1, containers=8)
    # files of both lanes (a file's lane: crc32 of its event-id prefix, modulo 2)
    assert {zlib.crc32(b.ctx.id_prefix.encode()) % 2 for b in g1} == {0, 1}
    acked: list[str] = []
    async with (
        running_source() as (a, out_a, _),
        running_source(heartbeat=False) as (b, out_b, _),  # never answers heartbeats
        open_sink(
            servers=[f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"],
            heartbeat={**HEARTBEAT, "hard_timeout": "1s"},
        ) as (ch, metrics),
    ):
        await wait_until(lambda: up(metrics, b.port) == 0)  # hard_timeout: no answer ever
        for batch in g1:
            await ch.put(batch.derive(ack=AckToken(lambda b=batch: acked.extend(ids([b])))))
        await wait_until(lambda: len(acked) == len(ids(g1)))

    assert [] == out_b.batches  # B's lane went to A while B is out of rotation
    assert 0 == b.server.accepted  # not even tried: a vanished host costs connect_timeout
    assert sorted(ids(g1)) == sorted(ids(out_a.batches))
    assert 1 == up(metrics, a.port)
