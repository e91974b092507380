"""Benchmark of the embedded store alone: ingest rate, size on disk, query latency.

Builds realistic documents first (generated container lines, Kubernetes metadata,
`encode_documents`), then times only `StoreWriter.write`, as the `local` sink calls it
(groups of 1,000 events per file, 20,000 documents per block). Reports documents per
second (wall and CPU), bytes on disk per 1M documents against the raw NDJSON size, and
the time of ``--count`` and ``--limit 100`` searches for a rare word and for a namespace.

    uv run python bench/store_bench.py --docs 2000000
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from kubelogs.codecs.document import encode_documents
from kubelogs.kubernetes.document_meta import encode_meta
from kubelogs.pipeline.event import Batch, FileContext, make_id_prefix
from kubelogs.sinks.local import labels_from_meta
from kubelogs.store import ECS_LAYOUT, StoreReader, StoreWriter, WriteGroup
from kubelogs.testing.generate import container_lines, plan_containers


def build_groups(n_docs: int, containers: int, seed: int, per_group: int) -> list[WriteGroup]:
    plan = plan_containers(random.Random(seed), containers, 0)
    groups: list[WriteGroup] = []
    per_container = n_docs // containers
    for c in plan:
        path = f"/var/log/pods/{c.namespace}_{c.pod}_{c.pod_uid}/{c.name}/0.log"
        ecs, fluentd = encode_meta(
            namespace=c.namespace,
            pod=c.pod,
            pod_uid=c.pod_uid,
            container=c.name,
            container_id=c.container_id,
            node="node-bench-1",
        )
        ctx = FileContext(
            source_id="bench",
            path=path,
            file_key=f"1:{c.container_id[:8]}:x",
            id_prefix=make_id_prefix("node-bench-1", path),
            node="node-bench-1",
            namespace=c.namespace,
            pod=c.pod,
            pod_uid=c.pod_uid,
            container=c.name,
            meta_ecs=ecs,
            meta_fluentd=fluentd,
        )
        lines = [ln for ln in container_lines(seed, c, per_container) if ln.final]
        offset = 0
        for i in range(0, len(lines), per_group):
            chunk = lines[i : i + per_group]
            offsets = []
            for ln in chunk:
                offsets.append(offset)
                offset += len(ln.message) + 40
            batch = Batch(
                ctx,
                [ln.time_ns for ln in chunk],
                [ln.message for ln in chunk],
                [ln.stream for ln in chunk],
                offsets,
            )
            groups.append(
                WriteGroup(
                    ctx.file_key,
                    batch.offsets,
                    batch.times,
                    encode_documents(batch),
                    labels=labels_from_meta(ecs, ECS_LAYOUT),
                    streams=batch.streams,
                    messages=batch.messages,
                )
            )
    # Interleave files as a pipeline would deliver them.
    groups.sort(key=lambda g: g.times[0])
    return groups


def timed(fn, repeat: int = 3):  # type: ignore[no-untyped-def]
    best = float("inf")
    result = None
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
    ap.add_argument("--dir", default=None, help="store directory (default: a temp dir)")
    a = ap.parse_args()

    t0 = time.perf_counter()
    groups = build_groups(a.docs, a.containers, a.seed, 1000)
    n = sum(len(g.docs) for g in groups)
    raw = sum(sum(map(len, g.docs)) + len(g.docs) for g in groups)
    print(f"prepared {n:,} docs ({raw / n:.0f} B avg as NDJSON) in {time.perf_counter() - t0:.1f}s")

    base = Path(a.dir or tempfile.mkdtemp(prefix="kubelogs-bench-"))
    store = base / "store"
    shutil.rmtree(store, ignore_errors=True)
    writer = StoreWriter(store, layout=ECS_LAYOUT)
    w0, c0 = time.perf_counter(), time.process_time()
    step = 20  # ~20k docs per write call, as the sink's blocks
    for i in range(0, len(groups), step):
        writer.write(groups[i : i + step])
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    writer.close()
    disk = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    print(f"ingest: {n / wall:,.0f} docs/s wall, {n / cpu:,.0f} docs/s per CPU-second")
    print(
        f"disk: {disk / n * 1e6 / 2**20:.1f} MiB per 1M docs vs raw NDJSON "
        f"{raw / n * 1e6 / 2**20:.1f} MiB ({raw / disk:.1f}x smaller)"
    )

    rng = random.Random(a.seed)
    g = rng.choice(groups)
    rare = g.docs[len(g.docs) // 2]
    import msgspec

    msg = msgspec.json.decode(rare)["message"]
    words = [w for w in msg.replace('"', " ").replace(",", " ").split() if len(w) >= 12]
    rare_word = words[0] if words else msg.split()[-1]
    namespace = g.labels["kubernetes.namespace"]
    with StoreReader(store) as reader:
        for label, query in (
            ("rare word", rare_word.strip(":{}")),
            ("namespace", f"kubernetes.namespace:{namespace}"),
            ("word+namespace", f"error and kubernetes.namespace:{namespace}"),
        ):
            t_count, count = timed(lambda q=query: reader.count(q))
            t_search, hits = timed(lambda q=query: reader.search(q, limit=100))
            print(
                f"query {label!r} [{query}]: --count {count:,} in {t_count * 1000:.0f} ms; "
                f"--limit 100 ({len(hits)} hits) in {t_search * 1000:.0f} ms"
            )
    if not a.dir:
        shutil.rmtree(base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
