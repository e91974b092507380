#!/usr/bin/env python3
"""The Kafka hop's cost: agent -> Kafka and Kafka -> local store, against agent -> local
store and agent -> blackhole, on one generated tree, against a real broker.

Usage: uv run python bench/kafka_bench.py [--lines 1000000] [--containers 20]
       [--repeat 3] [--bootstrap HOST:PORT] [--compression lz4]

Each pipeline runs as `kubelogs run` in a child process (as users run it) until its sink
has sent every record (polled from /metrics); CPU is that process's user+sys from
``wait4`` (librdkafka's threads included), peak RSS its ``ru_maxrss``. Reported per
pipeline: CPU-s per 1M lines, lines per CPU-second and peak RSS (median of `--repeat`),
and the producer-side cost of the hop: CPU-s per 1M lines of agent -> Kafka minus agent
-> blackhole (the target is at most +2). Without `--bootstrap` the test broker
(`tests/support/kafka_broker.py`) is started and stopped.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from harness import (
    agent_config,
    containers_source,
    run_until_sent,
    tree_for,
    tree_parser,
)

HERE = Path(__file__).resolve().parent


def run_pipeline(work: Path, name: str, cfg: dict[str, Any], records: int) -> dict[str, float]:
    """Run one `kubelogs run` until its sink ``out`` sent `records`; its CPU and RSS."""
    data_dir = work / f"data-{name}"
    shutil.rmtree(data_dir, ignore_errors=True)
    run = run_until_sent(agent_config(data_dir, **cfg), work, records, name)
    return {
        "cpu_s": run.cpu_s,
        "startup_cpu_s": run.startup_cpu_s,
        "wall_s": run.wall_s,
        "rss": run.peak_rss_mib,
    }


def main() -> int:
    ap = tree_parser(__doc__, 1_000_000)
    ap.add_argument("--bootstrap")
    ap.add_argument("--compression", default="lz4")
    ap.add_argument(
        "--only",
        default="agent_blackhole,agent_local,agent_kafka,kafka_local",
        help="comma-separated pipelines to run (kafka_local needs agent_kafka)",
    )
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubelogs-kafka-bench-"))
    root, manifest = tree_for(a, work)
    records, lines = manifest["records_expected"], manifest["lines"]
    broker = None
    bootstrap = a.bootstrap
    if bootstrap is None:
        sys.path.insert(0, str(HERE.parent / "tests"))
        from support.kafka_broker import KafkaBroker

        broker = KafkaBroker(home=work / "kafka", log_path=work / "kafka.log").prepare().start()
        bootstrap = broker.bootstrap
    tail = {"containers": containers_source(root)}
    runs: dict[str, list[dict[str, float]]] = {}
    try:
        for rep in range(a.repeat):
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            if broker is not None:
                broker.create_topic(topic, 4)
            store = work / f"store-{rep}"
            pipelines: list[tuple[str, dict[str, Any]]] = [
                (
                    "agent_blackhole",
                    {
                        "sources": tail,
                        "sinks": {"out": {"type": "blackhole", "inputs": ["containers"]}},
                    },
                ),
                (
                    "agent_local",
                    {
                        "sources": tail,
                        "sinks": {
                            "out": {"type": "local", "inputs": ["containers"], "path": str(store)}
                        },
                    },
                ),
                (
                    "agent_kafka",
                    {
                        "sources": tail,
                        "sinks": {
                            "out": {
                                "type": "kafka",
                                "inputs": ["containers"],
                                "bootstrap_servers": [bootstrap],
                                "topic": topic,
                                "compression": a.compression,
                            }
                        },
                    },
                ),
                (
                    "kafka_local",
                    {
                        "sources": {
                            "kafka": {
                                "type": "kafka",
                                "bootstrap_servers": [bootstrap],
                                "topics": [topic],
                                "group_id": f"bench-{rep}",
                            }
                        },
                        "sinks": {
                            "out": {
                                "type": "local",
                                "inputs": ["kafka"],
                                "path": str(work / f"kstore-{rep}"),
                            }
                        },
                    },
                ),
            ]
            for name, cfg in pipelines:
                if name not in a.only.split(","):
                    continue
                r = run_pipeline(work, name, cfg, records)
                runs.setdefault(name, []).append(r)
                print(name, {k: round(v, 2) for k, v in r.items()}, file=sys.stderr, flush=True)
    finally:
        if broker is not None:
            broker.stop()
    out: dict[str, Any] = {"lines": lines, "records": records, "runs": a.repeat}
    for name, rs in runs.items():
        cpu = statistics.median(r["cpu_s"] for r in rs)
        out[name] = {
            "cpu_s_per_1M_lines": round(cpu / (lines / 1e6), 2),
            "lines_per_cpu_s": round(lines / cpu),
            "peak_rss_mib": round(statistics.median(r["rss"] for r in rs), 1),
            "wall_s": round(statistics.median(r["wall_s"] for r in rs), 1),
        }
    if "agent_kafka" in runs and "agent_blackhole" in runs:
        hop = [
            (k["cpu_s"] - b["cpu_s"]) / (lines / 1e6)
            for k, b in zip(runs["agent_kafka"], runs["agent_blackhole"], strict=True)
        ]
        out["kafka_hop_producer_cpu_s_per_1M_lines"] = round(statistics.median(hop), 2)
    print(json.dumps(out, indent=1))
    if a.root is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
