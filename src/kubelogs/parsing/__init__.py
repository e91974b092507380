"""Parsers: the message of each line -> fields beside it (JSON, logfmt, regex, klog,
nginx/apache access, syslog), column-wise over a `Batch`.

The interface sources and transforms use:

- `ParserSetting`: the type of a config key (``parser: json`` or
  ``parser: {type: regex, pattern: ...}``), validated by pydantic with the key's path;
- `parser_setting_from_text`: the same from a pod annotation
  (``kubelogs.io/parser: json``, ``regex:<pattern>``), ValueError when invalid;
- `build_parser(setting) -> BatchParser`: a pure ``Batch -> Batch`` that never raises.
  Parsed fields go to `Batch.fields` (nested dicts), a recognised level to
  ``log.level`` (normalised), lines that do not parse keep their message and get the
  flag `PARSE_ERROR` (``log.flags: ["parse_error"]``).
"""

from kubelogs.parsing.build import BatchParser, build_parser
from kubelogs.parsing.levels import NORMAL_LEVELS, normalise_level
from kubelogs.parsing.rows import PARSE_ERROR
from kubelogs.parsing.settings import (
    PARSER_TYPES,
    ParserConfig,
    ParserSetting,
    parser_setting_from_text,
)

__all__ = [
    "NORMAL_LEVELS",
    "PARSER_TYPES",
    "PARSE_ERROR",
    "BatchParser",
    "ParserConfig",
    "ParserSetting",
    "build_parser",
    "normalise_level",
    "parser_setting_from_text",
]
