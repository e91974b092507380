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
applies to the lines read after them. The offset of the switch is written with the
file's checkpoint before any line read with the new choice leaves, so that a restart
(also after ``kill -9``) re-reads the bytes after the checkpoint with the choice they
were first read with and switches at the same offset: the lines are grouped as they
were the first time, and the store, which dropped or kept events by that grouping,
neither loses nor repeats a line (tailing/core.py `_switch_stages`).
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
    """What a source gives the tailer to choose a file's stages.

    A resolver may also have ``stages_for(key) -> FileStages | None``: the stages a
    `FileStages.key` names (None when it cannot rebuild them). The tailer records the
    keys of a file's settings with its checkpoint when they change after it, and a
    restart uses `stages_for` to re-read those bytes with the settings they were first
    read with; keys must then be JSON values (tuples come back as tuples). Without it,
    a restart reads with the settings of the moment."""

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
