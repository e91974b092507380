"""`elasticsearch` sink run loop: encode -> batch -> build request -> send with retry ->
ack or dead-letter.

- **Batching**: batches are encoded as they arrive (`encoder`) and appended to the open
  request until it reaches `bulk.max_bytes` or `bulk.max_events`, or `bulk.flush_interval`
  has passed since its first item.
- **Concurrency and backpressure**: up to `bulk.max_in_flight` requests are sent at once
  (tasks in this sink's task group). When all are busy, the loop stops reading its input,
  the channel fills, and the sources stop reading files. Memory is bounded by about
  ``(max_in_flight + 1) * max_bytes`` plus one batch, whatever the cluster does.
- **Delivery**: every item is a ``create`` under the event's deterministic ``_id``;
  ``409`` means it is there already. A request that fails as a whole is sent again, the
  same items, after a jittered backoff, without end: an outage of any length holds the
  acks back (checkpoints do not move) and loses nothing while the files are on disk.
  Items answered ``429``/``5xx`` are sent again alone; items rejected for good go to the
  dead-letter queue, fsynced, and only then count as settled (`retry` says which is
  which). A batch's ack resolves once all its items are settled (`request_builder`).
- **Start**: the server flavour (`api_version`), the health check (one line saying what
  is wrong) and the index template come first; until the template is in place no
  document is sent (an index created before it would get the wrong mappings), and the
  sink keeps trying meanwhile.

Error handling: transport errors and error responses are counted in
``kubelogs_component_errors_total`` (``error_type`` = the cause, ``stage`` = sending),
logged at most once per `_LOG_EVERY` seconds per kind, and retried; nothing here drops
an event. Cancellation (the shutdown grace period ran out) abandons in-flight requests
with their acks unresolved: they are sent again after the restart, as 409s if they had
arrived.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client import Counter, Gauge, Histogram

from kubelogs.buffer import dead_letter
from kubelogs.config.base import BuildContext
from kubelogs.pipeline.event import Batch
from kubelogs.pipeline.runtime import Input
from kubelogs.sinks.elasticsearch.config import ElasticsearchConfig
from kubelogs.sinks.elasticsearch.encoder import (
    IndexPattern,
    IndexResolver,
    encode_batch,
    parse_action,
)
from kubelogs.sinks.elasticsearch.health import (
    ServerInfo,
    detect_flavour,
    health_check,
    index_template,
    info_from_config,
    put_retention_policy,
    put_template,
)
from kubelogs.sinks.elasticsearch.request_builder import (
    BatchTracker,
    BulkRequest,
    gzip_body,
)
from kubelogs.sinks.elasticsearch.retry import (
    DeadLetter,
    Indexed,
    Retry,
    RetryableError,
    classify_item,
    classify_response,
)
from kubelogs.sinks.elasticsearch.service import HttpTransport, Transport, TransportError
from kubelogs.sinks.retry import Backoff
from kubelogs.telemetry.metrics import ComponentMetrics, Metrics

log = logging.getLogger("kubelogs.sinks.elasticsearch")

_LOG_EVERY = 10.0
"""Seconds between two log lines about the same kind of failure (a storm of 429s
must not become a storm of log lines)."""
_decode_items = msgspec.json.Decoder().decode
_TOO_LARGE: list[int] = []
"""`_attempt`'s answer to a 413 (request too large): the caller splits the request."""


class HealthCheckError(RuntimeError):
    """`health_check: fail` and the cluster is not usable; ``str()`` is one sentence."""


