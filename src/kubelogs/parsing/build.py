"""A `ParserConfig` -> the `BatchParser` that applies it to batches."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from kubelogs.parsing.rows import DEFAULT_LEVEL_KEYS, PARSE_ERROR, Finisher
from kubelogs.parsing.settings import RESERVED_KEYS, ParserConfig, parser_setting_from_text
from kubelogs.parsing.times import make_time_parser
from kubelogs.pipeline.event import Batch
from kubelogs.pipeline.gc_pause import gc_paused

__all__ = ["BatchParser", "LineParser", "build_parser"]

BatchParser = Callable[[Batch], Batch]
"""Pure: returns a new batch (same columns and ack token) with parsed fields and
flags added; never raises."""

LineParser = Callable[[Sequence[str]], tuple[list[int], list[dict[str, Any]]]]
"""Messages -> the rows that parsed (ascending) and their fields."""

_log = logging.getLogger(__name__)


class _Parser:
    """One configured parser: read the lines, then the shared finishing step."""

    __slots__ = ("_failed_once", "finish", "lines", "name")

    def __init__(self, name: str, lines: LineParser, finish: Finisher) -> None:
        self.name = name
        self.lines = lines
        self.finish = finish
        self._failed_once = False

    def __call__(self, batch: Batch) -> Batch:
        if not batch.messages:
            return batch
        # A few containers per line, alive until the batch is delivered: collected
        # after the batch is parsed, not while (`pipeline.gc_pause`).
        with gc_paused():
            try:
                return self.finish(batch, self.lines(batch.messages))
            except Exception:
                # A bug in a parser must not stop the pipeline or lose lines: the batch
                # goes on unparsed and flagged, and the first failure is logged in full.
                if not self._failed_once:
                    self._failed_once = True
                    _log.exception(
                        "the %s parser failed on a batch; its lines go on raw", self.name
                    )
                flags = dict(batch.flags or {})
                for row in range(len(batch.messages)):
                    old = flags.get(row, ())
                    if PARSE_ERROR not in old:
                        flags[row] = (*old, PARSE_ERROR)
                return batch.derive(flags=flags)

    def __repr__(self) -> str:
        return f"<parser {self.name}>"


def _line_parser(setting: ParserConfig) -> LineParser:
    kind = setting.type
    if kind == "json":
        from kubelogs.parsing.json import parse_json

        return parse_json
    if kind == "logfmt":
        from kubelogs.parsing.logfmt import logfmt_parser

        return logfmt_parser(setting.types)
    if kind == "regex":
        from kubelogs.parsing.regex import regex_parser

        assert setting.pattern is not None
        return regex_parser(setting.pattern, setting.types)
    if kind == "klog":
        from kubelogs.parsing.klog import parse_klog

        return parse_klog
    if kind in ("nginx", "apache"):
        from kubelogs.parsing.access import access_parser

        return access_parser(kind)
    from kubelogs.parsing.syslog import parse_syslog

    return parse_syslog


_GENERIC = ("json", "logfmt", "regex")
"""Parsers whose keys come from the line itself: clashes moved, levels looked for.
The built-in formats write known fields and set ``log.level`` themselves."""


def build_parser(setting: ParserConfig | str) -> BatchParser:
    """The parser for `setting` (a validated config, or a name / ``regex:<pattern>``;
    ValueError for text that is not a valid setting)."""
    if isinstance(setting, str):
        setting = parser_setting_from_text(setting)
    generic = setting.type in _GENERIC
    level_keys: tuple[str, ...] = ()
    if generic:
        level_keys = (setting.level_key,) if setting.level_key else DEFAULT_LEVEL_KEYS
    finish = Finisher(
        name=setting.type,
        clash=RESERVED_KEYS | {setting.type} if generic else frozenset(),
        target=setting.target,
        level_keys=level_keys,
        time_path=tuple(setting.time_key.split(".")) if setting.time_key else (),
        time_parser=make_time_parser(setting.effective_time_format) if setting.time_key else None,
    )
    return _Parser(setting.type, _line_parser(setting), finish)
