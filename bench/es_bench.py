#!/usr/bin/env python3
"""The agent into a real OpenSearch node against a plain `_bulk` loader of the same documents.

Usage: uv run python bench/es_bench.py [--lines 200000] [--containers 8] [--repeat 1]

1. Starts an OpenSearch 2.19 node (the test fixture's launcher: tests/support/es_servers)
   and generates a node log tree with `kubelogs generate`.
2. **Agent**: `kubelogs run` (kubernetes_logs -> elasticsearch sink) drains the tree into
   index `bench-agent-N`; the time is from start until the sink's sent-events counter
   (on /metrics: documents the node acknowledged) reaches the number of records.
3. **Loader**: the same documents (written once beforehand by the `file` sink, not timed),
   sent by a minimal aiohttp `_bulk` client with the same request size (`max_events`),
   the same concurrency (`max_in_flight`) and `create` under the same kind of ids, into
   `bench-loader-N`.
4. Prints both rates (documents/s, wall clock), their ratio, and the agent's CPU time.

The node, the agent and the loader share the machine's cores, as they would on a small
node: the ratio says how close the agent gets to what the node can take from one client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from support.es_servers import SearchServer  # noqa: E402

MAX_EVENTS = 5000
IN_FLIGHT = 4


def _config(path: Path, data_dir: Path, node: Path, sink: dict[str, Any]) -> Path:
    import yaml

    cfg = {
        "data_dir": str(data_dir),
        "node_name": "bench",
        "api": {"listen": "127.0.0.1:0"},
        "sources": {
            "logs": {
                "type": "kubernetes_logs",
                "include": [str(node / "var/log/containers/*.log")],
                "glob_interval": "200ms",
            }
        },
        "sinks": {"out": {"inputs": ["logs"], **sink}},
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _sent(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(
        r'^kubelogs_component_sent_events_total\{component_id="out"[^}]*\} (\S+)$', text, re.M
    )
    return float(m.group(1)) if m else 0.0


def _run_agent(cfg: Path, log: Path, records: int) -> tuple[float, float]:
    """(wall seconds to deliver every record, agent CPU seconds)."""
    began = time.monotonic()
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubelogs", "run", "-c", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    port = None
    while port is None:
        m = re.findall(r"API on 127\.0\.0\.1:(\d+)", log.read_text())
        port = int(m[-1]) if m else None
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-2000:])
        time.sleep(0.05)
    while _sent(port) < records:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-2000:])
        time.sleep(0.05)
    wall = time.monotonic() - began
    proc.send_signal(signal.SIGTERM)
    _, _status, usage = os.wait4(proc.pid, 0)
    return wall, usage.ru_utime + usage.ru_stime


async def _load(url: str, index: str, docs: list[bytes]) -> float:
    import aiohttp

    bodies = []
    for start in range(0, len(docs), MAX_EVENTS):
        parts = []
        for i, d in enumerate(docs[start : start + MAX_EVENTS], start):
            parts.append(b'{"create":{"_index":"%s","_id":"l-%x"}}\n' % (index.encode(), i))
            parts.append(d + b"\n")
        bodies.append(b"".join(parts))
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    began = time.monotonic()
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                while True:
                    async with session.post(
                        url + "/_bulk?filter_path=errors,items.*.status",
                        data=body,
                        headers={"Content-Type": "application/x-ndjson"},
                    ) as r:
                        res = await r.read()
                    if r.status == 200 and b'"status":429' not in res:
                        break
                    await asyncio.sleep(0.1)

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return time.monotonic() - began


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--containers", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="es-bench-"))
    server = SearchServer("opensearch", home=work / "os", log_path=work / "os.log")
    server.prepare().start()
    print(f"opensearch started in {server.startup_seconds:.1f}s", file=sys.stderr)
    try:
        node = work / "node"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "kubelogs",
                "generate",
                str(node),
                "--lines",
                str(args.lines),
                "--containers",
                str(args.containers),
            ],
            check=True,
            capture_output=True,
        )
        records = int(json.loads((node / "manifest.json").read_text())["records"])
        docs_file = work / "docs.ndjson"
        cfg = _config(
            work / "file.yaml", work / "file-data", node, {"type": "file", "path": str(docs_file)}
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubelogs", "run", "-c", str(cfg)], stderr=subprocess.DEVNULL
        )
        while not docs_file.exists() or docs_file.read_bytes().count(b"\n") < records:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        docs = docs_file.read_bytes().splitlines()
        agent_rates, loader_rates, cpu = [], [], []
        for rep in range(args.repeat):
            loader_s = asyncio.run(_load(server.url, f"bench-loader-{rep}", docs))
            loader_rates.append(records / loader_s)
            sink = {
                "type": "elasticsearch",
                "hosts": [server.url],
                "index": f"bench-agent-{rep}",
                "bulk": {"max_events": MAX_EVENTS, "max_in_flight": IN_FLIGHT},
            }
            cfg = _config(work / f"agent{rep}.yaml", work / f"agent-data{rep}", node, sink)
            wall, cpu_s = _run_agent(cfg, work / f"agent{rep}.log", records)
            agent_rates.append(records / wall)
            cpu.append(cpu_s)
        agent, loader = statistics.median(agent_rates), statistics.median(loader_rates)
        print(
            json.dumps(
                {
                    "records": records,
                    "agent_docs_per_s": round(agent),
                    "loader_docs_per_s": round(loader),
                    "ratio": round(agent / loader, 3),
                    "agent_cpu_s": round(statistics.median(cpu), 2),
                    "agent_cpu_s_per_1M": round(statistics.median(cpu) / records * 1e6, 2),
                    "max_rss_children_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                    // 1024,
                },
                indent=1,
            )
        )
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
