"""Config keys shared by the file-reading sources (`kubernetes_logs`, `file`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Literal

from pydantic import Field

from kubelogs.config.base import BuildContext, SourceConfig
from kubelogs.config.units import Duration, Size
from kubelogs.kubernetes.document_meta import encode_meta
from kubelogs.parsing import ParserSetting
from kubelogs.pipeline.event import FileContext
from kubelogs.pipeline.runtime import Output
from kubelogs.sources.line_settings import MultilineSetting, Override, stage_chooser
from kubelogs.tailing.checkpoints import shared_checkpoint_store
from kubelogs.tailing.discovery import ContextFactory, Match
from kubelogs.tailing.tailer import Tailer, TailSettings


class TailOptions(SourceConfig):
    exclude: list[str] = Field(default_factory=list)
    """Globs matched against the same paths as `include`; a match is not read."""
    read_from: Literal["beginning", "end"] = "beginning"
    """Where files start on the source's very first run (recorded in the checkpoint
    database): ``beginning`` reads everything there, rotated files included; ``end``
    starts after each live file's last complete line and skips rotated files. Every
    file that appears after the first run is read from its beginning."""
    max_line_size: Size = 1024 * 1024
    """Longer messages are cut at this size and flagged `log.flags: ["truncated"]`."""
    read_chunk: Size = 256 * 1024
    """Bytes read from one file before moving on to the next (fairness and batch size)."""
    glob_interval: Duration = 1.0
    """How often paths are globbed for new, rotated and removed files."""
    poll_interval: Duration = 0.05
    """How long to wait when no file had new data."""
    rotate_wait: Duration = 5.0
    """How long a rotated file that is not deleted is still watched for late writes."""
    checkpoint_interval: Duration = 1.0
    """How often acknowledged offsets are written to the checkpoint database."""
    multiline: MultilineSetting | None = None
    """Join the lines of one message (stack traces) into one event: a preset (``java``,
    ``python``, ``go``, ``ruby``, ``dotnet``, ``php``), ``none``, or ``{start_pattern,
    continue_pattern, end_pattern, negate, max_lines, max_bytes, timeout}``. Applied per
    stream after the runtime's partial lines are joined; the pod annotation
    ``kubelogs.io/multiline`` (or ``…-<container>``) overrides it."""
    parser: ParserSetting | None = None
    """Parse each message (after multiline joining) into fields beside it: ``json``,
    ``logfmt``, ``klog``, ``nginx``, ``apache``, ``syslog`` or ``{type: regex, pattern}``
    (kubelogs.parsing). The pod annotation ``kubelogs.io/parser`` (or
    ``…-<container>``) overrides it."""
    overrides: list[Override] = Field(default_factory=list)
    """Per-file settings: ``[{match: {namespace, pod, container, path}, parser,
    multiline}]`` (globs); for each key the first entry that matches and sets it wins."""

    def build_tailer(
        self,
        cx: BuildContext,
        *,
        include: list[str],
        format: str,
        context_factory: ContextFactory,
        accept: Callable[[str], bool] | None = None,
        extra_paths: Callable[[], Iterable[Match]] | None = None,
        annotations: bool = False,
    ) -> Tailer:
        """The tailing engine with these options, sharing the process's checkpoints."""
        settings = TailSettings(
            source_id=cx.component_id,
            source_type=self.type,
            include=include,
            exclude=list(self.exclude),
            read_from=self.read_from,
            max_line_size=self.max_line_size,
            format=format,
            node_name=cx.node_name,
            context_factory=context_factory,
            accept=accept or (lambda _path: True),
            read_chunk=self.read_chunk,
            glob_interval=self.glob_interval,
            poll_interval=self.poll_interval,
            rotate_wait=self.rotate_wait,
            checkpoint_interval=self.checkpoint_interval,
            extra_paths=extra_paths or (lambda: ()),
            stages=stage_chooser(
                multiline=self.multiline,
                parser=self.parser,
                overrides=list(self.overrides),
                cx=cx,
                annotations=annotations,
            ),
        )
        return Tailer(settings, shared_checkpoint_store(cx.shared, cx.data_dir), cx.metrics)


def file_context(
    *,
    source_id: str,
    node: str,
    path: str,
    key: str,
    id_prefix: str,
    namespace: str = "",
    pod: str = "",
    pod_uid: str = "",
    container: str = "",
    container_id: str = "",
) -> FileContext:
    """The context of one file, with the metadata its path tells encoded once."""
    ecs, fluentd = encode_meta(
        namespace=namespace,
        pod=pod,
        pod_uid=pod_uid,
        container=container,
        container_id=container_id,
        node=node,
    )
    return FileContext(
        source_id=source_id,
        path=path,
        file_key=key,
        id_prefix=id_prefix,
        node=node,
        namespace=namespace,
        pod=pod,
        pod_uid=pod_uid,
        container=container,
        container_id=container_id,
        meta_ecs=ecs,
        meta_fluentd=fluentd,
    )


class TailingSource:
    """A source that is a `Tailer`: the runner's hooks delegate to it."""

    tailer: Tailer

    async def prepare(self) -> None:
        self.tailer.prepare()

    async def run(self, out: Output, stopping: asyncio.Event) -> None:
        await self.tailer.run(out, stopping)

    async def close(self) -> None:
        self.tailer.close()
