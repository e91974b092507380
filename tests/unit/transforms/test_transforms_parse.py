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
