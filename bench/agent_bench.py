#!/usr/bin/env python3
"""Drain a generated node log tree through `kubelogs run` and report the agent's cost.

Usage: uv run python bench/agent_bench.py [--lines 2000000] [--containers 20]
       [--format cri|docker] [--sink blackhole|local] [--metadata] [--transform JSON]
       [--repeat 3] [--malloc self|env|off] [--parse json|logfmt|klog|...]

Generates the tree with ../shared/bench/gen_logs.py (or reuses --root), runs the agent
as a child process with a blackhole (or local store) sink, waits until the sink has sent
every expected record (polling /metrics), stops it with SIGTERM, and prints lines/s per
CPU-second, CPU-s per 1M lines, CPU-s per GB and peak RSS. The median of `--repeat` runs
is reported; machines are noisy.

CPU is measured from outside: `wait4()` on the agent's pid returns the user+sys time and
peak RSS of that one process over its whole life, start-up (imports, config) and
shutdown included, which is what a node pays. `startup_cpu_s` is the process's CPU when
its API port opened (from /proc/PID/stat) and `drain_cpu_s_per_1M_lines` the rest.

`--malloc`: `self` (default) runs the agent as a user does, with no malloc variables:
`kubelogs run` tunes glibc itself; `env` sets MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_
as earlier versions of this script did; `off` sets KUBELOGS_MALLOC_TUNING=off (glibc's
defaults), the "without" figure.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness import (
    agent_config,
    containers_source,
    run_until_sent,
    tree_for,
    tree_parser,
)


def run_once(
    root: Path,
    manifest: dict,
    sink: str,
    work: Path,
    extra_transform: dict | None,
    env_extra: dict[str, str],
    profile: Path | None = None,
    parse: str | None = None,
) -> dict[str, float]:
    last = "k8s" if extra_transform else "containers"
    sink_cfg: dict = {"type": sink, "inputs": ["parse" if parse else last]}
    if sink == "local":
        sink_cfg["path"] = str(work / "store")
        shutil.rmtree(work / "store", ignore_errors=True)
    data_dir = work / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    cfg = agent_config(
        data_dir,
        sources={"containers": containers_source(root)},
        sinks={"out": sink_cfg},
    )
    transforms: dict[str, Any] = {}
    if extra_transform:
        transforms["k8s"] = extra_transform
    if parse:
        # The `parse` transform applies the parser to every line, as a source's
        # `parser:` does (non-matching lines are flagged, not dropped).
        transforms["parse"] = {"type": "parse", "inputs": [last], "parser": parse}
    if transforms:
        cfg["transforms"] = transforms
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "KUBELOGS_MALLOC_TUNING")
    }
    env.update(env_extra)
    run = run_until_sent(
        cfg,
        work,
        manifest["records_expected"],
        config_name="bench",
        env=env,
        python_args=["-m", "cProfile", "-o", str(profile)] if profile else [],
    )
    cpu = run.cpu_s
    lines = manifest["lines"]
    store_bytes = (
        sum(f.stat().st_size for f in (work / "store").rglob("*") if f.is_file())
        if sink == "local"
        else 0
    )
    extra = (
        {
            "store_bytes_per_1M_lines": store_bytes / (lines / 1e6),
            "store_pct_of_raw": 100.0 * store_bytes / manifest["bytes"],
        }
        if sink == "local"
        else {}
    )
    return {
        **extra,
        "lines_per_cpu_s": lines / cpu,
        "cpu_s_per_1M_lines": cpu / (lines / 1e6),
        "cpu_s_per_GB": cpu / (manifest["bytes"] / 1e9),
        "startup_cpu_s": run.startup_cpu_s,
        "drain_cpu_s_per_1M_lines": (run.drained_cpu_s - run.startup_cpu_s) / (lines / 1e6),
        "wall_s": run.wall_s,
        "lines_per_wall_s": lines / run.wall_s,
        "peak_rss_mib": run.peak_rss_mib,
        "minor_faults": float(run.usage.ru_minflt),
    }


def start_apiserver(root: Path, work: Path) -> tuple[Any, dict[str, Any]]:
    """Serve the tree's pods (kube-meta/*.meta, API shape) from a FakeApiServer thread."""
    from kubelogs.testing.fake_apiserver import FakeApiServer

    srv = FakeApiServer(token="bench-token")
    ctx = srv.in_thread()
    ctx.__enter__()
    node = None
    for meta in sorted((root / "kube-meta").glob("*.meta")):
        pod = json.loads(meta.read_text())
        node = pod["spec"]["nodeName"]
        srv.create_pod(pod)
    transform = {
        "type": "kubernetes_metadata",
        "inputs": ["containers"],
        "api_server": srv.url,
        "token_file": str(srv.write_token(work / "token")),
        "node_name": node,
    }

    class _Stop:
        def stop(self) -> None:
            ctx.__exit__(None, None, None)

    return _Stop(), transform


