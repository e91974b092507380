"""`kafka` source: records of a consumer group's partitions become batches; a partition's
offset is committed only once the events before it are durable in every sink downstream.

consume (a worker thread) -> decode (`RecordDecoder`: a kubelogs document keeps its event
id, from the ``kubelogs-event-id`` header) -> one ack ledger per partition -> send ->
commit the end of the longest resolved prefix.

- **End-to-end acks**: each partition has an `AckLedger` over Kafka offsets, like a file's
  over byte offsets: batches finish out of order, the committed offset only moves to the
  end of the longest fully resolved prefix. Offsets are committed every
  `commit_interval`, on a rebalance and at shutdown; a crash resends at most what was not
  committed, and the sinks drop those resends by event id (the local store by its
  per-file high-water mark, Elasticsearch by ``_id``): exactly once end to end.
- **Identity**: a record with the sink's header (or an ``event.id`` in its value) keeps
  the sender's id. A foreign record gets an id from (topic, partition, offset), so a
  redelivered foreign record is recognised too.
- **Rebalances**: when partitions are revoked (in the consume thread), what is resolved
  is committed synchronously and their ledgers are dropped; records of a revoked
  partition still arriving are not passed on (the new owner reads them from the committed
  offset); batches already downstream finish normally and their resends are dropped by id.
- **Backpressure**: at most `max_unacked_records` records are passed on and not yet
  resolved; past that the source stops consuming (librdkafka's prefetch is bounded by
  ``queued.max.messages.kbytes``). A stop longer than ``max.poll.interval.ms`` (5 min)
  makes the consumer leave the group; it rejoins and resumes from the committed offsets.
- **Bad input**: a value that is not a JSON object is passed on as a raw message flagged
  ``malformed`` (counted in ``kubelogs_kafka_malformed_records_total``), never dropped and
  never a crash.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from pydantic import Field, field_validator

from kubelogs.codecs.records import (
    KubelogsDocument,
    RecordDecoder,
    decode_kubelogs_document,
    split_event_id,
)
from kubelogs.config.base import BuildContext, SourceConfig
from kubelogs.config.registry import register
from kubelogs.config.units import Duration, Size
from kubelogs.kafka.metrics import STATS_INTERVAL_MS, consumer_lags, kafka_metrics, parse_stats
from kubelogs.kafka.settings import KafkaClientConfig, client_settings
from kubelogs.pipeline.acks import AckLedger, AckToken
from kubelogs.pipeline.event import Batch, make_id_prefix
from kubelogs.pipeline.runtime import Output
from kubelogs.telemetry.metrics import ComponentMetrics

if TYPE_CHECKING:
    from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

log = logging.getLogger("kubelogs.sources")

EVENT_ID_HEADER = "kubelogs-event-id"
"""Written by the `kafka` sink: the event's deterministic id."""
_decode = msgspec.json.Decoder().decode
_LOG_EVERY = 30.0
_CONSUME_WAIT = 0.25
"""Seconds one consume call waits for records: how fast a stop request is noticed."""


@register("source", "kafka", "Records of Kafka topics, read in a consumer group.")
class KafkaSourceConfig(SourceConfig, KafkaClientConfig):
    type: Literal["kafka"]
    topics: list[str] = Field(min_length=1)
    """Topics to read; an entry starting with ``^`` is a regular expression matched
    against every topic (``^logs-.*``), and new matching topics are picked up."""
    group_id: str = Field(min_length=1)
    """Consumer group: the instances of one group split the partitions between them and
    share the committed offsets."""
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    """Where a partition with no committed offset starts: ``earliest`` reads what the
    topic still holds, ``latest`` only what arrives from now on."""
    commit_interval: Duration = Field(1.0, gt=0, le=3600)
    """How often resolved offsets are committed: what a crash makes the group read again
    (dropped downstream by event id) at most."""
    session_timeout: Duration = Field(45.0, ge=1, le=3600)
    """How long the group waits for a silent member (a crashed aggregator) before giving
    its partitions to the others."""
    max_unacked_records: int = Field(100_000, ge=100, le=10_000_000)
    """Records passed on and not yet durable downstream, at most; past it the source
    stops consuming (backpressure)."""
    max_batch_records: int = Field(2000, ge=1, le=100_000)
    """Records taken from the client at once."""
    prefetch_bytes: Size = Field(16 << 20, ge=1 << 20, le=1 << 30)
    """Bytes librdkafka fetches ahead per consumer at most (``queued.max.messages.kbytes``)."""

    @field_validator("topics")
    @classmethod
    def _patterns_compile(cls, topics: list[str]) -> list[str]:
        import re

        for t in topics:
            if t.startswith("^"):
                try:
                    re.compile(t)
                except re.error as exc:
                    raise ValueError(f"{t!r} is not a valid regular expression: {exc}") from None
        return topics

    def build(self, cx: BuildContext) -> KafkaSource:
        return KafkaSource(self, cx)


