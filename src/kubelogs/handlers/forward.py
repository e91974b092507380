"""`ForwardHandler`: a `logging` handler that ships records over the Forward protocol.

Why a thread and a queue: an application's logging call must never wait for the
network. `emit` turns the record into a small dict (message, level, logger, the
``extra=`` fields, the exception) and appends it to a bounded queue - nothing else; when
the queue is full the record is dropped and counted (`dropped`), never blocking the
application. A daemon thread runs an asyncio loop that packs queued records into
PackedForward chunks, sends them with a ``chunk`` id and waits for the server's acks.

Delivery: every record gets an ``event.id`` - this handler's stable prefix (host,
process, start time) and the record's sequence number - so a kubelogs aggregator
treats the handler like a file: records resent after a lost connection are recognised
and stored once. Chunks travel in order on one connection; after a failure every
unacked chunk is resent, in order, before anything newer (the store drops what it has
already seen by sequence number). `flush(timeout)` waits until every record emitted
before it was acked; `close(timeout)` flushes, then stops the thread.

Error handling: nothing raises into the application. Connection failures are retried
with jittered backoff (`max_backoff`); the last one is kept in `last_error` and counted
in `errors`. The handler never logs through `logging` itself (it could be attached to
the root logger and would feed itself).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

from kubelogs.forward.client import ClientConnection, new_chunk_id, wait_event
from kubelogs.forward.handshake import ClientAuth
from kubelogs.forward.protocol import event_time_ext, packb
from kubelogs.handlers.documents import record_document
from kubelogs.pipeline.event import make_id_prefix
from kubelogs.sinks.retry import Backoff


@dataclass
class _Chunk:
    payload: bytes
    chunk_id: str
    last_seq: int
    sent_at: float = 0.0
    ack: asyncio.Future[None] | None = None


class ForwardHandler(logging.Handler):
    """Send log records to a Forward protocol server (a kubelogs aggregator).

    ``ForwardHandler("aggregator", 24224, "app.web")``; `extra=` fields become fields
    of the event. `tls` is an `ssl.SSLContext` (or True for the system's CAs).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 24224,
        tag: str = "app",
        *,
        level: int = logging.NOTSET,
        queue_size: int = 10_000,
        shared_key: str | None = None,
        username: str = "",
        password: str = "",
        tls: ssl.SSLContext | bool | None = None,
        server_hostname: str | None = None,
        max_chunk_records: int = 1000,
        max_in_flight: int = 4,
        ack_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        max_backoff: float = 10.0,
        hostname: str | None = None,
    ) -> None:
        super().__init__(level)
        self.host = host
        self.port = port
        self.tag = tag
        self.queue_size = queue_size
        self.max_chunk_records = max_chunk_records
        self.max_in_flight = max_in_flight
        self.ack_timeout = ack_timeout
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        self.hostname = hostname or socket.gethostname()
        self._auth = (
            ClientAuth(shared_key, self.hostname, username, password) if shared_key else None
        )
        self._ssl = ssl.create_default_context() if tls is True else (tls or None)
        self._server_hostname = server_hostname
        self._id_prefix = make_id_prefix(
            self.hostname, f"handler:{os.getpid()}:{time.time_ns()}:{os.urandom(4).hex()}"
        )
        self._queue: collections.deque[tuple[int, int, dict[str, Any]]] = collections.deque()
        self._seq = 0
        self._acked = 0
        self._acked_cond = threading.Condition()
        self.dropped = 0
        """Records dropped because the queue was full (or still queued at close)."""
        self.errors = 0
        """Failed connection attempts, lost connections and ack timeouts."""
        self.last_error: str | None = None
        self._closing = False
        self._abandon = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[Any] | None = None
        self._conns: set[ClientConnection] = set()
        self._idle = False
        """Set while the thread waits with room for more records: `emit` wakes it."""
        self._started = threading.Event()
        self._thread = threading.Thread(
            target=self._thread_main, name=f"kubelogs-forward-{host}:{port}", daemon=True
        )
        self._thread.start()
        self._started.wait(5)

    # -- application side -------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record; never blocks, never raises."""
        try:
            if self._closing or len(self._queue) >= self.queue_size:
                self.dropped += 1
                return
            doc = self._document(record)
            self._seq += 1  # emit runs under the handler's lock (Handler.handle)
            self._queue.append((self._seq, int(record.created * 1e9), doc))
            if self._idle:
                self._idle = False
                self._wake_thread()
        except Exception:
            self.dropped += 1

    def _document(self, record: logging.LogRecord) -> dict[str, Any]:
        return record_document(self, record)

    def flush(self, timeout: float | None = 5.0) -> bool:  # type: ignore[override]
        """Wait until every record emitted so far was acked; False on timeout."""
        target = self._seq
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wake_thread()
        with self._acked_cond:
            while self._acked < target and self._thread.is_alive():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._acked_cond.wait(left)
        return self._acked >= target

    def close(self, timeout: float = 5.0) -> None:
        """Flush (up to `timeout` seconds), then stop the thread. Records not acked by
        then are counted in `dropped`."""
        if not self._closing:
            self.flush(timeout)
            self._closing = True
            self._abandon = True
            loop, task = self._loop, self._task
            if loop is not None and task is not None:
                with contextlib.suppress(RuntimeError):  # the loop has ended
                    loop.call_soon_threadsafe(task.cancel)  # also mid-connect
            self._thread.join(timeout)
            self.dropped += self._seq - self._acked if self._seq > self._acked else 0
        super().close()

    @property
    def acked(self) -> int:
        """Records acknowledged by the server so far."""
        return self._acked

    def _wake_thread(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended
                loop.call_soon_threadsafe(wake.set)

    # -- background thread ------------------------------------------------------------

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except asyncio.CancelledError:
            pass  # `close` gave up waiting
        except BaseException as exc:  # never into the application
            self.last_error = f"{type(exc).__name__}: {exc}"

    def _next_chunk(self) -> _Chunk | None:
        q = self._queue
        if not q:
            return None
        entries: list[list[Any]] = []
        last = 0
        prefix = self._id_prefix
        while q and len(entries) < self.max_chunk_records:
            seq, t, doc = q.popleft()
            doc["event"] = {"id": f"{prefix}-{seq:x}"}
            entries.append([event_time_ext(t), doc])
            last = seq
        stream = b"".join(_pack(e) for e in entries)
        chunk_id = new_chunk_id()
        payload = packb([self.tag, stream, {"chunk": chunk_id, "size": len(entries)}])
        return _Chunk(payload, chunk_id, last)

    async def _main(self) -> None:
        try:
            await self._run()
        finally:
            # close whatever a cancellation interrupted, so no socket outlives the thread
            for conn in list(self._conns):
                await conn.close()
            await asyncio.sleep(0)

    async def _run(self) -> None:
        self._task = asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._started.set()
        unacked: collections.deque[_Chunk] = collections.deque()
        backoff = Backoff(0.2, self.max_backoff)
        while not self._abandon:
            if not unacked and not self._queue:
                self._idle = True
                self._wake.clear()
                if not self._queue:
                    await self._wake.wait()
                self._idle = False
                continue
            try:
                conn = await ClientConnection.open(
                    self.host,
                    self.port,
                    ssl_context=self._ssl,
                    server_hostname=self._server_hostname,
                    auth=self._auth,
                    timeout=self.connect_timeout,
                )
            except Exception as exc:
                self._failed(f"cannot connect to {self.host}:{self.port}: {exc!r}")
                await self._sleep(backoff.next_delay())
                continue
            self._conns.add(conn)
            try:
                await self._stream(conn, unacked)
                backoff.reset()
            except Exception as exc:
                self._failed(f"{self.host}:{self.port}: {exc!r}")
                await self._sleep(backoff.next_delay())
            finally:
                await conn.close()
                self._conns.discard(conn)

    async def _sleep(self, delay: float) -> None:
        assert self._wake is not None
        self._wake.clear()
        await wait_event(self._wake, delay)

    def _failed(self, message: str) -> None:
        self.errors += 1
        self.last_error = message

    async def _stream(self, conn: ClientConnection, unacked: collections.deque[_Chunk]) -> None:
        loop = asyncio.get_running_loop()
        wake = self._wake
        assert wake is not None

        def send(c: _Chunk) -> None:
            c.sent_at = loop.time()
            c.ack = conn.send(c.payload, c.chunk_id)
            assert c.ack is not None
            c.ack.add_done_callback(lambda _f: wake.set())

        for c in unacked:
            send(c)
        while not self._abandon:
            wake.clear()
            while len(unacked) < self.max_in_flight:
                nxt = self._next_chunk()
                if nxt is None:
                    break
                unacked.append(nxt)
                send(nxt)
            await conn.drain()
            while unacked and unacked[0].ack is not None and unacked[0].ack.done():
                unacked[0].ack.result()  # raises when the connection failed
                c = unacked.popleft()
                with self._acked_cond:
                    self._acked = c.last_seq
                    self._acked_cond.notify_all()
            if not unacked and not self._queue:
                return  # idle: back to waiting (the connection is reopened on demand)
            if any(c.ack is not None and c.ack.done() and c.ack.exception() for c in unacked):
                raise ConnectionError("connection lost")
            timeout = None
            if unacked:
                timeout = unacked[0].sent_at + self.ack_timeout - loop.time()
                if timeout <= 0:
                    raise TimeoutError(f"no ack within {self.ack_timeout:g}s")
            if len(unacked) >= self.max_in_flight:
                await wait_event(wake, timeout)
            elif not self._queue:
                self._idle = True  # new records wake us too
                if not self._queue:
                    await wait_event(wake, timeout)
                self._idle = False


def _pack(entry: list[Any]) -> bytes:
    try:
        return packb(entry)
    except (TypeError, ValueError, OverflowError):
        return packb([entry[0], _plain(entry[1])])


def _plain(value: Any) -> Any:
    """`extra=` values msgpack cannot carry (objects, sets) become their `str`."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool | bytes):
        return value
    return str(value)
