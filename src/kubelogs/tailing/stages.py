"""Per-file processing chosen by the source: multiline joining and a parser.

The source decides, per file, from its config (per-container selectors) and the pod's
annotations, which multiline rule joins the file's lines and which parser turns the
joined messages into fields (sources/line_settings.py). The tailer only applies the
answer: the multiline stage wraps the file's line parser, so it sits behind the CRI /
Docker partial join and its open groups hold the file's checkpoint like partial lines
do; the parser runs on every batch the file emits, before it leaves the source.

Settings can change while a file is open - the pod's metadata arrives after its file
was opened, an annotation is edited - so the resolver has a `version`; when it moves,
every open file is resolved again and, if its choice changed, its open groups are
emitted as they are (in offset order, nothing lost or repeated) before the new choice
applies to the lines read after them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol

from kubelogs.codecs.multiline import MultilineParser, MultilineSpec
from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.tailing.files import LineParser

log = logging.getLogger("kubelogs.tail")

BatchParser = Callable[[Batch], Batch]


@dataclass(frozen=True, slots=True)
class FileStages:
    """What one file gets: a multiline rule and a parser, each optional."""

    multiline: MultilineSpec | None = None
    parse: BatchParser | None = None
    key: Hashable = None
    """Equal keys mean equal choices (so a re-resolve that changes nothing is free)."""


NO_STAGES = FileStages()


class StageResolver(Protocol):
    def version(self) -> int:
        """Changes whenever `resolve` may answer differently (e.g. the pod cache moved)."""

    def resolve(self, ctx: FileContext) -> FileStages: ...


def wrap_parser(parser: LineParser, spec: MultilineSpec | None) -> LineParser:
    """`parser` (unwrapped first) behind the multiline stage `spec`, or bare."""
    inner = parser.inner if isinstance(parser, MultilineParser) else parser
    return MultilineParser(inner, spec) if spec is not None else inner


class ParseGuard:
    """Runs a file's parser on a batch; a parser that raises never stops the source.

    Error handling: the batch goes on unparsed, the error is logged at most once a
    minute per source and counted by the caller.
    """

    __slots__ = ("_last_log", "errors")

    def __init__(self) -> None:
        self._last_log = 0.0
        self.errors = 0

    def __call__(self, parse: BatchParser, batch: Batch) -> Batch:
        try:
            return parse(batch)
        except Exception as exc:
            self.errors += 1
            now = time.monotonic()
            if now - self._last_log > 60:
                self._last_log = now
                log.warning(
                    "parser failed on a batch of %s; its events go on unparsed: %s",
                    batch.ctx.path,
                    exc,
                )
            return batch
