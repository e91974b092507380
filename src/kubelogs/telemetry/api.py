"""The HTTP API on `api.listen`: `/metrics` (Prometheus text), `/healthz`, `/readyz`.

aiohttp is imported only here, only when the API is enabled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubelogs.telemetry.metrics import Metrics


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"api.listen: {listen!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


class ApiServer:
    def __init__(self, listen: str, metrics: Metrics, ready: Callable[[], bool]) -> None:
        self.host, self.port = parse_listen(listen)
        self.metrics = metrics
        self.ready = ready
        self._runner: Any = None

    async def start(self) -> None:
        from aiohttp import web

        async def metrics(_request: web.Request) -> web.Response:
            return web.Response(
                body=self.metrics.render(), content_type="text/plain", charset="utf-8"
            )

        async def healthz(_request: web.Request) -> web.Response:
            return web.Response(text="ok\n")

        async def readyz(_request: web.Request) -> web.Response:
            if self.ready():
                return web.Response(text="ready\n")
            return web.Response(status=503, text="not ready\n")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
