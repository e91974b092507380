"""`kafka` sink: each event becomes one Kafka record, acknowledged upstream only once the
brokers have it (``acks=all``, idempotent producer).

encode (`encode_documents`, the sinks' common schema, with ECS ``event.id``) -> produce
(topic from a template, key = pod UID; header ``kubelogs-event-id`` if configured) ->
delivery reports -> ack or dead-letter.

- **Delivery**: librdkafka's idempotent producer (``enable.idempotence``, ``acks=all``)
  retries by itself without duplicating or reordering within a partition, and
  ``message.timeout.ms=0`` makes it retry for as long as it takes: a broker outage of
  any length holds the acks back (file checkpoints do not move) and drops nothing. A
  batch's ack resolves when the delivery report of every one of its records came back.
- **Order**: the key defaults to the pod UID, so the lines of one pod (and so of each of
  its files) stay in one partition, in the order they were read; a consumer that stores
  them (the `kafka` source into the local store) drops resends by offset.
- **Backpressure**: at most `max_in_flight_bytes` of documents are produced and not yet
  acknowledged; past that the sink stops reading its input, the channel fills and the
  sources stop reading. librdkafka's own queue is bounded by the same figure, so memory
  stays bounded whatever the brokers do.
- **Dead letters**: a record the brokers can never take (larger than
  `message_max_bytes`, or refused as too large) goes to the dead-letter queue
  (`kubelogs.buffer.dead_letter`, the Elasticsearch sink's format: ``kubelogs dlq``) with
  the reason, and only then counts as delivered.

- **Identity**: every value carries its event id (``event.id``), which the `kafka`
  source keeps, so the stores downstream drop resends (exactly once end to end). The
  same id as a record header is optional (`event_id_header`): producing a header costs
  a Python list, a tuple and librdkafka's header set per record, ~1.2 CPU-s per 1M
  records on the agent's thread (measured, changelog.d/kafkacost.README.md).

Threads: none of ours. Delivery reports are served by ``poll(0)`` on the event loop's
thread, every `_POLL_INTERVAL` while records are in flight: a poller thread would take
the GIL once per report, and those hand-offs cost more than the rest of the hop
(measured: +7.6 CPU-s per 1M lines with a thread, see changelog.d/kafka.README.md).

Error handling: a fatal producer error (the idempotent producer lost its state, e.g. a
fenced producer id) ends the sink with a one-line error: the agent exits and, restarted,
resends what was not acknowledged. Everything else is retried.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import time
from collections import deque
from collections.abc import Iterator
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from pydantic import Field

from kubelogs.buffer import dead_letter
from kubelogs.codecs.document import encode_documents
from kubelogs.config.base import BuildContext, SinkConfig, StrictModel
from kubelogs.config.registry import register
from kubelogs.config.units import Duration, Size
from kubelogs.kafka.metrics import (
    STATS_INTERVAL_MS,
    broker_retries,
    kafka_metrics,
    parse_stats,
)
from kubelogs.kafka.settings import KafkaClientConfig, client_settings
from kubelogs.kafka.topics import TopicTemplate
from kubelogs.pipeline.event import Batch
from kubelogs.pipeline.runtime import Input
from kubelogs.sinks.retry import Backoff
from kubelogs.telemetry.metrics import ComponentMetrics

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message, Producer

log = logging.getLogger("kubelogs.sinks")


class _KnownSettingsNotice(logging.Filter):
    """librdkafka warns at every start that ``enable.gapless.guarantee`` is
    experimental; kubelogs sets it on purpose (`_send`), so the line says nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "gapless.guarantee is experimental" not in record.getMessage()


_librdkafka_log = logging.getLogger("kubelogs.kafka.librdkafka.producer")
_librdkafka_log.addFilter(_KnownSettingsNotice())

