"""Choosing a file's multiline rule: source key, per-container overrides, pod annotations
(read from the shared pod watcher's cache), and their precedence."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from kubelogs.config.base import BuildContext
from kubelogs.kubernetes.metadata_cache import PodRecord
from kubelogs.kubernetes.pod_watcher import WatcherSettings, get_pod_watcher
from kubelogs.pipeline.event import FileContext
from kubelogs.sources.line_settings import (
    MultilineRules,
    MultilineSetting,
    Override,
    multiline_from_annotation,
    stage_chooser,
)
from kubelogs.telemetry.metrics import Metrics

SETTING: TypeAdapter[MultilineRules] = TypeAdapter(MultilineSetting)


def ctx(namespace: str = "shop", pod: str = "api-7d4b9", container: str = "app") -> FileContext:
    return FileContext(
        source_id="logs",
        path=f"/var/log/pods/{namespace}_{pod}_uid-{pod}/{container}/0.log",
        file_key="k",
        id_prefix="p",
        namespace=namespace,
        pod=pod,
        pod_uid=f"uid-{pod}",
        container=container,
    )


def build_cx(tmp_path: Path) -> BuildContext:
    return BuildContext("logs", tmp_path, "node-1", Metrics())


def chosen(chooser: Any, c: FileContext) -> str | None:
    spec = chooser.resolve(c).multiline
    return None if spec is None else str(spec.name)


def overrides(*items: dict[str, Any]) -> list[Override]:
    return [Override.model_validate(i) for i in items]


class TestSettingShape:
    def test_preset_name_is_short_for_a_mapping(self) -> None:
        assert "java" == SETTING.validate_python("java").preset

    def test_unknown_preset_is_refused_with_the_choices(self) -> None:
        with pytest.raises(
            ValidationError, match="'jav' is not a multiline preset; use one of java"
        ):
            SETTING.validate_python("jav")

    def test_bad_regex_is_refused_naming_the_pattern(self) -> None:
        with pytest.raises(ValidationError, match=r"'\(at' is not a valid regular expression"):
            SETTING.validate_python({"start_pattern": "(at"})

    def test_preset_and_patterns_are_exclusive(self) -> None:
        with pytest.raises(ValidationError, match="mutually exclusive"):
            SETTING.validate_python({"preset": "java", "start_pattern": "^x"})

    def test_negate_needs_continue_pattern(self) -> None:
        with pytest.raises(ValidationError, match="negate inverts continue_pattern"):
            SETTING.validate_python({"start_pattern": "^x", "negate": True})

    def test_annotation_value_may_be_a_start_regex(self) -> None:
        rules = multiline_from_annotation(r"^\d{4}-")

        assert r"^\d{4}-" == rules.start_pattern

    def test_annotation_value_that_is_a_broken_regex_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="not a valid regular expression"):
            multiline_from_annotation("(")


class TestChooser:
    def test_source_setting_applies_to_every_file(self, tmp_path: Path) -> None:
        chooser = stage_chooser(
            multiline=SETTING.validate_python("python"),
            overrides=[],
            cx=build_cx(tmp_path),
            annotations=False,
        )

        assert "python" == chosen(chooser, ctx())

    def test_no_setting_anywhere_needs_no_chooser(self, tmp_path: Path) -> None:
        """The fast path: no multiline, no overrides, no annotations - no per-file work."""
        assert None is stage_chooser(
            multiline=None, overrides=[], cx=build_cx(tmp_path), annotations=False
        )

    def test_first_matching_override_wins(self, tmp_path: Path) -> None:
        chooser = stage_chooser(
            multiline=SETTING.validate_python("python"),
            overrides=overrides(
                {
                    "match": {"namespace": "shop", "pod": "api-*", "container": "app"},
                    "multiline": "java",
                },
                {"match": {"pod": "api-*"}, "multiline": "go"},
                {"match": {"namespace": "batch"}, "multiline": "none"},
            ),
            cx=build_cx(tmp_path),
            annotations=False,
        )

        assert "java" == chosen(chooser, ctx())
        assert "go" == chosen(chooser, ctx(container="sidecar"))
        assert None is chosen(chooser, ctx(namespace="batch", pod="job-1"))
        assert "python" == chosen(chooser, ctx(pod="web-1"))

    def test_override_without_multiline_falls_through(self, tmp_path: Path) -> None:
        chooser = stage_chooser(
            multiline=None,
            overrides=overrides(
                {"match": {"pod": "api-*"}},
                {"match": {"pod": "api-*"}, "multiline": "ruby"},
            ),
            cx=build_cx(tmp_path),
            annotations=False,
        )

        assert "ruby" == chosen(chooser, ctx())

    def test_override_match_needs_a_key(self) -> None:
        with pytest.raises(ValidationError, match="at least one of namespace, pod, container"):
            Override.model_validate({"match": {}, "multiline": "java"})


class TestAnnotations:
    def cache(self, tmp_path: Path, cx: BuildContext) -> Any:
        watcher = get_pod_watcher(cx.shared, WatcherSettings(node_name="node-1"), data_dir=None)
        return watcher.cache

    def put(self, cache: Any, annotations: dict[str, str], pod: str = "api-7d4b9") -> None:
        cache.put(PodRecord(uid=f"uid-{pod}", name=pod, namespace="shop", annotations=annotations))

    def test_annotation_wins_over_config_and_container_form_wins(self, tmp_path: Path) -> None:
        cx = build_cx(tmp_path)
        cache = self.cache(tmp_path, cx)
        chooser = stage_chooser(
            multiline=SETTING.validate_python("python"),
            overrides=overrides({"match": {"pod": "api-*"}, "multiline": "go"}),
            cx=cx,
            annotations=True,
        )
        assert chooser is not None
        self.put(
            cache,
            {"kubelogs.io/multiline": "java", "kubelogs.io/multiline-worker": "ruby"},
        )

        assert "java" == chosen(chooser, ctx())
        assert "ruby" == chosen(chooser, ctx(container="worker"))

    def test_annotation_none_turns_joining_off(self, tmp_path: Path) -> None:
        cx = build_cx(tmp_path)
        cache = self.cache(tmp_path, cx)
        chooser = stage_chooser(
            multiline=SETTING.validate_python("java"), overrides=[], cx=cx, annotations=True
        )
        self.put(cache, {"kubelogs.io/multiline": "none"})

        assert None is chosen(chooser, ctx())

    def test_version_moves_when_the_cache_learns_a_pod(self, tmp_path: Path) -> None:
        """A pod whose metadata arrives after its file was opened: the tailer sees the
        version move and resolves the file again."""
        cx = build_cx(tmp_path)
        chooser = stage_chooser(multiline=None, overrides=[], cx=cx, annotations=True)
        assert chooser is not None
        cache = self.cache(tmp_path, cx)
        before = chooser.version()
        assert None is chosen(chooser, ctx())

        self.put(cache, {"kubelogs.io/multiline": "go"})

        assert before != chooser.version()
        assert "go" == chosen(chooser, ctx())

    def test_bad_annotation_is_logged_once_and_ignored(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        cx = build_cx(tmp_path)
        cache = self.cache(tmp_path, cx)
        chooser = stage_chooser(
            multiline=SETTING.validate_python("python"), overrides=[], cx=cx, annotations=True
        )
        self.put(cache, {"kubelogs.io/multiline-app": "([", "kubelogs.io/multiline": "go"})

        with caplog.at_level(logging.WARNING, logger="kubelogs.sources"):
            first = chosen(chooser, ctx())
            again = chosen(chooser, ctx())

        assert ("go", "go") == (first, again)
        warnings = [r.getMessage() for r in caplog.records]
        assert 1 == len(warnings)
        assert "kubelogs.io/multiline-app ignored" in warnings[0]
        assert "shop/api-7d4b9" in warnings[0]


def batch_of(*messages: str) -> Any:
    from kubelogs.pipeline.event import Batch

    n = len(messages)
    return Batch(
        ctx=ctx(),
        times=[1] * n,
        messages=list(messages),
        streams=["stdout"] * n,
        offsets=list(range(n)),
    )


def parser_of(chooser: Any, c: FileContext) -> str | None:
    """The parser chosen for `c`, named by what it makes of probe lines."""
    parse = chooser.resolve(c).parse
    if parse is None:
        return None
    out = parse(batch_of('{"a": 1}', "a=1 b=2"))
    fields = out.fields or {}
    return {(0,): "json", (1,): "logfmt"}.get(tuple(sorted(fields)), repr(fields))


class TestParserChoice:
    def test_source_parser_applies_after_multiline_choice(self, tmp_path: Path) -> None:
        from kubelogs.parsing import ParserSetting

        chooser = stage_chooser(
            multiline=SETTING.validate_python("java"),
            parser=TypeAdapter(ParserSetting).validate_python("json"),
            overrides=[],
            cx=build_cx(tmp_path),
            annotations=False,
        )
        stages = chooser.resolve(ctx()) if chooser else None

        assert stages is not None
        assert stages.multiline is not None
        assert "json" == parser_of(chooser, ctx())

    def test_overrides_choose_and_turn_off_parsers(self, tmp_path: Path) -> None:
        from kubelogs.parsing import ParserSetting

        chooser = stage_chooser(
            multiline=None,
            parser=TypeAdapter(ParserSetting).validate_python("json"),
            overrides=overrides(
                {"match": {"container": "proxy"}, "parser": "logfmt"},
                {"match": {"namespace": "legacy"}, "parser": "none"},
                {"match": {"pod": "api-*"}, "multiline": "java"},
            ),
            cx=build_cx(tmp_path),
            annotations=False,
        )

        assert "logfmt" == parser_of(chooser, ctx(container="proxy"))
        assert None is parser_of(chooser, ctx(namespace="legacy"))
        assert "json" == parser_of(chooser, ctx())  # the java entry sets no parser
        assert "java" == chosen(chooser, ctx())

    def test_unknown_parser_in_an_override_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="unknown parser 'jsn'"):
            Override.model_validate({"match": {"pod": "x"}, "parser": "jsn"})

    def test_parser_annotations_win_and_none_turns_parsing_off(self, tmp_path: Path) -> None:
        from kubelogs.parsing import ParserSetting

        cx = build_cx(tmp_path)
        cache = TestAnnotations().cache(tmp_path, cx)
        chooser = stage_chooser(
            multiline=None,
            parser=TypeAdapter(ParserSetting).validate_python("json"),
            overrides=[],
            cx=cx,
            annotations=True,
        )
        TestAnnotations().put(
            cache, {"kubelogs.io/parser": "logfmt", "kubelogs.io/parser-sidecar": "none"}
        )

        assert "logfmt" == parser_of(chooser, ctx())
        assert None is parser_of(chooser, ctx(container="sidecar"))

    def test_bad_parser_annotation_is_logged_once_and_ignored(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        from kubelogs.parsing import ParserSetting

        cx = build_cx(tmp_path)
        cache = TestAnnotations().cache(tmp_path, cx)
        chooser = stage_chooser(
            multiline=None,
            parser=TypeAdapter(ParserSetting).validate_python("json"),
            overrides=[],
            cx=cx,
            annotations=True,
        )
        TestAnnotations().put(cache, {"kubelogs.io/parser": "regex:(?P<x"})

        with caplog.at_level(logging.WARNING, logger="kubelogs.sources"):
            first = parser_of(chooser, ctx())
            again = parser_of(chooser, ctx())

        assert ("json", "json") == (first, again)
        assert 1 == len(caplog.records)
        assert "annotation kubelogs.io/parser ignored" in caplog.records[0].getMessage()


class TestRecordedKeys:
    """A key the tailer recorded in a checkpoint (as JSON) names the same stages in the
    next process: `stages_for` rebuilds them from the key alone."""

    def test_a_key_read_back_from_json_rebuilds_the_same_stages(self, tmp_path: Path) -> None:
        import json

        from kubelogs.parsing import ParserSetting
        from kubelogs.tailing.core import _hashable
        from kubelogs.tailing.stages import NO_STAGES

        def chooser() -> Any:
            return stage_chooser(
                multiline=SETTING.validate_python(
                    {"start_pattern": "^\\[", "timeout": "2s", "max_lines": 7}
                ),
                parser=TypeAdapter(ParserSetting).validate_python(
                    {"type": "logfmt", "level_key": "sev"}
                ),
                overrides=[],
                cx=build_cx(tmp_path),
                annotations=False,
            )

        key = chooser().resolve(ctx()).key
        fresh = chooser()  # the next process: nothing compiled yet
        stages = fresh.stages_for(_hashable(json.loads(json.dumps(key))))

        assert stages is not None
        assert key == stages.key
        assert stages.multiline is not None
        assert (7, 2.0) == (stages.multiline.max_lines, stages.multiline.timeout)
        rule = stages.multiline.rule
        assert (rule.step(0, "[x") < 0, rule.step(0, "x") >= 0) == (True, True)
        assert stages.parse is not None
        assert NO_STAGES is fresh.stages_for(None)
        assert None is fresh.stages_for(("{}", None))  # not settings of this version
        assert None is fresh.stages_for("java")
