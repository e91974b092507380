#!/usr/bin/env python3
"""CPU cost of each transform per 1M lines, on batches built from a generated node tree.

Usage: uv run python bench/transforms_bench.py [--lines 1000000] [--root DIR]
       [--repeat 3] [--parsed] [--only NAME]

Generates a tree with ../shared/bench/gen_logs.py (the tree of PERFORMANCE.md: ~56 %
text lines, ~40 % JSON lines, Java stack traces, 8 namespaces), reads every container
file into batches of about 2,000 lines with the metadata the `kubernetes_metadata`
transform would attach (labels from the generated pods), then times `process()` of each
transform over all batches with `time.process_time()` (this process's CPU, median of
`--repeat` runs) and prints CPU-s per 1M lines, after subtracting the cost of the loop
itself (an identity transform). Batch building is not timed. This isolates what a
transform adds to the agent, whose whole cost is measured by `bench/agent_bench.py`.

`--parsed` gives every JSON line its parsed fields (as the `json` parser would), so
conditions and templates run on rows with fields (matched as documents).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GEN = HERE.parent.parent / "shared" / "bench" / "gen_logs.py"
BATCH_LINES = 2000

USER_CODE = """
def keep_errors(batch):
    rows = [i for i, m in enumerate(batch.messages) if "ERROR" in m]
    return batch.select(rows) if rows else None

def tag_event(event):
    event["fields"]["team"] = "orders"
    return event

def noop_event(event):
    return event
