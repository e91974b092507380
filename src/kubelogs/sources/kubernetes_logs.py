"""`kubernetes_logs`: container logs of this node, CRI or Docker json-file, per file.

Namespace, pod, pod uid, container and container id come from the path
(``/var/log/containers/<pod>_<ns>_<container>-<id>.log`` -> ``/var/log/pods/<ns>_<pod>_<uid>/
<container>/0.log``), so every line is attributable without the API server; the
`kubernetes_metadata` transform adds the rest.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import Field

from kubelogs.config.base import BuildContext
from kubelogs.config.registry import register
from kubelogs.kubernetes.document_meta import encode_meta
from kubelogs.kubernetes.paths import parse_log_path
from kubelogs.pipeline.event import FileContext
from kubelogs.pipeline.runtime import Output
from kubelogs.sources.tail_options import TailOptions
from kubelogs.tailing.checkpoints import shared_checkpoint_store
from kubelogs.tailing.tailer import Tailer, TailSettings


@register("source", "kubernetes_logs", "Container logs of this node (CRI and Docker json-file).")
class KubernetesLogsConfig(TailOptions):
    type: Literal["kubernetes_logs"]
    include: list[str] = Field(default_factory=lambda: ["/var/log/containers/*.log"])
    """Globs of container log files; symlinks are followed."""
    exclude_namespaces: list[str] = Field(default_factory=list)
    """Namespaces whose containers are not read at all."""

    def build(self, cx: BuildContext) -> KubernetesLogsSource:
        return KubernetesLogsSource(self, cx)


class KubernetesLogsSource:
    def __init__(self, config: KubernetesLogsConfig, cx: BuildContext) -> None:
        self.config = config
        node = cx.node_name
        excluded = set(config.exclude_namespaces)
        source_id = cx.component_id

        def accept(path: str) -> bool:
            if not excluded:
                return True
            info = parse_log_path(path)
            return info is None or info.namespace not in excluded

        def context(link: str, real: str, key: str, id_prefix: str) -> FileContext:
            info = parse_log_path(link)
            real_info = parse_log_path(real)
            ns = pod = uid = container = cid = ""
            for i in (real_info, info):
                if i is None:
                    continue
                ns = ns or i.namespace
                pod = pod or i.pod
                uid = uid or i.pod_uid
                container = container or i.container
                cid = cid or i.container_id
            ecs, fluentd = encode_meta(
                namespace=ns,
                pod=pod,
                pod_uid=uid,
                container=container,
                container_id=cid,
                node=node,
            )
            return FileContext(
                source_id=source_id,
                path=real,
                file_key=key,
                id_prefix=id_prefix,
                node=node,
                namespace=ns,
                pod=pod,
                pod_uid=uid,
                container=container,
                container_id=cid,
                meta_ecs=ecs,
                meta_fluentd=fluentd,
            )

        settings = TailSettings(
            source_id=source_id,
            source_type="kubernetes_logs",
            include=list(config.include),
            exclude=list(config.exclude),
            read_from=config.read_from,
            max_line_size=config.max_line_size,
            format="auto",
            node_name=node,
            context_factory=context,
            accept=accept,
            read_chunk=config.read_chunk,
            glob_interval=config.glob_interval,
            poll_interval=config.poll_interval,
            rotate_wait=config.rotate_wait,
            checkpoint_interval=config.checkpoint_interval,
        )
        self.tailer = Tailer(settings, shared_checkpoint_store(cx.shared, cx.data_dir), cx.metrics)

    async def run(self, out: Output, stopping: asyncio.Event) -> None:
        await self.tailer.run(out, stopping)

    async def close(self) -> None:
        self.tailer.close()
