"""A sink behind a disk buffer: ``input channel -> segment files -> the sink``.

Four tasks share one `DiskBuffer`:

- the **writer** takes batches from the sink's input channel, appends each as one record
  (in a thread: a slow disk never stalls the event loop) and hands its ack token to the
  syncer; when the buffer is full it waits for space (``when_full: block``: the input
  channel fills, the sources stop reading, files stay on disk) or resolves the batch at
  once and counts it (``drop_newest``);
- the **syncer** fsyncs every `fsync_interval` while there is something new and only then
  resolves the upstream acks of the records that fsync covered: an event is acknowledged
  to its source once it would survive a crash;
- the **reader** reads records back in order and sends them to the sink through a small
  channel (so at most a few batches are in memory whatever is on disk: memory stays flat
  while the sink is down), each with a fresh ack token in an ordered ledger;
- the **committer** persists the read position once the sink has acknowledged a prefix of
  records, and deletes segments entirely before it (which wakes a blocked writer).

Delivery is at-least-once across a crash (records after the last persisted position are
sent again) and exactly once where the sink deduplicates by event id or offset: batches
read back keep their `FileContext` and offsets.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from kubelogs.buffer import records
from kubelogs.buffer.disk import DiskBuffer, Record, pos
from kubelogs.config.base import BuildContext
from kubelogs.config.buffer import DiskBufferConfig
from kubelogs.pipeline.acks import AckToken
from kubelogs.pipeline.channels import Channel
from kubelogs.pipeline.event import Batch
from kubelogs.pipeline.runtime import Input, Sink
from kubelogs.sinks.retry import Backoff
from kubelogs.telemetry.metrics import ComponentMetrics

log = logging.getLogger("kubelogs.buffer")

READ_AHEAD = 4
"""Batches read back and waiting for the sink: bounds memory while the sink is down."""
WRITE_GROUP = 16
WRITE_BYTES = 2 * 1024 * 1024
"""Batches waiting in the input joined into one write (one hand-off to a thread), at
most this many or about this many bytes of records."""
READ_GROUP = 8
READ_BYTES = 2 * 1024 * 1024
"""Records read back per hand-off to a thread, at most (with `READ_AHEAD`, what the
buffer holds in memory while the sink is down)."""
COMMIT_INTERVAL = 0.2
"""Seconds between writes of the read position (a crash resends at most this much)."""
MAX_SEGMENT = 64 * 1024 * 1024
MIN_SEGMENT = 64 * 1024


def buffer_dir_name(component_id: str) -> str:
    """A directory name for a component id (ids allow ``_ . -``; never ``..``)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", component_id)
    return "_" + name if name.startswith(".") else name


