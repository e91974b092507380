"""The `http` source with a real aiohttp client: every body format, auth, size limit,
backpressure and "200 only once durable"."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from kubelogs.config.base import BuildContext
from kubelogs.pipeline.event import Batch
from kubelogs.sources.http import HttpSource, HttpSourceConfig, event_time, parse_body
from kubelogs.telemetry.metrics import Metrics
from support.waiting import until

_SOURCES: list[HttpSource] = []


def source_of(url: str) -> HttpSource:
    return next(s for s in reversed(_SOURCES) if url.endswith(f":{s.port}"))


class Out:
    """The source's output: keeps batches; acknowledges them at once unless `hold`."""

    def __init__(self, *, hold: bool = False, block: bool = False) -> None:
        self.batches: list[Batch] = []
        self.hold = hold
        self.waiting = 0
        """Sends started (some may still wait on `block`)."""
        self.block = asyncio.Event()
        if not block:
            self.block.set()

    async def send(self, batch: Batch) -> None:
        self.waiting += 1
        await self.block.wait()
        self.batches.append(batch)
        if not self.hold:
            assert batch.ack is not None
            batch.ack.resolve()

    def release(self) -> None:
        for b in self.batches:
            assert b.ack is not None
            if b.ack.pending:
                b.ack.resolve()

    def messages(self) -> list[str]:
        return [m for b in self.batches for m in b.messages]


@asynccontextmanager
async def serving(out: Out, **settings: Any) -> AsyncIterator[str]:
    tls = settings.pop("ssl_context", None)
    config = HttpSourceConfig.model_validate({"type": "http", "address": "127.0.0.1:0", **settings})
    source = HttpSource(config, BuildContext("intake", Path("/nonexistent"), "node-1", Metrics()))
    if tls is not None:
        object.__setattr__(source.config, "tls", tls)
    _SOURCES.append(source)
    await source.prepare()
    stopping = asyncio.Event()
    task = asyncio.create_task(source.run(out, stopping))
    scheme = "https" if tls is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{source.port}"
    finally:
        stopping.set()
        await task
        await source.close()


async def post(url: str, body: bytes | str, **kw: Any) -> tuple[int, dict[str, Any], Any]:
    async with aiohttp.ClientSession() as s, s.post(url, data=body, **kw) as r:
        return r.status, dict(r.headers), await r.json(content_type=None)


async def test_ndjson_keeps_fields_and_event_ids() -> None:
    out = Out()
    body = (
        '{"message": "hello", "level": "info", "user": {"id": 7}}\n'
        '{"log": "fluentd shaped"}\n'
        '{"message": "from kubelogs", "event": {"id": "00112233445566778899-1f"}}\n'
    )
    async with serving(out) as url:
        status, _, _ = await post(
            url + "/app/web", body, headers={"Content-Type": "application/x-ndjson"}
        )
    assert 200 == status
    assert ["hello", "fluentd shaped", "from kubelogs"] == sorted(
        out.messages(), key=["hello", "fluentd shaped", "from kubelogs"].index
    )
    own = next(b for b in out.batches if b.messages == ["from kubelogs"])
    assert ("00112233445566778899", [0x1F]) == (own.ctx.id_prefix, own.offsets)
    foreign = next(b for b in out.batches if "hello" in b.messages)
    assert {"level": "info", "user": {"id": 7}} == foreign.fields[foreign.messages.index("hello")]  # type: ignore[index]


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/json", '[{"message": "a"}, {"msg": "b"}, "c"]', ["a", "b", "c"]),
        ("application/json; charset=utf-8", '{"message": "one"}', ["one"]),
        ("text/plain", "first line\nsecond line\n\n", ["first line", "second line"]),
        (None, '[{"message": "sniffed array"}]', ["sniffed array"]),
        (None, '{"message": "sniffed"}\n{"message": "ndjson"}', ["sniffed", "ndjson"]),
        (None, "just text", ["just text"]),
        ("application/x-ndjson", '"a string line"\n', ["a string line"]),
    ],
)
async def test_every_body_format(content_type: str | None, body: str, expected: list[str]) -> None:
    out = Out()
    headers = {"Content-Type": content_type} if content_type else {}
    async with serving(out) as url:
        status, _, _ = await post(url, body.encode(), headers=headers)
    assert 200 == status
    assert expected == out.messages()


async def test_bad_line_is_a_400_naming_it() -> None:
    out = Out()
    async with serving(out) as url:
        status, _, answer = await post(
            url,
            '{"message": "ok"}\n{"message": \n',
            headers={"Content-Type": "application/x-ndjson"},
        )
        status2, _, answer2 = await post(
            url, "[1, 2]", headers={"Content-Type": "application/json"}
        )
    assert 400 == status
    assert answer["message"].startswith("line 2 is not valid JSON")
    assert 400 == status2
    assert "element 0 is a JSON int" in answer2["message"]
    assert [] == out.batches, "a bad request delivered part of its events"


