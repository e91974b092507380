"""The `local` sink stores batches, acknowledges after the commit, and flushes on time."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from kubelogs.codecs.document import encode_documents
from kubelogs.config.base import BuildContext
from kubelogs.config.registry import lookup
from kubelogs.pipeline.acks import AckToken
from kubelogs.pipeline.channels import Channel
from kubelogs.pipeline.event import Batch
from kubelogs.sinks import local as local_module
from kubelogs.sinks.local import LocalSink, LocalSinkConfig
from kubelogs.store import StoreFullError, StoreReader, StoreWriter
from kubelogs.telemetry.metrics import Metrics
from support.full_disk import FakeDisk
from support.store_docs import make_batches
from support.waiting import until


def build(tmp_path: Path, **config: object) -> tuple[LocalSink, Metrics]:
    metrics = Metrics()
    cfg = LocalSinkConfig.model_validate({"type": "local", "inputs": ["x"], **config})
    cx = BuildContext(component_id="store", data_dir=tmp_path, node_name="n", metrics=metrics)
    return cfg.build(cx), metrics


def sent(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value(
        "kubelogs_component_sent_events_total",
        {"component_id": "store", "component_kind": "sink", "component_type": "local"},
    )
    return value or 0.0


class Acks:
    def __init__(self) -> None:
        self.done: list[int] = []
        self.event = asyncio.Event()

    def token(self, n: int) -> AckToken:
        def on_done() -> None:
            self.done.append(n)
            self.event.set()

        return AckToken(on_done)


def test_config_registers_and_has_documented_defaults(tmp_path: Path) -> None:
    sink, _ = build(tmp_path)
    reg = lookup("sink", "local")

    assert reg is not None
    assert reg.config is LocalSinkConfig
    assert tmp_path / "store" == sink.path
    assert 7 * 86400 == sink.config.retention
    assert 5 * 2**30 == sink.config.max_size
    assert "ecs" == sink.config.schema_


def test_config_accepts_units_and_rejects_unknown_keys(tmp_path: Path) -> None:
    sink, _ = build(tmp_path, path=str(tmp_path / "x"), retention="2d", max_size="64MiB")

    assert tmp_path / "x" == sink.path
    assert 2 * 86400 == sink.config.retention
    assert 64 * 2**20 == sink.config.max_size
    with pytest.raises(ValueError, match="extra"):
        LocalSinkConfig.model_validate({"type": "local", "inputs": ["x"], "nope": 1})


@pytest.mark.parametrize("value", [7, 7.5, "7", " 30 "])
def test_a_retention_without_a_unit_is_refused(value: object) -> None:
    # `retention: 7` meant as a week would be 7 seconds: the store emptied hourly.
    with pytest.raises(ValueError, match=r"has no unit \(seconds\?\): write [0-9.]+d, "):
        LocalSinkConfig.model_validate({"type": "local", "inputs": ["x"], "retention": value})


def test_sink_stores_everything_and_acks_after_commit(tmp_path: Path) -> None:
    asyncio.run(_sink_stores_everything_and_acks_after_commit(tmp_path))


async def _sink_stores_everything_and_acks_after_commit(tmp_path: Path) -> None:
    batches = make_batches(seed=4, containers=3, lines=400, per_batch=50)
    sink, metrics = build(tmp_path, block_docs=300)
    acks = Acks()
    channel = Channel("store", capacity=1000)
    channel.add_producer()
    for i, b in enumerate(batches):
        await channel.put(b.derive(ack=acks.token(i)))
    channel.close_producer()

    await asyncio.wait_for(sink.run(channel), timeout=60)

    expected = sorted(d for b in batches for d in encode_documents(b))
    word = re.findall(r"\w+", batches[1].messages[3])[-1].lower()
    with_word = [m for b in batches for m in b.messages if word in re.findall(r"\w+", m.lower())]
    with StoreReader(tmp_path / "store") as reader:
        stored = sorted(h.doc for h in reader.search("", limit=0))
        by_label = reader.count(f"kubernetes.namespace:{batches[0].ctx.namespace}")
        by_word = reader.count(word)
    assert expected == stored
    assert 0 < len(with_word) == by_word
    assert sorted(range(len(batches))) == sorted(acks.done)
    assert len(expected) == sent(metrics)
    assert sum(len(b) for b in batches if b.ctx.namespace == batches[0].ctx.namespace) == (by_label)


def test_sink_flushes_after_the_interval_without_more_input(tmp_path: Path) -> None:
    """A lone batch becomes durable (and acked) while the input is still open."""
    asyncio.run(_sink_flushes_after_the_interval_without_more_input(tmp_path))


async def _sink_flushes_after_the_interval_without_more_input(tmp_path: Path) -> None:
    batch = make_batches(seed=4, containers=1, lines=10, per_batch=10)[0]
    sink, _ = build(tmp_path, flush_interval="50ms")
    acks = Acks()
    channel = Channel("store", capacity=10)
    channel.add_producer()
    await channel.put(batch.derive(ack=acks.token(0)))
    task = asyncio.create_task(sink.run(channel))

    await asyncio.wait_for(acks.event.wait(), timeout=30)
    with StoreReader(tmp_path / "store") as reader:
        stored = reader.count("")
    channel.close_producer()
    await asyncio.wait_for(task, timeout=30)

    assert len(batch) == stored
    assert [0] == acks.done


def test_resent_batches_are_acked_but_not_stored_twice(tmp_path: Path) -> None:
    asyncio.run(_resent_batches_are_acked_but_not_stored_twice(tmp_path))


async def _resent_batches_are_acked_but_not_stored_twice(tmp_path: Path) -> None:
    batches: list[Batch] = make_batches(seed=6, containers=2, lines=200, per_batch=40)
    for _ in range(2):  # the second run is the replay after a restart
        sink, _ = build(tmp_path)
        acks = Acks()
        channel = Channel("store", capacity=1000)
        channel.add_producer()
        for i, b in enumerate(batches):
            await channel.put(b.derive(ack=acks.token(i)))
        channel.close_producer()
        await asyncio.wait_for(sink.run(channel), timeout=60)
        assert len(batches) == len(acks.done)

    with StoreReader(tmp_path / "store") as reader:
        assert sum(len(b) for b in batches) == reader.count("")


def test_fluentd_schema_store_searches_the_log_field(tmp_path: Path) -> None:
    asyncio.run(_fluentd_schema_store_searches_the_log_field(tmp_path))


async def _fluentd_schema_store_searches_the_log_field(tmp_path: Path) -> None:
    batches = make_batches(seed=8, containers=2, lines=100, per_batch=50)
    sink, _ = build(tmp_path, schema="fluentd")
    channel = Channel("store", capacity=100)
    channel.add_producer()
    for b in batches:
        await channel.put(b)
    channel.close_producer()
    await asyncio.wait_for(sink.run(channel), timeout=60)
    ns = batches[0].ctx.namespace

    word = re.findall(r"\w+", batches[0].messages[0])[-1].lower()
    with_word = [m for b in batches for m in b.messages if word in re.findall(r"\w+", m.lower())]
    with StoreReader(tmp_path / "store") as reader:
        assert "log" == reader.layout.message_field
        assert sum(len(b) for b in batches if b.ctx.namespace == ns) == reader.count(
            f"kubernetes.namespace_name:{ns}"
        )
        assert 0 < len(with_word) == reader.count(word) == reader.count(f"log:{word}")
        hits = reader.search("stream:stderr", limit=0)
        stored = sorted(h.doc for h in reader.search("", limit=0))
    assert all(b'"stream":"stderr"' in h.doc and b'"log":' in h.doc for h in hits)
    # Rendered from the stored columns, byte for byte what the fluentd encoder makes.
    assert sorted(d for b in batches for d in encode_documents(b, "fluentd")) == stored


def metric(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_full_disk_evicts_then_holds_back_and_resumes_when_space_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a full disk the store makes room by evicting (counted) and goes on; with nothing
    left to evict the sink keeps the batches unacknowledged (the sources pause) and writes
    them, all of them, once space returns - by itself."""
    monkeypatch.setattr(local_module, "_FIRST_BACKOFF", 0.01)
    monkeypatch.setattr(local_module, "_MAX_BACKOFF", 0.05)
    asyncio.run(_full_disk_evicts_then_holds_back(tmp_path, monkeypatch))


