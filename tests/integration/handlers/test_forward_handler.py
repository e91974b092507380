"""`kubelogs.handlers.ForwardHandler` against the `forward` source: fields, acks,
reconnects, a full queue, and a close that never hangs the application."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from kubelogs.handlers import ForwardHandler
from support.forward import running_source

_opened: list[ForwardHandler] = []


def handler(*args: Any, **kwargs: Any) -> ForwardHandler:
    """A `ForwardHandler` that is closed when the test ends, also when it fails: a
    handler left open keeps a thread retrying its port, which a later test's server
    may have bound (its records would arrive there)."""
    h = ForwardHandler(*args, **kwargs)
    _opened.append(h)
    return h


@pytest.fixture(autouse=True)
def _close_handlers() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close(timeout=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def logger_with(handler: logging.Handler, name: str) -> logging.Logger:
    lg = logging.getLogger(name)
    lg.propagate = False
    lg.handlers = [handler]
    lg.setLevel(logging.DEBUG)
    return lg


async def test_records_with_extra_fields_are_acked() -> None:
    async with running_source() as (src, out, _):
        h = handler("127.0.0.1", src.port, "app.web")
        lg = logger_with(h, "handler-fields")
        for i in range(1000):
            lg.info("request %d", i, extra={"http": {"status": 200}, "seq": i})
        try:
            raise ValueError("boom")
        except ValueError:
            lg.exception("failed")

        assert await asyncio.to_thread(h.flush, 20)
        h.close()

    recs = out.records()
    assert [f"request {i}" for i in range(1000)] + ["failed"] == [m for _, m, _ in recs]
    fields = recs[5][2]
    assert 5 == fields["seq"]
    assert {"status": 200} == fields["http"]
    assert {"level": "INFO", "logger": "handler-fields"} == fields["log"]
    assert "ValueError" == recs[-1][2]["error"]["type"]
    assert 0 == h.dropped
    # every record carries an id: the aggregator treats the handler like a file
    assert {b.ctx.file_key.startswith("remote:") for b in out.batches} == {True}


async def test_server_down_at_first_then_everything_arrives() -> None:
    port = free_port()
    h = handler("127.0.0.1", port, "late", max_backoff=0.3)
    lg = logger_with(h, "handler-late")
    for i in range(300):
        lg.warning("early %d", i)

    assert not await asyncio.to_thread(h.flush, 0.5)
    async with running_source(address=f"127.0.0.1:{port}") as (_, out, _):
        assert await asyncio.to_thread(h.flush, 20)
        h.close()

    assert [f"early {i}" for i in range(300)] == out.messages
    assert h.errors >= 1


async def test_restarted_server_gets_every_record() -> None:
    port = free_port()
    h = handler("127.0.0.1", port, "restart", max_backoff=0.3, max_chunk_records=50)
    lg = logger_with(h, "handler-restart")
    try:
        async with running_source(address=f"127.0.0.1:{port}", durable=False) as (_, first, _):
            for i in range(500):
                lg.info("r%d", i)
            # only the first max_in_flight chunks travel unacked; the handler's thread
            # cuts them while records are still being emitted, so under load they may
            # hold a handful of records (CI: 100 were awaited and never came)
            await first.wait_events(1, timeout=20)
        # stopped before anything was acked: all 500 must come again
        async with running_source(address=f"127.0.0.1:{port}") as (_, second, _):
            for i in range(500, 600):
                lg.info("r%d", i)
            assert await asyncio.to_thread(h.flush, 60), h.last_error
    finally:
        h.close()  # also when the test fails: no thread left retrying into later tests

    assert {f"r{i}" for i in range(600)} == set(second.messages)


def test_full_queue_drops_and_counts_without_blocking() -> None:
    h = handler("127.0.0.1", free_port(), "full", queue_size=10, max_backoff=5)
    lg = logger_with(h, "handler-full")
    t0 = time.monotonic()
    for i in range(5000):
        lg.info("x %d", i)
    elapsed = time.monotonic() - t0
    t1 = time.monotonic()
    h.close(timeout=0.5)

    assert elapsed < 2.0
    assert h.dropped >= 4990
    assert time.monotonic() - t1 < 3.0  # close gives up after its timeout, never hangs


def test_unserialisable_extra_becomes_text() -> None:
    async def main() -> None:
        async with running_source() as (src, out, _):
            h = handler("127.0.0.1", src.port, "odd")
            lg = logger_with(h, "handler-odd")
            lg.info("odd", extra={"obj": object(), "tags": {"a"}})
            assert await asyncio.to_thread(h.flush, 20)
            h.close()
        ((_, _, fields),) = out.records()
        assert fields["obj"].startswith("<object object")
        assert ["a"] == fields["tags"] or "{'a'}" == fields["tags"]

    asyncio.run(main())


async def test_shared_key_and_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "s.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    tls = {"cert_file": str(tmp_path / "s.pem"), "key_file": str(tmp_path / "s.pem")}
    async with running_source(shared_key="k", tls=tls) as (src, out, _):
        ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        h = handler(
            "127.0.0.1", src.port, "secure", shared_key="k", tls=ctx, server_hostname="localhost"
        )
        lg = logger_with(h, "handler-secure")
        lg.info("over tls with a key")
        assert await asyncio.to_thread(h.flush, 20)
        h.close()

    assert ["over tls with a key"] == out.messages
    gc.collect()  # a socket left to the GC would warn here (filterwarnings=error: a failure)


async def test_wrong_shared_key_is_reported_not_raised() -> None:
    async with running_source(shared_key="k") as (src, out, _):
        bad = handler("127.0.0.1", src.port, "x", shared_key="wrong", max_backoff=0.2)
        logger_with(bad, "handler-bad").info("refused")
        assert not await asyncio.to_thread(bad.flush, 1)
        bad.close(timeout=5)
        assert not bad._thread.is_alive()  # stopped, its connections closed

    assert [] == out.messages
    assert bad.errors >= 1
    assert "refused authentication" in (bad.last_error or "")