EVENT_ID_HEADER = "kubelogs-event-id"
"""Header carrying the event's deterministic id (`Batch.event_id`) when
`event_id_header` is set; the `kafka` source prefers it to the value's ``event.id``."""
_Headers = list[tuple[str, str | bytes | None]] | None
_LOG_EVERY = 30.0
_RECORD_OVERHEAD = 512
"""Bytes a record takes beyond its value and key (headers, framing), for the size check
that dead-letters a record before librdkafka would refuse it."""
_POLL_INTERVAL = 0.005
"""Seconds between delivery-report polls while records are in flight: the latency it
adds to acks; each poll serves every report that arrived meanwhile."""


class KafkaDeadLetterConfig(StrictModel):
    """Where records the brokers can never take are kept, with the reason:
    ``kubelogs dlq list|show``."""

    path: Path | None = None
    """Directory of this sink's dead-letter files; default
    ``<data_dir>/dead_letter/<sink id>``."""


@register("sink", "kafka", "Events as JSON records in Kafka topics (idempotent, acks=all).")
class KafkaSinkConfig(SinkConfig, KafkaClientConfig):
    type: Literal["kafka"]
    topic: str = Field(min_length=1)
    """Topic name, or a template with ``{field.path}`` references to the event's file
    metadata, e.g. ``logs-{kubernetes.namespace}``. Characters Kafka does not allow in a
    name become ``_``; a field that is missing becomes ``unknown``."""
    key: Literal["pod_uid", "file", "none"] = "pod_uid"
    """Record key: ``pod_uid`` keeps a pod's lines ordered in one partition (events
    without a pod use their file's identity); ``file`` keys by file; ``none`` lets the
    partitioner spread records (no order across partitions)."""
    schema_: Literal["ecs", "fluentd"] = Field("ecs", alias="schema")
    """Field names of the JSON value (DESIGN.md section 5)."""
    compression: Literal["none", "gzip", "lz4", "zstd", "snappy"] = "lz4"
    """Compression of record batches. ``lz4`` costs least CPU on this workload;
    ``zstd`` is ~4x smaller on the wire for a little more."""
    linger: Duration = Field(0.2, ge=0, le=60)
    """How long records wait to fill a batch before it is sent: larger batches cost less
    CPU per record; this is the latency the Kafka hop adds."""
    batch_bytes: Size = Field(1 << 20, ge=1024, le=64 << 20)
    """Largest record batch sent to one partition (``batch.size``)."""
    message_max_bytes: Size = Field(1_000_000, ge=1024, le=1 << 30)
    """Largest record; larger ones go to the dead-letter queue. Keep it at or below the
    topic's ``max.message.bytes``."""
    max_in_flight_bytes: Size = Field(8 << 20, ge=1 << 20, le=1 << 30)
    """Documents produced and not yet acknowledged at most: bounds memory while the
    brokers are slow or down (the sink then stops reading its input)."""
    event_id_header: bool = False
    """Also send each event's id as the record header ``kubelogs-event-id`` (for
    consumers that deduplicate without parsing values). The id is always in the value
    (``event.id``), which is all the `kafka` source needs; the header costs ~1.2 CPU-s
    per 1M records more on the agent."""
    dead_letter: KafkaDeadLetterConfig = KafkaDeadLetterConfig()

    def build(self, cx: BuildContext) -> KafkaSink:
        return KafkaSink(
            self,
            metrics=ComponentMetrics(cx.metrics, cx.component_id, "sink", "kafka"),
            component_id=cx.component_id,
            dead_letter_dir=self.dead_letter.path or cx.data_dir / "dead_letter" / cx.component_id,
            km=kafka_metrics(cx.metrics),
        )


