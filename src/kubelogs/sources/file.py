"""`file`: plain line-oriented files (kubelet, kube-proxy, container runtime, control plane).

Same tailing engine and guarantees as `kubernetes_logs`; events get `host.name` and
`kubernetes.node.name` from the node name.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import Field

from kubelogs.config.base import BuildContext
from kubelogs.config.registry import register
from kubelogs.kubernetes.document_meta import encode_meta
from kubelogs.pipeline.event import FileContext
from kubelogs.pipeline.runtime import Output
from kubelogs.sources.tail_options import TailOptions
from kubelogs.tailing.checkpoints import shared_checkpoint_store
from kubelogs.tailing.tailer import Tailer, TailSettings


@register("source", "file", "Plain line-oriented log files, by glob.")
class FileSourceConfig(TailOptions):
    type: Literal["file"]
    paths: list[str] = Field(min_length=1)
    """Globs of files to follow, e.g. ``/var/log/kubelet.log``."""

    def build(self, cx: BuildContext) -> FileSource:
        return FileSource(self, cx)


class FileSource:
    def __init__(self, config: FileSourceConfig, cx: BuildContext) -> None:
        node = cx.node_name
        source_id = cx.component_id
        ecs, fluentd = encode_meta(
            namespace="", pod="", pod_uid="", container="", container_id="", node=node
        )

        def context(link: str, real: str, key: str, id_prefix: str) -> FileContext:
            return FileContext(
                source_id=source_id,
                path=real,
                file_key=key,
                id_prefix=id_prefix,
                node=node,
                meta_ecs=ecs,
                meta_fluentd=fluentd,
            )

        settings = TailSettings(
            source_id=source_id,
            source_type="file",
            include=list(config.paths),
            exclude=list(config.exclude),
            read_from=config.read_from,
            max_line_size=config.max_line_size,
            format="plain",
            node_name=node,
            context_factory=context,
            read_chunk=config.read_chunk,
            glob_interval=config.glob_interval,
            poll_interval=config.poll_interval,
            rotate_wait=config.rotate_wait,
            checkpoint_interval=config.checkpoint_interval,
        )
        self.tailer = Tailer(settings, shared_checkpoint_store(cx.shared, cx.data_dir), cx.metrics)

    async def prepare(self) -> None:
        self.tailer.prepare()

    async def run(self, out: Output, stopping: asyncio.Event) -> None:
        await self.tailer.run(out, stopping)

    async def close(self) -> None:
        self.tailer.close()
