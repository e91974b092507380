"""Kafka metrics: records and bytes produced and consumed, retries, dead letters, and
consumer lag per partition.

Counters are bound per component once (never looked up per record) and increased per
acknowledged batch. librdkafka's own figures (retried requests, consumer lag) come from
its statistics callback (``statistics.interval.ms``), parsed every few seconds, not per
record.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily

from kubelogs.telemetry.metrics import Metrics

STATS_INTERVAL_MS = 5000
"""How often librdkafka reports its statistics (lag, retries)."""


class KafkaMetrics:
    def __init__(self, metrics: Metrics) -> None:
        reg = metrics.registry
        cid = ["component_id"]
        self.produced_records = Counter(
            "kubelogs_kafka_produced_records",
            "Records the brokers acknowledged (acks=all).",
            cid,
            registry=reg,
        )
        self.produced_bytes = Counter(
            "kubelogs_kafka_produced_bytes",
            "Value bytes of the records the brokers acknowledged (before compression).",
            cid,
            registry=reg,
        )
        self.retries = Counter(
            "kubelogs_kafka_retries",
            "Produce requests librdkafka sent again, plus records the sink produced again "
            "after a failed delivery.",
            cid,
            registry=reg,
        )
        self.dead_lettered = Counter(
            "kubelogs_kafka_dead_lettered_events",
            "Records the brokers can never take (too large), kept in the dead-letter queue.",
            cid,
            registry=reg,
        )
        self.consumed_records = Counter(
            "kubelogs_kafka_consumed_records",
            "Records the source received.",
            cid,
            registry=reg,
        )
        self.consumed_bytes = Counter(
            "kubelogs_kafka_consumed_bytes",
            "Value bytes of the records the source received.",
            cid,
            registry=reg,
        )
        self.malformed = Counter(
            "kubelogs_kafka_malformed_records",
            "Records whose value is not a JSON object: passed on as raw messages, flagged "
            "`malformed`.",
            cid,
            registry=reg,
        )
        self.commits = Counter(
            "kubelogs_kafka_committed_offsets",
            "Partition offsets the source committed (after the events were durable).",
            cid,
            registry=reg,
        )
        self._lags: dict[str, dict[tuple[str, int], int]] = {}
        metrics.add_collector(self._collect_lag)

    def set_lags(self, component_id: str, lags: dict[tuple[str, int], int]) -> None:
        self._lags[component_id] = lags

    def _collect_lag(self) -> Iterable[GaugeMetricFamily]:
        g = GaugeMetricFamily(
            "kubelogs_kafka_consumer_lag",
            "Records between the consumer's position and the partition's end, per "
            "assigned partition (from librdkafka's statistics).",
            labels=["component_id", "topic", "partition"],
        )
        for cid, lags in list(self._lags.items()):
            for (topic, part), lag in list(lags.items()):
                g.add_metric([cid, topic, str(part)], lag)
        return [g]


_METRICS: weakref.WeakKeyDictionary[Metrics, KafkaMetrics] = weakref.WeakKeyDictionary()


def kafka_metrics(metrics: Metrics) -> KafkaMetrics:
    m = _METRICS.get(metrics)
    if m is None:
        m = _METRICS[metrics] = KafkaMetrics(metrics)
    return m


def parse_stats(text: str) -> dict[str, Any]:
    try:
        d = json.loads(text)
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def broker_retries(stats: dict[str, Any]) -> int:
    """Total produce requests retried, over every broker (a running total)."""
    total = 0
    brokers = stats.get("brokers")
    if isinstance(brokers, dict):
        for b in brokers.values():
            if isinstance(b, dict) and isinstance(b.get("txretries"), int):
                total += b["txretries"]
    return total


def consumer_lags(stats: dict[str, Any]) -> dict[tuple[str, int], int]:
    """(topic, partition) -> records between the consumer's position (the offset after
    the last record handed to kubelogs, else the committed one, else the partition's
    start) and the partition's end.

    Computed here rather than taken from librdkafka's ``consumer_lag``, which follows the
    committed offset and reads -1 for a while after asynchronous commits."""
    out: dict[tuple[str, int], int] = {}
    topics = stats.get("topics")
    if not isinstance(topics, dict):
        return out
    for tname, t in topics.items():
        parts = t.get("partitions") if isinstance(t, dict) else None
        if not isinstance(parts, dict):
            continue
        for pid, p in parts.items():
            if not isinstance(p, dict):
                continue
            part = int(pid)
            hi = p.get("hi_offset")
            if part < 0 or not isinstance(hi, int) or hi < 0:
                continue
            # nothing read or committed yet: everything the partition holds is behind
            for key in ("app_offset", "committed_offset", "lo_offset"):
                pos = p.get(key)
                if isinstance(pos, int) and pos >= 0:
                    out[(tname, part)] = max(0, hi - pos)
                    break
    return out
