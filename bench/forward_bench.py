#!/usr/bin/env python3
"""What the forward hop costs: two measurements, CPU taken from outside the processes.

Usage: uv run python bench/forward_bench.py [--events 1000000] [--lines 1000000]
       [--containers 20] [--repeat 3] [--only intake|hop]

1. **intake**: `kubelogs run` with a `forward` source and a `blackhole` sink; this script
   sends pre-encoded fluent-logger-style PackedForward chunks (1,000 records of
   ``{"log", "stream", "level"}`` with EventTime, a ``chunk`` id each, 8 in flight) and
   waits for every ack. Reported: events per CPU-second of the receiving process.
2. **hop**: a node tree from ../shared/bench/gen_logs.py drained three ways: one process
   `kubernetes_logs -> local` (the baseline), then an agent `kubernetes_logs -> forward`
   and an aggregator `forward -> local` (``format: kubelogs`` and ``format: records``).
   Reported: CPU-s per 1M lines summed over both processes (wait4 rusage, start-up
   included), and the difference to the baseline: the cost of the hop.

Medians of `--repeat` runs; the machine is shared and noisy: compare within one run.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    Agent,
    agent_config,
    containers_source,
    process_cpu,
    start_agent,
    stop_agent,
    tree_for,
    tree_parser,
    wait_sent,
)

from kubelogs.forward.protocol import encode_packed_forward, pack_entry


def start(cfg: dict[str, Any], work: Path, name: str) -> Agent:
    """Start `kubelogs run` on `cfg`; its API port is the listening port that is not the
    forward source's."""
    fwd = {
        int(s["address"].rsplit(":", 1)[1])
        for s in cfg.get("sources", {}).values()
        if s.get("type") == "forward"
    }
    return start_agent(cfg, work, name, exclude_ports=fwd)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def intake(events: int, work: Path) -> dict[str, float]:
    fport = free_port()
    cfg = {
        "data_dir": str(work / "intake-data"),
        "api": {"listen": "127.0.0.1:0"},
        "log": {"level": "warning"},
        "sources": {"fwd": {"type": "forward", "address": f"127.0.0.1:{fport}"}},
        "sinks": {"out": {"type": "blackhole", "inputs": ["fwd"]}},
    }
    agent = start(cfg, work, "intake")
    per_chunk = 1000
    entries = [
        pack_entry(
            1_700_000_000_000_000_000 + i,
            {
                "log": f"2024-01-01 INFO request {i} served in {i % 97}ms path=/api/v1/items",
                "stream": "stdout",
                "level": "info",
            },
        )
        for i in range(per_chunk)
    ]
    chunks = events // per_chunk
    t0 = time.monotonic()
    cpu0 = process_cpu(agent.proc.pid)
    with socket.create_connection(("127.0.0.1", fport)) as s:
        unpacker = msgpack.Unpacker(raw=False)
        inflight = 0
        acked = 0
        sent = 0
        while acked < chunks:
            while sent < chunks and inflight < 8:
                cid = base64.b64encode(os.urandom(16)).decode()
                s.sendall(encode_packed_forward("app.web", entries, chunk=cid))
                sent += 1
                inflight += 1
            unpacker.feed(s.recv(65536))
            for _ in unpacker:
                acked += 1
                inflight -= 1
    wall = time.monotonic() - t0
    cpu = process_cpu(agent.proc.pid) - cpu0
    wait_sent(agent, chunks * per_chunk)
    usage = stop_agent(agent)
    n = chunks * per_chunk
    return {
        "events_per_cpu_s": n / cpu,
        "cpu_s_per_1M_events": cpu / (n / 1e6),
        "events_per_wall_s": n / wall,
        "peak_rss_mib": usage.ru_maxrss / 1024,
    }