class _Tracker:
    """One batch on its way to the brokers.

    `expected` is how many delivery reports the batch waits for, set once its records
    were handed to librdkafka; `reported` counts them. Whichever sees them equal first
    settles the batch (once: `settle` marks it), or wakes `waiter` during a retry.
    Everything runs on the event loop's thread.
    """

    __slots__ = (
        "batch",
        "docs",
        "expected",
        "failed",
        "key",
        "lettered",
        "letters",
        "nbytes",
        "reported",
        "rows",
        "sink",
        "topic",
        "waiter",
    )

    def __init__(
        self,
        sink: KafkaSink,
        batch: Batch,
        topic: str,
        key: bytes | None,
        docs: list[bytes],
        nbytes: int,
    ) -> None:
        self.sink = sink
        self.batch = batch
        self.topic = topic
        self.key = key
        self.docs = docs
        self.nbytes = nbytes
        self.rows: list[int] = []
        """Rows to deliver (the others went to the dead-letter queue)."""
        self.expected = -1
        self.reported = 0
        self.waiter: asyncio.Event | None = None
        self.failed: list[tuple[Any, Message]] = []
        """Failed delivery reports: (error, message), for retry or dead letter."""
        self.letters: list[tuple[str, bytes, str]] = []
        """(event id, document, reason) of refused records not yet dead-lettered."""
        self.lettered = 0
        """Records of the batch written to the dead-letter queue."""

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed.append((err, msg))
        self.reported += 1
        if self.reported == self.expected:
            if self.waiter is not None:
                self.waiter.set()
            else:
                self.sink.settle(self)


