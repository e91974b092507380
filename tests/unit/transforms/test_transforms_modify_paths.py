"""`modify` writes dotted targets where the parsers put fields and queries find them.

``set: {log.level: error}`` goes into the parsed ``log`` object (inside the document's
own ``log``, as the parsers' ``log.level``), ``http.status`` into an ``http`` object;
templates, ``copy``, ``rename`` and ``remove`` read and remove the same places, and
``kubelogs search 'level:error'`` finds such events in the local store.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

import kubelogs.components  # noqa: F401
from kubelogs.codecs.document import Schema, encode_documents
from kubelogs.config.base import BuildContext
from kubelogs.config.errors import ConfigInvalid
from kubelogs.config.loader import config_from_data
from kubelogs.parsing import build_parser
from kubelogs.pipeline.channels import Channel
from kubelogs.pipeline.event import Batch
from kubelogs.sinks.local import LocalSinkConfig
from kubelogs.store import StoreReader
from kubelogs.telemetry.metrics import Metrics
from kubelogs.transforms.fields import FileFields, remove_path, set_path
from kubelogs.transforms.modify import ModifyConfig, ModifyTransform
from support.parsing import make_batch

LINES = [
    '{"level":"info","msg":"payment failed"}',  # the parser sets log.level: info
    "plain text, no fields",
    '{"log.level":"warn","msg":"a literal dotted key"}',
]


def modify(**settings: Any) -> ModifyTransform:
    """A modify transform built from its config, as `kubelogs run` builds it."""
    cfg = ModifyConfig.model_validate({"type": "modify", "inputs": ["x"], **settings})
    return cfg.build(BuildContext("m", Path("/tmp"), "n", Metrics()))


def parsed() -> Batch:
    return build_parser("json")(make_batch(LINES))


def docs(b: Batch, schema: Schema = "ecs") -> list[dict[str, Any]]:
    return [msgspec.json.decode(d) for d in encode_documents(b, schema)]


def test_set_log_level_writes_into_the_log_object_as_parsers_do() -> None:
    out = modify(set={"log.level": "error", "http.response.status_code": "500"}).process(parsed())
    assert out is not None
    assert out.fields is not None

    assert [f["log"] for f in out.fields.values()] == [{"level": "error"}] * 3
    assert all("log.level" not in f for f in out.fields.values())  # no literal key left
    ecs = docs(out)
    assert [d["log"]["level"] for d in ecs] == ["error"] * 3
    assert all("log.level" not in d for d in ecs)
    assert ecs[0]["log"]["file"]["path"] == out.ctx.path  # kubelogs' own members stay
    assert ecs[0]["log"]["offset"] == 0
    assert ecs[1]["log"]["flags"] == ["parse_error"]
    assert ecs[0]["http"] == {"response": {"status_code": "500"}}
    assert [d["log_level"] for d in docs(out, "fluentd")] == ["error"] * 3


def test_templates_copy_rename_and_remove_read_the_nested_level() -> None:
    values = FileFields()
    src = parsed()
    assert values.value(src, 0, "log.level") == "info"  # what the parser wrote
    assert values.value(src, 2, "log.level") == "warn"  # a literal dotted key

    out = modify(
        copy={"log.level": "original.level"},
        set={"log.level": "{log.level}-seen", "summary": "{log.level}: {msg}"},
    ).process(src)
    assert out is not None
    assert out.fields is not None
    assert [values.value(out, i, "log.level") for i in range(3)] == [
        "info-seen",
        "-seen",
        "warn-seen",
    ]
    assert out.fields[0]["original"] == {"level": "info"}
    assert out.fields[2]["original"] == {"level": "warn"}
    assert out.fields[0]["summary"] == "info: payment failed"

    renamed = modify(rename={"log.level": "severity"}).process(src)
    assert renamed is not None
    assert renamed.fields is not None
    assert renamed.fields[0] == {"level": "info", "msg": "payment failed", "severity": "info"}
    assert renamed.fields[2] == {"msg": "a literal dotted key", "severity": "warn"}
    assert "level" not in docs(renamed)[0]["log"]

    removed = modify(remove=["log.level"]).process(src)
    assert removed is not None
    assert removed.fields is not None
    assert all("log" not in f and "log.level" not in f for f in removed.fields.values())
    assert src.fields is not None
    assert src.fields[0]["log"] == {"level": "info"}  # the input batch is untouched


def test_set_replaces_a_literal_dotted_key_and_removes_both_spellings() -> None:
    d: dict[str, Any] = {"a.b": 1, "log.level": "warn", "log": {"level": "info", "x": 1}}
    set_path(d, "a.b", 2)
    set_path(d, "log.level", "error")
    assert d == {"a": {"b": 2}, "log": {"level": "error", "x": 1}}
    both: dict[str, Any] = {"log.level": "warn", "log": {"level": "info"}, "k": 1}
    remove_path(both, "log.level")
    assert both == {"k": 1}


def test_config_accepts_parsed_log_members_and_refuses_kubelogs_own() -> None:
    def problems(**settings: Any) -> list[str]:
        data = {
            "sources": {"node": {"type": "file", "paths": ["/var/log/x.log"]}},
            "transforms": {"m": {"type": "modify", "inputs": ["node"], **settings}},
            "sinks": {"out": {"type": "blackhole", "inputs": ["m"]}},
        }
        try:
            config_from_data(data, "t.yaml", {})
        except ConfigInvalid as exc:
            return exc.problems
        return []

    assert [] == problems(
        set={"log.level": "error"},
        copy={"sev": "log.level"},
        rename={"log.level": "lvl"},
        remove=["log.level", "log.logger"],
    )
    (problem,) = problems(
        set={"log.offset": "1", "message.x": "y"},
        copy={"a": "log.file.path"},
        remove=["log.flags"],
    )
    assert "set.log.offset: written by kubelogs itself" in problem
    assert "set.message.x: written by kubelogs itself" in problem
    assert "copy: 'log.file.path' cannot be a target" in problem
    assert "remove: 'log.flags' is written by kubelogs itself" in problem


async def _store(path: Path, batches: list[Batch]) -> None:
    cfg = LocalSinkConfig.model_validate({"type": "local", "inputs": ["x"], "path": str(path)})
    cx = BuildContext(component_id="store", data_dir=path.parent, node_name="n", metrics=Metrics())
    sink = cfg.build(cx)
    channel = Channel("store", capacity=10)
    channel.add_producer()
    for b in batches:
        await channel.put(b)
    channel.close_producer()
    await asyncio.wait_for(sink.run(channel), timeout=60)


def test_kubelogs_search_finds_a_level_set_by_modify(tmp_path: Path) -> None:
    """``log.level`` set by modify over the parser's ``info`` (row 0) and on a plain
    line (row 1): ``level:error`` finds both, in the store and from the CLI, and no
    trace of the overwritten level is left to match."""
    src = build_parser("json")(make_batch(['{"level":"info","msg":"ok"}', "boom"]))
    out = modify(set={"log.level": "error"}).process(src)
    assert out is not None
    store = tmp_path / "store"
    asyncio.run(_store(store, [out]))

    with StoreReader(store) as reader:
        found = [json.loads(h.doc)["log"]["level"] for h in reader.search("level:error")]
        assert found == ["error", "error"]
        assert reader.count("log.level:error") == 2
        assert reader.count("log.level:info") == 0
        assert reader.count("level:info") == 1  # the application's own `level` field
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBELOGS_")}
    done = subprocess.run(
        [sys.executable, "-m", "kubelogs", "search", "level:error", "--store", str(store)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    assert lines[1].endswith("boom")


@pytest.mark.parametrize("target", ["log.level", "log.logger.name"])
def test_modify_then_parse_order_does_not_matter_for_documents(target: str) -> None:
    """A level set before a parser runs and one set after land in the same place."""
    m = modify(set={target: "x"})
    before = m.process(make_batch(["plain"]))
    assert before is not None
    after = m.process(build_parser("logfmt")(make_batch(["plain"])))
    assert after is not None
    path = target.split(".")[1:]
    for d in (docs(before)[0], docs(after)[0]):
        value: Any = d["log"]
        for part in path:
            value = value[part]
        assert value == "x"


def test_field_values_agree_with_the_document_lookup_of_the_store() -> None:
    """What transforms read (`FileFields.value`) is what a query finds in the document
    (`store.matcher.get_field`), also when a line holds a literal dotted key beside the
    level the parser normalised."""
    from kubelogs.store.matcher import get_field, is_missing

    b = build_parser("json")(
        make_batch(
            [
                '{"log.level":"warn","level":"info","a.b":1,"a":{"b":2}}',
                '{"level":"E","log":{"logger":"x"},"http":{"status":3}}',
                '{"message":"inner","kubernetes.x":"y"}',
                "plain",
            ]
        )
    )
    b = modify(set={"tag.name": "{log.level}"}).process(b)
    assert b is not None
    values = FileFields()
    paths = ["log.level", "level", "a.b", "json.log.logger", "http.status", "tag.name"]
    paths += ["message", "kubernetes.x", "json.message", "log.offset", "log.file.path"]
    for row, doc in enumerate(docs(b)):
        for path in paths:
            found, got = get_field(doc, path), values.value(b, row, path)
            assert (None if is_missing(got) else got) == (None if is_missing(found) else found), (
                row,
                path,
            )
