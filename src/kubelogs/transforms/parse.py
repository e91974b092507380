"""`parse`: apply one parser to every event that passes through.

Sources parse per container and per pod (``parser:`` on a source, the
``kubelogs.io/parser`` annotation); this transform is for everything else: a parser
after any source or after another transform (an aggregator parsing what agents sent,
the `file` source's lines), and the benchmark of the parsers' cost.
"""

from __future__ import annotations

from typing import Literal

from kubelogs.config.base import BuildContext, TransformConfig
from kubelogs.config.registry import register
from kubelogs.parsing import BatchParser, ParserSetting, build_parser
from kubelogs.pipeline.event import Batch


@register(
    "transform",
    "parse",
    "Parse each event's message (json, logfmt, regex, klog, nginx, apache, syslog) "
    "into fields beside it.",
)
class ParseConfig(TransformConfig):
    """Parse every event's message with one parser; lines that do not parse pass
    unchanged with the flag ``parse_error``."""

    type: Literal["parse"]
    parser: ParserSetting
    """A parser name (``json``) or ``{type: regex, pattern: ..., time_key: ...}``."""

    def build(self, cx: BuildContext) -> ParseTransform:
        return ParseTransform(build_parser(self.parser))


class ParseTransform:
    """Pure: a batch in, the same events with fields out (never drops one)."""

    def __init__(self, parser: BatchParser) -> None:
        self._parser = parser

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def process(self, batch: Batch) -> Batch | None:
        return self._parser(batch)