class KafkaSink:
    def __init__(
        self,
        config: KafkaSinkConfig,
        *,
        metrics: ComponentMetrics,
        component_id: str,
        dead_letter_dir: Path,
        km: Any,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.component_id = component_id
        self.dead_letter_dir = dead_letter_dir
        self.topic = TopicTemplate(config.topic, config.schema_)
        self._produced = km.produced_records.labels(component_id)
        self._produced_bytes = km.produced_bytes.labels(component_id)
        self._retries = km.retries.labels(component_id)
        self._dead_lettered = km.dead_lettered.labels(component_id)
        self._rdkafka_retries = 0
        self._in_flight = 0
        """Document bytes produced and not yet settled (event loop only)."""
        self._room = asyncio.Event()
        self._room.set()
        self._fatal: str | None = None
        self._last_log: dict[str, float] = {}
        self._producer: Producer | None = None
        self._wake = asyncio.Event()
        """Set when records are produced: the poll loop serves reports while any are out."""
        self._settling: set[asyncio.Task[None]] = set()

    def producer_settings(self) -> dict[str, Any]:
        cfg = self.config
        conf: dict[str, Any] = client_settings(cfg, client_id=f"kubelogs-{self.component_id}")
        # librdkafka holds what is produced and not acknowledged: at most
        # `max_in_flight_bytes` plus the batch that crossed it.
        queue_kib = (cfg.max_in_flight_bytes + (8 << 20)) // 1024
        conf.update(
            {
                "enable.idempotence": True,
                "acks": "all",
                "message.timeout.ms": 0,  # retry for as long as it takes: never drop
                # a record lost in a partition's sequence is a fatal error, never a gap:
                # the last record's report can vouch for its whole batch (`_send`)
                "enable.gapless.guarantee": True,
                "compression.type": cfg.compression,
                "linger.ms": round(cfg.linger * 1000),
                "batch.size": cfg.batch_bytes,
                "message.max.bytes": cfg.message_max_bytes,
                "queue.buffering.max.kbytes": queue_kib,
                "queue.buffering.max.messages": 1_000_000,
                "statistics.interval.ms": STATS_INTERVAL_MS,
                "stats_cb": self._on_stats,
                "error_cb": self._on_error,
                "logger": _librdkafka_log,
            }
        )
        conf.update(cfg.librdkafka_options)
        return conf

    async def start(self) -> None:
        from confluent_kafka import Producer

        self._producer = Producer(self.producer_settings())

    async def _poll_loop(self) -> None:
        """Serve delivery reports, errors and statistics: every `_POLL_INTERVAL` while
        records are in flight, every second otherwise (statistics, broker errors)."""
        producer = self._producer
        assert producer is not None
        while True:
            producer.poll(0)
            if self._in_flight or self._settling:
                await asyncio.sleep(_POLL_INTERVAL)
            else:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                except TimeoutError:
                    pass

    # -- run loop ------------------------------------------------------------------------

    async def run(self, inp: Input) -> None:
        await self.start()
        try:
            async with asyncio.TaskGroup() as tg:
                # serves delivery reports (acks) on this thread while the loop produces
                poller = tg.create_task(self._poll_loop(), name=f"kafka-poll:{self.component_id}")
                async for batch in inp:
                    if self._fatal is not None:
                        break
                    await self._produce_batch(batch)
                while self._settling or self._in_flight:
                    if self._fatal is not None:
                        break
                    self._room.clear()
                    await self._room.wait()
                poller.cancel()
        finally:
            if self._settling:
                await asyncio.gather(*self._settling, return_exceptions=True)
        self._check_fatal()

    def _check_fatal(self) -> None:
        if self._fatal is not None:
            raise RuntimeError(f"sinks.{self.component_id}: {self._fatal}")

    async def _produce_batch(self, batch: Batch) -> None:
        n = len(batch)
        self.metrics.received_events.inc(n)
        if n == 0:
            if batch.ack is not None:
                batch.ack.resolve()
            return
        docs = encode_documents(batch, self.config.schema_, event_ids=True)
        nbytes = sum(map(len, docs))
        while self._in_flight and self._in_flight + nbytes > self.config.max_in_flight_bytes:
            self._check_fatal()
            self._room.clear()
            await self._room.wait()  # backpressure: the brokers are behind
        self._in_flight += nbytes
        self._wake.set()
        topic = self.topic.resolve(batch)
        key = self._key(batch)
        tracker = _Tracker(self, batch, topic, key, docs, nbytes)
        limit = self.config.message_max_bytes - len(key or b"") - _RECORD_OVERHEAD
        if max(map(len, docs)) <= limit:
            tracker.rows = list(range(n))
        else:
            for i, doc in enumerate(docs):
                if len(doc) <= limit:
                    tracker.rows.append(i)
                else:
                    reason = f"record too large: {len(doc)} bytes, message_max_bytes is " + str(
                        self.config.message_max_bytes
                    )
                    tracker.letters.append((batch.event_id(i), doc, reason))
            tracker.lettered = len(tracker.letters)
        await self._send(tracker, tracker.rows)
        if tracker.reported == tracker.expected:
            self.settle(tracker)

    async def _send(self, tracker: _Tracker, rows: list[int]) -> None:
        """Hand `rows` of the batch to librdkafka (waiting while its queue is full) and
        set how many delivery reports to expect.

        With a key, every record of a batch goes to one partition, and the idempotent
        producer (with ``enable.gapless.guarantee``) delivers a partition's records in
        order, or fails with a fatal error: the report of the *last* record then
        vouches for the whole batch, so only that one carries a callback. A delivery
        report costs more than the rest of a record's way (a Python object and a call
        per record); without a key (`key: none`) every record gets one.

        The records before the last are handed over by one ``map`` over ``produce`` (a
        loop in C, no bytecode per record); when it stops at a full queue or a refused
        record, the iterator's remaining length tells how many went through."""
        from confluent_kafka import KafkaError, KafkaException

        producer = self._producer
        assert producer is not None
        produce = producer.produce
        topic, key, docs = tracker.topic, tracker.key, tracker.docs
        values = docs if len(rows) == len(docs) else [docs[i] for i in rows]
        event_id = tracker.batch.event_id
        cb = tracker.on_delivery
        marker = self.config.key != "none"
        with_header = self.config.event_id_header
        tracker.expected = -1
        tracker.reported = 0
        last = len(rows) - 1
        quiet = last if marker else 0
        """Records at positions before `quiet` go without a delivery report."""
        queued = -1
        """Position in `rows` of the last record handed over."""
        marker_sent = False
        expected = 0
        j = 0
        while j <= last:
            run: list[bytes] = []
            it = iter(run)
            try:
                if j < quiet and not with_header:
                    run = values[j:quiet]
                    it = iter(run)
                    deque(map(produce, repeat(topic), it, repeat(key)), 0)
                    j = queued = quiet - 1
                elif j < quiet:
                    produce(topic, values[j], key, headers=[(EVENT_ID_HEADER, event_id(rows[j]))])
                    queued = j
                else:
                    headers: _Headers = (
                        [(EVENT_ID_HEADER, event_id(rows[j]))] if with_header else None
                    )
                    produce(topic, values[j], key, on_delivery=cb, headers=headers)
                    expected += 1
                    marker_sent = True
                    queued = j
                j += 1
            except BufferError:
                if went := _went_through(run, it):
                    j += went
                    queued = j - 1
                self._check_fatal()
                producer.poll(0)
                await asyncio.sleep(_POLL_INTERVAL)  # librdkafka's queue is full
            except KafkaException as exc:
                if went := _went_through(run, it):
                    j += went
                    queued = j - 1
                err = exc.args[0]
                if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                    i = rows[j]
                    reason = f"record too large: {err.str()}"
                    tracker.letters.append((event_id(i), docs[i], reason))
                    tracker.lettered += 1
                    j += 1
                else:
                    self._check_fatal()
                    self._log_limited("produce", "cannot produce, retrying: %s", err.str())
                    self.metrics.error("produce", "sending")
                    await asyncio.sleep(0.5)
        if marker and not marker_sent and queued >= 0:
            # The last record was refused at once: the one before it vouches instead
            # (sent twice; the copy is dropped downstream by its event id).
            i = rows[queued]
            again: _Headers = [(EVENT_ID_HEADER, event_id(i))] if with_header else None
            while True:
                try:
                    produce(topic, docs[i], key, on_delivery=cb, headers=again)
                    break
                except BufferError:
                    producer.poll(0)
                    await asyncio.sleep(_POLL_INTERVAL)
            expected = 1
        tracker.expected = expected

    def _key(self, batch: Batch) -> bytes | None:
        mode = self.config.key
        if mode == "none":
            return None
        ctx = batch.ctx
        if mode == "pod_uid" and ctx.pod_uid:
            return ctx.pod_uid.encode()
        return (ctx.file_key or ctx.id_prefix).encode()

    # -- settling (event loop) ---------------------------------------------------------

    def settle(self, tracker: _Tracker) -> None:
        """Every expected report came back (or none was due): ack, or retry and
        dead-letter first."""
        if tracker.expected < 0:
            return
        tracker.expected = -2  # settled once
        if not tracker.failed and not tracker.letters:
            self._done(tracker)
            return
        task = asyncio.get_running_loop().create_task(
            self._settle_failures(tracker), name="kafka-settle"
        )
        self._settling.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._settling.discard(task)
        self._room.set()

    async def _settle_failures(self, tracker: _Tracker) -> None:
        """Dead-letter what can never be delivered; send the rest again (after a
        backoff, until it is delivered); then ack."""
        from confluent_kafka import KafkaError

        backoff = Backoff(0.5, 10.0)
        marker = self.config.key != "none"
        while True:
            failed, tracker.failed = tracker.failed, []
            for err, _ in failed:
                if err.fatal():
                    self._fatal = f"the Kafka producer failed: {err.str()}"
                    self._room.set()
                    return
            retry: list[int] = []
            if failed:
                # a failed record is found by its value (unique: it holds the event id)
                row_of = {doc: i for i, doc in enumerate(tracker.docs)}
                too_large = (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE)
                event_id = tracker.batch.event_id
                for err, msg in failed:
                    i = row_of.get(msg.value() or b"", -1)
                    if err.code() in too_large and not marker and i >= 0:
                        reason = f"record too large: {err.str()}"
                        tracker.letters.append((event_id(i), tracker.docs[i], reason))
                        tracker.lettered += 1
                    elif not marker and i >= 0:
                        retry.append(i)
                if marker:
                    # the report vouched for the batch and failed: send the batch again
                    lettered = {eid for eid, _, _ in tracker.letters}
                    retry = [i for i in tracker.rows if event_id(i) not in lettered]
            if tracker.letters:
                await self._dead_letter(tracker)
            if not retry:
                break
            self._retries.inc(len(retry))
            self.metrics.error("delivery", "sending")
            self._log_limited(
                "delivery",
                "%s records not delivered (%s), producing them again",
                f"{len(retry)}",
                failed[0][0].str(),
            )
            await asyncio.sleep(backoff.next_delay())
            waiter = tracker.waiter = asyncio.Event()
            await self._send(tracker, retry)
            if tracker.reported >= tracker.expected:
                waiter.set()
            await waiter.wait()
            tracker.waiter = None
        self._done(tracker)

    def _done(self, tracker: _Tracker) -> None:
        n = len(tracker.batch)
        delivered = n - tracker.lettered
        self._produced.inc(delivered)
        self._produced_bytes.inc(tracker.nbytes)
        self.metrics.sent_events.inc(delivered)
        self.metrics.sent_bytes.inc(tracker.nbytes)
        if tracker.batch.ack is not None:
            tracker.batch.ack.resolve()
        self._in_flight -= tracker.nbytes
        self._room.set()

    async def _dead_letter(self, tracker: _Tracker) -> None:
        """Write refused records durably (retrying a failed write) before they count as
        settled."""
        now = dead_letter.now_rfc3339()
        entries = [
            dead_letter.Entry(
                time=now,
                sink=self.component_id,
                id=event_id,
                target=tracker.topic,
                status=0,
                error_type="record_too_large",
                reason=reason,
                document=msgspec.Raw(doc),
            )
            for event_id, doc, reason in tracker.letters
        ]
        tracker.letters = []
        backoff = Backoff(0.5, 10.0)
        while True:
            try:
                await asyncio.to_thread(dead_letter.write_entries, self.dead_letter_dir, entries)
                break
            except OSError as exc:
                self.metrics.error("dead_letter_write", "sending")
                self._log_limited(
                    "dead_letter_write", "cannot write the dead-letter queue, retrying: %s", exc
                )
                await asyncio.sleep(backoff.next_delay())
        self._dead_lettered.inc(len(entries))
        self._log_limited(
            "dead_letter",
            "%s",
            f"{len(entries)} records refused ({entries[0].reason[:200]}); kept in "
            f"{self.dead_letter_dir} (kubelogs dlq show)",
            level=logging.ERROR,
        )

    # -- librdkafka callbacks (served by poll) -------------------------------------------

    def _on_stats(self, text: str) -> None:
        total = broker_retries(parse_stats(text))
        if total > self._rdkafka_retries:
            self._retries.inc(total - self._rdkafka_retries)
            self._rdkafka_retries = total

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = f"the Kafka producer failed: {err.str()}"
            self._room.set()
            return
        self.metrics.error(err.name().lower().lstrip("_") or "kafka", "sending")
        self._log_limited("client", "Kafka client: %s (retrying)", err.str())

    def _log_limited(
        self, kind: str, fmt: str, *args: object, level: int = logging.WARNING
    ) -> None:
        now = time.monotonic()
        if now - self._last_log.get(kind, -_LOG_EVERY) >= _LOG_EVERY:
            self._last_log[kind] = now
            log.log(level, "sinks.%s: " + fmt, self.component_id, *args)

    async def close(self) -> None:
        producer = self._producer
        if producer is None:
            return
        # What is queued still goes out for a moment (bounded): a batch that is not
        # acknowledged is read again on the next start anyway.
        deadline = time.monotonic() + 5.0
        while len(producer) and time.monotonic() < deadline:
            producer.poll(0)
            await asyncio.sleep(_POLL_INTERVAL)
        producer.poll(0)
        self._producer = None


def _went_through(run: list[bytes], it: Iterator[bytes]) -> int:
    """How many records of `run` a ``map`` over ``produce`` handed over before it
    raised: the iterator had also taken the one that failed."""
    return max(0, len(run) - operator.length_hint(it) - 1)
