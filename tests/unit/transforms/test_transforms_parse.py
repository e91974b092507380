"""The `parse` transform: registered, validated, and applying its parser to every batch
inside a running pipeline (events in, the same events with fields out, acks intact)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from kubelogs.config.base import BuildContext
from kubelogs.config.registry import lookup
from kubelogs.pipeline.acks import AckToken
from kubelogs.telemetry.metrics import Metrics
from kubelogs.transforms.parse import ParseConfig, ParseTransform
from support.parsing import make_batch


def build(tmp_path: Path, parser: object) -> ParseTransform:
    cfg = ParseConfig.model_validate({"type": "parse", "inputs": ["x"], "parser": parser})
    cx = BuildContext(component_id="p", data_dir=tmp_path, node_name="n", metrics=Metrics())
    return cfg.build(cx)


def test_registered_under_its_type() -> None:
    reg = lookup("transform", "parse")

    assert reg is not None
    assert reg.config is ParseConfig


def test_process_parses_and_keeps_the_ack_token(tmp_path: Path) -> None:
    transform = build(tmp_path, "json")
    done: list[bool] = []
    batch = make_batch(['{"level":"error","n":1}', "plain"]).derive(
        ack=AckToken(lambda: done.append(True))
    )

    asyncio.run(transform.start())
    out = transform.process(batch)
    asyncio.run(transform.stop())

    assert out is not None
    assert {0: {"level": "error", "n": 1, "log": {"level": "error"}}} == out.fields
    assert {1: ("parse_error",)} == out.flags
    assert out.ack is batch.ack
    assert out.ack is not None
    out.ack.resolve()
    assert [True] == done


def test_config_rejects_an_invalid_parser(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not a valid RE2 pattern"):
        build(tmp_path, {"type": "regex", "pattern": "(?P<a>"})


def test_a_running_pipeline_parses_through_the_transform(tmp_path: Path) -> None:
    """`kubelogs run` with a file source, `parse` and a file sink: the documents the
    sink wrote carry the parsed fields, the level inside `log`."""
    import os
    import subprocess
    import sys

    from support.waiting import wait_for

    log = tmp_path / "app.log"
    log.write_text(
        '{"level":"WARN","msg":"slow","took_ms":812}\n'
        "plain text line\n"
        '10.0.0.1 - - [15/Jan/2025:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x"\n'
    )
    out = tmp_path / "out.ndjson"
    config = tmp_path / "kubelogs.yaml"
    config.write_text(
        f"""\
data_dir: {tmp_path / "data"}
api: {{listen: "127.0.0.1:0"}}
sources:
  app: {{type: file, paths: ["{log}"]}}
transforms:
  parsed: {{type: parse, inputs: [app], parser: json}}
sinks:
  out: {{type: file, inputs: [parsed], path: "{out}"}}
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBELOGS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubelogs", "run", "-c", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(
            lambda: out.exists() and len(out.read_text().splitlines()) == 3,
            timeout=60,
            what="three documents in the file sink",
        )
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        assert proc.stderr is not None
        proc.stderr.close()

    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert "warn" == docs[0]["log"]["level"]
    assert 812 == docs[0]["took_ms"]
    assert ["parse_error"] == docs[1]["log"]["flags"]
    assert ["parse_error"] == docs[2]["log"]["flags"]
    assert "plain text line" == docs[1]["message"]


def test_a_filter_condition_on_level_sees_the_parsed_level() -> None:
    """`filter`/`route` conditions resolve `level` as `kubelogs search` does."""
    from kubelogs.parsing import build_parser
    from kubelogs.transforms.condition import Condition

    batch = build_parser("json")(
        make_batch(['{"lvl":"E","m":1}', '{"level":"info"}', "plain", '{"severity":"ERR"}'])
    )

    assert [0, 3] == Condition("level:error").select(batch)
    assert [1, 2] == Condition("not level:error").select(batch)


def test_field_values_and_templates_see_the_parsed_level() -> None:
    """`modify` templates and `route` keys read `log.level` where documents have it."""
    from kubelogs.parsing import build_parser
    from kubelogs.transforms.fields import FileFields, Template

    batch = build_parser("klog")(make_batch(["E0115 10:00:00.000001 1 a.go:7] boom", "plain"]))
    values = FileFields()

    assert "error" == values.value(batch, 0, "log.level")
    assert 7 == values.value(batch, 0, "log.origin.file.line")
    assert batch.ctx.path == values.value(batch, 0, "log.file.path")
    assert ["error-a.go", "-"] == Template.parse("{log.level}-{log.origin.file.name}").render_batch(
        values, batch
    )