def segment_size_for(max_size: int) -> int:
    """An eighth of the buffer: space comes back in steps of at most that much."""
    return max(MIN_SEGMENT, min(MAX_SEGMENT, max_size // 8))


class _Entry:
    __slots__ = ("done", "end", "events", "written")

    def __init__(self, end: int, events: int, written: int) -> None:
        self.end = end
        self.events = events
        self.written = written
        self.done = False


class DiskBufferedSink:
    """Runs `sink` behind a disk buffer; shaped as a sink for the runner."""

    def __init__(
        self,
        sink: Sink,
        config: DiskBufferConfig,
        cx: BuildContext,
        *,
        segment_size: int | None = None,
    ) -> None:
        self.sink = sink
        self.config = config
        self.component_id = cx.component_id
        directory = cx.data_dir / "buffers" / buffer_dir_name(cx.component_id)
        self.buffer = DiskBuffer(
            directory,
            max_size=config.max_size,
            segment_size=segment_size or segment_size_for(config.max_size),
        )
        self.metrics = ComponentMetrics(cx.metrics, cx.component_id, "sink", "buffer")
        self.commit_interval = COMMIT_INTERVAL
        self.discarded_events = 0
        self.written_events = 0
        self._ledger: deque[_Entry] = deque()
        self._committed = self.buffer.committed
        self._unsynced: list[AckToken | None] = []
        self._data = asyncio.Event()
        self._space = asyncio.Event()
        self._need_sync = asyncio.Event()
        self._need_commit = asyncio.Event()
        self._input_done = False
        self._stopping = False
        cx.metrics.queue_events.labels(cx.component_id).set_function(
            lambda: self.buffer.pending_events
        )
        # One collector for every disk buffer of the pipeline: two collectors would each
        # print the same metric families, which Prometheus rejects.
        group: list[DiskBufferedSink] = cx.shared.setdefault("disk_buffers", [])
        if not group:
            cx.metrics.add_collector(lambda: _collect_all(group))
        group.append(self)

    # -- the sink interface -------------------------------------------------------------

    async def run(self, inp: Input) -> None:
        out = Channel(f"{self.component_id}.buffer", READ_AHEAD)
        out.add_producer()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._write_loop(inp), name=f"buffer-write:{self.component_id}")
            tg.create_task(self._sync_loop(), name=f"buffer-sync:{self.component_id}")
            tg.create_task(self._read_loop(out), name=f"buffer-read:{self.component_id}")
            committer = tg.create_task(
                self._commit_loop(), name=f"buffer-commit:{self.component_id}"
            )
            await self.sink.run(out)
            self._stopping = True
            self._need_commit.set()
            await committer

    async def close(self) -> None:
        if not self._ledger and self.buffer.drained:
            # everything delivered: end the active segment too, so no file is left behind
            self.buffer.seal()
            self._committed = max(self._committed, pos(self.buffer.write_seq, 0))
        try:
            self._commit_now()
        except OSError as exc:
            log.warning("buffer of %s: cannot save the read position: %s", self.component_id, exc)
        self.buffer.close()
        close = getattr(self.sink, "close", None)
        if close is not None:
            await close()

    # -- writer and syncer --------------------------------------------------------------

    async def _write_loop(self, inp: Input) -> None:
        try:
            async for first in inp:
                group = [first]
                while len(group) < WRITE_GROUP:
                    nxt = inp.receive_nowait()
                    if nxt is None:
                        break
                    group.append(nxt)
                await self._write_group(group)
        finally:
            self._input_done = True
            self._need_sync.set()
            self._data.set()

    async def _write_group(self, group: list[Batch]) -> None:
        """Append the batches waiting, in order, with as few writes as room allows."""
        now = time.time_ns()
        pending: list[tuple[Batch, bytes]] = []
        size = 0
        for batch in group:
            if not len(batch):
                if batch.ack is not None:
                    batch.ack.resolve()
                continue
            rec = records.encode(batch, now)
            if pending and size >= WRITE_BYTES:
                await self._append(pending)
                pending, size = [], 0
            if self.buffer.would_overflow(size + len(rec)):
                if pending:
                    await self._append(pending)
                    pending, size = [], 0
                if not await self._room_for(len(rec)):
                    self.discarded_events += len(batch)
                    self.metrics.discarded(len(batch), intentional=False)
                    if batch.ack is not None:
                        batch.ack.resolve()
                    continue
            pending.append((batch, rec))
            size += len(rec)
        if pending:
            await self._append(pending)

    async def _append(self, pending: list[tuple[Batch, bytes]]) -> None:
        payload = pending[0][1] if len(pending) == 1 else b"".join(r for _, r in pending)
        backoff = Backoff(0.5, 10.0)
        while True:
            try:
                await asyncio.to_thread(self.buffer.append, payload)
                break
            except OSError as exc:
                await self._write_failed(exc, backoff)
        for batch, _ in pending:
            self.buffer.pending_events += len(batch)
            self.written_events += len(batch)
            self._unsynced.append(batch.ack)
        self._need_sync.set()
        self._data.set()

    async def _room_for(self, nbytes: int) -> bool:
        """Wait for room (`block`), or say there is none (`drop_newest`)."""
        buf = self.buffer
        while buf.would_overflow(nbytes):
            if self.config.when_full == "drop_newest":
                return False
            # the active segment must end to ever be deleted once delivered
            buf.seal()
            self._need_sync.set()
            self._data.set()  # the reader may now finish that segment
            self._space.clear()
            await self._space.wait()
        return True

    async def _write_failed(self, exc: OSError, backoff: Backoff) -> None:
        code = errno.errorcode.get(exc.errno or 0, "EIO")
        self.metrics.error(code, "buffering")
        delay = backoff.next_delay()
        log.warning(
            "disk buffer of %s (%s): write failed (%s: %s); retried in %.1fs, the events "
            "are held upstream meanwhile",
            self.component_id,
            self.buffer.dir,
            code,
            exc.strerror or exc,
            delay,
        )
        await asyncio.sleep(delay)

    async def _sync_loop(self) -> None:
        backoff = Backoff(0.5, 10.0)
        interval = self.config.fsync_interval
        while True:
            await self._need_sync.wait()
            if not self._input_done and interval > 0:
                await asyncio.sleep(interval)
            self._need_sync.clear()
            acks, self._unsynced = self._unsynced, []
            while True:
                try:
                    await asyncio.to_thread(self.buffer.sync)
                    break
                except OSError as exc:
                    await self._write_failed(exc, backoff)
            backoff.reset()
            for ack in acks:
                if ack is not None:
                    ack.resolve()
            if self._input_done and not self._unsynced:
                return  # the writer is finished and everything it wrote is synced

    # -- reader and committer -----------------------------------------------------------

    async def _read_loop(self, out: Channel) -> None:
        try:
            while True:
                self._data.clear()
                items = await asyncio.to_thread(self.buffer.read_many, READ_GROUP, READ_BYTES)
                if not items:
                    if self._input_done and self.buffer.drained:
                        return
                    await self._data.wait()
                    continue
                for item in items:
                    if not isinstance(item, Record):
                        self._track(item.end, 0, 0).resolve()
                        continue
                    try:
                        batch, written = records.decode(item.payload)
                    except records.CorruptRecord as exc:
                        self.buffer.corrupt_records += 1
                        log.warning("buffer of %s: skipped a record: %s", self.component_id, exc)
                        self._track(item.end, item.events, 0).resolve()
                        continue
                    batch.ack = self._track(item.end, len(batch), written)
                    await out.put(batch)
        finally:
            out.close_producer()

    def _track(self, end: int, events: int, written: int) -> AckToken:
        entry = _Entry(end, events, written)
        self._ledger.append(entry)

        def done() -> None:
            entry.done = True
            ledger = self._ledger
            while ledger and ledger[0].done:
                head = ledger.popleft()
                self._committed = max(self._committed, head.end)
                self.buffer.pending_events = max(0, self.buffer.pending_events - head.events)
            self._need_commit.set()

        return AckToken(done)

    async def _commit_loop(self) -> None:
        backoff = Backoff(0.5, 10.0)
        while True:
            await self._need_commit.wait()
            if not self._stopping:
                await asyncio.sleep(self.commit_interval)
            self._need_commit.clear()
            try:
                freed = await asyncio.to_thread(self._commit_now)
                backoff.reset()
            except OSError as exc:
                await self._write_failed(exc, backoff)
                self._need_commit.set()
                continue
            if freed:
                self._space.set()
            if self._stopping:
                return  # the sink is finished; `close` saves the position once more

    def _commit_now(self) -> int:
        freed = self.buffer.commit(self._committed)
        if not self._ledger and self.buffer.drained:
            self.buffer.pending_events = 0
        return freed

    # -- metrics --------------------------------------------------------------------------

    def _samples(self) -> dict[str, float]:
        now = time.time_ns()
        oldest = next((e.written for e in self._ledger if e.written), 0)
        return {
            "kubelogs_buffer_bytes": self.buffer.total_bytes,
            "kubelogs_buffer_max_bytes": self.buffer.max_size,
            "kubelogs_buffer_oldest_age_seconds": (now - oldest) / 1e9 if oldest else 0.0,
            "kubelogs_buffer_corrupt_records": self.buffer.corrupt_records,
            "kubelogs_buffer_discarded_events": self.discarded_events,
            "kubelogs_buffer_written_events": self.written_events,
        }


_FAMILIES = [
    ("kubelogs_buffer_bytes", "gauge", "Bytes of a disk buffer's segment files."),
    ("kubelogs_buffer_max_bytes", "gauge", "A disk buffer's max_size."),
    (
        "kubelogs_buffer_oldest_age_seconds",
        "gauge",
        "Age of the oldest event in a disk buffer not yet delivered (0 if none).",
    ),
    (
        "kubelogs_buffer_corrupt_records",
        "counter",
        "Damaged or torn disk-buffer records skipped (their events are lost).",
    ),
    (
        "kubelogs_buffer_discarded_events",
        "counter",
        "Events a full disk buffer dropped (when_full: drop_newest).",
    ),
    ("kubelogs_buffer_written_events", "counter", "Events written to a disk buffer."),
]


def _collect_all(group: list[DiskBufferedSink]) -> Iterable[Any]:
    samples = [(b.component_id, b._samples()) for b in group]
    families: list[Any] = []
    for name, kind, doc in _FAMILIES:
        family: Any
        if kind == "gauge":
            family = GaugeMetricFamily(name, doc, labels=["component_id"])
        else:
            family = CounterMetricFamily(name, doc, labels=["component_id"])
        for cid, values in samples:
            family.add_metric([cid], values[name])
        families.append(family)
    return families


def with_buffer(sink: Any, config: Any, cx: BuildContext) -> Any:
    """`sink` as the runner should run it: behind a disk buffer if its config asks."""
    buffer = getattr(config, "buffer", None)
    if isinstance(buffer, DiskBufferConfig):
        return DiskBufferedSink(sink, buffer, cx)
    return sink
