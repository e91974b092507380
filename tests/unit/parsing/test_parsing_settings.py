"""The ``parser`` setting: names, mappings and annotation text, and the errors users see
(`kubelogs validate` as a subprocess prints them as ``path.to.key: message``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from kubelogs.parsing import PARSER_TYPES, ParserConfig, ParserSetting, parser_setting_from_text


class _Holder(BaseModel):
    parser: ParserSetting


class TestParserSetting:
    @pytest.mark.parametrize("name", PARSER_TYPES[:2] + PARSER_TYPES[3:])
    def test_a_name_is_a_setting(self, name: str) -> None:
        assert ParserConfig(type=name) == _Holder(parser=name).parser  # type: ignore[arg-type]

    def test_a_mapping_is_a_setting(self) -> None:
        held = _Holder.model_validate(
            {"parser": {"type": "regex", "pattern": r"(?P<n>\d+)", "types": {"n": "int"}}}
        )

        assert "regex" == held.parser.type
        assert {"n": "int"} == held.parser.types

    def test_validate_rejects_unknown_name(self) -> None:
        with pytest.raises(ValidationError, match="unknown parser 'jsonn'"):
            _Holder(parser="jsonn")  # type: ignore[arg-type]

    def test_validate_rejects_regex_without_pattern(self) -> None:
        with pytest.raises(ValidationError, match="needs `pattern`"):
            _Holder.model_validate({"parser": {"type": "regex"}})

    def test_validate_rejects_pattern_on_another_type(self) -> None:
        with pytest.raises(ValidationError, match="`pattern` is for the regex parser"):
            _Holder.model_validate({"parser": {"type": "json", "pattern": "(?P<a>x)"}})

    def test_validate_rejects_backreference(self) -> None:
        with pytest.raises(ValidationError, match="not a valid RE2 pattern"):
            _Holder.model_validate({"parser": {"type": "regex", "pattern": r"(?P<a>x)\1"}})

    def test_validate_rejects_pattern_without_named_group(self) -> None:
        with pytest.raises(ValidationError, match="no named group"):
            _Holder.model_validate({"parser": {"type": "regex", "pattern": r"(\d+)"}})

    def test_validate_rejects_cast_of_unknown_group(self) -> None:
        with pytest.raises(ValidationError, match="`types` names b"):
            _Holder.model_validate(
                {"parser": {"type": "regex", "pattern": "(?P<a>x)", "types": {"b": "int"}}}
            )

    def test_validate_rejects_bad_time_format(self) -> None:
        with pytest.raises(ValidationError, match="time_format 'iso'"):
            _Holder.model_validate({"parser": {"type": "json", "time_format": "iso"}})

    def test_validate_rejects_reserved_target(self) -> None:
        with pytest.raises(ValidationError, match="kubelogs writes itself"):
            _Holder.model_validate({"parser": {"type": "json", "target": "kubernetes"}})

    def test_validate_rejects_target_on_built_in_format(self) -> None:
        with pytest.raises(ValidationError, match="`target` is for the json"):
            _Holder.model_validate({"parser": {"type": "nginx", "target": "x"}})


class TestAnnotationText:
    def test_name(self) -> None:
        assert ParserConfig(type="klog") == parser_setting_from_text(" klog ")
        assert ParserConfig(type="json") == parser_setting_from_text("JSON")

    def test_regex_pattern(self) -> None:
        setting = parser_setting_from_text(r"regex:^(?P<level>\w+): (?P<msg>.*)$")

        assert "regex" == setting.type
        assert r"^(?P<level>\w+): (?P<msg>.*)$" == setting.pattern

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("yaml", "unknown parser 'yaml'; use one of: json"),
            ("regex:(a", "not a valid RE2 pattern: missing ): (a"),
            ("regex:a+", "no named group"),
            ("", "unknown parser ''"),
        ],
    )
    def test_invalid_text_raises_value_error_with_reason(self, text: str, reason: str) -> None:
        with pytest.raises(ValueError, match=r"^parser |^unknown parser ") as info:
            parser_setting_from_text(text)

        assert reason in str(info.value)
        assert "\n" not in str(info.value)


CONFIG = """\
sources:
  f: {type: file, paths: [/var/log/app.log]}
transforms:
  good: {type: parse, inputs: [f], parser: json}
  good_regex:
    type: parse
    inputs: [f]
    parser: {type: regex, pattern: '^(?P<status>\\d+)', types: {status: int}}
  unknown: {type: parse, inputs: [f], parser: jsonn}
  backref: {type: parse, inputs: [f], parser: {type: regex, pattern: '(?P<a>x)\\1'}}
  annotation_style: {type: parse, inputs: [f], parser: 'regex:(unclosed'}
sinks:
  out: {type: blackhole, inputs: [good, good_regex, unknown, backref, annotation_style]}
"""


def test_kubelogs_validate_names_the_key_of_a_bad_parser(tmp_path: Path) -> None:
    path = tmp_path / "kubelogs.yaml"
    path.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBELOGS_")}

    done = subprocess.run(
        [sys.executable, "-m", "kubelogs", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )

    assert 1 == done.returncode
    lines = done.stdout.splitlines() + done.stderr.splitlines()
    assert (
        "transforms.unknown.parser: unknown parser 'jsonn'; use one of: json, logfmt, regex, "
        "klog, nginx, apache, syslog, or regex:<pattern>"
    ) in lines
    assert (
        "transforms.backref.parser.pattern: not a valid RE2 pattern: invalid escape sequence: \\1"
    ) in lines
    assert any(line.startswith("transforms.annotation_style.parser.pattern: ") for line in lines)
    assert not any("good" in line for line in lines)
    assert "re2.cc" not in done.stderr  # RE2 does not print its own errors


def test_settings_are_hashable_and_equal_by_value() -> None:
    a = ParserConfig(type="regex", pattern="(?P<a>x)", types={"a": "int"})
    b = parser_setting_from_text("regex:(?P<a>x)").model_copy(update={"types": {"a": "int"}})

    assert a == b
    assert {a: 1}[b] == 1
    assert hash(ParserConfig(type="json")) != hash(ParserConfig(type="logfmt"))
