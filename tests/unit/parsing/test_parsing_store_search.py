"""Parsed events written through the `local` sink are searchable by their fields:
``level:error`` (the normalised level), ``http.response.status_code >= 500``, in both
document schemas, from the library and from ``kubelogs search``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubelogs.codecs.document import Schema, encode_documents
from kubelogs.config.base import BuildContext
from kubelogs.parsing import build_parser
from kubelogs.pipeline.channels import Channel
from kubelogs.pipeline.event import Batch
from kubelogs.sinks.local import LocalSinkConfig
from kubelogs.store import StoreReader
from kubelogs.telemetry.metrics import Metrics
from support.parsing import make_batch

JSON_LINES = [
    '{"level":"ERROR","msg":"payment failed","order":7}',
    '{"level":"info","msg":"ok"}',
    '{"lvl":"E","msg":"db down"}',
    '{"severity":"warning","msg":"slow"}',
    "not json at all",
]
NGINX_LINES = [
    '10.1.2.3 - - [15/Jan/2025:10:00:00 +0000] "GET /api/orders HTTP/1.1" 200 512 "-" "curl/8.5"',
    '10.1.2.4 - bob [15/Jan/2025:10:00:01 +0000] "POST /api/pay HTTP/1.1" 502 0 "-" "Go-http/2.0"',
    '10.1.2.5 - - [15/Jan/2025:10:00:02 +0000] "GET /healthz HTTP/1.1" 503 17 "-" "kube-probe/1.3"',
]
KLOG_LINES = [
    'E0115 10:00:03.000001    2345 pod_workers.go:1301] "Error syncing pod" pod="default/web"',
    "I0115 10:00:04.000002    2345 kubelet.go:2229] SyncLoop ADD",
]


def parsed_batches() -> list[Batch]:
    out = []
    for parser, lines, base in (
        ("json", JSON_LINES, 0),
        ("nginx", NGINX_LINES, 1000),
        ("klog", KLOG_LINES, 2000),
    ):
        batch = make_batch(lines)
        batch = batch.derive(
            ctx=batch.ctx.__class__(
                "src", f"/var/log/{parser}.log", f"1:{base}:0", f"prefix{base}"
            ),
            times=[t + base for t in batch.times],
        )
        out.append(build_parser(parser)(batch))
    return out


async def _store(path: Path, batches: list[Batch], schema: Schema) -> None:
    cfg = LocalSinkConfig.model_validate(
        {"type": "local", "inputs": ["x"], "path": str(path), "schema": schema}
    )
    cx = BuildContext(component_id="store", data_dir=path.parent, node_name="n", metrics=Metrics())
    sink = cfg.build(cx)
    channel = Channel("store", capacity=10)
    channel.add_producer()
    for b in batches:
        await channel.put(b)
    channel.close_producer()
    await asyncio.wait_for(sink.run(channel), timeout=60)


@pytest.mark.parametrize("schema", ["ecs", "fluentd"])
def test_parsed_fields_are_searchable_in_the_local_store(tmp_path: Path, schema: Schema) -> None:
    batches = parsed_batches()
    store = tmp_path / "store"
    asyncio.run(_store(store, batches, schema))

    with StoreReader(store) as reader:
        errors = sorted(
            json.loads(h.doc)[reader.layout.message_field]
            for h in reader.search("level:error", limit=0)
        )
        assert sorted([JSON_LINES[0], JSON_LINES[2], KLOG_LINES[0]]) == errors
        assert 1 == reader.count("level:warn")
        assert 1 == reader.count("level:ERROR")  # the application's own spelling too
        assert 2 == reader.count("http.response.status_code >= 500")
        assert 1 == reader.count("http.response.status_code >= 500 and http.request.method:POST")
        assert 1 == reader.count("user.name:bob")
        assert 1 == reader.count("order >= 7")
        assert 1 == reader.count(
            "flags:parse_error" if schema == "fluentd" else "log.flags:parse_error"
        )
        assert 1 == reader.count(
            "log.origin.file.name:pod_workers.go"
            if schema == "ecs"
            else "log_origin.file.name:pod_workers.go"
        )
        stored = sorted(h.doc for h in reader.search("", limit=0))
    # What the store gives back is byte for byte what the encoder makes of the batches.
    assert sorted(d for b in batches for d in encode_documents(b, schema)) == stored


def test_level_lands_inside_the_log_object() -> None:
    batch = parsed_batches()[0]

    ecs = json.loads(encode_documents(batch, "ecs")[0])
    fluentd = json.loads(encode_documents(batch, "fluentd")[0])
    flagged = json.loads(encode_documents(batch, "ecs")[4])

    assert "error" == ecs["log"]["level"]
    assert batch.ctx.path == ecs["log"]["file"]["path"]
    assert "ERROR" == ecs["level"]
    assert "error" == fluentd["log_level"]
    assert JSON_LINES[0] == fluentd["log"]
    assert ["parse_error"] == flagged["log"]["flags"]


def test_kubelogs_search_finds_parsed_levels_and_status_codes(tmp_path: Path) -> None:
    store = tmp_path / "store"
    asyncio.run(_store(store, parsed_batches(), "ecs"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBELOGS_")}

    def search(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "kubelogs", "search", *args, "--store", str(store)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=True,
        )
        return done.stdout.strip()

    assert "3" == search("level:error", "--count")
    lines = search("http.response.status_code >= 500", "--output", "json").splitlines()
    assert [502, 503] == [json.loads(x)["http"]["response"]["status_code"] for x in lines]


def test_es_compiler_resolves_the_level_alias() -> None:
    from kubelogs.store.compile_es import compile_es
    from kubelogs.store.query_parser import parse_query

    ecs = compile_es(parse_query("level:error"))
    fluentd = compile_es(parse_query("not level:error"), message_field="log")

    assert {
        "bool": {
            "should": [{"match": {"log.level": "error"}}, {"match": {"level": "error"}}],
            "minimum_should_match": 1,
        }
    } == ecs
    assert {
        "bool": {
            "must_not": [
                {
                    "bool": {
                        "should": [
                            {"match": {"log_level": "error"}},
                            {"match": {"level": "error"}},
                        ],
                        "minimum_should_match": 1,
                    }
                }
            ]
        }
    } == fluentd


def test_unknown_field_hint_names_the_alias_only_when_no_document_has_a_level(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    asyncio.run(_store(store, parsed_batches()[1:2], "ecs"))  # nginx lines: no level

    with StoreReader(store) as reader:
        missing = reader.unknown_fields("level:error and url.original:/healthz")
    asyncio.run(_store(tmp_path / "with", parsed_batches(), "ecs"))
    with StoreReader(tmp_path / "with") as reader:
        found = reader.unknown_fields("level:error")

    assert [("level", None)] == missing
    assert [] == found


def test_parsed_levels_survive_a_network_hop_as_records() -> None:
    """An agent sends parsed events as records (forward, Kafka); the receiver's batches
    give the same documents: ``log.level`` and the flags stay in the ``log`` object."""
    from kubelogs.codecs.records import RecordDecoder, batch_to_records

    batch = parsed_batches()[0]

    records = batch_to_records(batch)
    (back,) = RecordDecoder("fwd", "agg").decode([(None, r) for r in records], origin="x")

    assert "error" == records[0]["log"]["level"]
    assert ["parse_error"] == records[4]["log"]["flags"]
    assert back.fields is not None
    assert {"level": "error"} == back.fields[0]["log"]
    assert {4: ("parse_error",)} == back.flags
    original = [json.loads(d) for d in encode_documents(batch)]
    received = [json.loads(d) for d in encode_documents(back)]
    assert [d["log"].get("level") for d in original] == [d["log"].get("level") for d in received]


def test_es_index_template_maps_the_level_as_a_keyword() -> None:
    from kubelogs.sinks.elasticsearch.health import ServerInfo, mappings

    info = ServerInfo("elasticsearch", 8)

    ecs_log = mappings("ecs", info)["properties"]["log"]["properties"]
    assert {"type": "keyword", "ignore_above": 1024} == ecs_log["level"]
    fluentd = mappings("fluentd", info)["properties"]
    assert {"type": "keyword", "ignore_above": 1024} == fluentd["log_level"]