async def _full_disk_evicts_then_holds_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = make_batches(seed=9, containers=3, lines=600, per_batch=50)
    first, second, held = batches[:12], batches[12:24], batches[24:]
    disk = FakeDisk(tmp_path / "store", monkeypatch)
    sink, metrics = build(tmp_path, block_docs=100, max_size="1MiB", flush_interval="10ms")
    acks = Acks()
    channel = Channel("store", capacity=1000)
    channel.add_producer()
    task = asyncio.create_task(sink.run(channel))
    errors = {"component_id": "store", "component_kind": "sink", "component_type": "local"}

    for i, b in enumerate(first):
        await channel.put(b.derive(ack=acks.token(i)))
    await until(lambda: len(acks.done) == len(first), "the first batches stored")
    disk.capacity = disk.used() + 2000  # full: what comes next needs room
    for i, b in enumerate(second, len(first)):
        await channel.put(b.derive(ack=acks.token(i)))
    await until(lambda: len(acks.done) == len(first) + len(second), "writes after evicting")
    evicted = metric(
        metrics, "kubelogs_store_evicted_segments_total", component_id="store", reason="disk_full"
    )

    disk.capacity = 0  # nothing the store could evict makes room now
    for i, b in enumerate(held, len(first) + len(second)):
        await channel.put(b.derive(ack=acks.token(i)))
    await until(
        lambda: (
            metric(
                metrics,
                "kubelogs_component_errors_total",
                **errors,
                error_type="StoreFullError",
                stage="sending",
            )
            >= 3
        ),
        "failed attempts while the disk is full",
    )
    acked_while_full = len(acks.done)
    disk.capacity = None  # space returns
    await until(lambda: len(acks.done) == len(batches), "the held-back batches stored")
    channel.close_producer()
    await asyncio.wait_for(task, timeout=30)

    assert evicted >= 1
    assert len(first) + len(second) == acked_while_full
    with StoreReader(tmp_path / "store") as reader:
        stored = sorted(h.doc for h in reader.search("", limit=0))
    assert sorted(d for b in held for d in encode_documents(b)) == stored
    assert len(batches) == len(set(acks.done))


