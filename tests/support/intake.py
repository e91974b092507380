"""A kubelogs `http` source in a thread of its own, collecting what it receives: the
server side of the `HttpHandler` and sidecar tests."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path
from typing import Any

from kubelogs.config.base import BuildContext
from kubelogs.pipeline.event import Batch
from kubelogs.sources.http import HttpSource, HttpSourceConfig
from kubelogs.telemetry.metrics import Metrics


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Intake:
    """Start with `start()`, stop with `stop()` (a restart keeps what was received).
    `hold` keeps the events unacknowledged (the answers wait, then time out)."""

    def __init__(self, port: int | None = None, **settings: Any) -> None:
        self.port = port or free_port()
        self.settings = settings
        self.batches: list[Batch] = []
        self.hold = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    async def send(self, batch: Batch) -> None:
        with self._lock:
            self.batches.append(batch)
        if not self.hold and batch.ack is not None:
            batch.ack.resolve()

    def ids(self) -> list[str]:
        with self._lock:
            return [b.event_id(i) for b in self.batches for i in range(len(b))]

    def messages(self) -> list[str]:
        with self._lock:
            return [m for b in self.batches for m in b.messages]

    def fields(self) -> list[dict[str, Any]]:
        with self._lock:
            return [(b.fields or {}).get(i, {}) for b in self.batches for i in range(len(b))]

    def start(self) -> Intake:
        ready = threading.Event()
        errors: list[BaseException] = []

        async def main() -> None:
            config = HttpSourceConfig.model_validate(
                {"type": "http", "address": f"127.0.0.1:{self.port}", **self.settings}
            )
            source = HttpSource(config, BuildContext("intake", Path("."), "node-1", Metrics()))
            self._stopping = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            try:
                await source.prepare()
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                return
            ready.set()
            try:
                await source.run(self, self._stopping)
            finally:
                await source.close()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self._thread.start()
        ready.wait(30)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(30)
        self._thread = None

    def __enter__(self) -> Intake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
