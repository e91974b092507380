"""`local`: events kept in the embedded store (`kubelogs.store`), searchable with
``kubelogs search`` - the default sink on a laptop and in the quick start.

encode -> group batches until a block is full (`block_docs` events or `block_bytes` of
messages) or `flush_interval` passed -> write (blocks fsynced, then one index commit) ->
resolve acks -> count. Acks are resolved only after the commit, and the store skips
events at or below each file's committed offset, so a resend after ``kill -9`` neither
loses nor duplicates. Memory: the group held at once is bounded by `block_bytes` (plus
one batch), whatever the line size: 20,000 lines of 200 KiB would be 4 GB.

Error handling: on a full disk the store itself evicts its oldest segments to make room
(counted in ``kubelogs_store_evicted_segments_total``); when nothing is left to evict
(`StoreFullError`), or on any other failed write (I/O error), the failure is counted in
``kubelogs_component_errors_total``, logged (rate-limited), and retried with jittered
backoff up to `_MAX_BACKOFF` seconds; the batches stay unacknowledged meanwhile, so the
sources stop reading (backpressure), nothing is lost, and writing resumes by itself once
space returns. A disk too full to open the store is waited out the same way; other
failures to open it (wrong schema, newer format, another writer) fail the sink at start
with a one-sentence error.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import msgspec
from pydantic import Field, field_validator

from kubelogs.codecs.document import Schema
from kubelogs.config.base import BuildContext, SinkConfig
from kubelogs.config.registry import register
from kubelogs.config.units import Duration, Size
from kubelogs.pipeline.event import Batch
from kubelogs.pipeline.gc_pause import gc_paused
from kubelogs.pipeline.runtime import Input
from kubelogs.sinks.retry import Backoff
from kubelogs.store import StoreFullError, StoreWriter, WriteGroup
from kubelogs.store.index import ECS_LAYOUT, FLUENTD_LAYOUT, Layout
from kubelogs.store.matcher import get_field
from kubelogs.store.writer import DEFAULT_BLOCK_BYTES
from kubelogs.telemetry.metrics import ComponentMetrics

log = logging.getLogger(__name__)

_decode_json = msgspec.json.Decoder().decode
_FIRST_BACKOFF = 0.5
_MAX_BACKOFF = 10.0
"""Seconds between retries at most: how long writing may lag behind space returning."""
_LABEL_CACHE_SIZE = 4096


@register(
    "sink", "local", "Events kept in the embedded local store, searchable with kubelogs search."
)
class LocalSinkConfig(SinkConfig):
    type: Literal["local"]
    path: Path | None = None
    """The store's directory; default ``<data_dir>/store``. ``kubelogs search --store``
    takes the same path. One agent writes a store at a time."""
    retention: Duration = 7 * 86400.0
    """Segments last written to longer ago than this are deleted (whole segments, so data
    lives up to one segment span, an hour, longer). Age counts from when events were
    stored, not from their timestamps."""
    max_size: Size = 5 << 30
    """Oldest segments are deleted while the store is larger than this."""
    schema_: Literal["ecs", "fluentd"] = Field("ecs", alias="schema")
    """Field names of the stored documents (DESIGN.md section 5). Fixed when the store is
    created: a store keeps one schema."""
    block_docs: int = Field(20_000, ge=1, le=1_000_000)
    """Events per compressed block. Larger blocks compress better and index smaller;
    smaller ones make searches of a narrow time range read less. A block keeps its
    events as columns (messages, times, offsets; each file's metadata once) and renders
    documents when they are read; a word or phrase search reads only the message
    column of each block first."""
    block_bytes: Size = Field(DEFAULT_BLOCK_BYTES, ge=64 << 10, le=1 << 30)
    """Message bytes per block at most (characters, for non-ASCII text): events are
    written as soon as this much waits, even before `block_docs` is reached. It bounds
    the sink's memory when lines are long: the group waiting to be written plus the
    block's joined and encoded copies while it is written take about three times this.
    With the default 8 MiB an agent draining a backlog of 200 KiB lines peaks at ~72 MiB
    RSS (16 MiB: ~97 MiB; unbounded, as before: 445 MiB). Typical lines (~250 bytes)
    fill `block_docs` first, at ~5 MB, so this changes nothing for them; and zstd's
    level-1 window is far smaller than a block, so larger blocks barely compress
    better."""
    flush_interval: Duration = 1.0
    """How long events wait for a block to fill before they are written anyway: the
    delay between a line being read and it being searchable (and acknowledged)."""

    @field_validator("retention", mode="before")
    @classmethod
    def _retention_has_a_unit(cls, value: Any) -> Any:
        """A bare number would be seconds: ``retention: 7`` meant as a week deletes
        everything stored after 7 s (whole segments, so at the next hour), a loss no
        later fix undoes. The unit is required here."""
        bare = isinstance(value, int | float) and not isinstance(value, bool)
        if bare or (isinstance(value, str) and value.strip().replace(".", "", 1).isdigit()):
            text = str(value).strip()
            raise ValueError(f"{text} has no unit (seconds?): write {text}d, {text}h or {text}m")
        return value

    def build(self, cx: BuildContext) -> LocalSink:
        return LocalSink(
            self,
            path=self.path or cx.data_dir / "store",
            metrics=ComponentMetrics(cx.metrics, cx.component_id, "sink", "local"),
        )


def layout_for(schema: Schema) -> Layout:
    return FLUENTD_LAYOUT if schema == "fluentd" else ECS_LAYOUT


class LocalSink:
    def __init__(self, config: LocalSinkConfig, *, path: Path, metrics: ComponentMetrics) -> None:
        self.config = config
        self.path = path
        self.metrics = metrics
        self.layout = layout_for(config.schema_)
        self._labels: dict[bytes, dict[str, str]] = {}

    async def run(self, inp: Input) -> None:
        writer = await self._open_when_possible()
        loop = asyncio.get_running_loop()
        it: AsyncIterator[Batch] = aiter(inp)
        pending: list[Batch] = []
        pending_docs = pending_bytes = 0
        block_docs, block_bytes = self.config.block_docs, self.config.block_bytes
        deadline = 0.0
        nxt: asyncio.Future[Batch] | None = None
        try:
            while True:
                if nxt is None:
                    nxt = asyncio.ensure_future(anext(it))
                timeout = max(0.0, deadline - loop.time()) if pending else None
                done, _ = await asyncio.wait({nxt}, timeout=timeout)
                if done:
                    try:
                        batch = nxt.result()
                    except StopAsyncIteration:
                        nxt = None
                        break
                    nxt = None
                    if not pending:
                        deadline = loop.time() + self.config.flush_interval
                    pending.append(batch)
                    pending_docs += len(batch)
                    pending_bytes += _message_bytes(batch)
                    while pending_docs < block_docs and pending_bytes < block_bytes:
                        more = inp.receive_nowait()
                        if more is None:
                            break
                        pending.append(more)
                        pending_docs += len(more)
                        pending_bytes += _message_bytes(more)
                    if pending_docs < block_docs and pending_bytes < block_bytes:
                        continue
                await self._flush(writer, pending)
                pending, pending_docs, pending_bytes = [], 0, 0
            if pending:
                await self._flush(writer, pending)
        finally:
            if nxt is not None:
                nxt.cancel()
                await asyncio.gather(nxt, return_exceptions=True)
            await asyncio.to_thread(writer.close)

    # -- stages --------------------------------------------------------------------------

    async def _open_when_possible(self) -> StoreWriter:
        """Open the store, waiting for space if the disk is too full to create or open
        its index: the agent keeps running (sources pause, as nothing is acknowledged)
        and starts writing by itself once space returns. Other failures (another
        writer, a wrong schema, a newer format) end the sink at once."""
        backoff = Backoff(_FIRST_BACKOFF, _MAX_BACKOFF)
        while True:
            try:
                return await asyncio.to_thread(self._open)
            except StoreFullError as exc:
                self.metrics.error(type(exc).__name__, "opening")
                log.warning("local store %s: cannot open, retrying: %s", self.path, exc)
            await asyncio.sleep(backoff.next_delay())

    def _open(self) -> StoreWriter:
        return StoreWriter(
            self.path,
            layout=self.layout,
            retention=self.config.retention,
            max_size=self.config.max_size,
            block_docs=self.config.block_docs,
            block_bytes=self.config.block_bytes,
            on_evict=self.metrics.evicted,
        )

    async def _flush(self, writer: StoreWriter, batches: list[Batch]) -> None:
        backoff = Backoff(_FIRST_BACKOFF, _MAX_BACKOFF)
        while True:
            # Written on the event loop's thread, on purpose: encoding and compressing
            # are CPU work under the GIL, so a worker thread adds no parallelism, and its
            # GIL hand-offs with the reading source cost ~2.4 us per line (measured:
            # 111k -> 153k lines per CPU-second for the agent into the store). A block
            # takes tens of milliseconds; the fsync in the commit is the only wait.
            # Being synchronous, a write is never interrupted by cancellation either.
            try:
                with gc_paused():  # a block's per-row objects (`pipeline.gc_pause`)
                    nbytes = self._write(writer, batches)
                break
            except StoreFullError as exc:
                self.metrics.error(type(exc).__name__, "sending")
                log.warning(
                    "local store %s: disk full and nothing left to evict; holding back "
                    "(sources pause) until space returns: %s",
                    self.path,
                    exc.__cause__ or exc,
                )
            except (OSError, sqlite3.Error) as exc:
                self.metrics.error(type(exc).__name__, "sending")
                log.warning("local store %s: write failed, retrying: %s", self.path, exc)
            await asyncio.sleep(backoff.next_delay())
        if backoff.failures:
            log.warning(
                "local store %s: writing again after %d failed attempts",
                self.path,
                backoff.failures,
            )
        n = 0
        for b in batches:
            n += len(b)
            if b.ack is not None:
                b.ack.resolve()
        self.metrics.received_events.inc(n)
        self.metrics.sent_events.inc(n)
        self.metrics.sent_bytes.inc(nbytes)

    def _write(self, writer: StoreWriter, batches: list[Batch]) -> int:
        """Store one group of batches as event columns (the commit makes them durable);
        the store renders their documents with the schema when they are read."""
        fluentd = self.config.schema_ == "fluentd"
        groups = [
            WriteGroup(
                source_key=b.ctx.file_key,
                offsets=b.offsets,
                times=b.times,
                labels=self._labels_of(b),
                streams=b.streams,
                messages=b.messages,
                path=b.ctx.path,
                meta=b.ctx.meta_fluentd if fluentd else b.ctx.meta_ecs,
                flags=b.flags,
                fields=b.fields,
            )
            for b in batches
            if len(b)
        ]
        return writer.write(groups).bytes

    def _labels_of(self, batch: Batch) -> dict[str, str]:
        """Label values as the documents carry them: read from the file's pre-encoded
        metadata (once per distinct metadata), so the index agrees with the documents."""
        ctx = batch.ctx
        meta = ctx.meta_fluentd if self.config.schema_ == "fluentd" else ctx.meta_ecs
        labels = self._labels.get(meta)
        if labels is None:
            labels = labels_from_meta(meta, self.layout)
            if len(self._labels) >= _LABEL_CACHE_SIZE:
                self._labels.clear()
            self._labels[meta] = labels
        return labels


def _message_bytes(batch: Batch) -> int:
    """Characters of the batch's messages: one C-level pass, the measure `block_bytes`
    bounds (as the store's blocks do)."""
    return sum(map(len, batch.messages))


def labels_from_meta(meta: bytes, layout: Layout) -> dict[str, str]:
    """The layout's label values in pre-encoded metadata members (`FileContext.meta_*`)."""
    labels: dict[str, str] = {}
    if meta:
        try:
            obj: Any = _decode_json(b"{" + meta + b"}")
        except msgspec.DecodeError:
            return labels
        for name in layout.label_fields:
            value = get_field(obj, name)
            if isinstance(value, str) and value:
                labels[name] = value
    return labels
