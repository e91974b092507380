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
-> blackhole, and minus agent -> local store (the issue's target: at most +2 over
the local store). Without `--bootstrap` the test broker
(`tests/support/kafka_broker.py`) is started and stopped.
"""

from __future__ import annotations

import json
import os
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


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of a running process's threads, summed by kind: librdkafka's
    (named ``rdk:...``) and the interpreter's (the event loop and any worker threads)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        comm = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        kind = "librdkafka" if comm.startswith("rdk:") else "python"
        out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def run_pipeline(work: Path, name: str, cfg: dict[str, Any], records: int) -> dict[str, float]:
    """Run one `kubelogs run` until its sink ``out`` sent `records`; its CPU and RSS (and
    the CPU of librdkafka's threads at that point, ``rdk_cpu_s``)."""
    data_dir = work / f"data-{name}"
    shutil.rmtree(data_dir, ignore_errors=True)
    threads: dict[str, float] = {}
    run = run_until_sent(
        agent_config(data_dir, **cfg),
        work,
        records,
        name,
        on_drained=lambda pid: threads.update(thread_cpu(pid)),
    )
    return {
        "cpu_s": run.cpu_s,
        "startup_cpu_s": run.startup_cpu_s,
        "rdk_cpu_s": threads.get("librdkafka", 0.0),
        "wall_s": run.wall_s,
        "rss": run.peak_rss_mib,
    }


def main() -> int:
    ap = tree_parser(__doc__, 1_000_000)
    ap.add_argument("--bootstrap")
    ap.add_argument("--compression", default="lz4")
    ap.add_argument(
        "--sink-options",
        default="{}",
        metavar="JSON",
        help="more settings of the kafka sink, e.g. '{\"event_id_header\": true}'",
    )
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
                                **json.loads(a.sink_options),
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
        if any(r["rdk_cpu_s"] for r in rs):
            rdk = statistics.median(r["rdk_cpu_s"] for r in rs)
            out[name]["librdkafka_threads_cpu_s_per_1M_lines"] = round(rdk / (lines / 1e6), 2)
    if "agent_kafka" in runs and "agent_blackhole" in runs:
        hop = [
            (k["cpu_s"] - b["cpu_s"]) / (lines / 1e6)
            for k, b in zip(runs["agent_kafka"], runs["agent_blackhole"], strict=True)
        ]
        out["kafka_hop_producer_cpu_s_per_1M_lines"] = round(statistics.median(hop), 2)
    if "agent_kafka" in runs and "agent_local" in runs:
        hop = [
            (k["cpu_s"] - b["cpu_s"]) / (lines / 1e6)
            for k, b in zip(runs["agent_kafka"], runs["agent_local"], strict=True)
        ]
        out["kafka_hop_vs_local_store_cpu_s_per_1M_lines"] = round(statistics.median(hop), 2)
    print(json.dumps(out, indent=1))
    if a.root is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