class _Partition:
    """A partition this consumer owns: its ledger and whether it moved since the last
    commit."""

    __slots__ = ("ledger", "sent_commit")

    def __init__(self, first_offset: int) -> None:
        self.ledger = AckLedger(first_offset)
        self.sent_commit = first_offset


class KafkaSource:
    def __init__(self, config: KafkaSourceConfig, cx: BuildContext) -> None:
        self.config = config
        self.component_id = cx.component_id
        self.metrics = ComponentMetrics(cx.metrics, cx.component_id, "source", "kafka")
        km = kafka_metrics(cx.metrics)
        self._km = km
        self._consumed = km.consumed_records.labels(cx.component_id)
        self._consumed_bytes = km.consumed_bytes.labels(cx.component_id)
        self._malformed = km.malformed.labels(cx.component_id)
        self._commits = km.commits.labels(cx.component_id)
        self.decoder = RecordDecoder(cx.component_id, cx.node_name)
        self._lock = threading.Lock()
        """Guards `_parts` and `_assigned`: the consume thread changes them on rebalance."""
        self._parts: dict[tuple[str, int], _Partition] = {}
        self._assigned: set[tuple[str, int]] = set()
        self._prefixes: dict[tuple[str, int], str] = {}
        self._unresolved = 0
        self._room = asyncio.Event()
        self._consumer: Consumer | None = None
        self._last_log: dict[str, float] = {}

    # -- client --------------------------------------------------------------------------

    def consumer_settings(self) -> dict[str, Any]:
        cfg = self.config
        conf: dict[str, Any] = client_settings(cfg, client_id=f"kubelogs-{self.component_id}")
        conf.update(
            {
                "group.id": cfg.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": cfg.auto_offset_reset,
                "session.timeout.ms": round(cfg.session_timeout * 1000),
                "heartbeat.interval.ms": max(100, round(cfg.session_timeout * 1000 / 4)),
                "queued.max.messages.kbytes": max(1024, cfg.prefetch_bytes // 1024),
                "statistics.interval.ms": STATS_INTERVAL_MS,
                "stats_cb": self._on_stats,
                "error_cb": self._on_error,
                "on_commit": self._on_commit,
                "logger": logging.getLogger("kubelogs.kafka.librdkafka"),
            }
        )
        conf.update(cfg.librdkafka_options)
        return conf

    async def run(self, out: Output, stopping: asyncio.Event) -> None:
        from confluent_kafka import Consumer

        loop = asyncio.get_running_loop()
        consumer = self._consumer = Consumer(self.consumer_settings())
        consumer.subscribe(
            list(self.config.topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        next_commit = loop.time() + self.config.commit_interval
        limit = self.config.max_unacked_records
        while not stopping.is_set():
            if self._unresolved >= limit:
                self._room.clear()
                try:
                    await asyncio.wait_for(self._room.wait(), self.config.commit_interval)
                except TimeoutError:
                    pass
            else:
                msgs = await asyncio.to_thread(
                    consumer.consume, self.config.max_batch_records, _CONSUME_WAIT
                )
                for batch in self._batches(msgs):
                    await out.send(batch)
            if loop.time() >= next_commit:
                next_commit = loop.time() + self.config.commit_interval
                self._commit(consumer, asynchronous=True)

    # -- records -> batches --------------------------------------------------------------

    def _batches(self, msgs: list[Message]) -> list[Batch]:
        """Decode one consume call's records, one ledger entry per partition chunk."""
        chunks: dict[
            tuple[str, int], list[tuple[int | None, Mapping[str, Any] | KubelogsDocument]]
        ] = {}
        ends: dict[tuple[str, int], int] = {}
        firsts: dict[tuple[str, int], int] = {}
        nbytes = malformed = 0
        with self._lock:
            assigned = set(self._assigned)
        for m in msgs:
            err = m.error()
            if err is not None:
                self._client_error(err, "receiving")
                continue
            tp = (m.topic() or "", m.partition() or 0)
            if tp not in assigned:
                continue  # revoked meanwhile: the new owner reads it from the commit
            offset = m.offset() or 0
            value = m.value() or b""
            nbytes += len(value)
            # a kubelogs document without headers (the sink's default) is decoded
            # typed; a header's id, or any other value, takes the general path
            rec: Mapping[str, Any] | KubelogsDocument | None = (
                None if m.headers() else decode_kubelogs_document(value)
            )
            if rec is None:
                rec, bad = _record(value)
                malformed += bad
                _set_event_id(rec, m, self._prefix(tp), offset)
            ts_type, ts_ms = m.timestamp()
            chunk = chunks.get(tp)
            if chunk is None:
                chunk = chunks[tp] = []
                firsts[tp] = offset
            chunk.append((ts_ms * 1_000_000 if ts_type and ts_ms > 0 else None, rec))
            ends[tp] = offset + 1
        n_records = sum(len(c) for c in chunks.values())
        self._consumed.inc(n_records)
        self._consumed_bytes.inc(nbytes)
        self.metrics.received_events.inc(n_records)
        self.metrics.received_bytes.inc(nbytes)
        if malformed:
            self._malformed.inc(malformed)
            self.metrics.error("malformed_record", "receiving")
            self._log_limited(
                "malformed",
                "%d records are not JSON objects; passed on flagged `malformed`",
                malformed,
            )
        out: list[Batch] = []
        for tp, chunk in chunks.items():
            batches = self.decoder.decode(chunk, origin=tp[0])
            token = self._track(tp, firsts[tp], ends[tp], len(chunk))
            if not batches:
                token.resolve()
                continue
            if len(batches) > 1:
                token.fork(len(batches) - 1)
            out.extend(b.derive(ack=token) for b in batches)
        return out

    def _prefix(self, tp: tuple[str, int]) -> str:
        p = self._prefixes.get(tp)
        if p is None:
            p = self._prefixes[tp] = make_id_prefix("kafka", f"{tp[0]}/{tp[1]}")
        return p

    def _track(self, tp: tuple[str, int], first: int, end: int, n: int) -> AckToken:
        with self._lock:
            part = self._parts.get(tp)
            if part is None:
                part = self._parts[tp] = _Partition(first)
        inner = part.ledger.track(end)
        self._unresolved += n

        def done() -> None:
            inner.resolve()
            self._unresolved -= n
            self._room.set()

        return AckToken(done)

    # -- commits ---------------------------------------------------------------------------

    def _resolved_offsets(self, only: set[tuple[str, int]] | None = None) -> list[TopicPartition]:
        from confluent_kafka import TopicPartition

        out = []
        with self._lock:
            for tp, part in self._parts.items():
                if only is not None and tp not in only:
                    continue
                committed = part.ledger.committed
                if committed > part.sent_commit:
                    out.append(TopicPartition(tp[0], tp[1], committed))
                    part.sent_commit = committed
        return out

    def _commit(
        self,
        consumer: Consumer,
        *,
        asynchronous: bool,
        only: set[tuple[str, int]] | None = None,
    ) -> None:
        offsets = self._resolved_offsets(only)
        if not offsets:
            return
        from confluent_kafka import KafkaException

        try:
            if asynchronous:
                consumer.commit(offsets=offsets, asynchronous=True)
            else:
                consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Not committed: the partition is read again from the last commit after a
            # crash (dropped downstream by event id). Try again at the next interval.
            self._forget_sent(offsets)
            self._client_error(exc.args[0], "committing")

    def _forget_sent(self, offsets: list[TopicPartition]) -> None:
        with self._lock:
            for o in offsets:
                part = self._parts.get((o.topic, o.partition))
                if part is not None:
                    part.sent_commit = min(part.sent_commit, o.offset - 1)

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        # consume thread (async commits are reported by the next consume call)
        if err is not None:
            self._forget_sent(partitions)
            self._client_error(err, "committing")
            return
        self._commits.inc(len(partitions))

    # -- rebalance callbacks (consume thread) -------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        with self._lock:
            self._assigned.update((p.topic, p.partition) for p in partitions)
        log.info(
            "sources.%s: assigned %s",
            self.component_id,
            ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "nothing",
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in partitions}
        with self._lock:
            self._assigned -= revoked
        self._commit(consumer, asynchronous=False, only=revoked)
        with self._lock:
            for tp in revoked:
                self._parts.pop(tp, None)
        log.info(
            "sources.%s: revoked %s (resolved offsets committed)",
            self.component_id,
            ", ".join(f"{t}[{p}]" for t, p in sorted(revoked)) or "nothing",
        )

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions taken away without a chance to commit (session expired): forget."""
        lost = {(p.topic, p.partition) for p in partitions}
        with self._lock:
            self._assigned -= lost
            for tp in lost:
                self._parts.pop(tp, None)
        log.warning(
            "sources.%s: lost %d partitions (session expired)", self.component_id, len(lost)
        )

    # -- librdkafka callbacks ---------------------------------------------------------------

    def _on_stats(self, text: str) -> None:
        lags = consumer_lags(parse_stats(text))
        with self._lock:
            assigned = set(self._assigned)
        self._km.set_lags(self.component_id, {k: v for k, v in lags.items() if k in assigned})

    def _on_error(self, err: KafkaError) -> None:
        self._client_error(err, "receiving")

    def _client_error(self, err: KafkaError, stage: str) -> None:
        name = err.name().lower().lstrip("_") or "kafka"
        self.metrics.error(name, stage)
        self._log_limited(name, "Kafka client (%s): %s (retrying)", stage, err.str())

    def _log_limited(self, kind: str, fmt: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_log.get(kind, -_LOG_EVERY) >= _LOG_EVERY:
            self._last_log[kind] = now
            log.warning("sources.%s: " + fmt, self.component_id, *args)

    async def close(self) -> None:
        """Commit what the sinks made durable (they have drained by now), then leave the
        group (which hands the partitions to the others at once)."""
        consumer = self._consumer
        if consumer is None:
            return
        self._consumer = None
        await asyncio.to_thread(self._commit, consumer, asynchronous=False)
        await asyncio.to_thread(consumer.close)


def _record(value: bytes) -> tuple[dict[str, Any], int]:
    """The record's JSON object, or the raw value as a message flagged ``malformed``."""
    try:
        rec = _decode(value)
    except msgspec.DecodeError:
        rec = None
    if isinstance(rec, dict):
        return rec, 0
    text = value.decode("utf-8", errors="replace")
    return {"message": text, "log": {"flags": ["malformed"]}}, 1


def _set_event_id(rec: dict[str, Any], m: Message, prefix: str, offset: int) -> None:
    """``event.id``: the sender's (header, else one already in the value), else one from
    the record's place in its partition."""
    eid: str | None = None
    headers: Any = m.headers()
    if headers:
        for item in headers:
            if item[0] == EVENT_ID_HEADER and item[1] is not None:
                v = item[1]
                eid = v.decode("ascii", "replace") if isinstance(v, bytes) else str(v)
                break
    ev = rec.get("event")
    if eid is None or split_event_id(eid) is None:
        if isinstance(ev, dict) and split_event_id(ev.get("id")) is not None:
            return
        eid = f"{prefix}-{offset:x}"
    if not isinstance(ev, dict):
        if ev is not None:
            rec["event_parsed"] = ev
        ev = rec["event"] = {}
    ev["id"] = eid
