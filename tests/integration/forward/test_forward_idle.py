"""`idle_timeout` of the `forward` source: a silent peer is closed and counted, an active
one and one waiting for its ack are not, the slots they held are free again, and the
`forward` sink reconnects quietly after the server closed its idle connection; and what
the sink keeps in memory while chunks wait for their acks."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

from kubelogs.config.base import BuildContext
from kubelogs.forward.protocol import new_unpacker, packb
from kubelogs.pipeline.acks import AckToken
from kubelogs.pipeline.channels import Channel
from kubelogs.sinks.forward import ForwardSinkConfig
from kubelogs.telemetry.metrics import Metrics
from support.forward import error_count, running_source
from support.store_docs import make_batches


def idle_closed(metrics: Metrics) -> float:
    return (
        metrics.registry.get_sample_value(
            "kubelogs_idle_connections_closed_total", {"component_id": "fwd"}
        )
        or 0.0
    )


async def wait_until(cond: object, timeout: float = 20.0) -> None:  # noqa: ASYNC109
    """Poll a counter or a server's state: they have no event to wait on."""
    assert callable(cond)
    async with asyncio.timeout(timeout):
        while not cond():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 20.0) -> bool:  # noqa: ASYNC109
    """True once the server closed the connection (EOF or reset)."""
    try:
        async with asyncio.timeout(timeout):
            return await reader.read(1) == b""
    except ConnectionError:
        return True


def message(text: str, chunk: str | None = None) -> bytes:
    option = {"chunk": chunk} if chunk else {}
    return packb(["app.idle", 1_700_000_000, {"message": text}, option])


async def acked(reader: asyncio.StreamReader, chunk: str) -> bool:
    unpacker = new_unpacker(1 << 16)
    async with asyncio.timeout(20):
        while True:
            data = await reader.read(4096)
            if not data:
                return False
            unpacker.feed(data)
            for obj in unpacker:
                return bool(obj == {"ack": chunk})


async def test_a_silent_client_is_closed_and_an_active_one_is_not() -> None:
    async with running_source(idle_timeout="400ms") as (src, out, metrics):
        silent_r, silent_w = await asyncio.open_connection("127.0.0.1", src.port)
        active_r, active_w = await asyncio.open_connection("127.0.0.1", src.port)
        loop = asyncio.get_running_loop()
        started = loop.time()
        silent_closed = asyncio.create_task(closed_by_server(silent_r))
        sent = 0
        # the active client writes every 100 ms (a quarter of the timeout) until the
        # silent one was closed and more than two timeouts have passed
        while not silent_closed.done() or loop.time() - started < 1.0:
            active_w.write(message(f"tick {sent}"))
            sent += 1
            await asyncio.sleep(0.1)
        assert await silent_closed
        active_w.write(message("still here", chunk="c1"))
        assert await acked(active_r, "c1")  # the active connection is still served

        assert 1 == idle_closed(metrics)
        assert "still here" in out.messages
        for w in (silent_w, active_w):
            w.close()


async def test_a_client_waiting_for_its_ack_is_not_idle() -> None:
    async with running_source(idle_timeout="300ms", durable=False) as (src, out, metrics):
        r, w = await asyncio.open_connection("127.0.0.1", src.port)
        w.write(message("wait for me", chunk="slow"))
        await out.wait_events(1)
        # a connection opened now and closed for idleness proves that the first one
        # was silent for longer than the timeout as well - while owed an ack
        probe_r, probe_w = await asyncio.open_connection("127.0.0.1", src.port)
        assert await closed_by_server(probe_r)
        assert 1 == idle_closed(metrics)

        out.resolve_all()  # the sinks made it durable: the ack goes out
        assert await acked(r, "slow")
        for wr in (w, probe_w):
            wr.close()


async def test_idle_connections_give_their_slots_back() -> None:
    async with running_source(idle_timeout="500ms", max_connections=2) as (src, out, metrics):
        silent = [await asyncio.open_connection("127.0.0.1", src.port) for _ in range(2)]
        await wait_until(lambda: src.server.connections == 2)

        r, w = await asyncio.open_connection("127.0.0.1", src.port)
        assert await closed_by_server(r)  # no slot left
        assert 1 == error_count(metrics, "too_many_connections")
        w.close()

        for sr, _ in silent:
            assert await closed_by_server(sr)
        await wait_until(lambda: src.server.connections == 0)
        assert 2 == idle_closed(metrics)

        r, w = await asyncio.open_connection("127.0.0.1", src.port)
        w.write(message("a slot again", chunk="again"))
        assert await acked(r, "again")
        assert ["a slot again"] == out.messages
        w.close()
        for _, sw in silent:
            sw.close()


