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

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agent_bench import _listening_port, _process_cpu, _wait_with_rusage, generate_tree, sent_events


def run_once(
    root: Path, expected: int, lines: int, work: Path, multiline: bool
) -> dict[str, float]:
    import yaml

    data_dir = work / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    source: dict[str, Any] = {
        "type": "kubernetes_logs",
        "include": [str(root / "var/log/containers/*.log")],
    }
    if multiline:
        source["multiline"] = "java"
    cfg = {
        "data_dir": str(data_dir),
        "node_name": "node-bench-1",
        "api": {"listen": "127.0.0.1:0"},
        "log": {"level": "warning"},
        "sources": {"containers": source},
        "sinks": {"out": {"type": "blackhole", "inputs": ["containers"]}},
    }
    cfg_path = work / "bench.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    log_path = work / "agent.log"
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubelogs", "run", "-c", str(cfg_path)],
            stderr=log,
            stdout=subprocess.DEVNULL,
        )
    port = None
    deadline = time.monotonic() + 60
    while port is None and time.monotonic() < deadline:
        port = _listening_port(proc.pid)
        time.sleep(0.05)
    if port is None:
        proc.kill()
        raise SystemExit(f"agent did not open its API port; see {log_path}")
    startup = _process_cpu(proc.pid)
    deadline = time.monotonic() + 900
    while sent_events(port, "out") < expected:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"agent exited or stalled before {expected} events; see {log_path}")
        time.sleep(0.2)
    wall = time.monotonic() - t0
    drained = _process_cpu(proc.pid)
    sent = sent_events(port, "out")
    proc.send_signal(signal.SIGTERM)
    usage = _wait_with_rusage(proc, 120)
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "events_sent": sent,
        "lines_per_cpu_s": lines / cpu,
        "cpu_s_per_1M_lines": cpu / (lines / 1e6),
        "drain_cpu_s_per_1M_lines": (drained - startup) / (lines / 1e6),
        "wall_s": wall,
        "peak_rss_mib": usage.ru_maxrss / 1024,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--root", type=Path, help="reuse an existing generated tree")
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--containers", type=int, default=20)
    ap.add_argument("--w-java", type=float, default=0.0085, help="event weight of Java traces")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubelogs-mlbench-"))
    root = a.root or work / "tree"
    if a.root is None:
        manifest = generate_tree(root, a.lines, a.containers, "--w-java", str(a.w_java))
    else:
        manifest = json.loads((root / "manifest.json").read_text())
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
