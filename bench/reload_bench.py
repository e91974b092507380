#!/usr/bin/env python3
"""How long a reload holds the source that keeps running: a sink-only partial reload
against a whole-pipeline restart, while the source reads a large file as fast as it can.

Usage: nice -n 5 uv run python bench/reload_bench.py [--lines 1000000] [--reloads 20]

In-process (the `Supervisor` that `kubelogs run` uses): a `file` source reads a file of
`--lines` lines into a `file` sink; every 50 ms a reload switches the sink's `path`
between two files (a sink-only change: partial reload), or, with `--whole`, also the
summary interval (whole-pipeline restart). Reported per reload: for partial ones, the
time the kept source was held (`paused`: from its pause to its resume, which includes
the old sink's drain, its close and the new sink's build), for whole ones the time from
the request to the new pipeline's readiness. At the end every line must be in exactly
one of the two files.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kubelogs.config.loader import Config, config_from_data
from kubelogs.pipeline.reload import Supervisor
from kubelogs.telemetry.metrics import Metrics


def make(work: Path, n: int, whole: bool) -> Config:
    data: dict[str, Any] = {
        "data_dir": str(work / "data"),
        "api": {"enabled": False},
        "sources": {"logs": {"type": "file", "paths": [str(work / "app.log")]}},
        "sinks": {
            "out": {"type": "file", "inputs": ["logs"], "path": str(work / f"out{n % 2}.nd")}
        },
    }
    if whole:
        data["log"] = {"summary_interval": f"{60 + n}s"}
    return config_from_data(data, "bench.yaml")


async def until(cond: Any, interval: float = 0.001, seconds: float = 600.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not cond():
        if loop.time() > deadline:
            raise TimeoutError("the pipeline made no progress")
        await asyncio.sleep(interval)


def count(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


async def run(work: Path, lines: int, reloads: int, whole: bool) -> list[float]:
    with open(work / "app.log", "w") as f:
        for i in range(lines):
            f.write(f"line {i:09d} some text to make the line a bit longer like a log\n")
    nxt = [make(work, 0, whole)]
    sup = Supervisor(nxt[0], lambda: nxt[0], metrics=Metrics())
    task = asyncio.create_task(sup.run())
    await until(lambda: sup.ready)
    pauses = []
    for i in range(1, reloads + 1):
        await asyncio.sleep(0.05)
        nxt[0] = make(work, i, whole)
        began = time.monotonic()
        sup.request_reload()
        await until(lambda i=i: sup.reloads >= i and sup.ready)
        if whole:
            pauses.append(time.monotonic() - began)
        else:
            assert sup.last_swap is not None
            pauses.append(sup.last_swap.paused)
    outs = [work / "out0.nd", work / "out1.nd"]
    await until(lambda: sum(count(p) for p in outs) >= lines, 0.1)
    sup.request_stop()
    await task
    seen: Counter[bytes] = Counter()
    for p in outs:
        with open(p, "rb") as f:
            for line in f:
                seen[line[line.index(b'"message":') :][:30]] += 1
    assert len(seen) == lines, "lost lines"
    assert max(seen.values()) == 1, "duplicated lines"
    return pauses


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--reloads", type=int, default=20)
    ap.add_argument("--whole", action="store_true", help="whole-pipeline restarts")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pauses = asyncio.run(run(Path(tmp), args.lines, args.reloads, args.whole))
    ms = sorted(p * 1000 for p in pauses)
    kind = "whole-pipeline restart" if args.whole else "sink-only partial reload"
    print(
        f"{kind}: {len(ms)} reloads, source held median {statistics.median(ms):.1f} ms, "
        f"max {ms[-1]:.1f} ms, min {ms[0]:.1f} ms; every line exactly once"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
