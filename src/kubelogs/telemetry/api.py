"""The HTTP API on `api.listen`: `/metrics` (Prometheus text), `/healthz`, `/readyz`.

Served by prometheus-client's WSGI exposition app on the standard library's `wsgiref`
server, in a daemon thread: no web framework in the agent's steady state (aiohttp alone
costs ~15 MiB of RSS on every node), and a scrape never waits for the event loop.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from kubelogs.telemetry.metrics import Metrics


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` -> (host, port), by the same rules `kubelogs validate` applies."""
    from kubelogs.config.addresses import parse_listen as parse

    try:
        return parse(listen)
    except ValueError as exc:
        raise ValueError(f"api.listen: {exc}") from None


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    """For an IPv6 listen address (`[::1]:24231`); wsgiref's server is IPv4 only."""

    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds are not worth a log line each."""


class ApiServer:
    def __init__(self, listen: str, metrics: Metrics, ready: Callable[[], bool]) -> None:
        self.host, self.port = parse_listen(listen)
        self.metrics = metrics
        self.ready = ready
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz":
            if self.ready():
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"ready\n"]
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"not ready\n"]
        if path == "/metrics":
            return self._metrics_app(environ, start_response)  # type: ignore[no-any-return]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics, /healthz or /readyz\n"]

    async def start(self) -> None:
        self._metrics_app = make_wsgi_app(self.metrics.registry)
        self._server = make_server(
            self.host,
            self.port,
            self._app,
            server_class=_Server6 if ":" in self.host else _Server,
            handler_class=_QuietHandler,
        )
        self.port = self._server.server_address[1]
        # Serves scrapes and probes until stop(); a daemon so it never holds the exit.
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="kubelogs-api", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
