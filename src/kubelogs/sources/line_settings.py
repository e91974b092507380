"""Which multiline rule and parser a file gets: source config, selectors, annotations.

Precedence, per setting (``multiline`` and ``parser`` are chosen independently):

1. the pod's annotation for the container, ``kubelogs.io/<setting>-<container>``;
2. the pod's annotation, ``kubelogs.io/<setting>``;
3. the first entry of the source's ``overrides`` whose ``match`` fits the file
   (``namespace``, ``pod``, ``container``, ``path``: globs, all given ones must match)
   and that sets the key;
4. the source's own key.

``none`` at any level turns the setting off for what it covers. An annotation whose
value is invalid (an unknown preset, a broken regex) is logged once and ignored: the
next level applies. Annotations are read from the pod watcher that the
`kubernetes_metadata` transform shares (``cx.shared``), so they need that transform;
when the watcher's cache changes (a pod's metadata arrives after its file was opened,
an annotation is edited) the tailer asks again (tailing/stages.py).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Hashable
from fnmatch import fnmatchcase
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PrivateAttr, field_validator, model_validator

from kubelogs.codecs.multiline import MultilineSpec
from kubelogs.codecs.multiline_rules import PRESETS, PatternRule, preset_rule
from kubelogs.config.base import BuildContext, StrictModel
from kubelogs.config.units import Duration, Size
from kubelogs.parsing import ParserConfig, ParserSetting, build_parser, parser_setting_from_text
from kubelogs.pipeline.event import FileContext
from kubelogs.tailing.stages import NO_STAGES, FileStages

log = logging.getLogger("kubelogs.sources")

ANNOTATION_PREFIX = "kubelogs.io/"
_WATCHER_MODULE = "kubelogs.kubernetes.pod_watcher"
_MAX_WARNED = 1024
"""Distinct bad annotation values remembered (each is logged once)."""


def compile_regex(value: str) -> re.Pattern[str]:
    """`value` compiled, or a ValueError naming what is wrong with it."""
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None


class MultilineRules(StrictModel):
    """How lines are joined into one event: a preset, or patterns."""

    preset: Literal["java", "python", "go", "ruby", "dotnet", "php", "none"] | None = None
    """A built-in rule set (``none``: no joining). Exclusive with the patterns."""
    start_pattern: str | None = None
    """A line matching this regex starts a new event."""
    continue_pattern: str | None = None
    """Only lines matching this regex continue the open event (with `negate`: only lines
    that do not match it)."""
    end_pattern: str | None = None
    """A line matching this regex is the last line of its event."""
    negate: bool = False
    """Invert `continue_pattern`, as Filebeat's ``negate``."""
    max_lines: int = Field(500, ge=1)
    """Lines per event at most; the next line starts a new event (bounds memory)."""
    max_bytes: Size = 1024 * 1024
    """Bytes per event at most; the line that would pass it starts a new event."""
    timeout: Duration = Field(1.0, gt=0)
    """An event that stops growing for this long is sent; a line written more than this
    after the previous one (by the container runtime's clock) starts a new event. Every
    line may wait this long (plus half a second) for a continuation."""

    @field_validator("start_pattern", "continue_pattern", "end_pattern")
    @classmethod
    def _check_regex(cls, value: str | None) -> str | None:
        if value is not None:
            compile_regex(value)
        return value

    @model_validator(mode="after")
    def _check_shape(self) -> MultilineRules:
        patterns = (self.start_pattern, self.continue_pattern, self.end_pattern)
        given = any(p is not None for p in patterns)
        if self.preset is not None and given:
            raise ValueError("preset and start/continue/end_pattern are mutually exclusive")
        if self.preset is None and not given:
            raise ValueError(
                "give a preset (java, python, go, ruby, dotnet, php) or at least one of "
                "start_pattern, continue_pattern, end_pattern"
            )
        if self.negate and self.continue_pattern is None:
            raise ValueError("negate inverts continue_pattern, which is not set")
        return self

    @property
    def disabled(self) -> bool:
        return self.preset == "none"

    def spec(self) -> MultilineSpec | None:
        """The compiled rule (None for ``none``)."""
        if self.preset == "none":
            return None
        if self.preset is not None:
            rule: Any = preset_rule(self.preset)
            name: str = self.preset
        else:
            rule = PatternRule(
                _maybe(self.start_pattern),
                _maybe(self.continue_pattern),
                _maybe(self.end_pattern),
                self.negate,
            )
            name = "custom"
        return MultilineSpec(
            rule=rule,
            max_lines=self.max_lines,
            max_bytes=self.max_bytes,
            timeout=self.timeout,
            name=name,
        )


def _maybe(pattern: str | None) -> re.Pattern[str] | None:
    return None if pattern is None else re.compile(pattern)


