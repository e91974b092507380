"""`idle_timeout` of the `http` source: a client that connects and sends nothing is
closed and counted; a keep-alive client that keeps posting, and a request that waits
longer than the timeout for durability, are not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from kubelogs.config.base import BuildContext
from kubelogs.pipeline.event import Batch
from kubelogs.sources.http import HttpSource, HttpSourceConfig
from kubelogs.telemetry.metrics import Metrics


class Out:
    def __init__(self, *, hold: bool = False) -> None:
        self.batches: list[Batch] = []
        self.hold = hold
        self.changed = asyncio.Event()

    async def send(self, batch: Batch) -> None:
        self.batches.append(batch)
        if not self.hold and batch.ack is not None:
            batch.ack.resolve()
        self.changed.set()

    def release(self) -> None:
        for b in self.batches:
            if b.ack is not None and b.ack.pending:
                b.ack.resolve()


@asynccontextmanager
async def serving(out: Out, **settings: Any) -> AsyncIterator[tuple[int, Metrics]]:
    metrics = Metrics()
    config = HttpSourceConfig.model_validate({"type": "http", "address": "127.0.0.1:0", **settings})
    source = HttpSource(config, BuildContext("intake", Path("/nonexistent"), "node-1", metrics))
    await source.prepare()
    stopping = asyncio.Event()
    task = asyncio.create_task(source.run(out, stopping))
    try:
        yield source.port, metrics
    finally:
        stopping.set()
        await task
        await source.close()


def idle_closed(metrics: Metrics) -> float:
    return (
        metrics.registry.get_sample_value(
            "kubelogs_idle_connections_closed_total", {"component_id": "intake"}
        )
        or 0.0
    )


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        async with asyncio.timeout(20):
            return await reader.read(1) == b""
    except ConnectionError:
        return True


def request(text: str) -> bytes:
    body = f'{{"message": "{text}"}}\n'.encode()
    head = (
        "POST /app HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def response_status(reader: asyncio.StreamReader) -> int:
    async with asyncio.timeout(20):
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def test_a_silent_client_is_closed_and_a_posting_one_is_not() -> None:
    out = Out()
    async with serving(out, idle_timeout="400ms") as (port, metrics):
        silent_r, silent_w = await asyncio.open_connection("127.0.0.1", port)
        active_r, active_w = await asyncio.open_connection("127.0.0.1", port)
        loop = asyncio.get_running_loop()
        started = loop.time()
        silent_closed = asyncio.create_task(closed_by_server(silent_r))
        n = 0
        # one keep-alive connection posts every 100 ms until the silent one was closed
        # and more than two timeouts have passed
        while not silent_closed.done() or loop.time() - started < 1.0:
            active_w.write(request(f"tick {n}"))
            assert 200 == await response_status(active_r)
            n += 1
            await asyncio.sleep(0.1)
        assert await silent_closed
        active_w.write(request("still here"))
        assert 200 == await response_status(active_r)

        assert 1 == idle_closed(metrics)
        for w in (silent_w, active_w):
            w.close()


async def test_a_request_waiting_for_durability_is_not_idle() -> None:
    out = Out(hold=True)
    async with serving(out, idle_timeout="300ms", ack_timeout="30s") as (port, metrics):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(request("slow sink"))
        async with asyncio.timeout(20):
            while not out.batches:
                out.changed.clear()
                await out.changed.wait()
        # a connection opened now and closed for idleness proves that the request has
        # waited longer than the timeout as well
        probe_r, probe_w = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_by_server(probe_r)
        assert 1 == idle_closed(metrics)

        out.release()
        assert 200 == await response_status(r)
        for wr in (w, probe_w):
            wr.close()
