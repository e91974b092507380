"""`kubelogs ui`'s HTTP server (aiohttp): the page, its files and a read-only JSON API.

Routes (all GET; anything else is 405, so nothing here can change a store):

- ``/`` the page, ``/static/...`` its script, style and icon (files of this package,
  `ui/static`; no build step, no Node);
- ``/api/info``: what is being explored (store directory or cluster);
- ``/api/search?q=&range=|from=&to=&before=``: a page of hits newest first and the
  cursor of the next (infinite scroll);
- ``/api/aggregate?q=&...&top=f1,f2&size=5``: total, histogram, top values;
- ``/api/context?path=&offset=&t=`` (or ``?id=&t=``): the lines around one line, in its
  file (or, for documents without file and offset, in its container);
- ``/api/tail?q=&...&after=``: Server-Sent Events, one ``data:`` line with the new
  matches (JSON list) each time some are stored (polled every half second).

A query that does not parse answers 400 with the CLI's message and caret
(`QuerySyntaxError.caret_lines`) and the 1-based column, for the page to show under
the query bar. Store calls run in the default thread pool (`ui.backend` opens a reader
per call); the event loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from kubelogs.ui.security import guard
from kubelogs.ui.timerange import RangeError, TimeRange, parse_range

STATIC = Path(__file__).parent / "static"
TAIL_INTERVAL = 0.5
"""Seconds between polls of the live tail: the sink commits about once a second."""
HEARTBEAT = 15.0
"""Seconds between comments on an idle live stream (proxies close silent ones)."""
MAX_TOP_FIELDS = 20
T = TypeVar("T")
BACKEND: web.AppKey[Any] = web.AppKey("backend", object)
_encode = msgspec.json.Encoder().encode


def _json(body: Any, status: int = 200) -> web.Response:
    data = body if isinstance(body, bytes) else _encode(body)
    return web.Response(
        body=data,
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


class _BadRequest(Exception):
    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body.get("error"))
        self.body = body


def _parse(request: web.Request) -> tuple[Any, TimeRange]:
    """The request's query (parsed) and time range, or `_BadRequest` saying what is
    wrong with them."""
    from kubelogs.store import QuerySyntaxError, parse_query

    text = request.query.get("q", "")
    try:
        node = parse_query(text)
    except QuerySyntaxError as exc:
        raise _BadRequest(
            {
                "error": f"invalid query: {exc}",
                "query": text,
                "column": exc.column,
                "caret": exc.caret_lines(),
            }
        ) from None
    try:
        r = parse_range(dict(request.query))
    except RangeError as exc:
        raise _BadRequest({"error": str(exc)}) from None
    return node, r


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def _errors(
    handler: Callable[[web.Request], Any],
) -> Callable[[web.Request], Any]:
    """A handler whose bad input answers 400 and whose store failures answer 500, each
    with a JSON ``error`` sentence (never a traceback)."""
    from kubelogs.cli.search_es import EsSearchError
    from kubelogs.store import QueryError, StoreError

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except _BadRequest as exc:
            return _json(exc.body, 400)
        except (QueryError, ValueError) as exc:
            return _json({"error": str(exc)}, 400)
        except (StoreError, OSError) as exc:
            return _json({"error": str(exc)}, 500)
        except EsSearchError as exc:  # the cluster failed or is unreachable
            return _json({"error": str(exc)}, 502)

    return wrapped


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def info(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
    return _json({**backend.describe(), "default_fields": backend.default_fields()})


async def search(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
    node, r = _parse(request)
    before_text = request.query.get("before")
    before = backend.parse_cursor(before_text) if before_text else None
    if before is None:  # later pages give the first page's range as from/to
        r = await _in_thread(backend.resolve, r)
    body = await _in_thread(backend.search, node, r, before)
    return _json(body)


async def aggregate(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
    node, r = _parse(request)
    fields = [f for f in request.query.get("top", "").split(",") if f.strip()]
    if len(fields) > MAX_TOP_FIELDS:
        raise _BadRequest({"error": f"top: at most {MAX_TOP_FIELDS} fields"})
    size_text = request.query.get("size", "5")
    if not size_text.isdigit() or not 1 <= int(size_text) <= 100:
        raise _BadRequest({"error": f"size={size_text!r}: a number from 1 to 100"})
    r = await _in_thread(backend.resolve, r)
    body = await _in_thread(backend.aggregate, node, r, fields, int(size_text))
    body["range"] = r.to_json()
    return _json(body)


async def context(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
    path = request.query.get("path") or None
    offset, t = request.query.get("offset", ""), request.query.get("t", "")
    hit_id = request.query.get("id") or None
    if not t.lstrip("-").isdigit() or (offset and not offset.isdigit()):
        raise _BadRequest({"error": "context needs t and path and offset, or id (from the line)"})
    if (path is None or not offset) and hit_id is None:
        raise _BadRequest({"error": "context needs t and path and offset, or id (from the line)"})
    where = int(offset) if path is not None and offset else None
    body = await _in_thread(backend.context, path, where, int(t), hit_id)
    return _json(body)


async def tail(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
    node, r = _parse(request)
    # A reconnecting EventSource sends the id of the last event it got: resume there,
    # not at the first page's position (which would send those lines again).
    after = request.headers.get("Last-Event-ID") or request.query.get("after", "")
    position = int(after) if after.isdigit() else await _in_thread(backend.tail_start)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    await response.write(b": live\n\n")
    idle = 0.0
    try:
        while True:
            await asyncio.sleep(TAIL_INTERVAL)
            data, position = await _in_thread(backend.tail_poll, node, r, position)
            if data is not None:
                await response.write(b"id: %d\ndata: %s\n\n" % (position, data))
                idle = 0.0
            else:
                idle += TAIL_INTERVAL
                if idle >= HEARTBEAT:
                    await response.write(b": idle\n\n")
                    idle = 0.0
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response


def make_app(backend: Any, token: str | None) -> web.Application:
    """The application for `backend` (`ui.backend.StoreBackend` or the Elasticsearch
    one), guarded by `token` (None: loopback only)."""
    app = web.Application(middlewares=[guard(token)])
    app[BACKEND] = backend
    app.router.add_get("/", index)
    app.router.add_get("/api/info", _errors(info))
    app.router.add_get("/api/search", _errors(search))
    app.router.add_get("/api/aggregate", _errors(aggregate))
    app.router.add_get("/api/context", _errors(context))
    app.router.add_get("/api/tail", _errors(tail))
    app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
    return app


async def serve(backend: Any, host: str, port: int, token: str | None, ready: Any) -> None:
    """Serve until cancelled; `ready(url)` is called once the socket listens."""
    app = make_app(backend, token)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        sockets = runner.addresses
        bound_port = sockets[0][1] if sockets else port
        shown = f"[{host}]" if ":" in host else host
        ready(f"http://{shown}:{bound_port}/")
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
