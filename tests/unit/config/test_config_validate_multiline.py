"""`kubelogs validate` on multiline settings: unknown presets, broken regexes and bad
selectors are refused with the key path of each, all at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BAD = """\
sources:
  logs:
    type: kubernetes_logs
    multiline: jav
    overrides:
      - match: {pod: "api-*"}
        multiline: {start_pattern: "(at", timeout: 2s}
      - match: {}
        multiline: java
  node:
    type: file
    paths: [/var/log/x.log]
    multiline: {preset: java, start_pattern: "^x"}
sinks:
  out:
    type: blackhole
    inputs: [logs, node]
"""

GOOD = """\
sources:
  logs:
    type: kubernetes_logs
    multiline: java
    overrides:
      - match: {namespace: shop, pod: "api-*", container: app}
        multiline: python
      - match: {namespace: legacy}
        multiline: {start_pattern: '^\\d{4}-\\d{2}-\\d{2}', max_lines: 200, timeout: 3s}
  node:
    type: file
    paths: [/var/log/x.log]
    multiline: {continue_pattern: '^\\[', negate: true}
sinks:
  out:
    type: blackhole
    inputs: [logs, node]
"""


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBELOGS_")}
    return subprocess.run(
        [sys.executable, "-m", "kubelogs", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_validate_refuses_bad_multiline_settings_with_their_paths(tmp_path: Path) -> None:
    path = tmp_path / "kubelogs.yaml"
    path.write_text(BAD)

    result = validate(path)

    assert 1 == result.returncode
    lines = result.stderr.strip().splitlines()
    assert "4 problem(s)" in lines[0]
    assert sorted(
        [
            "sources.logs.multiline: 'jav' is not a multiline preset; use one of java, "
            "python, go, ruby, dotnet, php, none, or a mapping with "
            "start_pattern/continue_pattern/end_pattern",
            "sources.logs.overrides[0].multiline.start_pattern: '(at' is not a valid regular "
            "expression: missing ), unterminated subpattern at position 0",
            "sources.logs.overrides[1].match: give at least one of namespace, pod, container, path",
            "sources.node.multiline: preset and start/continue/end_pattern are mutually exclusive",
        ]
    ) == sorted(lines[1:])


def test_validate_accepts_presets_patterns_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "kubelogs.yaml"
    path.write_text(GOOD)

    result = validate(path)

    assert (0, "") == (result.returncode, result.stderr)


BAD_PARSERS = """\
sources:
  logs:
    type: kubernetes_logs
    parser: jsn
    overrides:
      - match: {pod: "api-*"}
        parser: {type: regex, pattern: "(?P<x"}
      - match: {pod: "web-*"}
        parser: none
        multiline: {preset: java, timeout: 0s}
sinks:
  out:
    type: blackhole
    inputs: [logs]
"""


def test_validate_refuses_bad_parsers_on_sources_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "kubelogs.yaml"
    path.write_text(BAD_PARSERS)

    result = validate(path)

    assert 1 == result.returncode
    assert sorted(
        [
            "sources.logs.parser: unknown parser 'jsn'; use one of: json, logfmt, regex, "
            "klog, nginx, apache, syslog, or regex:<pattern>",
            "sources.logs.overrides[0].parser.pattern: not a valid RE2 pattern: invalid "
            "named capture group: (?P<x",
            "sources.logs.overrides[1].multiline.timeout: 0.0 is out of range: must be more "
            "than 0.0",
        ]
    ) == sorted(result.stderr.strip().splitlines()[1:])