"""


def load_batches(root: Path, parsed: bool) -> tuple[list[Any], int]:
    from kubelogs.kubernetes.document_meta import PodMeta, encode_meta
    from kubelogs.pipeline.event import Batch, FileContext, make_id_prefix

    pods: dict[str, dict[str, Any]] = {}
    for meta in (root / "kube-meta").glob("*.meta"):
        pod = json.loads(meta.read_text())
        pods[pod["metadata"]["uid"]] = pod
    batches: list[Batch] = []
    lines = 0
    for path in sorted((root / "var/log/pods").glob("*/*/0.log")):
        ns, name, uid = path.parent.parent.name.split("_")
        container = path.parent.name
        pod = pods.get(uid, {"metadata": {}})
        labels = pod["metadata"].get("labels", {})
        ecs, fluentd = encode_meta(
            namespace=ns,
            pod=name,
            pod_uid=uid,
            container=container,
            container_id="",
            node="node-bench-1",
            pod_meta=PodMeta(name=name, namespace=ns, uid=uid, labels=labels, node="node-1"),
        )
        ctx = FileContext(
            source_id="containers",
            path=str(path),
            file_key=str(path),
            id_prefix=make_id_prefix("node-bench-1", str(path)),
            namespace=ns,
            pod=name,
            pod_uid=uid,
            container=container,
            meta_ecs=ecs,
            meta_fluentd=fluentd,
        )
        offset = 0
        rows: list[tuple[int, str, str, int, dict[str, Any] | None]] = []
        with open(path, "rb") as f:
            for raw in f:
                _, stream, _, msg = raw.decode("utf-8", "replace").rstrip("\n").split(" ", 3)
                fields = None
                if parsed and msg.startswith("{"):
                    try:
                        fields = json.loads(msg)
                    except ValueError:
                        fields = None
                rows.append((len(rows), msg, stream, offset, fields))
                offset += len(raw)
        lines += len(rows)
        for start in range(0, len(rows), BATCH_LINES):
            chunk = rows[start : start + BATCH_LINES]
            fields_col = {i: r[4] for i, r in enumerate(chunk) if r[4]}
            batches.append(
                Batch(
                    ctx=ctx,
                    times=[1_736_935_200_000_000_000 + r[0] for r in chunk],
                    messages=[r[1] for r in chunk],
                    streams=[r[2] for r in chunk],
                    offsets=[r[3] for r in chunk],
                    fields=fields_col or None,
                )
            )
    return batches, lines


def transforms(user_dir: Path) -> dict[str, dict[str, Any]]:
    """Configs as a user writes them (built through the registry)."""
    return {
        "filter (namespace + words)": {
            "type": "filter",
            "condition": 'kubernetes.namespace:payments and not "GET /api"',
        },
        "filter (message words)": {"type": "filter", "condition": "error or warn*"},
        "filter (namespace only)": {
            "type": "filter",
            "condition": "not kubernetes.namespace:kube-system",
        },
        "filter (labels + stream + level)": {
            "type": "filter",
            "condition": "kubernetes.labels.app:orders or stream:stderr or level:error",
        },
        "route (3 routes)": {
            "type": "route",
            "routes": {
                "errors": "error or exception",
                "payments": "kubernetes.namespace:payments",
                "system": "kubernetes.namespace:kube-system or kubernetes.namespace:monitoring",
            },
        },
        "sample (1 in 10, event id)": {"type": "sample", "rate": 10},
        "throttle (per container)": {"type": "throttle", "threshold": 1000, "window": "1s"},
        "modify (static cluster name)": {"type": "modify", "static": {"cluster.name": "eu-1"}},
        "modify (set a field from a template)": {
            "type": "modify",
            "set": {"service.name": "{kubernetes.labels.app}"},
        },
        "redact (all built-ins)": {"type": "redact"},
        "redact (one RE2 user pattern)": {
            "type": "redact",
            "patterns": [],
            "custom": {"order": r"order (\d+)"},
        },
        "python (batch: keep ERROR lines)": {
            "type": "python",
            "function": "bench_user:keep_errors",
            "path": str(user_dir),
        },
        "python (event: no-op)": {
            "type": "python",
            "function": "bench_user:noop_event",
            "path": str(user_dir),
            "mode": "event",
        },
        "python (event: add a field)": {
            "type": "python",
            "function": "bench_user:tag_event",
            "path": str(user_dir),
            "mode": "event",
        },
    }


class _Identity:
    def process(self, batch: Any) -> Any:
        return batch


def build(raw: dict[str, Any], work: Path) -> Any:
    import kubelogs.components  # noqa: F401
    from kubelogs.config.base import BuildContext
    from kubelogs.config.registry import lookup
    from kubelogs.telemetry.metrics import Metrics

    reg = lookup("transform", raw["type"])
    assert reg is not None
    cfg = reg.config.model_validate({**raw, "inputs": ["x"]})
    return cfg.build(BuildContext("bench", work, "node-bench-1", Metrics()))  # type: ignore[attr-defined]


def cpu_of(t: Any, batches: list[Any]) -> float:
    step: Callable[[Any], Any] = getattr(t, "route", None) or t.process
    start = time.process_time()
    for b in batches:
        step(b)
    return time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, help="reuse a generated tree")
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--parsed", action="store_true")
    ap.add_argument("--only", help="run the transforms whose name contains this")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubelogs-tbench-"))
    root = args.root
    if root is None:
        root = work / "tree"
        subprocess.run(
            [sys.executable, str(GEN), "--root", str(root), "--lines", str(args.lines)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    user_dir = work / "user"
    user_dir.mkdir()
    (user_dir / "bench_user.py").write_text(textwrap.dedent(USER_CODE))
    batches, lines = load_batches(root, args.parsed)
    per_m = 1e6 / lines
    base = statistics.median(cpu_of(_Identity(), batches) for _ in range(args.repeat))
    print(f"{lines} lines in {len(batches)} batches; parsed fields: {args.parsed}")
    print(f"{'transform':42} {'CPU-s per 1M lines':>20} {'kept/sent':>10}")
    for name, raw in transforms(user_dir).items():
        if args.only and args.only not in name:
            continue
        t = build(raw, work)
        runs = [cpu_of(t, batches) - base for _ in range(args.repeat)]
        out = 0
        for b in batches:
            r = t.route(b) if hasattr(t, "route") else t.process(b)
            if isinstance(r, list):
                out += sum(len(x) for _, x in r)
            elif r is not None:
                out += len(r)
        print(f"{name:42} {statistics.median(runs) * per_m:>20.3f} {out / lines:>10.2f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