class _EsMetrics:
    """Sink-specific series (component_id label), registered once per `Metrics`."""

    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        lbl = ["component_id"]
        self.indexed = Counter(
            "kubelogs_elasticsearch_indexed_events",
            "Documents the cluster accepted (created).",
            lbl,
            registry=r,
        )
        self.duplicates = Counter(
            "kubelogs_elasticsearch_duplicate_events",
            "Documents answered 409 on create: already indexed by an earlier attempt.",
            lbl,
            registry=r,
        )
        self.retried = Counter(
            "kubelogs_elasticsearch_retried_events",
            "Documents sent again (item-level 429/5xx, or their whole request failed).",
            lbl,
            registry=r,
        )
        self.dead_lettered = Counter(
            "kubelogs_elasticsearch_dead_lettered_events",
            "Documents rejected for good and written to the dead-letter queue.",
            lbl,
            registry=r,
        )
        self.latency = Histogram(
            "kubelogs_elasticsearch_bulk_latency_seconds",
            "Time from sending a _bulk request to its full response.",
            lbl,
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.in_flight_bytes = Gauge(
            "kubelogs_elasticsearch_in_flight_bytes",
            "Bytes of _bulk bodies sent and not yet answered.",
            lbl,
            registry=r,
        )


_METRICS: weakref.WeakKeyDictionary[Metrics, _EsMetrics] = weakref.WeakKeyDictionary()


def _es_metrics(metrics: Metrics) -> _EsMetrics:
    m = _METRICS.get(metrics)
    if m is None:
        m = _METRICS[metrics] = _EsMetrics(metrics)
    return m


class ElasticsearchSink:
    def __init__(
        self,
        config: ElasticsearchConfig,
        *,
        transport: Transport,
        metrics: ComponentMetrics,
        es_metrics: _EsMetrics,
        component_id: str,
        dead_letter_dir: Path,
    ) -> None:
        self.config = config
        self.transport = transport
        self.metrics = metrics
        self.component_id = component_id
        self.dead_letter_dir = dead_letter_dir
        cid = component_id
        self._indexed = es_metrics.indexed.labels(cid)
        self._duplicates = es_metrics.duplicates.labels(cid)
        self._retried = es_metrics.retried.labels(cid)
        self._dead_lettered = es_metrics.dead_lettered.labels(cid)
        self._latency = es_metrics.latency.labels(cid)
        self._in_flight = es_metrics.in_flight_bytes.labels(cid)
        pattern = config.data_stream_name if config.data_stream else config.index
        self.pattern = IndexPattern(pattern)
        self.resolver = IndexResolver(self.pattern, config.schema_)
        self.info: ServerInfo | None = info_from_config(config.api_version)
        self._last_log: dict[str, float] = {}
        self._headers = {"Content-Type": "application/x-ndjson"}
        if config.bulk.compression == "gzip":
            self._headers["Content-Encoding"] = "gzip"
        self.ready = False
        """True once the start-up steps are done (template installed)."""
        self._retention_settings: dict[str, Any] | None = None
        """Template settings that attach the retention policy; None until it was tried."""

    @classmethod
    def from_config(cls, config: ElasticsearchConfig, cx: BuildContext) -> ElasticsearchSink:
        transport = HttpTransport(
            config.hosts,
            auth=config.auth,
            tls=config.tls,
            timeout=config.bulk.timeout,
            max_connections=config.bulk.max_in_flight + 2,
        )
        return cls(
            config,
            transport=transport,
            metrics=ComponentMetrics(cx.metrics, cx.component_id, "sink", "elasticsearch"),
            es_metrics=_es_metrics(cx.metrics),
            component_id=cx.component_id,
            dead_letter_dir=config.dead_letter.path
            or cx.data_dir / "dead_letter" / cx.component_id,
        )

    # -- run loop ------------------------------------------------------------------------

    async def run(self, inp: Input) -> None:
        await self.start()
        bulk = self.config.bulk
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(bulk.max_in_flight)
        it: AsyncIterator[Batch] = aiter(inp)
        nxt: asyncio.Future[Batch] | None = None
        req = BulkRequest()
        deadline = 0.0
        try:
            async with asyncio.TaskGroup() as tg:
                while True:
                    if nxt is None:
                        nxt = asyncio.ensure_future(anext(it))
                    timeout = max(0.0, deadline - loop.time()) if len(req) else None
                    done, _ = await asyncio.wait({nxt}, timeout=timeout)
                    if done:
                        try:
                            batch = nxt.result()
                        except StopAsyncIteration:
                            nxt = None
                            break
                        nxt = None
                        if not len(req):
                            deadline = loop.time() + bulk.flush_interval
                        self._add(req, batch)
                        while len(req) < bulk.max_events and req.nbytes < bulk.max_bytes:
                            more = inp.receive_nowait()
                            if more is None:
                                break
                            self._add(req, more)
                        if len(req) < bulk.max_events and req.nbytes < bulk.max_bytes:
                            continue
                    if len(req):
                        await slots.acquire()
                        tg.create_task(self._send_all(req, slots), name="es-bulk")
                        req = BulkRequest()
                if len(req):
                    await slots.acquire()
                    tg.create_task(self._send_all(req, slots), name="es-bulk")
        finally:
            if nxt is not None:
                nxt.cancel()
                await asyncio.gather(nxt, return_exceptions=True)

    def _add(self, req: BulkRequest, batch: Batch) -> None:
        n = len(batch)
        self.metrics.received_events.inc(n)
        if n == 0:
            if batch.ack is not None:
                batch.ack.resolve()
            return
        req.add(encode_batch(batch, self.resolver, self.config.schema_), BatchTracker(batch, n))

    # -- start-up ------------------------------------------------------------------------

    async def start(self) -> None:
        """Flavour, health check, template: retried until they succeed (nothing is sent
        before), except that `health_check: fail` raises `HealthCheckError` at once."""
        cfg = self.config
        if cfg.health_check != "off":
            problem = await health_check(self.transport)
            if problem is not None:
                if cfg.health_check == "fail":
                    raise HealthCheckError(f"sinks.{self.component_id}: {problem}")
                log.error(
                    "sinks.%s: health check failed: %s; delivery keeps trying",
                    self.component_id,
                    problem,
                )
        backoff = Backoff(self.config.retry.initial_backoff, self.config.retry.max_backoff)
        while True:
            try:
                if self.info is None:
                    self.info = await detect_flavour(self.transport)
                    log.info("sinks.%s: writing to %s", self.component_id, self.info.describe())
                body = self.template_body() if cfg.template.enabled else None
                if body is not None:
                    if cfg.retention is not None:
                        body = await self._with_retention(body)
                    await put_template(self.transport, cfg.template.name, body)
                break
            except (TransportError, ValueError) as exc:
                self.metrics.error(getattr(exc, "kind", "template"), "starting")
                self._log_limited("start", "sinks.%s: cannot start yet: %s", exc)
            await asyncio.sleep(backoff.next_delay())
        self.ready = True

    async def _with_retention(self, body: dict[str, Any]) -> dict[str, Any]:
        """Install the retention policy and attach it to the template `body`. A cluster
        without ILM/ISM (or a user without the privilege) gets a warning: retention is
        housekeeping, delivery goes on without it. Transport errors propagate (start-up
        retries them)."""
        cfg = self.config
        assert self.info is not None and cfg.retention is not None
        if self._retention_settings is None:
            try:
                self._retention_settings = await put_retention_policy(
                    self.transport,
                    cfg.template.name,
                    info=self.info,
                    retention=cfg.retention,
                    patterns=body["index_patterns"],
                    data_stream=cfg.data_stream,
                )
            except ValueError as exc:
                log.warning("sinks.%s: retention not applied: %s", self.component_id, exc)
                self._retention_settings = {}
        settings = self._retention_settings
        if settings:
            body["template"]["settings"] = {**body["template"].get("settings", {}), **settings}
        return body

    def template_body(self) -> dict[str, Any] | None:
        """The template to install, or None when no index pattern can be derived (an
        `index` that starts with a field reference: say `template.patterns`)."""
        cfg = self.config
        assert self.info is not None
        patterns = cfg.template.patterns
        if not patterns:
            prefix = self.pattern.literal_prefix()
            if not prefix:
                log.warning(
                    "sinks.%s: no index template installed: %r starts with a field, so "
                    "its indices have no common prefix; set template.patterns",
                    self.component_id,
                    self.pattern.pattern,
                )
                return None
            patterns = [f"{prefix}*"]
        refresh = cfg.template.refresh_interval
        return index_template(
            patterns,
            schema=cfg.schema_,
            info=self.info,
            data_stream=cfg.data_stream,
            priority=cfg.template.priority,
            settings={"index.refresh_interval": f"{round(refresh * 1000)}ms"} if refresh else None,
        )

    # -- sending -------------------------------------------------------------------------

    async def _send_all(self, req: BulkRequest, slots: asyncio.Semaphore) -> None:
        """Send `req` until every item is settled; releases its in-flight slot."""
        try:
            await self.deliver(req)
        finally:
            slots.release()

    async def deliver(self, req: BulkRequest) -> None:
        """Send until every item is indexed, already there, or dead-lettered. Never
        raises for a failure of the cluster: it waits and tries again."""
        backoff = Backoff(self.config.retry.initial_backoff, self.config.retry.max_backoff)
        while len(req):
            retry_rows = await self._attempt(req)
            if retry_rows is _TOO_LARGE and len(req) > 1:
                # 413: the cluster's http.max_content_length is below bulk.max_bytes;
                # halves are sent one after the other (down to single documents).
                half = len(req) // 2
                await self.deliver(req.subset(range(half)))
                await self.deliver(req.subset(range(half, len(req))))
                return
            if retry_rows is None or retry_rows is _TOO_LARGE:  # the whole request failed
                self._retried.inc(len(req))
            elif not retry_rows:
                if backoff.failures >= 3:
                    log.warning(
                        "sinks.%s: delivering again after %d failed attempts",
                        self.component_id,
                        backoff.failures,
                    )
                return
            else:
                self._retried.inc(len(retry_rows))
                req = req.subset(retry_rows)
            await asyncio.sleep(backoff.next_delay())

    async def _attempt(self, req: BulkRequest) -> list[int] | None:
        """One ``_bulk`` request. Settles what it can; returns the rows to send again
        (empty: all settled), or None when the request failed as a whole."""
        body = req.body()
        if self.config.bulk.compression == "gzip":
            body = gzip_body(body)
        self._in_flight.inc(len(body))
        began = time.monotonic()
        try:
            r = await self.transport.request(
                "POST",
                "/_bulk?filter_path=errors,items.*.status,items.*.error",
                body,
                self._headers,
            )
            classify_response(r.status, r.body)
            items = _decode_items(r.body).get("items")
        except TransportError as exc:
            self.metrics.error(exc.kind, "sending")
            self._log_limited(exc.kind, "sinks.%s: bulk request failed, will retry: %s", exc)
            return None
        except RetryableError as exc:
            self.metrics.error(f"http_{exc.status}", "sending")
            if exc.status == 413 and len(req) > 1:
                return _TOO_LARGE
            level = logging.ERROR if exc.permanent_cause else logging.WARNING
            self._log_limited(
                f"http_{exc.status}",
                "sinks.%s: bulk request refused, will retry: %s",
                exc.reason,
                level=level,
            )
            return None
        except (msgspec.DecodeError, AttributeError):
            self.metrics.error("bad_response", "sending")
            self._log_limited("bad_response", "sinks.%s: %s", "unreadable bulk response")
            return None
        finally:
            self._in_flight.dec(len(body))
        self._latency.observe(time.monotonic() - began)
        if not isinstance(items, list) or len(items) != len(req):
            self.metrics.error("bad_response", "sending")
            self._log_limited(
                "bad_response", "sinks.%s: %s", "bulk response items do not match the request"
            )
            return None
        return await self._settle(req, items)

    async def _settle(self, req: BulkRequest, items: list[Any]) -> list[int]:
        retry_rows: list[int] = []
        letters: list[tuple[int, DeadLetter]] = []
        settled: list[int] = []
        indexed = duplicates = 0
        for i, item in enumerate(items):
            outcome = classify_item(item)
            if isinstance(outcome, Indexed):
                settled.append(i)
                if outcome.duplicate:
                    duplicates += 1
                else:
                    indexed += 1
            elif isinstance(outcome, Retry):
                retry_rows.append(i)
            else:
                letters.append((i, outcome))
        if retry_rows:
            self.metrics.error("item_retry", "sending")
            first = classify_item(items[retry_rows[0]])
            assert isinstance(first, Retry)
            self._log_limited(
                "item_retry",
                "sinks.%s: %s",
                f"{len(retry_rows)} documents refused for now ({first.error_type}), "
                "sending them again",
            )
        if letters:
            await self._dead_letter(req, letters)
            settled.extend(i for i, _ in letters)
        self._indexed.inc(indexed)
        self._duplicates.inc(duplicates)
        self.metrics.sent_events.inc(indexed + duplicates)
        for i in settled:
            req.owners[i].settle()
        return retry_rows

    async def _dead_letter(self, req: BulkRequest, letters: list[tuple[int, DeadLetter]]) -> None:
        """Write rejected documents durably (retrying a failed write: they stay
        unacknowledged meanwhile) before they count as settled."""
        now = dead_letter.now_rfc3339()
        entries = []
        for i, d in letters:
            index, doc_id = parse_action(req.actions[i])
            entries.append(
                dead_letter.Entry(
                    time=now,
                    sink=self.component_id,
                    id=doc_id,
                    target=index,
                    status=d.status,
                    error_type=d.error_type,
                    reason=d.reason,
                    document=msgspec.Raw(req.docs[i]),
                )
            )
        backoff = Backoff(0.5, 10.0)
        while True:
            try:
                await asyncio.to_thread(dead_letter.write_entries, self.dead_letter_dir, entries)
                break
            except OSError as exc:
                self.metrics.error("dead_letter_write", "sending")
                self._log_limited(
                    "dead_letter_write",
                    "sinks.%s: cannot write the dead-letter queue, retrying: %s",
                    exc,
                )
                await asyncio.sleep(backoff.next_delay())
        self._dead_lettered.inc(len(entries))
        first = letters[0][1]
        self._log_limited(
            "dead_letter",
            "sinks.%s: %s",
            f"{len(entries)} documents rejected ({first.status} {first.error_type}: "
            f"{first.reason[:200]}); kept in {self.dead_letter_dir} (kubelogs dlq show)",
            level=logging.ERROR,
        )

    def _log_limited(
        self, kind: str, fmt: str, detail: object, *, level: int = logging.WARNING
    ) -> None:
        now = time.monotonic()
        if now - self._last_log.get(kind, -_LOG_EVERY) >= _LOG_EVERY:
            self._last_log[kind] = now
            log.log(level, fmt, self.component_id, detail)

    async def close(self) -> None:
        await self.transport.close()
