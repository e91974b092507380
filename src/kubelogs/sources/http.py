"""`http`: events POSTed by applications, scripts and other agents (HTTP intake).

``POST`` on any path with NDJSON, a JSON array (or one JSON object), or plain text
lines; the format follows the ``Content-Type`` (`_format_of`), and a body without one is
sniffed (``[`` -> array, ``{`` -> NDJSON, else lines). Records become batches through
`kubelogs.codecs.records.RecordDecoder`, the shape every network hop shares: a record
that carries a kubelogs ``event.id`` (from another kubelogs, or `HttpHandler`) keeps its
identity, so a resend is stored once; foreign records are delivered at least once.

The answer is ``200`` only once every event of the request is durable in every sink
(the batches' ack tokens resolved: delivered, in a disk buffer, or committed in the
store), so a client that retries on anything else loses nothing. ``503`` with
``Retry-After`` when the pipeline cannot take the request (its queue is full:
backpressure) or the events are not durable within `ack_timeout`; ``413`` over
`max_body_size`; ``400`` naming the first bad line; ``401`` for missing or wrong
credentials (compared in constant time, never logged).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec
from pydantic import Field, model_validator

from kubelogs.codecs.timestamps import parse_rfc3339_ns
from kubelogs.config.addresses import ListenAddress, parse_listen
from kubelogs.config.base import BuildContext, SourceConfig, StrictModel
from kubelogs.config.registry import register
from kubelogs.config.units import Duration, Size
from kubelogs.pipeline.acks import AckToken
from kubelogs.pipeline.event import Batch
from kubelogs.pipeline.runtime import Output
from kubelogs.telemetry.metrics import ComponentMetrics
from kubelogs.telemetry.network import network_metrics

log = logging.getLogger("kubelogs.sources.http")

Format = Literal["ndjson", "json", "lines"]
_CONTENT_TYPES: dict[str, Format] = {
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonlines": "ndjson",
    "application/x-jsonlines": "ndjson",
    "application/json-seq": "ndjson",
    "application/json": "json",
    "text/plain": "lines",
}


class HttpAuthConfig(StrictModel):
    """Either a bearer token or a user and password (HTTP basic)."""

    bearer_token: str | None = None
    """Clients send ``Authorization: Bearer <token>``; usually ``${VAR}``."""
    user: str | None = None
    password: str | None = None

    @model_validator(mode="after")
    def _one_method(self) -> HttpAuthConfig:
        basic = self.user is not None or self.password is not None
        if basic and (self.user is None or self.password is None):
            raise ValueError("`user` and `password` go together")
        if basic == (self.bearer_token is not None):
            raise ValueError("give either bearer_token or user+password")
        return self


class ServerTlsConfig(StrictModel):
    """TLS for the listening socket: every connection must speak TLS."""

    cert_file: Path
    """Server certificate chain (PEM)."""
    key_file: Path
    """Private key of `cert_file` (PEM, unencrypted)."""
    ca_file: Path | None = None
    """When set, clients must present a certificate signed by one of these CAs."""

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        if self.ca_file is not None:
            ctx.load_verify_locations(cafile=str(self.ca_file))
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


@register("source", "http", "Events POSTed as NDJSON, a JSON array or plain lines.")
class HttpSourceConfig(SourceConfig):
    type: Literal["http"]
    address: ListenAddress = "0.0.0.0:8080"
    """host:port to listen on (``127.0.0.1:0``: any free port, logged at start)."""
    auth: HttpAuthConfig | None = None
    """Required credentials; none by default (keep the port inside the cluster then)."""
    tls: ServerTlsConfig | None = None
    max_body_size: Size = Field(10 * 1024 * 1024, ge=1)
    """Larger requests are refused with 413."""
    timestamp_field: str | None = None
    """Field holding each event's time (RFC 3339, or epoch seconds / ms / us / ns as a
    number); it is taken out of the event. Without it: ``@timestamp`` if present, else
    the time of receipt."""
    default_format: Literal["auto", "ndjson", "json", "lines"] = "auto"
    """How to read a body whose Content-Type names no format (``auto`` sniffs it)."""
    ack_timeout: Duration = 30.0
    """Seconds to wait for the events to be durable before answering 503 (the client
    retries; foreign events may then arrive twice)."""
    max_pending_requests: int = Field(64, ge=1)
    """Requests accepted and not yet handed to the pipeline; more get 503 at once."""
    retry_after: int = Field(5, ge=1)
    """Seconds in the ``Retry-After`` header of a 503."""
    idle_timeout: Duration = Field(300.0, gt=0)
    """Seconds a connection may wait for its next request (or its first: a client that
    connects and sends nothing) before it is closed, counted in
    ``kubelogs_idle_connections_closed_total``. A request being answered (waiting for
    durability) is not idle."""

    def build(self, cx: BuildContext) -> HttpSource:
        return HttpSource(self, cx)


_Timed = tuple[int | None, Mapping[str, Any]]
"""A record and its time in ns (None: the decoder decides), as `RecordDecoder` takes."""


class BadRequest(ValueError):
    """The body cannot be read as events; ``str()`` names the line."""


def _format_of(content_type: str, default: str) -> str:
    mime = content_type.split(";", 1)[0].strip().lower()
    fmt = _CONTENT_TYPES.get(mime)
    if fmt is None and mime.endswith("+json"):
        fmt = "json"
    return fmt or default


def parse_body(body: bytes, fmt: str) -> list[Mapping[str, Any]]:
    """The records of a request body, or `BadRequest` naming the first bad line."""
    if fmt == "auto":
        head = body.lstrip()[:1]
        fmt = "json" if head == b"[" else "ndjson" if head == b"{" else "lines"
    if fmt == "lines":
        text = body.decode("utf-8", "replace")
        return [{"message": ln} for ln in text.splitlines() if ln.strip()]
    if fmt == "json":
        try:
            value = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None
        items = value if isinstance(value, list) else [value]
        return [_as_record(v, f"element {i}") for i, v in enumerate(items)]
    out: list[Mapping[str, Any]] = []
    for number, line in enumerate(body.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            value = msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            raise BadRequest(f"line {number} is not valid JSON: {exc}") from None
        out.append(_as_record(value, f"line {number}"))
    return out


def _as_record(value: object, where: str) -> Mapping[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        return {"message": value}
    raise BadRequest(f"{where} is a JSON {type(value).__name__}, not an object or a string")


def event_time(value: object) -> int | None:
    """Nanoseconds since the epoch from RFC 3339 text or an epoch number (its size tells
    seconds, milliseconds, microseconds or nanoseconds)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        for limit, factor in ((10**11, 10**9), (10**14, 10**6), (10**17, 10**3)):
            if abs(value) < limit:
                if isinstance(value, int):
                    return value * factor  # exact: no float rounding of the digits
                return round(value * factor)
        return int(value)
    if isinstance(value, str):
        return parse_rfc3339_ns(value.strip().encode("ascii", "replace"))
    return None


