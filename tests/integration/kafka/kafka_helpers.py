"""Small helpers for the Kafka tests: unique topics, reading a topic back, waiting in
async tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

from support.kafka_broker import KafkaBroker


def new_topic(broker: KafkaBroker, partitions: int = 4, prefix: str = "t") -> str:
    topic = f"{prefix}-{uuid.uuid4().hex[:10]}"
    broker.create_topic(topic, partitions)
    return topic


@dataclass
class Read:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


def read_topic(broker: KafkaBroker, topic: str, count: int, timeout: float = 60.0) -> list[Read]:
    """`count` records of `topic` from the beginning (all partitions), with no group."""
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    md = c.list_topics(topic, timeout=30)
    parts = sorted(md.topics[topic].partitions)
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    out: list[Read] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                if m.error() is not None:
                    continue
                headers = {k: bytes(v or b"") for k, v in (m.headers() or [])}
                out.append(
                    Read(
                        topic=m.topic() or "",
                        partition=m.partition() or 0,
                        offset=m.offset() or 0,
                        key=m.key(),
                        value=m.value() or b"",
                        headers=headers,
                    )
                )
    finally:
        c.close()
    return out


def topic_size(broker: KafkaBroker, topic: str) -> int:
    """Records in `topic`: the sum of its partitions' end offsets (an idempotent,
    non-transactional producer writes no control records)."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "size"})
    try:
        md = c.list_topics(topic, timeout=30)
        ends = [
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            for p in md.topics[topic].partitions
        ]
    finally:
        c.close()
    return sum(high for _, high in ends)


async def until(condition: Callable[[], object], what: str, seconds: float = 60.0) -> None:
    """Wait on `condition` (checked every 20 ms) with a deadline, in async tests."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                if condition():
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {seconds}s waiting for {what}") from None
