"""The broker fixture itself: a round trip through the real broker, and a restart that
keeps data and committed offsets."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from support.kafka_broker import KafkaBroker


def _produce(broker: KafkaBroker, topic: str, values: list[bytes]) -> None:
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    for v in values:
        p.produce(topic, v)
    assert 0 == p.flush(60)


def _consume(broker: KafkaBroker, topic: str, group: str, n: int) -> list[bytes]:
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    got: list[bytes] = []
    try:
        for _ in range(600):
            for m in c.consume(100, 0.2):
                if m.error() is None:
                    got.append(m.value())
            if len(got) >= n:
                break
        c.commit(asynchronous=False)
    finally:
        c.close()
    return got


def test_broker_round_trip_survives_restart(broker: KafkaBroker) -> None:
    """Records and a group's committed offsets outlive a broker restart."""
    topic = f"t-{uuid.uuid4().hex[:8]}"
    broker.create_topic(topic, partitions=1)
    _produce(broker, topic, [b"a", b"b"])
    assert [b"a", b"b"] == _consume(broker, topic, "g1", 2)

    broker.stop()
    broker.start()
    _produce(broker, topic, [b"c"])

    assert [b"c"] == _consume(broker, topic, "g1", 1)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g1"})
    try:
        committed = c.committed([TopicPartition(topic, 0)], timeout=30)
    finally:
        c.close()
    assert 3 == committed[0].offset
