"""Prometheus metrics, named as Vector names its internal metrics (DESIGN.md section 4).

One `Metrics` object per process owns a private registry, so tests can build several
pipelines in one interpreter. Components get counters through it, bound once to their
labels (a labelled child is looked up once, never per line).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class _CallbackCollector(Collector):
    """Gauges computed at scrape time (per-file lag, checkpoint age, buffer depth)."""

    def __init__(self, fn: Callable[[], Iterable[GaugeMetricFamily]]) -> None:
        self._fn = fn

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return self._fn()


class Metrics:
    def __init__(self) -> None:
        # `*_created` series double the number of series and no dashboard reads them.
        # The switch is process-wide in prometheus-client; kubelogs has one exposition.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=False)
        self.collectors: list[Collector] = []
        labels = ["component_id", "component_kind", "component_type"]
        self.received_events = Counter(
            "kubelogs_component_received_events",
            "Events a component received.",
            labels,
            registry=self.registry,
        )
        self.received_bytes = Counter(
            "kubelogs_component_received_bytes",
            "Bytes a component received (sources: bytes read from files or sockets).",
            labels,
            registry=self.registry,
        )
        self.sent_events = Counter(
            "kubelogs_component_sent_events",
            "Events a component sent on (sinks: delivered or made durable).",
            labels,
            registry=self.registry,
        )
        self.sent_bytes = Counter(
            "kubelogs_component_sent_bytes",
            "Bytes a sink wrote.",
            labels,
            registry=self.registry,
        )
        self.errors = Counter(
            "kubelogs_component_errors",
            "Errors by component, error type and pipeline stage.",
            [*labels, "error_type", "stage"],
            registry=self.registry,
        )
        self.discarded_events = Counter(
            "kubelogs_component_discarded_events",
            "Events dropped on purpose (filters, excluded pods) or after a permanent error.",
            [*labels, "intentional"],
            registry=self.registry,
        )
        self.lost_bytes = Counter(
            "kubelogs_lost_bytes",
            "Bytes removed from disk before they were read (rotated and deleted, or "
            "truncated past the checkpoint).",
            ["component_id", "file"],
            registry=self.registry,
        )
        self.store_evicted_segments = Counter(
            "kubelogs_store_evicted_segments",
            "Segments the local store deleted, by reason: age (retention), max_size, or "
            "disk_full (deleted to make room for a write on a full filesystem).",
            ["component_id", "reason"],
            registry=self.registry,
        )
        self.store_evicted_bytes = Counter(
            "kubelogs_store_evicted_bytes",
            "Bytes of the segments the local store deleted, by reason (as "
            "kubelogs_store_evicted_segments).",
            ["component_id", "reason"],
            registry=self.registry,
        )
        self.queue_events = Gauge(
            "kubelogs_buffer_events",
            "Events waiting in a component's input queue or buffer.",
            ["component_id"],
            registry=self.registry,
        )

    def add_collector(self, fn: Callable[[], Iterable[GaugeMetricFamily]]) -> None:
        collector = _CallbackCollector(fn)
        self.registry.register(collector)
        self.collectors.append(collector)

    def remove_collectors(self, keep: int) -> None:
        """Unregister the scrape-time collectors added after the first `keep`: a pipeline
        replaced by a configuration reload must not report its gauges any more."""
        for collector in self.collectors[keep:]:
            self.registry.unregister(collector)
        del self.collectors[keep:]

    def remove_collector(self, collector: object) -> None:
        """Unregister one collector (of a component a reload replaced)."""
        if collector in self.collectors:
            self.registry.unregister(collector)
            self.collectors.remove(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)


NO_ERROR_TYPE = ""
"""`error_type` and `stage` label of the zero series every component starts with."""
ALL_FILES = ""
"""`file` label of the zero `kubelogs_lost_bytes_total` series every source starts with."""


class ComponentMetrics:
    """Counters of one component, bound to its labels once.

    Every series a dashboard or an alert reads exists from the start, at 0: an alert on
    ``rate(kubelogs_component_errors_total[5m]) > 0`` or on lost bytes sees "no data"
    instead of 0 until the first error otherwise. Those zero series carry empty
    `error_type`/`stage` (and `file` for lost bytes); sums by component are unchanged.
    """

    def __init__(self, metrics: Metrics, component_id: str, kind: str, type_: str) -> None:
        self._metrics = metrics
        self._labels = (component_id, kind, type_)
        self.received_events = metrics.received_events.labels(*self._labels)
        self.received_bytes = metrics.received_bytes.labels(*self._labels)
        self.sent_events = metrics.sent_events.labels(*self._labels)
        self.sent_bytes = metrics.sent_bytes.labels(*self._labels)
        metrics.errors.labels(*self._labels, NO_ERROR_TYPE, NO_ERROR_TYPE)
        if kind == "source":
            metrics.lost_bytes.labels(component_id, ALL_FILES)

    def evicted(self, reason: str, segments: int, nbytes: int) -> None:
        """Count segments a store deleted (retention, size limit, full disk)."""
        component_id = self._labels[0]
        self._metrics.store_evicted_segments.labels(component_id, reason).inc(segments)
        self._metrics.store_evicted_bytes.labels(component_id, reason).inc(nbytes)

    def error(self, error_type: str, stage: str) -> None:
        self._metrics.errors.labels(*self._labels, error_type, stage).inc()

    def discarded(self, count: int, *, intentional: bool) -> None:
        if count:
            self._metrics.discarded_events.labels(
                *self._labels, "true" if intentional else "false"
            ).inc(count)
