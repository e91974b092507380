#!/usr/bin/env python3
"""The cost of multiline joining: `kubelogs run` draining a tree with Java stack traces,
with ``multiline: java`` on the source and without it, in lines per CPU-second.

Usage: nice -n 5 uv run python bench/multiline_bench.py [--lines 2000000]
       [--containers 20] [--w-java 0.0085] [--repeat 3] [--root DIR]

The tree comes from ../shared/bench/gen_logs.py (CRI lines; Java traces of 12-40 lines on
stderr among text and JSON lines on stdout; `--w-java` raises their share). Each run
drains it into the blackhole sink until the sink has sent every expected event
(``records_expected`` without multiline, ``records_java_joined`` with it: the generator's
own count of one event per trace, so the run also checks that the preset joins exactly
the traces). CPU is the agent process's user+sys from wait4(), as in agent_bench.py; the
median of `--repeat` runs is reported per mode, runs alternating between the modes.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from harness import (
    agent_config,
    containers_source,
    run_until_sent,
    tree_for,
    tree_parser,
)

STALL_TIMEOUT = 900.0
"""Seconds a run may take to send every expected event (a wrong count never gets there)."""


def run_once(
    root: Path, expected: int, lines: int, work: Path, multiline: bool
) -> dict[str, float]:
    data_dir = work / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    source = containers_source(root)
    if multiline:
        source["multiline"] = "java"
    cfg = agent_config(
        data_dir,
        sources={"containers": source},
        sinks={"out": {"type": "blackhole", "inputs": ["containers"]}},
    )
    run = run_until_sent(cfg, work, expected, config_name="bench", timeout=STALL_TIMEOUT)
    cpu = run.cpu_s
    return {
        "events_sent": run.sent,
        "lines_per_cpu_s": lines / cpu,
        "cpu_s_per_1M_lines": cpu / (lines / 1e6),
        "drain_cpu_s_per_1M_lines": (run.drained_cpu_s - run.startup_cpu_s) / (lines / 1e6),
        "wall_s": run.wall_s,
        "peak_rss_mib": run.peak_rss_mib,
    }


def main() -> int:
    ap = tree_parser(__doc__, 2_000_000)
    ap.add_argument("--w-java", type=float, default=0.0085, help="event weight of Java traces")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubelogs-mlbench-"))
    root, manifest = tree_for(a, work, "--w-java", str(a.w_java))
    lines = manifest["lines"]
    results: dict[str, list[dict[str, float]]] = {"without": [], "java": []}
    for _ in range(a.repeat):
        results["without"].append(
            run_once(root, manifest["records_expected"], lines, work, multiline=False)
        )
        results["java"].append(
            run_once(root, manifest["records_java_joined"], lines, work, multiline=True)
        )
    med = {
        mode: {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
        for mode, runs in results.items()
    }
    extra = med["java"]["cpu_s_per_1M_lines"] - med["without"]["cpu_s_per_1M_lines"]
    print(
        json.dumps(
            {
                "lines": lines,
                "java_trace_lines": manifest["by_kind_lines"]["java"],
                "records_expected": manifest["records_expected"],
                "records_java_joined": manifest["records_java_joined"],
                "runs": a.repeat,
                "median": med,
                "multiline_cpu_s_per_1M_lines": round(extra, 2),
                "ratio_lines_per_cpu_s": round(
                    med["java"]["lines_per_cpu_s"] / med["without"]["lines_per_cpu_s"], 3
                ),
            },
            indent=1,
        )
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