def main() -> int:
    ap = tree_parser(__doc__, 2_000_000)
    ap.add_argument("--format", choices=["cri", "docker"], default="cri")
    ap.add_argument("--sink", choices=["blackhole", "local"], default="blackhole")
    ap.add_argument(
        "--metadata",
        action="store_true",
        help="add the kubernetes_metadata transform fed by a FakeApiServer",
    )
    ap.add_argument(
        "--transform",
        metavar="JSON",
        help="a transform between source and sink, e.g. "
        '\'{"type": "filter", "condition": "not \\"zz no such phrase\\""}\' (it must '
        "keep every event: the run ends when the sink has them all)",
    )
    ap.add_argument(
        "--malloc",
        choices=["self", "env", "off"],
        default="self",
        help="self: no variables, kubelogs tunes glibc itself (as users run it); "
        "env: set MALLOC_*_THRESHOLD_; off: KUBELOGS_MALLOC_TUNING=off (glibc defaults)",
    )
    ap.add_argument(
        "--no-malloc-env", action="store_true", help="the same as --malloc off (older flag)"
    )
    ap.add_argument(
        "--parse",
        metavar="PARSER",
        help="add a `parse` transform with this parser (json, logfmt, klog, ...) on every line",
    )
    ap.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="run the agent under cProfile and write its stats to FILE (slower; one run)",
    )
    a = ap.parse_args()
    if a.profile:
        a.repeat = 1
    work = Path(tempfile.mkdtemp(prefix="kubelogs-bench-"))
    root, manifest = tree_for(a, work, "--format", a.format)
    malloc = "off" if a.no_malloc_env else a.malloc
    env_extra = {
        "self": {},
        "env": {"MALLOC_MMAP_THRESHOLD_": "268435456", "MALLOC_TRIM_THRESHOLD_": "1073741824"},
        "off": {"KUBELOGS_MALLOC_TUNING": "off"},
    }[malloc]
    transform = None
    server = None
    if a.metadata:
        server, transform = start_apiserver(root, work)
    if a.transform:
        if a.metadata:
            raise SystemExit("--transform and --metadata cannot be combined")
        transform = {**json.loads(a.transform), "inputs": ["containers"]}
    results = [
        run_once(root, manifest, a.sink, work, transform, env_extra, a.profile, a.parse)
        for _ in range(a.repeat)
    ]
    if server is not None:
        server.stop()
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(
        json.dumps(
            {
                "lines": manifest["lines"],
                "records": manifest["records_expected"],
                "bytes": manifest["bytes"],
                "format": manifest["format"],
                "sink": a.sink,
                "metadata": a.metadata,
                "transform": a.transform,
                "parse": a.parse,
                "malloc": malloc,
                "runs": len(results),
                "median": {k: round(v, 2) for k, v in med.items()},
            },
            indent=1,
        )
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
