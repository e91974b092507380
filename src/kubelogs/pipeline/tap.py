"""Taps: copies of the events leaving a component, for `kubelogs tap` (debugging a config).

Why a tap never slows the pipeline: the runner calls `TapPoint.publish` after a
component's output, and the first thing it checks is whether anyone listens (one
attribute read per *batch* when nobody does). A subscriber gets the batch's documents
(NDJSON, encoded only when someone listens) through its own bounded queue, filled with
a non-blocking put: when the reader is slower than the pipeline, the tap drops documents and
counts them (`dropped`, and `kubelogs_tap_dropped_events_total`); the pipeline never
waits for a tap and the ack of a batch is never held by one.

Threads: the runner publishes from the event loop, the API serves the tap from its own
thread (the API is a WSGI server in a thread), so the queue is guarded by a lock and
a condition, and the subscriber lists are immutable tuples replaced on change (a
reader in the other thread always sees a whole tuple).

The hub outlives a pipeline: on a configuration reload the new pipeline's components get
the same `TapPoint` by id, so a `kubelogs tap` keeps streaming across a reload.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import Counter

from kubelogs.codecs.document import encode_documents
from kubelogs.pipeline.event import Batch
from kubelogs.telemetry.metrics import Metrics

log = logging.getLogger("kubelogs.tap")

TAP_QUEUE_DOCUMENTS = 1000
"""Documents a subscriber may have waiting before the tap drops: bounds the memory of a
tap whatever the event rate (1000 x a few KiB)."""


@dataclass
class TapSubscriber:
    """One reader's bounded queue of documents, in chunks (one per published batch), so
    handing a batch over costs one lock and one list, not one queue operation per
    document."""

    component: str
    limit: int = 0
    """Stop after this many documents; 0 = until the client goes away."""
    capacity: int = TAP_QUEUE_DOCUMENTS
    dropped: int = 0
    sent: int = 0
    closed: bool = False
    _chunks: deque[list[bytes]] = field(default_factory=deque)
    _queued: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def offer(self, documents: list[bytes]) -> int:
        """Queue what fits, without ever waiting; return how many were dropped."""
        with self._cond:
            room = max(0, self.capacity - self._queued)
            take = documents if len(documents) <= room else documents[:room]
            if take:
                self._chunks.append(take)
                self._queued += len(take)
                self._cond.notify()
            dropped = len(documents) - len(take)
            self.dropped += dropped
        return dropped

    def chunks(self, poll: float = 1.0) -> Iterator[bytes]:
        """NDJSON text as documents come, until `limit`, or until `close()` and what
        was queued before it has been read.

        Yields ``b""`` every `poll` seconds without events (the caller writes nothing
        then, but gets a chance to stop)."""
        while self.limit == 0 or self.sent < self.limit:
            with self._cond:
                if not self._chunks and not self.closed:
                    self._cond.wait(poll)
                if not self._chunks:
                    if self.closed:
                        return
                    chunk: list[bytes] | None = None
                else:
                    chunk = self._chunks.popleft()
                    self._queued -= len(chunk)
            if chunk is None:
                yield b""
                continue
            if self.limit:
                chunk = chunk[: self.limit - self.sent]
            self.sent += len(chunk)
            yield b"\n".join(chunk) + b"\n"

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class TapPoint:
    """The tap of one component's output (one per component id, kept across reloads)."""

    __slots__ = ("component", "on_drop", "subscribers")

    def __init__(self, component: str, on_drop: Callable[[int], None] | None = None) -> None:
        self.component = component
        self.subscribers: tuple[TapSubscriber, ...] = ()
        self.on_drop = on_drop

    def publish(self, batch: Batch) -> None:
        """Called by the runner for every batch the component sends on."""
        subscribers = self.subscribers
        if not subscribers or not len(batch):
            return
        try:
            documents = encode_documents(batch)
        except Exception:  # a tap must never break the pipeline
            log.exception("tap on %s: cannot encode a batch", self.component)
            return
        for sub in subscribers:
            dropped = sub.offer(documents)
            if dropped and self.on_drop is not None:
                self.on_drop(dropped)


class TapHub:
    """Every component's `TapPoint`, and which components can be tapped now."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._lock = threading.Lock()
        self._points: dict[str, TapPoint] = {}
        self._dropped: Counter | None = None
        if metrics is not None:
            self._dropped = Counter(
                "kubelogs_tap_dropped_events",
                "Events a `kubelogs tap` reader was too slow to take (the pipeline never "
                "waits for a tap).",
                ["component_id"],
                registry=metrics.registry,
            )
        self.components: dict[str, str] = {}
        """Tappable component id -> kind, for the running pipeline (set by the runner)."""

    def point(self, component: str) -> TapPoint:
        with self._lock:
            p = self._points.get(component)
            if p is None:
                on_drop = None
                if self._dropped is not None:
                    on_drop = self._dropped.labels(component).inc
                p = self._points[component] = TapPoint(component, on_drop)
            return p

    def subscribe(self, component: str, limit: int = 0) -> TapSubscriber:
        sub = TapSubscriber(component, limit)
        p = self.point(component)
        with self._lock:
            p.subscribers = (*p.subscribers, sub)
        log.info("tap on %s started", component)
        return sub

    def unsubscribe(self, sub: TapSubscriber) -> None:
        p = self.point(sub.component)
        with self._lock:
            p.subscribers = tuple(s for s in p.subscribers if s is not sub)
        sub.close()
        log.info(
            "tap on %s ended: %d events sent, %d dropped (the reader was slower than the pipeline)",
            sub.component,
            sub.sent,
            sub.dropped,
        )

    def close(self) -> None:
        """End every stream (the agent stops)."""
        with self._lock:
            points = list(self._points.values())
        for p in points:
            for sub in p.subscribers:
                sub.close()