def test_sink_writes_when_pending_message_bytes_reach_block_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long lines: a block is written once `block_bytes` of messages wait, long before
    `block_docs` events or `flush_interval` - memory is bounded by bytes, not events."""
    asyncio.run(_sink_writes_when_pending_bytes_reach_block_bytes(tmp_path, monkeypatch))


async def _sink_writes_when_pending_bytes_reach_block_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = make_batches(seed=5, containers=1, lines=40, per_batch=10)
    batches = [b.derive(messages=[m + " " + "x" * 4096 for m in b.messages]) for b in base]
    sink, _ = build(tmp_path, block_docs=20_000, block_bytes="64KiB", flush_interval="1h")
    written: list[int] = []
    real_write = sink._write

    def spy(writer: Any, group: list[Batch]) -> int:
        written.append(sum(len(b) for b in group))
        return real_write(writer, group)

    monkeypatch.setattr(sink, "_write", spy)
    acks = Acks()
    channel = Channel("store", capacity=100)
    channel.add_producer()
    task = asyncio.create_task(sink.run(channel))
    for i, b in enumerate(batches[:2]):  # 2 x 10 x 4 KiB: over 64 KiB
        await channel.put(b.derive(ack=acks.token(i)))

    await until(lambda: len(acks.done) == 2, "a write triggered by bytes")
    channel.close_producer()
    await asyncio.wait_for(task, timeout=30)

    assert [20] == written
    assert sink.config.block_bytes == 64 << 10
    with StoreReader(tmp_path / "store") as reader:
        assert 20 == reader.count("")


def test_a_disk_too_full_to_open_the_store_is_waited_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No space even for the index: the sink retries opening (counted) instead of
    failing the agent, and stores everything once it can."""
    monkeypatch.setattr(local_module, "_FIRST_BACKOFF", 0.01)
    monkeypatch.setattr(local_module, "_MAX_BACKOFF", 0.05)
    asyncio.run(_disk_too_full_to_open(tmp_path, monkeypatch))


async def _disk_too_full_to_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = make_batches(seed=3, containers=2, lines=100, per_batch=50)
    sink, metrics = build(tmp_path)
    real_open = sink._open
    attempts: list[int] = []

    def full_then_fine() -> StoreWriter:
        attempts.append(1)
        if len(attempts) <= 3:
            raise StoreFullError(f"{sink.path}: the disk is full; cannot open the index")
        return real_open()

    monkeypatch.setattr(sink, "_open", full_then_fine)
    channel = Channel("store", capacity=100)
    channel.add_producer()
    for b in batches:
        await channel.put(b)
    channel.close_producer()

    await asyncio.wait_for(sink.run(channel), timeout=30)

    assert 4 == len(attempts)
    assert 3 == metric(
        metrics,
        "kubelogs_component_errors_total",
        component_id="store",
        component_kind="sink",
        component_type="local",
        error_type="StoreFullError",
        stage="opening",
    )
    with StoreReader(tmp_path / "store") as reader:
        assert sum(len(b) for b in batches) == reader.count("")
