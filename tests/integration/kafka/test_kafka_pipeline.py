"""files -> agent (`kubelogs run`, kafka sink) -> Kafka -> aggregator (`kubelogs run`,
kafka source) -> local store, as users run them, while pods keep writing and rotating:

- every line exactly once with ``kill -9`` of the agent and of the aggregator in turns
  and a broker restart in the middle;
- the broker down for a while (``KUBELOGS_KAFKA_OUTAGE`` seconds, default 8; the issue's
  full 60 s with ``KUBELOGS_KAFKA_OUTAGE=60``): the agent's memory stays bounded and
  nothing is lost;
- two aggregators in one consumer group split the partitions; one is killed, the other
  takes its partitions over; every line is stored.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from kafka_helpers import new_topic

from support.agent import Agent, node_agent_config, write_config
from support.chaos import RotatingWriter
from support.kafka_broker import KafkaBroker
from support.podlogs import PodLog
from support.waiting import wait_for

OUTAGE_SECONDS = float(os.environ.get("KUBELOGS_KAFKA_OUTAGE", "8"))


def agent_config(tmp: Path, node: Path, broker: KafkaBroker, topic: str, **sink: Any) -> Path:
    return node_agent_config(
        tmp / "agent.yaml",
        data_dir=tmp / "agent-data",
        node=node,
        sinks={
            "kafka": {
                "type": "kafka",
                "inputs": ["logs"],
                "bootstrap_servers": [broker.bootstrap],
                "topic": topic,
                "linger": "20ms",
                **sink,
            }
        },
    )


def aggregator_config(
    tmp: Path, broker: KafkaBroker, topic: str, group: str, name: str = "aggregator"
) -> Path:
    return write_config(
        tmp / f"{name}.yaml",
        {
            "data_dir": str(tmp / f"{name}-data"),
            "node_name": name,
            "api": {"listen": "127.0.0.1:0"},
            "sources": {
                "kafka": {
                    "type": "kafka",
                    "bootstrap_servers": [broker.bootstrap],
                    "topics": [topic],
                    "group_id": group,
                    "commit_interval": "200ms",
                    "session_timeout": "6s",
                }
            },
            "sinks": {
                "store": {
                    "type": "local",
                    "inputs": ["kafka"],
                    "path": str(tmp / f"{name}-store"),
                    "flush_interval": "100ms",
                }
            },
        },
    )


def stored_messages(store: Path) -> Counter[str]:
    """Messages in the store, with their counts (in-process reader: also a progress
    probe while the aggregator writes)."""
    from kubelogs.store.errors import StoreError
    from kubelogs.store.reader import StoreReader

    if not (store / "index.sqlite").exists():
        return Counter()
    try:
        with StoreReader(store) as reader:
            return Counter(str(json.loads(h.doc)["message"]) for h in reader.search("", limit=0))
    except StoreError:
        return Counter()


def stored_count(store: Path) -> int:
    from kubelogs.store.errors import StoreError
    from kubelogs.store.reader import StoreReader

    if not (store / "index.sqlite").exists():
        return 0
    try:
        with StoreReader(store) as reader:
            return reader.count("")
    except StoreError:
        return 0


def rss_mib(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else 0.0


def grows(count: Any, by: int, what: str, timeout: float = 90) -> None:
    start = count()
    wait_for(lambda: count() >= start + by, timeout=timeout, interval=0.1, what=what)


def test_kill9_agent_and_aggregator_in_turns_and_broker_restart_exactly_once(
    broker: KafkaBroker, tmp_path: Path
) -> None:
    """Every line written is stored exactly once, whatever was killed when."""
    node = tmp_path / "node"
    pods = [PodLog(node, pod=f"busy-{i}-abcde") for i in range(3)]
    topic = new_topic(broker)
    store = tmp_path / "aggregator-store"
    a_cfg = agent_config(tmp_path, node, broker, topic)
    g_cfg = aggregator_config(tmp_path, broker, topic, f"g-{uuid.uuid4().hex[:8]}")
    progress = lambda: stored_count(store)  # noqa: E731
    agent = Agent(a_cfg, tmp_path / "agent0.log").start()
    agg = Agent(g_cfg, tmp_path / "agg0.log").start()
    try:
        with RotatingWriter(pods, seed=11) as writer:
            grows(progress, 500, "first lines stored")
            agent.kill9()
            agent = Agent(a_cfg, tmp_path / "agent1.log").start()
            grows(progress, 500, "progress after the agent's kill -9")
            agg.kill9()
            agg = Agent(g_cfg, tmp_path / "agg1.log").start()
            grows(progress, 500, "progress after the aggregator's kill -9")
            broker.stop()
            time.sleep(1.0)  # an outage, however short: both sides see the broker go
            broker.start()
            grows(progress, 500, "progress after the broker restart")
            agent.kill9()
            agent = Agent(a_cfg, tmp_path / "agent2.log").start()
            grows(progress, 500, "progress after the agent's second kill -9")
            agg.kill9()
            agg = Agent(g_cfg, tmp_path / "agg2.log").start()
            grows(progress, 500, "progress after the aggregator's second kill -9")
        written = writer.written
        wait_for(lambda: progress() >= len(written), timeout=120, what="every line stored")
        assert 0 == agent.stop()
        assert 0 == agg.stop()
    finally:
        for p in (agent, agg):
            if p.proc is not None and p.proc.poll() is None:
                p.kill9()
    got = stored_messages(store)

    assert len(written) == len(set(written))
    assert [] == [m for m in written if got[m] != 1]
    assert len(written) == sum(got.values())


def test_broker_down_agent_memory_bounded_nothing_lost(broker: KafkaBroker, tmp_path: Path) -> None:
    """With the broker stopped for `OUTAGE_SECONDS` while pods keep writing, the agent's
    RSS stays bounded (it stops reading: the files wait on disk); when the broker
    returns every line arrives exactly once."""
    node = tmp_path / "node"
    pods = [PodLog(node, pod=f"steady-{i}-abcde") for i in range(3)]
    topic = new_topic(broker)
    store = tmp_path / "aggregator-store"
    a_cfg = agent_config(tmp_path, node, broker, topic, max_in_flight_bytes="2MiB")
    g_cfg = aggregator_config(tmp_path, broker, topic, f"g-{uuid.uuid4().hex[:8]}")
    progress = lambda: stored_count(store)  # noqa: E731
    rss: list[float] = []
    with Agent(a_cfg, tmp_path / "agent.log") as agent, Agent(g_cfg, tmp_path / "agg.log") as agg:
        assert agent.proc is not None
        with RotatingWriter(pods, seed=23) as writer:
            grows(progress, 500, "first lines stored")
            before = rss_mib(agent.proc.pid)
            broker.stop()
            try:
                end = time.monotonic() + OUTAGE_SECONDS
                while time.monotonic() < end:
                    rss.append(rss_mib(agent.proc.pid))
                    time.sleep(0.5)  # sampling the agent's memory, not synchronisation
                written_during = len(writer.written)
            finally:
                broker.start()
            grows(progress, 500, "progress after the broker returned", timeout=180)
        written = writer.written
        wait_for(lambda: progress() >= len(written), timeout=180, what="every line stored")
        assert 0 == agent.stop()
        assert 0 == agg.stop()
    got = stored_messages(store)

    print(f"agent RSS {before:.0f} MiB before the outage, {max(rss):.0f} MiB at most during it")
    assert written_during > 1000
    assert max(rss) < before + 64, (before, max(rss))
    assert [] == [m for m in written if got[m] != 1]
    assert len(written) == sum(got.values())


def test_two_aggregators_split_partitions_and_one_takes_over(
    broker: KafkaBroker, tmp_path: Path
) -> None:
    """Two aggregators of one group each get partitions; after one is killed (kill -9)
    the other takes them over when the session times out, and every line is stored.

    Each aggregator has its own store, so events the killed one stored but had not
    committed are stored again by the other (with the same event ids: one document in
    Elasticsearch); each store on its own holds every event once."""
    node = tmp_path / "node"
    pods = [PodLog(node, pod=f"pod-{i}-abcde") for i in range(8)]
    topic = new_topic(broker, 4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    a_cfg = agent_config(tmp_path, node, broker, topic)
    cfg1 = aggregator_config(tmp_path, broker, topic, group, "agg1")
    cfg2 = aggregator_config(tmp_path, broker, topic, group, "agg2")
    store1, store2 = tmp_path / "agg1-store", tmp_path / "agg2-store"
    with Agent(a_cfg, tmp_path / "agent.log") as agent:
        agg1 = Agent(cfg1, tmp_path / "agg1.log").start()
        agg2 = Agent(cfg2, tmp_path / "agg2.log").start()
        try:
            with RotatingWriter(pods, seed=31) as writer:
                wait_for(
                    lambda: stored_count(store1) > 200 and stored_count(store2) > 200,
                    timeout=120,
                    what="both aggregators storing (partitions split)",
                )
                agg1.kill9()
                grows(lambda: stored_count(store2), 2000, "the survivor going on")
            written = writer.written
            wait_for(
                lambda: set(stored_messages(store1)) | set(stored_messages(store2)) >= set(written),
                timeout=120,
                what="every line stored by one of them",
            )
            assert 0 == agg2.stop()
            assert 0 == agent.stop()
        finally:
            for p in (agg1, agg2):
                if p.proc is not None and p.proc.poll() is None:
                    p.kill9()
    got1, got2 = stored_messages(store1), stored_messages(store2)

    assert [] == [m for m, n in (got1 + got2).items() if n > 1 and (got1[m] > 1 or got2[m] > 1)]
    assert set(written) == set(got1) | set(got2)
    assert re.search(r"assigned .*\[", (tmp_path / "agg2.log").read_text())
