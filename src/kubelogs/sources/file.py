"""`file`: plain line-oriented files (kubelet, kube-proxy, container runtime, control plane).

Same tailing engine and guarantees as `kubernetes_logs`; events get `host.name` and
`kubernetes.node.name` from the node name.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kubelogs.config.base import BuildContext
from kubelogs.config.registry import register
from kubelogs.pipeline.event import FileContext
from kubelogs.sources.tail_options import TailingSource, TailOptions, file_context


@register("source", "file", "Plain line-oriented log files, by glob.")
class FileSourceConfig(TailOptions):
    type: Literal["file"]
    paths: list[str] = Field(min_length=1)
    """Globs of files to follow, e.g. ``/var/log/kubelet.log``."""

    def build(self, cx: BuildContext) -> FileSource:
        return FileSource(self, cx)


class FileSource(TailingSource):
    def __init__(self, config: FileSourceConfig, cx: BuildContext) -> None:
        def context(link: str, real: str, key: str, id_prefix: str) -> FileContext:
            return file_context(
                source_id=cx.component_id,
                node=cx.node_name,
                path=real,
                key=key,
                id_prefix=id_prefix,
            )

        self.tailer = config.build_tailer(
            cx, include=list(config.paths), format="plain", context_factory=context
        )
