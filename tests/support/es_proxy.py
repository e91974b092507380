"""An aiohttp proxy in front of a real Elasticsearch/OpenSearch node, for fault injection
and for TLS + basic auth (the test nodes speak plain HTTP without security).

It runs its own event loop in a thread, so a test (synchronous, driving `kubelogs run`
as a subprocess) can change its behaviour between steps through `faults`.

Faults, applied to ``_bulk`` requests only (start-up requests pass, so the agent starts):

- ``request_status``: the next N bulk requests are answered with these statuses (a
  ``429``/``503`` storm) without reaching the node;
- ``item_429_share``: that share of the documents in a request is *not* forwarded and is
  answered ``429`` inside an otherwise real ``200`` response (what an overloaded node
  does with its write queue full);
- ``drop_share``: that share of requests has its connection closed — half before
  forwarding, half after the node indexed the documents (so the resend meets ``409``s);
- ``slow_share`` / ``slow_seconds``: that share of responses is delayed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web


@dataclass
class Faults:
    request_status: list[int] = field(default_factory=list)
    item_429_share: float = 0.0
    drop_share: float = 0.0
    slow_share: float = 0.0
    slow_seconds: float = 0.0
    seed: int = 1


@dataclass
class ProxyStats:
    bulk_requests: int = 0
    statuses_given: int = 0
    items_429: int = 0
    dropped: int = 0
    slowed: int = 0
    unauthorized: int = 0
    auth_headers: list[str] = field(default_factory=list)


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        *,
        faults: Faults | None = None,
        ssl_context: ssl.SSLContext | None = None,
        basic_auth: tuple[str, str] | None = None,
    ) -> None:
        self.upstream = upstream
        self.faults = faults or Faults()
        self.stats = ProxyStats()
        self._ssl = ssl_context
        self._expected_auth = (
            "Basic " + base64.b64encode(f"{basic_auth[0]}:{basic_auth[1]}".encode()).decode()
            if basic_auth
            else None
        )
        self._rng = random.Random(self.faults.seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="es-proxy")
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://localhost:{self.port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=200 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request, body: bytes) -> tuple[int, bytes, str]:
        assert self._session is not None
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as r:
            return r.status, await r.read(), r.headers.get("X-elastic-product", "")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        self.stats.auth_headers.append(auth)
        if self._expected_auth is not None and auth != self._expected_auth:
            self.stats.unauthorized += 1
            return web.json_response({"error": "unauthorized"}, status=401)
        body = await request.read()
        f = self.faults
        if request.path != "/_bulk":
            status, data, product = await self._forward(request, body)
            return self._response(status, data, product)
        self.stats.bulk_requests += 1
        if f.request_status:
            self.stats.statuses_given += 1
            return web.json_response({"error": "injected"}, status=f.request_status.pop(0))
        rng = self._rng
        drop = rng.random() < f.drop_share
        if drop and rng.random() < 0.5:
            self.stats.dropped += 1
            assert request.transport is not None
            request.transport.close()
            raise ConnectionResetError("injected drop before forwarding")
        lines = body.split(b"\n")
        pairs = [(lines[i], lines[i + 1]) for i in range(0, len(lines) - 1, 2)]
        rejected = [rng.random() < f.item_429_share for _ in pairs]
        forwarded = b"".join(
            a + b"\n" + d + b"\n" for (a, d), r in zip(pairs, rejected, strict=True) if not r
        )
        items: list[Any] = []
        status, data, product = 200, b"{}", ""
        if forwarded:
            status, data, product = await self._forward(request, forwarded)
            if status != 200:
                return self._response(status, data, product)
        real = iter(json.loads(data).get("items", []) if forwarded else [])
        for r in rejected:
            if r:
                self.stats.items_429 += 1
                items.append(
                    {
                        "create": {
                            "status": 429,
                            "error": {
                                "type": "es_rejected_execution_exception",
                                "reason": "injected",
                            },
                        }
                    }
                )
            else:
                items.append(next(real))
        if drop:
            self.stats.dropped += 1
            assert request.transport is not None
            request.transport.close()
            raise ConnectionResetError("injected drop after forwarding")
        if rng.random() < f.slow_share:
            self.stats.slowed += 1
            await asyncio.sleep(f.slow_seconds)
        out = json.dumps({"errors": True, "took": 1, "items": items}).encode()
        return self._response(200, out, product)

    @staticmethod
    def _response(status: int, data: bytes, product: str) -> web.Response:
        headers = {"X-elastic-product": product} if product else {}
        return web.Response(
            status=status, body=data, content_type="application/json", headers=headers
        )
