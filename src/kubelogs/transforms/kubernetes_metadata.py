"""``kubernetes_metadata``: pod metadata from the API server, and per-pod annotations.

Why per file and not per line: everything this transform adds (labels, owners, image, IP,
namespace labels) is the same for every line of one container's file, so it is encoded
once into the batch's `FileContext` (PERFORMANCE.md: "metadata is per file"). `process()`
costs two dict lookups per batch while nothing changes: the pod entry in the shared
`PodCache`, and the enriched context cached under ``(file, pod version)``. When the pod
changes (a label, an annotation, its namespace's labels) its version changes and the next
batch re-encodes - so annotations take effect without a restart.

Per-pod settings (DESIGN.md section 6), also per container with a ``-<container>`` suffix:

- ``kubelogs.io/exclude: "true"`` / ``kubelogs.io/exclude-<container>: "true"``: the batch
  is dropped on purpose (ack resolved, counted as an intentional discard);
- ``kubelogs.io/parser``, ``kubelogs.io/multiline``, ``kubelogs.io/index``: copied into
  ``ctx.extra`` (``parser``, ``multiline``, ``index``) for the stages after this one.

`process()` never touches the network: the cache is fed by a `PodWatcher` shared through
``cx.shared`` with the ``kubernetes_logs`` source. Until the API server answers (or when it
never does), batches pass with the file-name metadata the tailer set; after a restart
the persisted cache serves at once.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from kubelogs.config.base import BuildContext, TransformConfig
from kubelogs.config.registry import register
from kubelogs.config.units import Duration
from kubelogs.kubernetes.document_meta import PodMeta, encode_meta
from kubelogs.kubernetes.errors import KubernetesError
from kubelogs.kubernetes.metadata_cache import CachedPod, PodCache
from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.telemetry.metrics import ComponentMetrics

if TYPE_CHECKING:
    # The watcher brings aiohttp: imported when the transform is built, not when the
    # config is read (the agent without metadata never loads it).
    from kubelogs.kubernetes.pod_watcher import PodWatcher, WatcherSettings

log = logging.getLogger("kubelogs.kubernetes")

ANNOTATION_PREFIX = "kubelogs.io/"
SETTINGS = ("parser", "multiline", "index")
"""Annotations copied into ``ctx.extra`` under the same name."""

_TRUE = frozenset({"true", "yes", "1", "on"})
_MAX_CONTEXTS = 8192
"""Enriched contexts kept (one per open file); beyond this the oldest are forgotten and
simply re-encoded when their file shows up again."""


@register(
    "transform",
    "kubernetes_metadata",
    "Add pod metadata from the Kubernetes API server to container log events and apply "
    "per-pod kubelogs.io/* annotations.",
)
class KubernetesMetadataConfig(TransformConfig):
    """Enrich container log events with pod metadata watched from the API server."""

    type: Literal["kubernetes_metadata"]
    api_server: str | None = None
    """URL of the API server (``https://host:6443`` or ``http://...``). Default: in-cluster
    (``KUBERNETES_SERVICE_HOST``/``_PORT``)."""
    token_file: Path | None = None
    """Bearer token file, re-read when it changes (bound tokens rotate hourly). Default:
    the service account's token."""
    ca_file: Path | None = None
    """CA bundle that signed the API server's certificate. Default: the service account's
    ``ca.crt``, else the system's CA store."""
    kubeconfig: Path | None = None
    """Use this kubeconfig's current context instead of in-cluster settings."""
    node_name: str | None = None
    """Only pods of this node are watched. Default: the agent's node name (``NODE_NAME``);
    empty watches every pod of the cluster, which costs memory on large clusters."""
    insecure_skip_tls_verify: bool = False
    """Do not verify the API server's certificate. Anyone on the path can then read the
    token: for test clusters only; logged as a warning."""
    annotations: list[str] = Field(default_factory=list)
    """Pod annotations copied into documents (``kubernetes.annotations``), by key or glob
    (``example.com/*``). Default: none - annotations are often large or sensitive."""
    namespace_labels: bool = True
    """Add the labels of the pod's namespace (``kubernetes.namespace_labels``); needs
    list/watch on namespaces."""
    cache_grace_period: Duration = 3600.0
    """How long a deleted pod's metadata is kept, so late or backlogged lines of finished
    pods (CronJobs) are still enriched; also across restarts (persisted in data_dir)."""
    sync_timeout: Duration = 10.0
    """How long `start` waits for the first list of pods before lines flow, so a backlog
    read at startup is enriched. Not waited when the API server cannot be reached."""
    page_size: int = Field(500, ge=1, le=10_000)
    """Pods per LIST page when a full (non-cached) list is needed."""

    @field_validator("api_server")
    @classmethod
    def _check_api_server(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @model_validator(mode="after")
    def _check_exclusive(self) -> KubernetesMetadataConfig:
        if self.kubeconfig is not None and self.api_server is not None:
            raise ValueError(
                "api_server and kubeconfig are mutually exclusive: the kubeconfig names the server"
            )
        return self

    def watcher_settings(self, default_node: str) -> WatcherSettings:
        from kubelogs.kubernetes.pod_watcher import WatcherSettings

        return WatcherSettings(
            api_server=self.api_server,
            token_file=str(self.token_file) if self.token_file else None,
            ca_file=str(self.ca_file) if self.ca_file else None,
            kubeconfig=str(self.kubeconfig) if self.kubeconfig else None,
            insecure_skip_tls_verify=self.insecure_skip_tls_verify,
            node_name=self.node_name if self.node_name is not None else default_node,
        )

    def build(self, cx: BuildContext) -> KubernetesMetadataTransform:
        from kubelogs.kubernetes.pod_watcher import WatcherTuning, get_pod_watcher

        tuning = WatcherTuning(grace_period=self.cache_grace_period, page_size=self.page_size)
        watcher = get_pod_watcher(
            cx.shared, self.watcher_settings(cx.node_name), data_dir=cx.data_dir, tuning=tuning
        )
        watcher.cache.grace_period = max(watcher.cache.grace_period, self.cache_grace_period)
        if self.namespace_labels:
            watcher.watch_namespaces = True
        metrics = ComponentMetrics(cx.metrics, cx.component_id, "transform", "kubernetes_metadata")
        return KubernetesMetadataTransform(
            watcher,
            annotations=self.annotations,
            namespace_labels=self.namespace_labels,
            sync_timeout=self.sync_timeout,
            metrics=metrics,
        )


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in _TRUE


class KubernetesMetadataTransform:
    """The runtime object; see the module docstring.

    Resource handling: joins the shared `PodWatcher` in `start()` and leaves it in
    `stop()` (the last user stops its tasks and saves the cache).
    Error handling: API failures never reach `process()`; they are logged by the watcher
    (rate-limited) and counted here as ``kubernetes_api`` errors.
    """

    def __init__(
        self,
        watcher: PodWatcher,
        *,
        annotations: list[str] | None = None,
        namespace_labels: bool = True,
        sync_timeout: float = 10.0,
        metrics: ComponentMetrics | None = None,
    ) -> None:
        self.watcher = watcher
        self._cache: PodCache = watcher.cache
        self._allow = list(annotations or ())
        self._exact = {a for a in self._allow if not any(c in a for c in "*?[")}
        self._globs = [a for a in self._allow if a not in self._exact]
        self._namespace_labels = namespace_labels
        self._sync_timeout = sync_timeout
        self._metrics = metrics
        self._contexts: dict[str, tuple[int, FileContext, FileContext | None]] = {}
        self.excluded_events = 0
        self._started = False

    async def start(self) -> None:
        if self._metrics is not None:
            self.watcher.reporter.listeners.append(self._count_error)
        self._started = True
        await self.watcher.start(sync_timeout=self._sync_timeout)

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self._count_error in self.watcher.reporter.listeners:
            self.watcher.reporter.listeners.remove(self._count_error)
        await self.watcher.stop()

    def _count_error(self, err: KubernetesError) -> None:
        if self._metrics is not None:
            self._metrics.error("kubernetes_api", "receiving")

    def process(self, batch: Batch) -> Batch | None:
        ctx = batch.ctx
        if not ctx.pod and not ctx.namespace:
            return batch  # a node file: the tailer already set host / node names
        entry = self._cache.lookup(ctx.pod_uid, ctx.namespace, ctx.pod)
        if entry is None:
            return batch  # unknown (yet): keep the file-name metadata
        key = ctx.file_key or ctx.path
        hit = self._contexts.get(key)
        if hit is not None and hit[0] == entry.version and (hit[1] is ctx or hit[1] == ctx):
            enriched = hit[2]
        else:
            enriched = self._enrich(ctx, entry)
            if key not in self._contexts and len(self._contexts) >= _MAX_CONTEXTS:
                del self._contexts[next(iter(self._contexts))]
            self._contexts[key] = (entry.version, ctx, enriched)
        if enriched is None:
            if batch.ack is not None:
                batch.ack.resolve()
            self.excluded_events += len(batch)
            if self._metrics is not None:
                self._metrics.discarded(len(batch), intentional=True)
            return None
        return batch.derive(ctx=enriched)

    def _enrich(self, ctx: FileContext, entry: CachedPod) -> FileContext | None:
        """The context with the pod's metadata; None when the annotations exclude it."""
        record = entry.record
        ann = record.annotations
        container = ctx.container
        if _truthy(ann.get(ANNOTATION_PREFIX + "exclude")) or _truthy(
            ann.get(f"{ANNOTATION_PREFIX}exclude-{container}")
        ):
            return None
        extra = dict(ctx.extra)
        for setting in SETTINGS:
            value = ann.get(f"{ANNOTATION_PREFIX}{setting}-{container}") or ann.get(
                ANNOTATION_PREFIX + setting
            )
            if value:
                extra[setting] = value.strip()
        meta = self._shipped_meta(entry)
        ecs, fluentd = encode_meta(
            namespace=ctx.namespace or record.namespace,
            pod=ctx.pod or record.name,
            pod_uid=ctx.pod_uid or record.uid,
            container=container,
            container_id=ctx.container_id,
            node=ctx.node,
            pod_meta=meta,
            include_annotations=bool(meta.annotations),
        )
        return replace(
            ctx,
            namespace=ctx.namespace or record.namespace,
            pod=ctx.pod or record.name,
            pod_uid=ctx.pod_uid or record.uid,
            meta_ecs=ecs,
            meta_fluentd=fluentd,
            extra=extra,
        )

    def _shipped_meta(self, entry: CachedPod) -> PodMeta:
        meta = self._cache.pod_meta(entry)
        annotations = {
            k: v
            for k, v in meta.annotations.items()
            if k in self._exact or any(fnmatch.fnmatchcase(k, g) for g in self._globs)
        }
        namespace_labels = meta.namespace_labels if self._namespace_labels else {}
        if annotations != meta.annotations or namespace_labels is not meta.namespace_labels:
            meta = replace(meta, annotations=annotations, namespace_labels=namespace_labels)
        return meta