@contextlib.asynccontextmanager
async def open_sink(port: int) -> AsyncIterator[tuple[Channel, Metrics]]:
    """A forward sink whose input stays open: batches can be added while it runs."""
    metrics = Metrics()
    cfg = ForwardSinkConfig.model_validate(
        {"type": "forward", "inputs": ["x"], "servers": [f"127.0.0.1:{port}"]}
    )
    sink = cfg.build(
        BuildContext(
            component_id="sink", data_dir=Path("/nonexistent"), node_name="n1", metrics=metrics
        )
    )
    ch = Channel("sink", 16)
    ch.add_producer()
    task = asyncio.create_task(sink.run(ch))
    try:
        yield ch, metrics
    except BaseException:
        task.cancel()  # a failed test must not wait for acks that never come
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise
    ch.close_producer()
    await asyncio.wait_for(task, 20)


async def test_the_sink_reconnects_quietly_after_an_idle_close() -> None:
    first, second = make_batches(lines=200, per_batch=100, containers=1)
    done: list[int] = []
    first = first.derive(ack=AckToken(lambda: done.append(1)))
    second = second.derive(ack=AckToken(lambda: done.append(2)))
    async with (
        running_source(idle_timeout="300ms") as (src, out, src_metrics),
        open_sink(src.port) as (ch, metrics),
    ):
        await ch.put(first)
        await wait_until(lambda: done == [1])
        await wait_until(lambda: idle_closed(src_metrics) == 1)  # the sink kept it open
        await ch.put(second)
        await wait_until(lambda: done == [1, 2])

    assert sorted(out.messages) == sorted(first.messages + second.messages)
    # an idle close is not a failure: nothing counted, the server was never marked down
    assert 0 == sum(
        error_count(metrics, t) for t in ("connection", "connect", "ack_timeout", "auth")
    )


class _Column(list[bytes]):
    """A messages column that can be watched with a weak reference."""


async def test_unacked_chunks_keep_their_payload_not_their_batches() -> None:
    """Memory: a chunk waiting for its ack holds its encoded payload and the ack tokens;
    the batches (their Python objects ~1.5x the payload) are freed once encoded."""
    done: list[int] = []
    refs: list[weakref.ref[_Column]] = []
    async with (
        running_source(durable=False) as (src, out, _),
        open_sink(src.port) as (ch, _),
    ):
        batches = make_batches(lines=800, per_batch=100, containers=1)
        total = sum(map(len, batches))
        while batches:
            i, b = len(refs), batches.pop(0)
            column = _Column(b.messages)
            refs.append(weakref.ref(column))
            await ch.put(
                dataclasses.replace(b, messages=column, ack=AckToken(lambda i=i: done.append(i)))
            )
            del column, b
        await out.wait_events(total)
        gc.collect()
        assert [] == done  # still unacked: the chunks are in flight ...
        # ... without their batches (the input's iterator holds the last one it gave)
        assert len([r for r in refs if r() is not None]) <= 1
        out.resolve_all()
        await wait_until(lambda: len(done) == len(refs))


async def test_fluent_logger_loses_nothing_when_its_idle_connection_is_closed() -> None:
    """fluent-logger (fire and forget, one persistent socket) notices the server's close
    before its next write and keeps the record for the new connection."""
    from fluent import sender

    async with running_source(idle_timeout="300ms") as (src, out, metrics):
        s = sender.FluentSender("app", port=src.port)
        try:
            assert await asyncio.to_thread(s.emit, "x", {"message": "before"})
            await out.wait_events(1)
            await wait_until(lambda: idle_closed(metrics) == 1)
            await asyncio.to_thread(s.emit, "x", {"message": "after the idle close"})
            await asyncio.to_thread(s.emit, "x", {"message": "and one more"})
        finally:
            await asyncio.to_thread(s.close)  # sends what is still pending
        await out.wait_events(3)

    assert ["before", "after the idle close", "and one more"] == out.messages


async def test_an_idle_close_crossing_the_next_write_is_not_a_failure() -> None:
    """The server drops the idle connection just as the sink writes again (the race the
    previous test can only sometimes hit): the chunk goes on a new connection at once,
    nothing is counted as an error."""
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        unpacker = new_unpacker(1 << 24)
        acked = 0
        while data := await reader.read(1 << 16):
            unpacker.feed(data)
            for _tag, _entries, option in unpacker:
                if first and acked == 1:
                    writer.transport.abort()  # closed as the write arrived
                    return
                writer.write(packb({"ack": option["chunk"]}))
                acked += 1
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    first, second = make_batches(lines=200, per_batch=100, containers=1)
    done: list[int] = []
    try:
        async with open_sink(port) as (ch, metrics):
            await ch.put(first.derive(ack=AckToken(lambda: done.append(1))))
            await wait_until(lambda: done == [1])
            await ch.put(second.derive(ack=AckToken(lambda: done.append(2))))
            await wait_until(lambda: done == [1, 2])
    finally:
        server.close()
        await server.wait_closed()

    assert 2 == connections
    assert 0 == error_count(metrics, "connection")
