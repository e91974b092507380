"""Benchmark of the store's aggregations: the explorer's histogram plus the top 5
namespaces (``kubelogs search --histogram --top kubernetes.namespace --top-n 5``) over a
store of 2M generated container lines; the target is under a second on this machine.

Builds the store as `store_bench.py` does (or reuses ``--dir DIR`` when DIR/store
exists), then times, for a few queries, the aggregation in this process on one CPU
(what `kubelogs ui` does per request) and forked per CPU (what ``kubelogs search`` does),
and the whole command as a user runs it (process start included).

    nice uv run python bench/aggregate_bench.py --docs 2000000 --dir /tmp/agg2m
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from store_bench import write_calls

from kubelogs.store import ECS_LAYOUT, StoreReader, StoreWriter
from kubelogs.store.aggregate import Buckets, aggregate_parallel
from kubelogs.store.parallel import cpu_workers

QUERIES = ["", "error", "stream:stderr", "kubernetes.namespace:payments or error"]


def build(store: Path, docs: int) -> None:
    shutil.rmtree(store, ignore_errors=True)
    with StoreWriter(store, layout=ECS_LAYOUT) as writer:
        for call in write_calls(docs, 20, 7, 1000, []):
            writer.write(call)


def best(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--docs", type=int, default=2_000_000)
    ap.add_argument("--dir", default=None, help="keeps the store for later runs")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    base = Path(a.dir or tempfile.mkdtemp(prefix="kubelogs-agg-"))
    store = base / "store"
    if not (store / "index.sqlite").exists():
        t0 = time.perf_counter()
        build(store, a.docs)
        print(f"built {store} in {time.perf_counter() - t0:.1f}s")
    workers = cpu_workers()
    fields = ["kubernetes.namespace"]
    with StoreReader(store) as reader:
        stats = reader.stats()
        assert stats.min_time is not None
        assert stats.max_time is not None
        buckets = Buckets.for_range(stats.min_time, stats.max_time)
        print(f"{stats.docs:,} docs in {stats.blocks} blocks; {buckets.count} buckets; "
              f"{workers} CPU(s)")  # fmt: skip
        for q in QUERIES:

            def run(n: int, q: str = q) -> None:
                prepared = reader.prepare(q)
                aggregate_parallel(reader, prepared, n, buckets=buckets, fields=fields)

            one = best(lambda: run(1), a.repeat)
            many = best(lambda: run(workers), a.repeat)
            argv = [sys.executable, "-m", "kubelogs", "search", "--store", str(store),
                    "--histogram", "--top", "kubernetes.namespace", "--top-n", "5", q]  # fmt: skip

            def command(argv: list[str] = argv) -> None:
                subprocess.run(argv, check=True, capture_output=True)

            cli = best(command, a.repeat)
            print(
                f"query {q!r}: 1 CPU {one * 1000:.0f} ms; {workers} CPUs {many * 1000:.0f} ms; "
                f"kubelogs search --histogram --top (whole command) {cli * 1000:.0f} ms"
            )
    if not a.dir:
        shutil.rmtree(base)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NO_COLOR", "1")
    sys.exit(main())