def _multiline_from_text(value: Any) -> Any:
    """``java`` is short for ``{preset: java}``."""
    if isinstance(value, str):
        text = value.strip()
        if text in (*PRESETS, "none"):
            return {"preset": text}
        raise ValueError(
            f"{value!r} is not a multiline preset; use one of {', '.join(PRESETS)}, none, "
            "or a mapping with start_pattern/continue_pattern/end_pattern"
        )
    return value


MultilineSetting = Annotated[MultilineRules, BeforeValidator(_multiline_from_text)]


def multiline_from_annotation(text: str) -> MultilineRules:
    """An annotation's value: a preset name, ``none``, or a regex that starts an event
    (lines not matching it continue the one before, as Filebeat's ``negate: true``,
    ``match: after``). ValueError when it is none of these."""
    text = text.strip()
    if text in (*PRESETS, "none"):
        return MultilineRules(preset=text)
    compile_regex(text)
    return MultilineRules(start_pattern=text)


class OverrideMatch(StrictModel):
    """Which files an override applies to: every key given must match (globs)."""

    namespace: str | None = None
    pod: str | None = None
    container: str | None = None
    path: str | None = None
    """The file's path (the real one, under /var/log/pods for containers)."""

    @model_validator(mode="after")
    def _check_any(self) -> OverrideMatch:
        if not any((self.namespace, self.pod, self.container, self.path)):
            raise ValueError("give at least one of namespace, pod, container, path")
        return self

    def matches(self, ctx: FileContext) -> bool:
        for pattern, value in (
            (self.namespace, ctx.namespace),
            (self.pod, ctx.pod),
            (self.container, ctx.container),
            (self.path, ctx.path),
        ):
            if pattern is not None and not fnmatchcase(value, pattern):
                return False
        return True


class Override(StrictModel):
    """Settings for the files that `match` selects; the first matching entry that sets
    a key wins for that key."""

    match: OverrideMatch
    multiline: MultilineSetting | None = None
    """As the source's `multiline`; unset: the source's applies."""
    parser: ParserSetting | None = None
    """As the source's `parser` (``none``: no parser for these files); unset: the
    source's applies."""
    _parser_off: bool = PrivateAttr(False)

    @model_validator(mode="wrap")
    @classmethod
    def _parser_none(cls, data: Any, handler: Any) -> Override:
        # ``parser: none`` is not a parser: kept out of the parser's own validation.
        off = isinstance(data, dict) and data.get("parser") == "none"
        if off:
            data = {k: v for k, v in data.items() if k != "parser"}
        model: Override = handler(data)
        if off:
            model._parser_off = True
        return model

    @property
    def sets_parser(self) -> bool:
        return self.parser is not None or self._parser_off


_OFF = "none"


