"""The `kafka` sink against the real broker: records read back with the client library,
acks only after the brokers acknowledged, topic templates, dead letters for records too
large, and backpressure (nothing dropped) while the broker is down."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest
from kafka_helpers import new_topic, read_topic, topic_size, until

from kubelogs.buffer import dead_letter
from kubelogs.codecs.document import encode_documents
from kubelogs.config.base import BuildContext
from kubelogs.pipeline.acks import AckToken
from kubelogs.pipeline.channels import Channel
from kubelogs.pipeline.event import Batch
from kubelogs.sinks.kafka import EVENT_ID_HEADER, KafkaSink, KafkaSinkConfig
from kubelogs.telemetry.metrics import Metrics
from support.kafka_broker import PLAIN_USER, SCRAM_USER, KafkaBroker
from support.store_docs import make_batches


class Acks:
    """Ack tokens that count how many batches resolved."""

    def __init__(self) -> None:
        self.resolved = 0

    def token(self) -> AckToken:
        def done() -> None:
            self.resolved += 1

        return AckToken(done)


def build_sink(
    broker: KafkaBroker, tmp: Path, metrics: Metrics | None = None, **extra: Any
) -> KafkaSink:
    cfg = KafkaSinkConfig.model_validate(
        {
            "type": "kafka",
            "inputs": ["x"],
            "bootstrap_servers": [broker.bootstrap],
            "linger": "20ms",
            **extra,
        }
    )
    cx = BuildContext(
        component_id="kafka_out", data_dir=tmp, node_name="node-1", metrics=metrics or Metrics()
    )
    return cfg.build(cx)


async def feed(ch: Channel, batches: list[Batch]) -> None:
    for b in batches:
        await ch.put(b)
    ch.close_producer()


@pytest.mark.parametrize("with_header", [False, True])
async def test_records_carry_document_key_and_event_id(
    broker: KafkaBroker, tmp_path: Path, with_header: bool
) -> None:
    """Every event is one record: the JSON document with its ``event.id`` as value, the
    pod UID as key (and the event id as header with `event_id_header`); every ack
    resolves once the broker acknowledged."""
    topic = new_topic(broker)
    acks = Acks()
    batches = [b.derive(ack=acks.token()) for b in make_batches(lines=300, per_batch=100)]
    metrics = Metrics()
    sink = build_sink(
        broker, tmp_path, metrics, topic=topic, compression="zstd", event_id_header=with_header
    )
    ch = Channel("kafka_out", 64)
    ch.add_producer()

    await asyncio.gather(sink.run(ch), feed(ch, batches))
    await sink.close()

    expected = {
        b.event_id(i): (doc, b.ctx.pod_uid.encode())
        for b in batches
        for i, doc in enumerate(encode_documents(b, event_ids=True))
    }
    got = await asyncio.to_thread(read_topic, broker, topic, len(expected))
    assert len(batches) == acks.resolved
    assert len(expected) == len(got)
    assert expected == {msgspec.json.decode(r.value)["event"]["id"]: (r.value, r.key) for r in got}
    expected_headers = (
        [{EVENT_ID_HEADER: eid.encode()} for eid in sorted(expected)]
        if with_header
        else [{}] * len(expected)
    )
    by_id = sorted(got, key=lambda r: msgspec.json.decode(r.value)["event"]["id"])
    assert expected_headers == [r.headers for r in by_id]
    text = metrics.render().decode()
    assert f'kubelogs_kafka_produced_records_total{{component_id="kafka_out"}} {len(got)}.0' in (
        text
    )


async def test_a_full_producer_queue_mid_batch_loses_and_repeats_nothing(
    broker: KafkaBroker, tmp_path: Path
) -> None:
    """librdkafka's queue taking only a few records at a time stops the sink's bulk
    hand-over in the middle of a batch again and again: it resumes exactly after the
    last record taken, so every record arrives once and every ack resolves."""
    topic = new_topic(broker)
    acks = Acks()
    batches = [b.derive(ack=acks.token()) for b in make_batches(lines=600, per_batch=200)]
    sink = build_sink(
        broker,
        tmp_path,
        topic=topic,
        linger="1ms",
        librdkafka_options={"queue.buffering.max.messages": 7},
    )
    ch = Channel("kafka_out", 64)
    ch.add_producer()

    await asyncio.gather(sink.run(ch), feed(ch, batches))
    await sink.close()

    expected = sorted(b.event_id(i) for b in batches for i in range(len(b)))
    got = await asyncio.to_thread(read_topic, broker, topic, len(expected))
    assert len(batches) == acks.resolved
    assert expected == sorted(msgspec.json.decode(r.value)["event"]["id"] for r in got)
    assert len(expected) == await asyncio.to_thread(topic_size, broker, topic)


async def test_topic_template_uses_the_namespace(broker: KafkaBroker, tmp_path: Path) -> None:
    """``{kubernetes.namespace}`` in `topic` routes each file's events by namespace."""
    prefix = f"ns-{id(tmp_path) % 100000}"
    acks = Acks()
    batches = [b.derive(ack=acks.token()) for b in make_batches(lines=40, per_batch=40)]
    namespaces = {b.ctx.namespace for b in batches}
    for ns in namespaces:
        broker.create_topic(f"{prefix}.{ns}", 1)
    sink = build_sink(broker, tmp_path, topic=prefix + ".{kubernetes.namespace}")
    ch = Channel("kafka_out", 64)
    ch.add_producer()

    await asyncio.gather(sink.run(ch), feed(ch, batches))
    await sink.close()

    assert len(batches) == acks.resolved
    for ns in namespaces:
        want = sum(len(b) for b in batches if b.ctx.namespace == ns)
        got = await asyncio.to_thread(read_topic, broker, f"{prefix}.{ns}", want, 30.0)
        assert want == len(got)
        assert all(msgspec.json.decode(r.value)["kubernetes"]["namespace"] == ns for r in got)


