"""`HttpHandler`: a `logging` handler that POSTs records to a kubelogs `http` source.

Why a thread and a queue: an application's logging call must never wait for the
network. `emit` turns the record into a small dict (message, level, logger, the
``extra=`` fields, the exception) and appends it to a bounded queue - nothing else; when
the queue is full the record is dropped and counted (`dropped`), never blocking the
application. A daemon thread POSTs queued records as NDJSON (standard library
`http.client`: nothing to install in the application beyond kubelogs itself).

Delivery: the `http` source answers 200 only once the events are durable, so a record
counts as delivered (`acked`) on a 200. Every record carries an ``event.id`` - this
handler's stable prefix (host, process, start time) and the record's sequence number -
so the aggregator treats the handler like a file: a request resent after a timeout or a
lost answer is stored once. Requests go one at a time, in order; a failed one is resent
before anything newer. ``503`` (backpressure) and ``429`` wait `Retry-After` (capped by
`max_backoff`); connection errors back off with jitter; any other ``4xx`` can never
succeed (bad credentials, a body over the server's limit), so those records are
dropped, counted in `dropped` and `errors`, and the reason kept in `last_error`.

Nothing raises into the application, and the handler never logs through `logging`
itself (attached to the root logger it would feed itself).
"""

from __future__ import annotations

import base64
import collections
import http.client
import json
import logging
import os
import socket
import ssl
import threading
import time
import urllib.parse
from datetime import UTC, datetime

from kubelogs.handlers.documents import record_document
from kubelogs.pipeline.event import make_id_prefix
from kubelogs.sinks.retry import Backoff


class HttpHandler(logging.Handler):
    """Send log records to a kubelogs `http` source (or any NDJSON intake).

    ``HttpHandler("http://aggregator:8080/app", token=os.environ["INTAKE_TOKEN"])``;
    `extra=` fields become fields of the event. `ssl_context` for ``https://`` with a
    private CA.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        user: str | None = None,
        password: str | None = None,
        level: int = logging.NOTSET,
        queue_size: int = 10_000,
        max_batch: int = 500,
        timeout: float = 30.0,
        max_backoff: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        hostname: str | None = None,
    ) -> None:
        super().__init__(level)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"HttpHandler: {url!r} is not an http:// or https:// URL")
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = {"Content-Type": "application/x-ndjson"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        elif user is not None:
            pair = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {pair}"
        self._ssl = ssl_context
        self.queue_size = queue_size
        self.max_batch = max_batch
        self.timeout = timeout
        self.max_backoff = max_backoff
        self.hostname = hostname or socket.gethostname()
        self._id_prefix = make_id_prefix(
            self.hostname, f"http-handler:{os.getpid()}:{time.time_ns()}:{os.urandom(4).hex()}"
        )
        self._queue: collections.deque[tuple[int, bytes]] = collections.deque()
        self._seq = 0
        self._done = 0
        """Sequence number up to which every record was delivered or given up."""
        self._cond = threading.Condition()
        self.acked = 0
        """Records the server accepted (200: durable there)."""
        self.dropped = 0
        """Records dropped: queue full, refused by the server, or unsent at close."""
        self.errors = 0
        """Failed requests (connection errors, timeouts, non-200 answers)."""
        self.last_error: str | None = None
        self._closing = False
        self._conn: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"kubelogs-http-{self._host}:{self._port}", daemon=True
        )
        self._thread.start()

    # -- application side -------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record; never blocks, never raises."""
        try:
            if self._closing or len(self._queue) >= self.queue_size:
                self.dropped += 1
                return
            self._seq += 1  # emit runs under the handler's lock (Handler.handle)
            line = self._line(record, self._seq)
            with self._cond:
                self._queue.append((self._seq, line))
                self._cond.notify_all()
        except Exception:
            self.dropped += 1

    def _line(self, record: logging.LogRecord, seq: int) -> bytes:
        doc = record_document(self, record)
        doc["@timestamp"] = datetime.fromtimestamp(record.created, UTC).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ"
        )
        doc["event"] = {"id": f"{self._id_prefix}-{seq:x}"}
        return json.dumps(doc, default=str, ensure_ascii=False).encode() + b"\n"

    def flush(self, timeout: float | None = 10.0) -> bool:  # type: ignore[override]
        """Wait until every record emitted so far was delivered (or given up); False
        on timeout."""
        target = self._seq
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
            while self._done < target and self._thread.is_alive():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return self._done >= target

    def close(self, timeout: float = 5.0) -> None:
        """Flush (up to `timeout` seconds), then stop the thread; records not delivered
        by then are counted in `dropped`."""
        if not self._closing:
            self.flush(timeout)
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._thread.join(timeout)
            with self._cond:
                self.dropped += len(self._queue)
                self._queue.clear()
        super().close()

    # -- background thread ------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._send_loop()
        finally:
            self._drop_connection()

    def _send_loop(self) -> None:
        backoff = Backoff(0.2, self.max_backoff)
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                chunk = [self._queue[i] for i in range(min(self.max_batch, len(self._queue)))]
            wait = self._post(b"".join(line for _, line in chunk))
            if wait is None or wait < 0:
                with self._cond:
                    for _ in chunk:
                        self._queue.popleft()
                    if wait is None:
                        self.acked += len(chunk)
                    else:
                        self.dropped += len(chunk)
                    self._done = chunk[-1][0]
                    self._cond.notify_all()
                backoff.reset()
                continue
            delay = min(self.max_backoff, wait) if wait > 0 else backoff.next_delay()
            with self._cond:
                if self._closing:
                    return
                self._cond.wait(delay)

    def _post(self, body: bytes) -> float | None:
        """None when accepted; -1 when refused for good; else seconds to wait (0: back
        off) before resending."""
        try:
            conn = self._connection()
            conn.request("POST", self._path, body=body, headers=self._headers)
            resp = conn.getresponse()
            status = resp.status
            retry_after = resp.getheader("Retry-After")
            answer = resp.read(2048)
        except (OSError, http.client.HTTPException) as exc:
            self._fail(f"POST {self.url}: {type(exc).__name__}: {exc}")
            return 0.0
        if status == 200 or status == 204:
            return None
        self._fail(f"POST {self.url}: {status} {answer.decode('utf-8', 'replace')[:200]}")
        if status in (408, 429) or status >= 500:
            try:
                return max(0.0, float(retry_after)) if retry_after else 0.0
            except ValueError:
                return 0.0
        return -1.0

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self.timeout, context=self._ssl
                )
            else:
                self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self.timeout
                )
        return self._conn

    def _fail(self, message: str) -> None:
        self.errors += 1
        self.last_error = message
        self._drop_connection()

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None
