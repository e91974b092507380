"""The sending side of the Forward protocol: one connection, its handshake and its acks.

`ClientConnection.open` connects (TCP or TLS), passes the HELO/PING/PONG handshake when
the server starts with HELO (or when a shared key is configured and it does not - then it
fails), and starts a reader task that matches ``{"ack": chunk}`` answers to the futures
`send` returned. Several chunks may wait for their acks on one connection at once
(pipelining: an aggregator that acks after its store's flush interval would otherwise
cap throughput at one chunk per interval).

Resource handling: the reader task belongs to the connection; `close` cancels it and
fails every pending future with `ConnectionError`, so whoever waits resends elsewhere.
Used by the `forward` sink and by `kubelogs.handlers.ForwardHandler`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
from collections.abc import Callable
from typing import Any

import msgpack

from kubelogs.forward.handshake import ClientAuth, HandshakeError
from kubelogs.forward.protocol import Limits, ProtocolError, iter_messages, new_unpacker, packb

_MAX_RESPONSE = 1 << 20
"""Bytes of server responses buffered at most (acks are ~40 bytes each)."""


async def close_writer(writer: asyncio.StreamWriter, timeout: float = 1.0) -> None:  # noqa: ASYNC109
    """Close a connection; when a TLS close handshake does not finish in `timeout`
    seconds (the peer is gone) or the caller is cancelled meanwhile, abort it so that
    no socket is left open.

    Why `close` is called only once: asyncio's TLS transport drops its link to the
    protocol on a *second* `close()` (Python 3.11-3.13), after which `abort()` is a
    no-op - the socket underneath then stays open until the garbage collector finds
    it (a ResourceWarning). `ClientConnection._fail` has usually closed already.
    """
    if not writer.transport.is_closing():
        writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), timeout)
    except Exception:
        writer.transport.abort()
        await asyncio.sleep(0)  # let the transport close its socket now
    except asyncio.CancelledError:
        writer.transport.abort()
        raise


async def wait_event(event: asyncio.Event, timeout: float | None) -> None:  # noqa: ASYNC109
    """Wait for `event`, at most `timeout` seconds (None: no limit).

    Why `asyncio.timeout` and not `wait_for`: on Python 3.11 `wait_for` loses a
    cancellation that arrives while the event is being set; a sink lane or a handler
    thread cancelled at shutdown then waits on (seen: a test teardown hanging until the
    test timeout)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


def new_chunk_id() -> str:
    """A chunk id as Fluentd makes them: base64 of 16 random bytes."""
    return base64.b64encode(os.urandom(16)).decode()


class ClientConnection:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.name = name
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._unpacker = new_unpacker(_MAX_RESPONSE)
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._on_close: list[Callable[[], None]] = []

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        auth: ClientAuth | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 (covers connect and handshake together)
    ) -> ClientConnection:
        """Connect and authenticate within `timeout` seconds; OSError, TimeoutError or
        HandshakeError when that fails."""
        name = f"{host}:{port}"

        async def connect() -> ClientConnection:
            kwargs: dict[str, Any] = {}
            if ssl_context is not None:
                kwargs["ssl"] = ssl_context
                kwargs["server_hostname"] = server_hostname or host
            reader, writer = await asyncio.open_connection(host, port, **kwargs)
            conn = cls(reader, writer, name)
            try:
                if auth is not None:
                    await conn._handshake(auth)
            except BaseException:
                await close_writer(writer)
                raise
            return conn

        conn = await asyncio.wait_for(connect(), timeout)
        conn._task = asyncio.get_running_loop().create_task(
            conn._read_acks(), name=f"forward-acks:{name}"
        )
        return conn

    async def _next(self) -> Any:
        limits = Limits(_MAX_RESPONSE)
        while True:
            for obj in iter_messages(self._unpacker, limits):
                return obj
            data = await self._reader.read(65536)
            if not data:
                raise ConnectionError(f"{self.name} closed the connection")
            try:
                self._unpacker.feed(data)
            except msgpack.BufferFull:
                raise ProtocolError(f"{self.name} sent an oversized response") from None

    async def _handshake(self, auth: ClientAuth) -> None:
        helo = await self._next()
        ping, salt, nonce = auth.ping(helo)
        self._writer.write(packb(ping))
        await self._writer.drain()
        auth.check_pong(await self._next(), salt, nonce)

    async def _read_acks(self) -> None:
        try:
            while True:
                obj = await self._next()
                if isinstance(obj, dict):
                    chunk = obj.get("ack")
                    fut = self._pending.pop(chunk, None) if isinstance(chunk, str) else None
                    if fut is not None and not fut.done():
                        fut.set_result(None)
                elif isinstance(obj, list) and obj and obj[0] == "HELO":
                    raise HandshakeError(f"{self.name} requires a shared_key (it sent HELO)")
        except (Exception, asyncio.CancelledError) as exc:
            self._fail(exc if isinstance(exc, Exception) else ConnectionError("closed"))

    def add_close_callback(self, fn: Callable[[], None]) -> None:
        """Call `fn` once the connection is closed or lost (by either side): a sender
        idle on it learns that the server closed it (e.g. its `idle_timeout`)."""
        self._on_close.append(fn)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        callbacks, self._on_close = self._on_close, []
        for fn in callbacks:
            fn()
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError(f"{self.name}: {exc}"))
                fut.exception()  # retrieved: nobody may be waiting any more
        if not self._writer.transport.is_closing():
            self._writer.close()  # once: see close_writer

    @property
    def closed(self) -> bool:
        return self._error is not None or self._writer.is_closing()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def send(self, payload: bytes, chunk: str | None) -> asyncio.Future[None] | None:
        """Write one message; the future completes when the server acks `chunk`."""
        if self.closed:
            raise ConnectionError(f"{self.name}: {self._error or 'connection closed'}")
        fut: asyncio.Future[None] | None = None
        if chunk is not None:
            fut = asyncio.get_running_loop().create_future()
            self._pending[chunk] = fut
        self._writer.write(payload)
        return fut

    def forget(self, chunk: str) -> None:
        """Stop waiting for `chunk` (it is being resent elsewhere)."""
        self._pending.pop(chunk, None)

    async def drain(self) -> None:
        await self._writer.drain()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._fail(ConnectionError("closed"))
        await close_writer(self._writer)