async def test_record_too_large_goes_to_the_dead_letter_queue(
    broker: KafkaBroker, tmp_path: Path
) -> None:
    """A record over `message_max_bytes` is dead-lettered with the reason; the rest of
    its batch is delivered and the batch's ack resolves once both are durable."""
    topic = new_topic(broker, 1)
    acks = Acks()
    (batch,) = make_batches(containers=1, lines=5, per_batch=5)[:1]
    messages = list(batch.messages)
    messages[2] = "x" * 300_000
    batch = batch.derive(messages=messages, tstrs=None, ack=acks.token())
    sink = build_sink(broker, tmp_path, topic=topic, message_max_bytes="200KiB")
    ch = Channel("kafka_out", 8)
    ch.add_producer()

    await asyncio.gather(sink.run(ch), feed(ch, [batch]))
    await sink.close()

    entries = [e for _, e in dead_letter.iter_entries(tmp_path / "dead_letter" / "kafka_out")]
    got = await asyncio.to_thread(read_topic, broker, topic, len(batch) - 1, 30.0)
    assert 1 == acks.resolved
    assert [batch.event_id(2)] == [e.id for e in entries]
    assert "too large" in entries[0].reason
    assert topic == entries[0].target
    assert messages[2] == msgspec.json.decode(bytes(entries[0].document))["message"]
    assert len(batch) - 1 == len(got)


def test_broker_down_holds_acks_and_drops_nothing(broker: KafkaBroker, tmp_path: Path) -> None:
    """While the broker is stopped nothing is acknowledged and the sink stops reading
    once `max_in_flight_bytes` is produced; when it returns everything arrives."""
    # Not an `async def` test: a broker restart may take longer than their deadline.
    asyncio.run(asyncio.wait_for(_broker_down(broker, tmp_path), 240))


async def _broker_down(broker: KafkaBroker, tmp_path: Path) -> None:
    topic = new_topic(broker)
    acks = Acks()
    batches = [b.derive(ack=acks.token()) for b in make_batches(lines=3000, per_batch=250)]
    total = sum(len(b) for b in batches)
    sink = build_sink(broker, tmp_path, topic=topic, max_in_flight_bytes="1MiB")
    ch = Channel("kafka_out", 2)
    ch.add_producer()
    await asyncio.to_thread(broker.stop)
    try:
        run = asyncio.ensure_future(sink.run(ch))
        feeding = asyncio.ensure_future(feed(ch, batches))
        await until(lambda: len(ch) == 2, "the sink to stop reading (backpressure)")
        await asyncio.sleep(1.0)  # a while of outage: nothing may be acknowledged

        assert 0 == acks.resolved
        assert not feeding.done()
    finally:
        await asyncio.to_thread(broker.start)
    await asyncio.wait_for(asyncio.gather(run, feeding), 120)
    await sink.close()

    got = await asyncio.to_thread(read_topic, broker, topic, total)
    assert len(batches) == acks.resolved
    assert total == len({msgspec.json.decode(r.value)["event"]["id"] for r in got})


@pytest.mark.parametrize(
    ("mechanism", "user"), [("PLAIN", PLAIN_USER), ("SCRAM-SHA-256", SCRAM_USER)]
)
async def test_sasl_credentials_reach_the_broker(
    broker: KafkaBroker, tmp_path: Path, mechanism: str, user: tuple[str, str]
) -> None:
    """The sink authenticates on the broker's SASL listener with PLAIN and SCRAM."""
    topic = new_topic(broker, 1)
    acks = Acks()
    batches = [b.derive(ack=acks.token()) for b in make_batches(containers=1, lines=20)]
    cfg = KafkaSinkConfig.model_validate(
        {
            "type": "kafka",
            "inputs": ["x"],
            "bootstrap_servers": [broker.sasl_bootstrap],
            "topic": topic,
            "linger": "10ms",
            "sasl": {"mechanism": mechanism, "username": user[0], "password": user[1]},
        }
    )
    cx = BuildContext(component_id="k", data_dir=tmp_path, node_name="n", metrics=Metrics())
    sink = cfg.build(cx)
    ch = Channel("k", 8)
    ch.add_producer()

    await asyncio.gather(sink.run(ch), feed(ch, batches))
    await sink.close()

    got = await asyncio.to_thread(read_topic, broker, topic, 20, 30.0)
    assert len(batches) == acks.resolved
    assert 20 == len(got)
