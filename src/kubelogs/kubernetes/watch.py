"""The reflector loop: LIST, then WATCH from the list's resourceVersion, forever.

Why this shape (it is client-go's reflector, reduced): a watch only delivers changes after
a resourceVersion, so the first step is a LIST whose ``metadata.resourceVersion`` is where
the WATCH starts. From then on:

- every event moves the remembered resourceVersion forward, and so do BOOKMARK events
  (``allowWatchBookmarks=true``), which the server sends precisely so that a quiet
  collection does not leave the client with an old version;
- the server ends a watch after ``timeoutSeconds`` (randomised, so a thousand agents do
  not reconnect together) -> watch again from the remembered version, no LIST;
- a dropped connection -> watch again from the remembered version after a short jittered
  backoff, no LIST: re-listing every pod of a node on each network hiccup is exactly the
  GET storm a DaemonSet must not cause;
- ``410 Gone`` (as an HTTP status, or as an ERROR event with code 410 inside the stream,
  which is how the watch cache answers) means that version was compacted away -> LIST
  again, this time a consistent paginated read;
- any other failure (refused, 401, 403, 5xx, bad certificate) -> one clear log line per
  distinct problem (rate-limited) and retry with jittered exponential backoff. Meanwhile
  the cache keeps what it has and lines keep their file-name metadata.

The first LIST uses ``resourceVersion=0``: served from the API server's watch cache, it
costs the control plane no etcd read when every agent of a large cluster starts at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic

from kubelogs.kubernetes.client import KubeClient
from kubelogs.kubernetes.errors import (
    ApiGoneError,
    ApiServerError,
    KubernetesError,
    WatchInterruptedError,
)
from kubelogs.kubernetes.resources import T

log = logging.getLogger("kubelogs.kubernetes")

_jitter = random.Random()
"""Jitter from a generator of our own: the global `random` state belongs to the
application (and to test frameworks that seed it), and threads that share it race."""


@dataclass
class Backoff:
    """Jittered exponential backoff: ``uniform(0.5, 1) * min(maximum, initial * 2**n)``."""

    initial: float = 0.5
    maximum: float = 30.0
    _attempt: int = 0

    def reset(self) -> None:
        self._attempt = 0

    def next_delay(self) -> float:
        delay: float = min(self.maximum, self.initial * (2.0**self._attempt))
        self._attempt = min(self._attempt + 1, 32)
        return delay * _jitter.uniform(0.5, 1.0)


class ProblemReporter:
    """One log line per distinct problem, repeated at most every `repeat_interval` seconds.

    A refused connection retried every 30 s must not write 2,880 lines a day; it writes
    one, then one reminder per interval, and one line when the server answers again.
    Problems are tracked per `source` (a reflector's path) so that pods failing while
    namespaces work neither hides nor repeats a line. Listeners (e.g. a component's error
    counter) see every problem.
    """

    def __init__(self, *, repeat_interval: float = 300.0) -> None:
        self.repeat_interval = repeat_interval
        self._last: dict[str, float] = {}
        self._failing: dict[str, set[str]] = {}
        self.listeners: list[Callable[[KubernetesError], None]] = []
        self.problems = 0

    def report(self, err: KubernetesError, *, consequence: str = "", source: str = "") -> None:
        self.problems += 1
        for listener in list(self.listeners):
            try:
                listener(err)
            except Exception:
                log.exception("a Kubernetes problem listener failed")
        text = str(err)
        self._failing.setdefault(source, set()).add(text)
        now = time.monotonic()
        last = self._last.get(text)
        if last is not None and now - last < self.repeat_interval:
            return
        self._last[text] = now
        if len(self._last) > 64:
            self._last = {text: now}
        log.warning("%s%s", text, consequence)

    def recovered(self, server: str, *, source: str = "") -> None:
        texts = self._failing.pop(source, None)
        if texts is None:
            return
        for text in texts:
            self._last.pop(text, None)
        log.warning(
            "the Kubernetes API server %s answers again%s; pod metadata resumes",
            server,
            f" for {source}" if source else "",
        )


@dataclass
class ReflectorStats:
    lists: int = 0
    list_pages: int = 0
    watches: int = 0
    relists_after_gone: int = 0
    events: int = 0
    errors: int = 0


@dataclass
class Handler(Generic[T]):
    """Where a reflector delivers: the cache's update methods for one resource."""

    replace: Callable[[list[T]], None]
    upsert: Callable[[T], None]
    delete: Callable[[T], None]


@dataclass
class Reflector(Generic[T]):
    """Keep `handler` in sync with one collection; `run()` until cancelled.

    Resource handling: one watch connection at a time, closed when `run()` is cancelled.
    Error handling: never raises except `CancelledError`; failures go to `reporter` and
    are retried (see the module docstring).
    """

    client: KubeClient
    path: str
    item_type: type[T]
    handler: Handler[T]
    reporter: ProblemReporter
    field_selector: str = ""
    page_size: int = 500
    backoff: Backoff = field(default_factory=Backoff)
    watch_timeout: tuple[int, int] = (300, 600)
    """Bounds of the random ``timeoutSeconds`` of each watch request."""
    consequence: str = ""
    """Appended to problem log lines: what the failure means for shipped documents."""
    resource_version: str = ""
    stats: ReflectorStats = field(default_factory=ReflectorStats)
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    """Set after the first successful LIST."""
    attempted: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the first LIST has succeeded or failed: who waits for the initial sync
    waits no longer than one attempt when the server is down."""

    async def run(self) -> None:
        list_rv: str | None = "0"
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list(list_rv)
                    need_list = False
                    self.backoff.reset()
                    self.reporter.recovered(self.client.server, source=self.path)
                started = time.monotonic()
                if await self._watch() or time.monotonic() - started > 1.0:
                    continue  # the server ended the stream (timeoutSeconds): watch again
                # An empty stream that ended at once: a proxy in the way? Do not spin.
            except ApiGoneError:
                # Compacted: the remembered version (or a continue token) is too old.
                self.stats.relists_after_gone += 1
                log.info("resourceVersion of %s is too old (410 Gone); listing again", self.path)
                need_list, list_rv = True, None
                continue
            except WatchInterruptedError as exc:
                self.stats.errors += 1
                log.debug("%s; watching again from %s", exc, self.resource_version)
            except KubernetesError as exc:
                self.stats.errors += 1
                self.reporter.report(exc, consequence=self.consequence, source=self.path)
            finally:
                self.attempted.set()
            await asyncio.sleep(self.backoff.next_delay())

    async def _list(self, resource_version: str | None) -> None:
        result = await self.client.list_all(
            self.path,
            self.item_type,
            field_selector=self.field_selector,
            limit=self.page_size,
            resource_version=resource_version,
        )
        self.stats.lists += 1
        self.stats.list_pages += result.pages
        self.handler.replace(result.items)
        self.resource_version = result.resource_version
        self.synced.set()
        self.attempted.set()

    async def _watch(self) -> int:
        """Watch once from `resource_version` until the server ends the stream; returns the
        number of events received."""
        self.stats.watches += 1
        stream = self.client.watch(
            self.path,
            self.item_type,
            resource_version=self.resource_version,
            field_selector=self.field_selector,
            timeout_seconds=_jitter.randint(*self.watch_timeout),
        )
        received = 0
        async with stream:
            self.backoff.reset()
            self.reporter.recovered(self.client.server, source=self.path)
            async for ev in stream:
                received += 1
                self.stats.events += 1
                kind = ev.type
                if kind == "ERROR":
                    st = ev.status
                    code = st.code if st else 0
                    msg = st.message if st else ""
                    if code == 410:
                        raise ApiGoneError(f"watch of {self.path}: {msg}", status=410)
                    raise ApiServerError(
                        f"the Kubernetes API server {self.client.server} ended the watch of "
                        f"{self.path} with an error ({code}): {msg[:256]}",
                        status=code,
                    )
                if ev.obj is not None and kind != "BOOKMARK":
                    if kind == "DELETED":
                        self.handler.delete(ev.obj)
                    else:
                        self.handler.upsert(ev.obj)
                if ev.resource_version:
                    self.resource_version = ev.resource_version
        return received