class _Auth:
    """Checks the Authorization header in constant time; holds the secret as bytes."""

    def __init__(self, config: HttpAuthConfig | None) -> None:
        self._expected: bytes | None = None
        self.scheme = ""
        if config is None:
            return
        if config.bearer_token is not None:
            self.scheme = "Bearer"
            self._expected = b"Bearer " + config.bearer_token.encode()
        else:
            self.scheme = "Basic"
            pair = f"{config.user}:{config.password}".encode()
            self._expected = pair

    def allows(self, header: str | None) -> bool:
        expected = self._expected
        if expected is None:
            return True
        got = (header or "").strip().encode("utf-8", "replace")
        if self.scheme == "Basic":
            if got[:6].lower() != b"basic ":
                return False  # the scheme is no secret
            try:
                got = base64.b64decode(got[6:].strip(), validate=True)
            except (binascii.Error, ValueError):
                return False
        return hmac.compare_digest(got, expected)


class _Request:
    """One accepted request on its way to the pipeline: its batches and the future
    that completes once every batch's ack token resolved."""

    __slots__ = ("batches", "done")

    def __init__(self, batches: list[Batch], done: asyncio.Future[None]) -> None:
        self.batches = batches
        self.done = done


class HttpSource:
    def __init__(self, config: HttpSourceConfig, cx: BuildContext) -> None:
        from kubelogs.codecs.records import RecordDecoder

        self.config = config
        self.component_id = cx.component_id
        self.metrics = ComponentMetrics(cx.metrics, cx.component_id, "source", "http")
        self.decoder = RecordDecoder(cx.component_id, cx.node_name)
        self.host, self.port = parse_listen(config.address)
        self._auth = _Auth(config.auth)
        self._queue: asyncio.Queue[_Request] = asyncio.Queue(config.max_pending_requests)
        self._runner: Any = None
        self._accepting = True
        self._count_idle = network_metrics(cx.metrics).idle_closed.labels(cx.component_id).inc
        self._quiet_since: dict[object, float] = {}
        """Per connection (its aiohttp protocol): when it last finished a request (or
        connected); absent while a request is being handled."""

    async def prepare(self) -> None:
        """Bind the port before the pipeline reports ready (an error names the address)."""
        from aiohttp import web

        app = web.Application(client_max_size=self.config.max_body_size)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            # aiohttp's keep-alive timer also runs before the first request
            keepalive_timeout=self.config.idle_timeout,
        )
        await runner.setup()
        self._track_connections(runner.server)
        ssl_context = self.config.tls.context() if self.config.tls is not None else None
        site = web.TCPSite(runner, self.host, self.port, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(
                exc.errno,
                f"sources.{self.component_id}.address: cannot listen on "
                f"{self.config.address}: {exc.strerror or exc}",
            ) from None
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info(
            "source %s: HTTP intake on %s://%s:%d",
            self.component_id,
            "https" if ssl_context else "http",
            self.host,
            self.port,
        )

    def _track_connections(self, server: Any) -> None:
        """Count the connections aiohttp's keep-alive timer closes: one that ends while
        no request is being handled, after `idle_timeout` without one, was closed for
        idleness (the client cannot have waited that long itself: the timer fires
        first). Wraps the server's two connection hooks on this instance only."""
        made, lost = server.connection_made, server.connection_lost
        loop = asyncio.get_running_loop()
        idle = self.config.idle_timeout
        quiet = self._quiet_since

        def connection_made(handler: object, transport: object) -> None:
            quiet[handler] = loop.time()
            made(handler, transport)

        def connection_lost(handler: object, exc: BaseException | None = None) -> None:
            since = quiet.pop(handler, None)
            if since is not None and self._accepting and loop.time() - since >= idle * 0.99:
                self._count_idle()
            lost(handler, exc)

        server.connection_made = connection_made
        server.connection_lost = connection_lost

    async def run(self, out: Output, stopping: asyncio.Event) -> None:
        if self._runner is None:
            await self.prepare()
        stop = asyncio.create_task(stopping.wait())
        try:
            while True:
                get = asyncio.create_task(self._queue.get())
                await asyncio.wait({get, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    get.cancel()
                    break
                await self._forward(get.result(), out)
            # stopping: no new requests; hand on what was accepted, then end
            self._accepting = False
            while not self._queue.empty():
                await self._forward(self._queue.get_nowait(), out)
        finally:
            stop.cancel()

    async def _forward(self, request: _Request, out: Output) -> None:
        for batch in request.batches:
            await out.send(batch)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- one request --------------------------------------------------------------------

    async def _handle(self, request: Any) -> Any:
        conn = request.protocol
        was_tracked = self._quiet_since.pop(conn, None) is not None
        try:
            return await self._answer(request)
        finally:
            if was_tracked and conn.transport is not None:
                self._quiet_since[conn] = asyncio.get_running_loop().time()

    async def _answer(self, request: Any) -> Any:
        from aiohttp import web

        def answer(status: int, text: str, **headers: str) -> web.Response:
            return web.json_response(
                {"status": status, "message": text} if status != 200 else {"status": 200},
                status=status,
                headers=headers or None,
            )

        if not self._auth.allows(request.headers.get("Authorization")):
            self.metrics.error("unauthorized", "receiving")
            return answer(
                401, "missing or wrong credentials", **{"WWW-Authenticate": self._auth.scheme}
            )
        if request.method != "POST":
            return answer(405, "POST events to this address", Allow="POST")
        if not self._accepting:
            return answer(503, "shutting down", **{"Retry-After": str(self.config.retry_after)})
        if (request.content_length or 0) > self.config.max_body_size:
            self.metrics.error("too_large", "receiving")
            return answer(413, f"the body is over max_body_size ({self.config.max_body_size} B)")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self.metrics.error("too_large", "receiving")
            return answer(413, f"the body is over max_body_size ({self.config.max_body_size} B)")
        self.metrics.received_bytes.inc(len(body))
        fmt = _format_of(request.headers.get("Content-Type", ""), self.config.default_format)
        try:
            records = self._timed(parse_body(body, fmt))
        except BadRequest as exc:
            self.metrics.error("bad_request", "receiving")
            return answer(400, str(exc))
        if not records:
            return answer(200, "")
        batches = self.decoder.decode(records, f"http:{request.path}")
        self.metrics.received_events.inc(len(records))
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        left = len(batches)

        def one_done() -> None:
            nonlocal left
            left -= 1
            if left == 0 and not done.done():
                loop.call_soon_threadsafe(_finish, done)

        for b in batches:
            b.ack = AckToken(one_done)
        try:
            self._queue.put_nowait(_Request(batches, done))
        except asyncio.QueueFull:
            self.metrics.error("backpressure", "receiving")
            return answer(
                503,
                "the pipeline is not keeping up; retry later",
                **{"Retry-After": str(self.config.retry_after)},
            )
        try:
            await asyncio.wait_for(asyncio.shield(done), self.config.ack_timeout)
        except TimeoutError:
            self.metrics.error("ack_timeout", "receiving")
            return answer(
                503,
                f"the events were not durable within {self.config.ack_timeout:g}s; retry later",
                **{"Retry-After": str(self.config.retry_after)},
            )
        return answer(200, "")

    def _timed(
        self, records: Sequence[Mapping[str, Any]]
    ) -> list[tuple[int | None, Mapping[str, Any]]]:
        field = self.config.timestamp_field
        if field is None:
            return [(None, r) for r in records]
        out: list[_Timed] = []
        for number, rec in enumerate(records, 1):
            if field not in rec:
                out.append((None, rec))
                continue
            t = event_time(rec[field])
            if t is None:
                raise BadRequest(f"event {number}: {field}={rec[field]!r} is not a time")
            rest = {k: v for k, v in rec.items() if k != field}
            out.append((t, rest))
        return out


def _finish(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