def hop(root: Path, manifest: dict[str, Any], work: Path, fmt: str | None) -> dict[str, float]:
    """fmt None: one process into the store; else agent + aggregator with that format."""
    for d in ("agent-data", "agg-data", "store"):
        shutil.rmtree(work / d, ignore_errors=True)
    containers = containers_source(root)
    store = {"type": "local", "path": str(work / "store")}
    expected = manifest["records_expected"]
    lines = manifest["lines"]
    t0 = time.monotonic()
    if fmt is None:
        cfg = agent_config(
            work / "agent-data",
            sources={"containers": containers},
            sinks={"out": {**store, "inputs": ["containers"]}},
        )
        single = start(cfg, work, "single")
        startup = single.startup_cpu_s
        wait_sent(single, expected)
        wall = time.monotonic() - t0
        u = stop_agent(single)
        cpu = u.ru_utime + u.ru_stime
        return {
            "cpu_s_per_1M_lines": cpu / (lines / 1e6),
            "drain_cpu_s_per_1M_lines": (cpu - startup) / (lines / 1e6),
            "lines_per_cpu_s": lines / cpu,
            "wall_s": wall,
            "peak_rss_mib": u.ru_maxrss / 1024,
        }
    fport = free_port()
    agg_cfg = agent_config(
        work / "agg-data",
        "aggregator",
        sources={"fwd": {"type": "forward", "address": f"127.0.0.1:{fport}"}},
        sinks={"out": {**store, "inputs": ["fwd"]}},
    )
    agent_cfg = agent_config(
        work / "agent-data",
        sources={"containers": containers},
        sinks={
            "agg": {
                "type": "forward",
                "inputs": ["containers"],
                "servers": [f"127.0.0.1:{fport}"],
                "format": fmt,
            }
        },
    )
    agg = start(agg_cfg, work, f"aggregator-{fmt}")
    agent = start(agent_cfg, work, f"agent-{fmt}")
    wait_sent(agent, expected, "agg")
    wait_sent(agg, expected)
    wall = time.monotonic() - t0
    ua = stop_agent(agent)
    ug = stop_agent(agg)
    cpu_agent = ua.ru_utime + ua.ru_stime
    cpu_agg = ug.ru_utime + ug.ru_stime
    cpu = cpu_agent + cpu_agg
    startup = agent.startup_cpu_s + agg.startup_cpu_s
    return {
        "cpu_s_per_1M_lines": cpu / (lines / 1e6),
        "drain_cpu_s_per_1M_lines": (cpu - startup) / (lines / 1e6),
        "agent_cpu_s_per_1M_lines": cpu_agent / (lines / 1e6),
        "aggregator_cpu_s_per_1M_lines": cpu_agg / (lines / 1e6),
        "lines_per_cpu_s": lines / cpu,
        "wall_s": wall,
        "agent_peak_rss_mib": ua.ru_maxrss / 1024,
        "aggregator_peak_rss_mib": ug.ru_maxrss / 1024,
    }


def median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}


def main() -> int:
    ap = tree_parser(__doc__, 1_000_000)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--only", choices=["intake", "hop"])
    ap.add_argument(
        "--formats", default="kubelogs,records", help="sink formats for the hop, comma-separated"
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubelogs-fwd-bench-"))
    results: dict[str, Any] = {}
    try:
        if args.only in (None, "intake"):
            results["intake_forward_to_blackhole"] = median(
                [intake(args.events, work) for _ in range(args.repeat)]
            )
            print(json.dumps(results, indent=2), flush=True)
        if args.only in (None, "hop"):
            root, manifest = tree_for(args, work)
            formats = [f for f in args.formats.split(",") if f]
            runs: dict[str, list[dict[str, float]]] = {f: [] for f in ["single", *formats]}
            for _ in range(args.repeat):  # interleaved: load changes hit all alike
                runs["single"].append(hop(root, manifest, work, None))
                for fmt in formats:
                    runs[fmt].append(hop(root, manifest, work, fmt))
            single = median(runs["single"])
            results["single_process_to_local"] = single
            for fmt in formats:
                r = median(runs[fmt])
                r["hop_cost_cpu_s_per_1M_lines"] = round(
                    r["cpu_s_per_1M_lines"] - single["cpu_s_per_1M_lines"], 3
                )
                r["hop_drain_cost_cpu_s_per_1M_lines"] = round(
                    r["drain_cpu_s_per_1M_lines"] - single["drain_cpu_s_per_1M_lines"], 3
                )
                results[f"agent_aggregator_format_{fmt}"] = r
        print(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
