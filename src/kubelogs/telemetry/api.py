"""The HTTP API on `api.listen`: `/metrics` (Prometheus text), `/healthz`, `/readyz`,
and `/tap/<component>` (the NDJSON stream of `kubelogs tap`, loopback clients only).

Served by prometheus-client's WSGI exposition app on the standard library's `wsgiref`
server, in a daemon thread: no web framework in the agent's steady state (aiohttp alone
costs ~15 MiB of RSS on every node), and a scrape never waits for the event loop.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from kubelogs.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from kubelogs.pipeline.tap import TapHub

_LOOPBACK = ("127.", "::1", "::ffff:127.")


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
    def __init__(
        self,
        listen: str,
        metrics: Metrics,
        ready: Callable[[], bool],
        taps: TapHub | None = None,
    ) -> None:
        self.host, self.port = parse_listen(listen)
        self.metrics = metrics
        self.ready = ready
        self.taps = taps
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
        if path.startswith("/tap/") and self.taps is not None:
            return self._tap(self.taps, unquote(path[len("/tap/") :]), environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics, /healthz or /readyz\n"]

    def _tap(
        self,
        taps: TapHub,
        component: str,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
    ) -> Iterable[bytes]:
        """Stream the documents leaving `component`, one per line.

        Who may tap: only clients on this host's loopback. A tap shows log lines in full
        (secrets included) and the chart listens on 0.0.0.0 for Prometheus; reaching the
        loopback of an agent's pod takes `kubectl exec` or `kubectl port-forward`, which
        Kubernetes RBAC already guards (`pods/exec`, `pods/portforward`).
        """
        remote = str(environ.get("REMOTE_ADDR", ""))
        if not remote.startswith(_LOOPBACK):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"tap is served to loopback clients only (kubectl exec / port-forward)\n"]
        kinds = taps.components
        if kinds.get(component) in (None, "sink"):
            tappable = ", ".join(sorted(c for c, k in kinds.items() if k != "sink"))
            what = "is a sink (it has no output; tap its inputs)"
            if component not in kinds:
                what = "is not a component of the running pipeline"
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [f"{component!r} {what}; tappable: {tappable}\n".encode()]
        query = parse_qs(str(environ.get("QUERY_STRING", "")))
        try:
            limit = max(0, int(query.get("limit", ["0"])[0]))
        except ValueError:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"limit: not a whole number\n"]
        sub = taps.subscribe(component, limit)
        start_response("200 OK", [("Content-Type", "application/x-ndjson")])

        def stream() -> Iterable[bytes]:
            try:
                for text in sub.chunks():
                    if text:
                        yield text
            finally:
                taps.unsubscribe(sub)

        return stream()

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
