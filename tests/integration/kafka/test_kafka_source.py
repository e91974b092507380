"""The `kafka` source against the real broker, through `kubelogs run` into a file sink:
documents keep their event ids, malformed and foreign records are passed on (never a
crash), offsets are committed once the events are durable, so a restart reads nothing
again."""

from __future__ import annotations

import re
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka_helpers import new_topic

from kubelogs.codecs.document import encode_documents
from kubelogs.sinks.kafka import EVENT_ID_HEADER
from support.agent import Agent, count_lines, read_docs, write_config
from support.kafka_broker import KafkaBroker
from support.store_docs import make_batches
from support.waiting import wait_for


def source_config(tmp: Path, broker: KafkaBroker, topics: list[str], group: str, out: Path) -> Path:
    return write_config(
        tmp / "aggregator.yaml",
        {
            "data_dir": str(tmp / "data"),
            "node_name": "aggregator",
            "api": {"listen": "127.0.0.1:0"},
            "shutdown_grace_period": "20s",
            "sources": {
                "kafka": {
                    "type": "kafka",
                    "bootstrap_servers": [broker.bootstrap],
                    "topics": topics,
                    "group_id": group,
                    "commit_interval": "200ms",
                    "session_timeout": "6s",
                }
            },
            "sinks": {"out": {"type": "file", "inputs": ["kafka"], "path": str(out)}},
        },
    )


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return str(r.read().decode())


def committed(broker: KafkaBroker, group: str, topic: str, partitions: int) -> int:
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
    finally:
        c.close()
    return sum(max(0, tp.offset) for tp in got)


def test_source_passes_documents_on_with_their_ids_and_commits(
    broker: KafkaBroker, tmp_path: Path
) -> None:
    """Kubelogs records come out as they went in (same document, same place), whether
    the event id is a header or in the value; a
    value that is not JSON and a foreign JSON map are passed on; the group's offsets
    reach the end, so a second run reads nothing again."""
    topic = new_topic(broker, 2)
    batches = make_batches(containers=2, lines=100, per_batch=50)
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    sent: dict[str, dict[str, Any]] = {}
    for n, b in enumerate(batches):
        # the id as a header (`event_id_header`) or only in the value (the default)
        values = encode_documents(b, event_ids=n % 2 == 1)
        for i, doc in enumerate(encode_documents(b)):
            eid = b.event_id(i)
            sent[eid] = msgspec.json.decode(doc)
            if n % 2:
                p.produce(topic, values[i], b.ctx.pod_uid.encode())
            else:
                p.produce(topic, doc, b.ctx.pod_uid.encode(), headers=[(EVENT_ID_HEADER, eid)])
    p.produce(topic, b"not json {", b"x")
    p.produce(topic, b'["a", "list"]', b"x")
    p.produce(topic, b'{"msg": "from fluent-bit", "level": "info"}', b"x")
    assert 0 == p.flush(60)
    total = len(sent) + 3
    out = tmp_path / "out.ndjson"
    group = f"g-{uuid.uuid4().hex[:8]}"
    cfg = source_config(tmp_path, broker, [topic], group, out)

    with Agent(cfg, tmp_path / "agg.log") as agg:
        wait_for(lambda: count_lines(out) >= total, timeout=90, what="every record in the file")
        wait_for(lambda: committed(broker, group, topic, 2) == total, timeout=60, what="commit")
        port = agg.api_port
        pattern = r'kubelogs_kafka_consumer_lag\{[^}]*partition="(\d)"[^}]*\} (\S+)'
        try:
            lags = wait_for(
                lambda: len(found := set(re.findall(pattern, metrics(port)))) == 2 and found,
                timeout=60,
                what="the consumer lag of both partitions (librdkafka's statistics, every 5 s)",
            )
        except AssertionError as exc:
            shown = [ln for ln in metrics(port).splitlines() if "kafka" in ln and "#" not in ln]
            raise AssertionError(f"{exc}: {shown}") from None
        text = metrics(port)
        assert 0 == agg.stop()

    assert {("0", "0.0"), ("1", "0.0")} == lags
    assert f'kubelogs_kafka_consumed_records_total{{component_id="kafka"}} {total}.0' in text
    assert 'kubelogs_kafka_malformed_records_total{component_id="kafka"} 2.0' in text

    docs = read_docs(out)
    by_place = {(d["log"]["file"]["path"], d["log"]["offset"]): d for d in docs}
    assert total == len(docs)
    for doc in sent.values():
        assert doc == by_place[(doc["log"]["file"]["path"], doc["log"]["offset"])]
    raw = [d for d in docs if d.get("log", {}).get("flags") == ["malformed"]]
    assert ['["a", "list"]', "not json {"] == sorted(d["message"] for d in raw)
    foreign = [d for d in docs if d["message"] == "from fluent-bit"]
    assert "info" == foreign[0]["level"]

    with Agent(cfg, tmp_path / "agg2.log") as agg:
        agg.wait_ready()
        assert 0 == agg.stop()
    assert total == count_lines(out)