async def test_bearer_token() -> None:
    out = Out()
    async with serving(out, auth={"bearer_token": "s3cret"}) as url:
        none, headers, _ = await post(url, "x")
        wrong, _, _ = await post(url, "x", headers={"Authorization": "Bearer nope"})
        right, _, _ = await post(url, "ok", headers={"Authorization": "Bearer s3cret"})
    assert (401, 401, 200) == (none, wrong, right)
    assert "Bearer" == headers["WWW-Authenticate"]
    assert ["ok"] == out.messages()


async def test_basic_auth() -> None:
    out = Out()

    def basic(user: str, password: str) -> dict[str, str]:
        return {
            "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        }

    async with serving(out, auth={"user": "app", "password": "pw"}) as url:
        wrong, _, _ = await post(url, "x", headers=basic("app", "nope"))
        garbage, _, _ = await post(url, "x", headers={"Authorization": "Basic %%%"})
        right, _, _ = await post(url, "ok", headers=basic("app", "pw"))
    assert (401, 401, 200) == (wrong, garbage, right)
    assert ["ok"] == out.messages()


async def test_body_over_the_limit_is_413() -> None:
    out = Out()
    async with serving(out, max_body_size=1000) as url:
        status, _, answer = await post(url, "x" * 2000)
        chunked, _, _ = await post(url, _chunks(b"y" * 3000))
        ok, _, _ = await post(url, "z" * 900)
    assert 413 == status
    assert "max_body_size" in answer["message"]
    assert 413 == chunked
    assert 200 == ok


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 500):
        yield data[i : i + 500]


async def test_200_only_once_durable() -> None:
    """The answer waits for the events' acks; it comes as soon as they resolve."""
    out = Out(hold=True)
    async with serving(out) as url:
        req = asyncio.create_task(post(url, "a\nb\n"))
        await until(lambda: out.batches)
        await asyncio.sleep(0.1)
        assert not req.done(), "answered before the events were durable"
        out.release()
        status, _, _ = await req
    assert 200 == status


async def test_not_durable_in_time_is_503_with_retry_after() -> None:
    out = Out(hold=True)
    async with serving(out, ack_timeout="200ms", retry_after=7) as url:
        status, headers, _ = await post(url, "a\n")
        out.release()
    assert 503 == status
    assert "7" == headers["Retry-After"]


async def test_backpressure_is_503_with_retry_after() -> None:
    """The pipeline takes nothing: once the pending queue is full, requests get 503 at
    once; when it moves again they are accepted."""
    out = Out(block=True)
    async with serving(out, max_pending_requests=1, ack_timeout="30s") as url:
        first = asyncio.create_task(post(url, "1"))
        await until(lambda: out.waiting == 1)  # the pipeline is stuck on the first
        second = asyncio.create_task(post(url, "2"))
        await until(lambda: source_of(url)._queue.full())  # the second is pending
        status, headers, _ = await post(url, "3")
        assert 503 == status
        assert "Retry-After" in headers
        out.block.set()
        assert 200 == (await first)[0]
        assert 200 == (await second)[0]
    assert ["1", "2"] == out.messages()


async def test_timestamp_field() -> None:
    out = Out()
    body = (
        '{"message": "a", "ts": "2024-01-02T03:04:05.5Z"}\n'
        '{"message": "b", "ts": 1704164645123}\n'
        '{"message": "c"}\n'
    )
    async with serving(out, timestamp_field="ts") as url:
        status, _, _ = await post(url, body, headers={"Content-Type": "application/x-ndjson"})
        bad, _, answer = await post(
            url,
            b'{"message": "d", "ts": "yesterday"}',
            headers={"Content-Type": "application/json"},
        )
    assert 200 == status
    times = [t for b in out.batches for t in b.times]
    assert [1704164645_500_000_000, 1704164645_123_000_000] == times[:2]
    assert all(not f or "ts" not in f for b in out.batches for f in (b.fields or {}).values())
    assert 400 == bad
    assert "event 1: ts='yesterday' is not a time" == answer["message"]


async def test_tls() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    tmp = Path(__import__("tempfile").mkdtemp())
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp / "server.pem"))
    from kubelogs.sources.http import ServerTlsConfig

    tls = ServerTlsConfig(cert_file=tmp / "server.pem", key_file=tmp / "server.pem")
    client = ssl.create_default_context()
    ca.configure_trust(client)
    out = Out()
    async with serving(out, ssl_context=tls) as url:
        status, _, _ = await post(url, "over tls", ssl=client)
    assert 200 == status
    assert ["over tls"] == out.messages()


def test_parse_body_and_event_time_units() -> None:
    assert [{"message": "x"}] == parse_body(b"x\r\n", "lines")
    assert 1_700_000_000_000_000_000 == event_time(1_700_000_000)
    assert 1_700_000_000_000_000_000 == event_time(1_700_000_000_000)
    assert 1_700_000_000_000_000_000 == event_time(1_700_000_000_000_000)
    assert 1_700_000_000_000_000_000 == event_time(1_700_000_000_000_000_000)
    assert event_time(True) is None