class StageChooser:
    """The `StageResolver` of a file-reading source (see the module docstring).

    Compiled choices are cached by value, so every file with the same settings shares
    one rule object and one parser.
    """

    def __init__(
        self,
        *,
        multiline: MultilineRules | None,
        parser: ParserConfig | None,
        overrides: list[Override],
        shared: dict[str, Any] | None,
        source_id: str,
    ) -> None:
        self._multiline = multiline
        self._parser = parser
        self._overrides = overrides
        self._shared = shared
        self._source_id = source_id
        self._compiled: dict[Hashable, FileStages] = {}
        self._parsed: dict[tuple[str, str], Any] = {}
        """Annotation values already parsed (or the error they gave)."""
        self._warned: set[tuple[str, str, str]] = set()

    def _cache(self) -> Any:
        if self._shared is None or _WATCHER_MODULE not in sys.modules:
            return None  # no pod watcher in this process (see sources/kubernetes_logs.py)
        from kubelogs.kubernetes.pod_watcher import find_pod_watcher

        watcher = find_pod_watcher(self._shared)
        return None if watcher is None else watcher.cache

    def version(self) -> int:
        cache = self._cache()
        return -1 if cache is None else int(cache.version)

    def resolve(self, ctx: FileContext) -> FileStages:
        multiline = self._multiline
        parser = self._parser
        ml_set = parser_set = False
        for o in self._overrides:
            if (ml_set or o.multiline is None) and (parser_set or not o.sets_parser):
                continue
            if not o.match.matches(ctx):
                continue
            if not ml_set and o.multiline is not None:
                multiline, ml_set = o.multiline, True
            if not parser_set and o.sets_parser:
                parser, parser_set = o.parser, True
            if ml_set and parser_set:
                break
        annotations = self._annotations(ctx)
        if annotations:
            found_ml = self._annotation(ctx, annotations, "multiline", multiline_from_annotation)
            if found_ml is not None:
                multiline = found_ml
            found_parser = self._annotation(ctx, annotations, "parser", _parser_from_annotation)
            if found_parser is not None:
                parser = None if found_parser == _OFF else found_parser
        if multiline is not None and multiline.disabled:
            multiline = None
        if multiline is None and parser is None:
            return NO_STAGES
        key: Hashable = _key(multiline, parser)
        stages = self._compiled.get(key)
        if stages is None:
            stages = self._compiled[key] = FileStages(
                multiline=multiline.spec() if multiline is not None else None,
                parse=build_parser(parser) if parser is not None else None,
                key=key,
            )
        return stages

    def stages_for(self, key: Hashable) -> FileStages | None:
        """The stages a `FileStages.key` names: a key an earlier run recorded in a file's
        checkpoint, when the file's settings changed after it (tailing/checkpoints.py).
        None when the key is not one of ours or its settings are no longer valid."""
        if key is None:
            return NO_STAGES
        stages = self._compiled.get(key)
        if stages is not None:
            return stages
        if not (isinstance(key, tuple) and len(key) == 2):
            return None
        ml_json, parser_json = key
        try:
            multiline = (
                MultilineRules.model_validate_json(ml_json) if isinstance(ml_json, str) else None
            )
            parser = (
                ParserConfig.model_validate_json(parser_json)
                if isinstance(parser_json, str)
                else None
            )
        except ValueError:
            return None
        rebuilt = _key(multiline, parser)
        if rebuilt != key or rebuilt == (None, None):
            return None  # another version's settings: they would not read the same
        stages = self._compiled[key] = FileStages(
            multiline=multiline.spec() if multiline is not None else None,
            parse=build_parser(parser) if parser is not None else None,
            key=key,
        )
        return stages

    def _annotations(self, ctx: FileContext) -> dict[str, str] | None:
        if not (ctx.pod or ctx.pod_uid):
            return None
        cache = self._cache()
        if cache is None:
            return None
        entry = cache.lookup(ctx.pod_uid, ctx.namespace, ctx.pod)
        if entry is None:
            return None
        found: dict[str, str] = entry.record.annotations
        return found

    def _annotation(
        self,
        ctx: FileContext,
        annotations: dict[str, str],
        setting: str,
        parse: Callable[[str], Any],
    ) -> Any:
        """The first valid value of ``kubelogs.io/<setting>-<container>`` and
        ``kubelogs.io/<setting>``, parsed; invalid ones are logged once and skipped."""
        for name in (
            f"{ANNOTATION_PREFIX}{setting}-{ctx.container}",
            f"{ANNOTATION_PREFIX}{setting}",
        ):
            text = annotations.get(name)
            if not text:
                continue
            # Parsed once per distinct value: files are resolved again at every change
            # of the pod cache, and validating a setting costs tens of microseconds.
            found = self._parsed.get((setting, text))
            if found is None:
                try:
                    found = parse(text)
                except ValueError as exc:
                    found = exc
                if len(self._parsed) >= _MAX_WARNED:
                    self._parsed.clear()
                self._parsed[(setting, text)] = found
            if isinstance(found, ValueError):
                self._warn_once(ctx, name, text, str(found))
                continue
            return found
        return None

    def _warn_once(self, ctx: FileContext, name: str, text: str, why: str) -> None:
        key = (ctx.pod_uid or f"{ctx.namespace}/{ctx.pod}", name, text)
        if key in self._warned:
            return
        if len(self._warned) >= _MAX_WARNED:
            self._warned.clear()
        self._warned.add(key)
        log.warning(
            "source %s: pod %s/%s: annotation %s ignored: %s",
            self._source_id,
            ctx.namespace,
            ctx.pod,
            name,
            why,
        )


def _key(multiline: MultilineRules | None, parser: ParserConfig | None) -> tuple[Any, Any]:
    """`FileStages.key` of a choice: the settings as JSON without their defaults, short
    because checkpoints record it (tailing/checkpoints.py) and enough to rebuild them."""
    return (
        multiline.model_dump_json(exclude_defaults=True) if multiline is not None else None,
        parser.model_dump_json(exclude_defaults=True) if parser is not None else None,
    )


def _parser_from_annotation(text: str) -> ParserConfig | str:
    """``none``, or a parser setting (ValueError when invalid)."""
    if text.strip() == _OFF:
        return _OFF
    return parser_setting_from_text(text)


def stage_chooser(
    *,
    multiline: MultilineRules | None,
    parser: ParserConfig | None = None,
    overrides: list[Override],
    cx: BuildContext,
    annotations: bool,
) -> StageChooser | None:
    """The chooser for a source; None when nothing can ever be chosen (the fast path)."""
    if multiline is None and parser is None and not overrides and not annotations:
        return None
    return StageChooser(
        multiline=multiline,
        parser=parser,
        overrides=overrides,
        shared=cx.shared if annotations else None,
        source_id=cx.component_id,
    )
