"""The forward source's and sink's config models: defaults and named rejections."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubelogs.config.errors import ConfigInvalid
from kubelogs.config.loader import load_config


def problems(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "k.yaml"
    path.write_text(text)
    with pytest.raises(ConfigInvalid) as err:
        load_config(path)
    return err.value.problems


AGGREGATOR = """
data_dir: {tmp}
sources:
  agents: {{type: forward{extra}}}
sinks:
  store: {{type: local, inputs: [agents]}}
"""


def test_aggregator_config_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "k.yaml"
    path.write_text(AGGREGATOR.format(tmp=tmp_path, extra=""))
    cfg = load_config(path)
    src = cfg.components["agents"]

    assert "0.0.0.0:24224" == src.address  # type: ignore[attr-defined]
    assert "fluent.tag" == src.tag_field  # type: ignore[attr-defined]


def test_validate_rejects_a_tag_pattern_without_named_groups(tmp_path: Path) -> None:
    got = problems(AGGREGATOR.format(tmp=tmp_path, extra=", tag_pattern: 'app\\..*'"), tmp_path)

    assert any("tag_pattern" in p and "named group" in p for p in got), got


def test_validate_rejects_a_bad_regex(tmp_path: Path) -> None:
    got = problems(AGGREGATOR.format(tmp=tmp_path, extra=", tag_pattern: '(?P<x>'"), tmp_path)

    assert any("tag_pattern" in p and "not a regular expression" in p for p in got), got


def test_validate_rejects_a_listen_address_without_port(tmp_path: Path) -> None:
    got = problems(AGGREGATOR.format(tmp=tmp_path, extra=", address: 'example.com'"), tmp_path)

    assert any("address" in p and "no port" in p for p in got), got


def test_validate_rejects_a_sink_server_without_port(tmp_path: Path) -> None:
    text = f"""
data_dir: {tmp_path}
sources:
  logs: {{type: file, paths: [/var/log/x.log]}}
sinks:
  agg: {{type: forward, inputs: [logs], servers: ["aggregator"]}}
"""
    got = problems(text, tmp_path)

    assert any("servers" in p and "no port" in p for p in got), got


def test_validate_rejects_unknown_format(tmp_path: Path) -> None:
    text = f"""
data_dir: {tmp_path}
sources:
  logs: {{type: file, paths: [/var/log/x.log]}}
sinks:
  agg: {{type: forward, inputs: [logs], servers: ["a:24224"], format: json}}
"""
    got = problems(text, tmp_path)

    assert any("format" in p for p in got), got
