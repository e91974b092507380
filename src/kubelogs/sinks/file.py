"""`file`: documents appended as NDJSON to a file (at-least-once).

The file is opened in append mode, unbuffered; each group of batches is one write (and
`fsync` when asked, for power-loss safety at a throughput cost). A resend after a crash
appends the resent lines again: downstream readers that need exactly-once use the event
ids of a store sink instead.

A full disk (or quota, or I/O error) never ends the sink: a write that fails, also one
that wrote only part of the payload first, is undone by truncating the file back to its
size before the write - every line stays one whole JSON document - and retried with
backoff (`ndjson_writer`), the events unacknowledged meanwhile. A file that cannot be
opened at start (no permission, no space for it) fails the start with one sentence that
names the sink, the path and the reason.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import Field

from kubelogs.config.base import BuildContext, SinkConfig
from kubelogs.config.registry import register
from kubelogs.pipeline.runtime import Input
from kubelogs.sinks.ndjson_writer import run_ndjson
from kubelogs.telemetry.metrics import ComponentMetrics

log = logging.getLogger("kubelogs.sinks")

_os_write = os.write
"""The write system call (a seam: tests put a full disk behind it)."""


@register("sink", "file", "Documents appended to a file as NDJSON.")
class FileSinkConfig(SinkConfig):
    type: Literal["file"]
    path: Path
    """The NDJSON file; its directory is created if missing."""
    schema_: Literal["ecs", "fluentd"] = Field("ecs", alias="schema")
    """Field names: ``ecs`` or ``fluentd``."""
    fsync: bool = False
    """fsync after each write: survives power loss, costs throughput. A process crash
    (even kill -9) never loses written data either way."""

    def build(self, cx: BuildContext) -> FileSink:
        return FileSink(
            self,
            ComponentMetrics(cx.metrics, cx.component_id, "sink", "file"),
            component_id=cx.component_id,
        )


class FileSinkOpenError(OSError):
    """The sink's file cannot be opened; ``str()`` is one sentence (the CLI prints it)."""

    def __str__(self) -> str:
        return str(self.strerror)


def _cut_torn_tail(path: Path) -> None:
    """A crash in the middle of a write leaves a last line without its newline. It was
    never acknowledged, so it will be sent again: cut it off, so that the next document
    does not run into it and every line stays one valid JSON document."""
    try:
        with open(path, "r+b") as f:
            size = f.seek(0, 2)
            if size == 0:
                return
            pos = size
            while pos > 0:
                step = min(65536, pos)
                f.seek(pos - step)
                chunk = f.read(step)
                nl = chunk.rfind(b"\n")
                if nl >= 0:
                    cut = pos - step + nl + 1
                    break
                pos -= step
            else:
                cut = 0
            if cut != size:
                log.warning("%s ended with a torn line (%d bytes); cut it off", path, size - cut)
                f.truncate(cut)
    except FileNotFoundError:
        return


class FileSink:
    def __init__(
        self, config: FileSinkConfig, metrics: ComponentMetrics, *, component_id: str = "file"
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.component_id = component_id
        try:
            config.path.parent.mkdir(parents=True, exist_ok=True)
            _cut_torn_tail(config.path)
            self._fd = os.open(
                config.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
        except OSError as exc:
            detail = exc.strerror or str(exc)  # the command line adds the errno's name
            if exc.filename is not None and str(exc.filename) != str(config.path):
                detail = f"{exc.filename}: {detail}"  # the directory could not be made
            raise FileSinkOpenError(
                exc.errno,
                f"sinks.{component_id}: cannot open {config.path} for appending: {detail}",
            ) from None
        self._clean_size: int | None = None
        """Where the file must be cut before the next write: set when undoing a failed
        write could not truncate (the torn bytes must never precede a document)."""

    async def run(self, inp: Input) -> None:
        await run_ndjson(
            inp,
            partial(self._append, fsync=self.config.fsync),
            schema=self.config.schema_,
            metrics=self.metrics,
            retry=True,
            target=f"file sink {self.component_id} ({self.config.path})",
        )

    def _append(self, payload: bytes, *, fsync: bool) -> None:
        """Append all of `payload`, or nothing: after a short or failed write (ENOSPC
        mid-payload) the file is truncated back to its size before, then the error is
        raised for the caller to retry."""
        fd = self._fd
        if self._clean_size is not None:
            os.ftruncate(fd, self._clean_size)
            self._clean_size = None
        before = os.fstat(fd).st_size
        try:
            view = memoryview(payload)
            while view:
                view = view[_os_write(fd, view) :]
            if fsync:
                os.fsync(fd)
        except BaseException:
            try:
                os.ftruncate(fd, before)
            except OSError:
                self._clean_size = before
            raise

    async def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
