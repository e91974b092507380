"""The `forward` sink sending to the `forward` source (agent -> aggregator, in-process):
acks, event ids across the hop, gzip, shared_key, TLS, failover, round robin, a server
that never acks, and a server that restarts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from kubelogs.codecs.document import encode_documents
from kubelogs.config.base import BuildContext
from kubelogs.pipeline.acks import AckToken
from kubelogs.pipeline.channels import Channel
from kubelogs.pipeline.event import Batch
from kubelogs.sinks.forward import ForwardSink, ForwardSinkConfig
from kubelogs.telemetry.metrics import Metrics
from support.forward import error_count, running_source
from support.store_docs import make_batches


def tracked(batches: list[Batch]) -> tuple[list[Batch], list[int]]:
    """The batches with ack tokens that record which were resolved."""
    done: list[int] = []
    out = []
    for i, b in enumerate(batches):
        out.append(b.derive(ack=AckToken(lambda i=i: done.append(i))))
    return out, done


@contextlib.asynccontextmanager
async def running_sink(
    batches: list[Batch], **config: Any
) -> AsyncIterator[tuple[ForwardSink, Metrics, asyncio.Task[None]]]:
    metrics = Metrics()
    cfg = ForwardSinkConfig.model_validate({"type": "forward", "inputs": ["x"], **config})
    sink = cfg.build(
        BuildContext(
            component_id="fwd", data_dir=Path("/nonexistent"), node_name="n1", metrics=metrics
        )
    )
    ch = Channel("fwd", len(batches) + 1)
    ch.add_producer()
    for b in batches:
        await ch.put(b)
    ch.close_producer()
    task = asyncio.create_task(sink.run(ch))
    try:
        yield sink, metrics, task
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def ids_of(batches: list[Batch]) -> list[str]:
    return [b.event_id(i) for b in batches for i in range(len(b))]


async def wait_until(cond: Any, timeout: float = 20.0) -> None:  # noqa: ASYNC109
    """Poll a metric: counters have no event to wait on."""
    async with asyncio.timeout(timeout):
        while not cond():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("fmt", ["records", "kubelogs"])
async def test_events_keep_their_ids_and_acks_wait_for_the_receiver(fmt: str) -> None:
    sent, done = tracked(make_batches(lines=300, per_batch=100))
    async with running_source(durable=False) as (src, out, _):  # noqa: SIM117 (needs src.port)
        async with running_sink(sent, servers=[f"127.0.0.1:{src.port}"], format=fmt) as (
            _,
            metrics,
            task,
        ):
            await out.wait_events(sum(map(len, sent)))
            await asyncio.sleep(0.2)  # time for a wrong early ack to arrive

            assert [] == done  # the aggregator has not made them durable yet
            out.resolve_all()
            await asyncio.wait_for(task, 20)

    assert list(range(len(sent))) == sorted(done)
    assert sorted(ids_of(sent)) == sorted(ids_of(out.batches))
    assert sorted(m for b in sent for m in b.messages) == sorted(out.messages)
    assert 0 == error_count(metrics, "connection")
    # the same documents as the agent would have written itself
    assert sorted(d for b in sent for d in encode_documents(b)) == sorted(
        d for b in out.batches for d in encode_documents(b)
    )
    assert {f"remote:{b.ctx.id_prefix}" for b in sent} == {b.ctx.file_key for b in out.batches}


@pytest.mark.parametrize("fmt", ["records", "kubelogs"])
async def test_gzip_shared_key_and_tls(tmp_path: Path, fmt: str) -> None:
    ca = trustme.CA()
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "s.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    sent, done = tracked(make_batches(lines=200, per_batch=50))
    tls = {"cert_file": str(tmp_path / "s.pem"), "key_file": str(tmp_path / "s.pem")}
    async with (
        running_source(shared_key="k", tls=tls) as (src, out, _),
        running_sink(
            sent,
            servers=[f"127.0.0.1:{src.port}"],
            shared_key="k",
            compress="gzip",
            format=fmt,
            tls={"ca_file": str(tmp_path / "ca.pem"), "server_name": "localhost"},
        ) as (_, _, task),
    ):
        await asyncio.wait_for(task, 20)

    assert len(sent) == len(done)
    assert sorted(ids_of(sent)) == sorted(ids_of(out.batches))


async def test_wrong_shared_key_keeps_events_unacknowledged() -> None:
    sent, done = tracked(make_batches(lines=10, per_batch=10))
    async with (
        running_source(shared_key="right") as (src, out, src_metrics),
        running_sink(
            sent, servers=[f"127.0.0.1:{src.port}"], shared_key="wrong", max_backoff="200ms"
        ) as (_, metrics, _),
    ):
        await wait_until(lambda: error_count(metrics, "auth") >= 2)

    assert [] == done
    assert [] == out.messages
    assert error_count(src_metrics, "auth") >= 2


async def test_failover_to_the_next_server() -> None:
    sent, done = tracked(make_batches(lines=200, per_batch=50))
    dead = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    dead_port = dead.sockets[0].getsockname()[1]
    dead.close()
    await dead.wait_closed()
    async with (
        running_source() as (src, out, _),
        running_sink(
            sent, servers=[f"127.0.0.1:{dead_port}", f"127.0.0.1:{src.port}"], balance="failover"
        ) as (_, metrics, task),
    ):
        await asyncio.wait_for(task, 20)

    assert len(sent) == len(done)
    assert sorted(ids_of(sent)) == sorted(ids_of(out.batches))
    assert error_count(metrics, "connect") >= 1


async def test_round_robin_spreads_files_over_servers() -> None:
    sent, done = tracked(make_batches(lines=200, per_batch=50, containers=8))
    async with running_source() as (a, out_a, _), running_source() as (b, out_b, _):  # noqa: SIM117
        async with running_sink(sent, servers=[f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]) as (
            _,
            _,
            task,
        ):
            await asyncio.wait_for(task, 20)

    assert len(sent) == len(done)
    assert out_a.messages
    assert out_b.messages
    assert sorted(ids_of(sent)) == sorted(ids_of(out_a.batches) + ids_of(out_b.batches))
    # every file went to one server only: its events stay in order for the store
    prefixes_a = {b.ctx.id_prefix for b in out_a.batches}
    assert not prefixes_a & {b.ctx.id_prefix for b in out_b.batches}


async def test_a_server_that_never_acks_gets_the_chunk_resent_elsewhere() -> None:
    sent, done = tracked(make_batches(lines=100, per_batch=50))
    async with (
        running_source(durable=False) as (mute, out_mute, _),
        running_source() as (
            good,
            out_good,
            _,
        ),
        running_sink(
            sent,
            servers=[f"127.0.0.1:{mute.port}", f"127.0.0.1:{good.port}"],
            balance="failover",
            ack_timeout="500ms",
        ) as (_, metrics, task),
    ):
        await asyncio.wait_for(task, 20)

    assert len(sent) == len(done)
    assert out_mute.messages  # it received them, but never acked
    assert sorted(ids_of(sent)) == sorted(ids_of(out_good.batches))
    assert error_count(metrics, "ack_timeout") >= 1


@pytest.mark.parametrize("fmt", ["records", "kubelogs"])
async def test_server_restart_loses_nothing(fmt: str) -> None:
    """The receiver goes away mid-stream and comes back on the same port."""
    sent, done = tracked(make_batches(lines=2000, per_batch=100))
    async with running_source(durable=False) as (first, out1, _):
        port = first.port
        async with running_sink(
            sent, servers=[f"127.0.0.1:{port}"], max_in_flight=2, max_backoff="300ms", format=fmt
        ) as (_, metrics, task):
            await out1.wait_events(200)
            await first.server.close()  # gone: nothing was acked
            async with running_source(address=f"127.0.0.1:{port}") as (_, out2, _):
                await asyncio.wait_for(task, 30)

    assert len(sent) == len(done)
    assert set(ids_of(sent)) == set(ids_of(out2.batches))
    assert error_count(metrics, "connection") + error_count(metrics, "connect") >= 1


async def test_acks_that_free_the_whole_window_at_once_do_not_stall_the_lane() -> None:
    """Regression: every in-flight chunk acked together while more chunks waited, and
    the lane went to sleep with nothing left to wake it."""
    sent, done = tracked(make_batches(lines=50, per_batch=5, containers=2))
    async with running_source(durable=False) as (src, out, _):  # noqa: SIM117 (needs src.port)
        async with running_sink(
            sent, servers=[f"127.0.0.1:{src.port}"], max_in_flight=2, max_chunk_events=5
        ) as (_, _, task):
            total = sum(map(len, sent))
            seen = 0
            async with asyncio.timeout(20):
                while len(done) < len(sent):
                    await out.wait_events(min(total, seen + 10))  # the window is in
                    seen = len(out.messages)
                    await asyncio.sleep(0.05)  # the sink now waits, its window full
                    out.resolve_all()  # both acks arrive together
            await asyncio.wait_for(task, 20)

    assert len(sent) == len(done)
