"""Benchmark of the embedded store alone: ingest rate, size on disk, query latency.

Builds realistic events first (generated container lines, Kubernetes metadata), then
times only `StoreWriter.write`, as the `local` sink calls it (groups of 1,000 events per
file, 20,000 events per block). Reports documents per second (wall and CPU), bytes on
disk per 1M documents against the CRI log lines they came from and against their NDJSON
documents (and how much of it is the message columns), and the time of ``--count`` and
``--limit 100`` searches for a rare word (a trace id), a namespace, a common word, and
both.

    uv run python bench/store_bench.py --docs 2000000

Run it with the allocator settings the agent's image uses (PERFORMANCE.md) to measure
what the agent gets: ``MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=1073741824``.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import msgspec

from kubelogs.codecs.document import encode_ndjson
from kubelogs.pipeline.event import Batch, make_id_prefix
from kubelogs.sinks.local import labels_from_meta
from kubelogs.sources.tail_options import file_context
from kubelogs.store import ECS_LAYOUT, StoreReader, StoreWriter, WriteGroup
from kubelogs.testing.generate import container_lines, plan_containers

T = TypeVar("T")
_CRI_OVERHEAD = len("2025-01-15T10:00:00.123456789Z stdout F \n")


def write_calls(
    n_docs: int, containers: int, seed: int, per_group: int, ndjson: list[int]
) -> Iterator[list[WriteGroup]]:
    """Lists of events groups, one per `write` call (a group per container, round
    robin), built lazily: like the agent, the benchmark holds one call's events at a
    time. The size of each group's documents as NDJSON is appended to `ndjson`."""
    plan = plan_containers(random.Random(seed), containers, 0)
    sources = []
    for c in plan:
        path = f"/var/log/pods/{c.namespace}_{c.pod}_{c.pod_uid}/{c.name}/0.log"
        ctx = file_context(
            source_id="bench",
            node="node-bench-1",
            path=path,
            key=f"1:{c.container_id[:8]}:x",
            id_prefix=make_id_prefix("node-bench-1", path),
            namespace=c.namespace,
            pod=c.pod,
            pod_uid=c.pod_uid,
            container=c.name,
        )
        ecs = ctx.meta_ecs
        lines = (ln for ln in container_lines(seed, c, 2 * n_docs // containers) if ln.final)
        sources.append((ctx, lines, labels_from_meta(ecs, ECS_LAYOUT)))
    offsets = [0] * len(sources)
    produced = 0
    while produced < n_docs:
        call: list[WriteGroup] = []
        for k, (ctx, lines, labels) in enumerate(sources):
            chunk = list(itertools.islice(lines, per_group))
            if not chunk:
                continue
            offs = []
            for ln in chunk:
                offs.append(offsets[k])
                offsets[k] += len(ln.message) + 40
            batch = Batch(
                ctx,
                [ln.time_ns for ln in chunk],
                [ln.message for ln in chunk],
                [ln.stream for ln in chunk],
                offs,
            )
            call.append(
                WriteGroup(
                    ctx.file_key,
                    batch.offsets,
                    batch.times,
                    labels=labels,
                    streams=batch.streams,
                    messages=batch.messages,
                    path=ctx.path,
                    meta=ctx.meta_ecs,
                )
            )
            ndjson.append(len(encode_ndjson(batch)))
            produced += len(chunk)
        if not call:
            return
        yield call


def timed(fn: Callable[[], T], repeat: int = 3) -> tuple[float, T]:
    """Best wall time of `repeat` runs, and the last result."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--docs", type=int, default=2_000_000)
    ap.add_argument("--containers", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--per-group",
        type=int,
        default=1000,
        help="events per container per write call (default 1000: blocks of 20,000); "
        "5 with --docs 117000 makes a store like the demo's, a small block per flush",
    )
    ap.add_argument("--dir", default=None, help="store directory (default: a temp dir)")
    a = ap.parse_args()

    base = Path(a.dir or tempfile.mkdtemp(prefix="kubelogs-bench-"))
    store = base / "store"
    pick = a.docs // (a.containers * a.per_group) // 3
    rare_word = ""
    namespace = ""
    shutil.rmtree(store, ignore_errors=True)
    writer = StoreWriter(store, layout=ECS_LAYOUT)
    n = log_bytes = 0
    ndjson: list[int] = []
    wall = cpu = 0.0
    for k, call in enumerate(write_calls(a.docs, a.containers, a.seed, a.per_group, ndjson)):
        for g in call:
            assert g.messages is not None
            n += len(g.messages)
            # The CRI log line on the node: time, stream, tag, message, newline.
            log_bytes += sum(len(m.encode()) + _CRI_OVERHEAD for m in g.messages)
        if k == pick:  # remember something rare to search for later
            message = next(m for g in call for m in g.messages or () if "trace_id" in m)
            rare_word = msgspec.json.decode(message)["trace_id"]
            namespace = call[0].labels["kubernetes.namespace"]
        w0, c0 = time.perf_counter(), time.process_time()
        writer.write(call)
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
    writer.close()
    disk = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    with sqlite3.connect(store / "index.sqlite") as db:
        text, data = db.execute("SELECT sum(text_len), sum(data_len) FROM blocks").fetchone()
    raw = sum(ndjson)
    per_m = 1e6 / n / 2**20
    print(
        f"ingest {n:,} docs ({raw / n:.0f} B avg as NDJSON): {n / wall:,.0f} docs/s wall, "
        f"{n / cpu:,.0f} docs/s per CPU-second; disk {disk * per_m:.1f} MiB per 1M docs "
        f"(message columns {text * per_m:.1f}, other columns {data * per_m:.1f}) = "
        f"{disk / log_bytes:.1%} of the CRI log lines ({log_bytes * per_m:.1f} MiB), "
        f"{disk / raw:.1%} of the NDJSON documents ({raw * per_m:.1f} MiB)"
    )

    with StoreReader(store) as reader:
        for label, query in (
            ("rare word", rare_word),
            ("namespace", f"kubernetes.namespace:{namespace}"),
            ("common word", "error"),
            ("word+namespace", f"error and kubernetes.namespace:{namespace}"),
            ("absent word", "nosuchwordanywhere"),
            # Numbers the store keeps as columns: answered without rendering documents.
            ("offset range", "log.offset > 1000000"),
            ("offset+stream", "stream:stderr and log.offset < 20000"),
            # A field no document has (a typo): rejected from the per-block field lists.
            ("unknown field", f"kubernetes.namspace:{namespace}"),
            ("unparsed field", "level:error"),
        ):
            t_count, count = timed(functools.partial(reader.count, query))
            t_search, hits = timed(functools.partial(reader.search, query, limit=100))
            print(
                f"query {label!r} [{query}]: --count {count:,} in {t_count * 1000:.0f} ms; "
                f"--limit 100 ({len(hits)} hits) in {t_search * 1000:.0f} ms"
            )
    if not a.dir:
        shutil.rmtree(base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
