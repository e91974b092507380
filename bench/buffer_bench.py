#!/usr/bin/env python3
"""What the disk buffer costs: the same drain through `kubelogs run` with and without
``buffer: {type: disk}`` on the sink, CPU-s per 1M lines for each and the difference.

Usage: uv run python bench/buffer_bench.py [--lines 1000000] [--containers 20]
       [--sink blackhole|local] [--repeat 3] [--root TREE]

A generated node tree (../shared/bench/gen_logs.py, as bench/agent_bench.py) is drained
by a `kubernetes_logs` source into the sink, alternately without and with a disk buffer
(fsync every 50 ms, the default); each run is a fresh process with an empty data_dir.
CPU is the agent process's user+sys over its whole life (`wait4`), as in agent_bench.
Target (issue 14): the disk buffer adds at most 1 CPU-s per 1M lines.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import agent_config, containers_source, run_until_sent, tree_for, tree_parser


def run_once(
    root: Path, manifest: dict[str, Any], sink: str, work: Path, disk: bool
) -> dict[str, float]:
    data_dir = work / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.rmtree(work / "store", ignore_errors=True)
    sink_cfg: dict[str, Any] = {"type": sink, "inputs": ["containers"]}
    if sink == "local":
        sink_cfg["path"] = str(work / "store")
    if disk:
        sink_cfg["buffer"] = {"type": "disk", "max_size": "8GiB"}
    cfg = agent_config(
        data_dir,
        sources={"containers": containers_source(root)},
        sinks={"out": sink_cfg},
    )
    run = run_until_sent(cfg, work, manifest["records_expected"], config_name="bench")
    lines = manifest["lines"] / 1e6
    return {
        "cpu_s_per_1M_lines": run.cpu_s / lines,
        "drain_cpu_s_per_1M_lines": (run.drained_cpu_s - run.startup_cpu_s) / lines,
        "wall_s": run.wall_s,
        "peak_rss_mib": run.peak_rss_mib,
    }


def main() -> int:
    ap = tree_parser(__doc__, 1_000_000)
    ap.add_argument("--sink", choices=["blackhole", "local"], default="blackhole")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubelogs-buffer-bench-"))
    root, manifest = tree_for(a, work)
    runs: dict[str, list[dict[str, float]]] = {"memory": [], "disk": []}
    for _ in range(a.repeat):  # interleaved: machine noise hits both alike
        runs["memory"].append(run_once(root, manifest, a.sink, work, disk=False))
        runs["disk"].append(run_once(root, manifest, a.sink, work, disk=True))
    med = {
        name: {k: round(statistics.median(r[k] for r in rs), 2) for k in rs[0]}
        for name, rs in runs.items()
    }
    added = round(
        med["disk"]["drain_cpu_s_per_1M_lines"] - med["memory"]["drain_cpu_s_per_1M_lines"], 2
    )
    print(
        json.dumps(
            {
                "lines": manifest["lines"],
                "sink": a.sink,
                "runs": a.repeat,
                "median": med,
                "disk_buffer_added_cpu_s_per_1M_lines": added,
            },
            indent=1,
        )
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
