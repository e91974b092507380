"""The ``parser`` setting: a parser's name, or a mapping with its options.

One model for every parser type rather than a tagged union: pydantic puts the tag of a
union member into an error's location (``parser.regex.pattern``), which names a key the
user never wrote; with one model the location is the key itself
(``sources.app.parser.pattern: ...``). Options that only some types take are checked in
`ParserConfig.check`, with a sentence naming the type.

Written in YAML as ``parser: json`` or::

    parser:
      type: regex
      pattern: '^(?P<time>\\S+) (?P<level>\\w+) (?P<msg>.*)$'
      types: {status: int}
      time_key: time
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from kubelogs.config.base import StrictModel
from kubelogs.parsing.times import check_time_format

__all__ = [
    "PARSER_TYPES",
    "ParserConfig",
    "ParserSetting",
    "ParserType",
    "parser_setting_from_text",
]

ParserType = Literal["json", "logfmt", "regex", "klog", "nginx", "apache", "syslog"]
PARSER_TYPES: tuple[str, ...] = get_args(ParserType)

RESERVED_KEYS = frozenset(
    {"@timestamp", "message", "stream", "log", "kubernetes", "host", "docker", "time", "event"}
)
"""Top-level keys kubelogs writes itself (DESIGN.md section 5, the fluentd names, and
ECS ``event.id``): a parsed key with one of these names is moved under the parser's
type name (``json.message``) instead of clashing."""

_DEFAULT_TIME_FORMAT: dict[str, str] = {
    "klog": "%m%d %H:%M:%S.%f",
    "nginx": "%d/%b/%Y:%H:%M:%S %z",
    "apache": "%d/%b/%Y:%H:%M:%S %z",
    "syslog": "syslog",
}
"""The format of the time field each built-in parser writes (syslog writes RFC 3339)."""

Cast = Literal["int", "float", "bool", "string"]


class ParserConfig(StrictModel):
    """How the message of each line is parsed into fields (beside the message)."""

    type: ParserType
    """The parser: ``json``, ``logfmt``, ``regex``, ``klog``, ``nginx``, ``apache`` or
    ``syslog`` (RFC 3164 and 5424)."""

    pattern: str | None = None
    """``regex`` only: an RE2 pattern whose named groups (``(?P<name>...)``) become
    fields. RE2 runs in time linear in the line's length (no backtracking), so no line
    can stall the agent; it has no backreferences or lookaround."""

    types: dict[str, Cast] = Field(default_factory=dict)
    """``regex`` and ``logfmt``: casts of named fields (``int``, ``float``, ``bool``);
    a value that does not convert is kept as a string."""

    target: str | None = None
    """Put the parsed fields under this key instead of at the top level of the document
    (``json`` and ``logfmt``, ``regex``)."""

    time_key: str | None = None
    """A parsed field (dotted path) holding the event's time: when set, a value that
    parses replaces the runtime's time (``@timestamp``); the field itself is kept."""

    time_format: str | None = None
    """``rfc3339`` (the default), ``unix``, ``unix_ms``, ``unix_us``, ``unix_ns`` or a
    strftime pattern. The built-in parsers know the format of their own time field."""

    level_key: str | None = None
    """The parsed field holding the level, normalised into ``log.level``; by default
    the first of ``level``, ``lvl``, ``severity``, ``loglevel``, ``levelname``."""

    @field_validator("target", "time_key", "level_key")
    @classmethod
    def _not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip(". "):
            raise ValueError("must name a field, not be empty")
        return value

    @field_validator("time_format")
    @classmethod
    def _time_format(cls, value: str | None) -> str | None:
        if value is not None:
            problem = check_time_format(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            from kubelogs.parsing.regex import compile_pattern

            compile_pattern(value)  # ValueError with RE2's reason
        return value

    @model_validator(mode="after")
    def check(self) -> ParserConfig:
        if self.type == "regex":
            if self.pattern is None:
                raise ValueError("a regex parser needs `pattern` (an RE2 pattern)")
            from kubelogs.parsing.regex import compile_pattern

            groups = compile_pattern(self.pattern).groups
            unknown = sorted(set(self.types) - set(groups))
            if unknown:
                raise ValueError(
                    f"`types` names {', '.join(unknown)}, which the pattern has no "
                    f"named group for (groups: {', '.join(groups) or 'none'})"
                )
        elif self.pattern is not None:
            raise ValueError(f"`pattern` is for the regex parser, not for {self.type}")
        if self.types and self.type not in ("regex", "logfmt"):
            raise ValueError(f"`types` is for the regex and logfmt parsers, not for {self.type}")
        if self.target is not None and self.type not in ("json", "logfmt", "regex"):
            raise ValueError(
                f"`target` is for the json, logfmt and regex parsers; {self.type} writes "
                "known fields (ECS names) at the top level"
            )
        if self.target is not None and self.target in RESERVED_KEYS:
            raise ValueError(f"target {self.target!r} is a field kubelogs writes itself")
        return self

    def __hash__(self) -> int:
        # Hashable although `types` is a dict, so sources can keep one built parser
        # per distinct setting (`{setting: build_parser(setting)}`).
        return hash(self.model_dump_json())

    @property
    def effective_time_format(self) -> str:
        return self.time_format or _DEFAULT_TIME_FORMAT.get(self.type, "rfc3339")


def _from_text(value: Any) -> Any:
    if isinstance(value, str):
        return _mapping_from_text(value)
    return value


def _mapping_from_text(text: str) -> dict[str, str]:
    name = text.strip().lower()
    if name in PARSER_TYPES:
        return {"type": name}
    head, colon, pattern = text.partition(":")
    if colon and head.strip().lower() == "regex":
        return {"type": "regex", "pattern": pattern}
    raise ValueError(
        f"unknown parser {text!r}; use one of: {', '.join(PARSER_TYPES)}, or regex:<pattern>"
    )


ParserSetting = Annotated[ParserConfig, BeforeValidator(_from_text)]
"""A config key's type: ``parser: json`` or ``parser: {type: regex, pattern: ...}``."""


def parser_setting_from_text(text: str) -> ParserConfig:
    """The setting of a pod annotation (``kubelogs.io/parser: json``, or
    ``regex:<pattern>``); ValueError with a one-line reason when it is not valid."""
    try:
        return ParserConfig.model_validate(_mapping_from_text(text))
    except ValidationError as exc:
        reasons = []
        for e in exc.errors(include_url=False):
            msg = str(e["msg"]).removeprefix("Value error, ")
            where = ".".join(str(p) for p in e["loc"])
            reasons.append(f"{where}: {msg}" if where else msg)
        raise ValueError(f"parser {text!r}: {'; '.join(reasons)}") from None
