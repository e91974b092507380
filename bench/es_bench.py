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
5. With ``--latency-rate R``: a writer appends R lines/s to one container log for
   ``--latency-seconds``, the agent ships them (sink defaults: flush_interval 1 s), and a
   poller asks the node every 50 ms for the largest ``log.offset`` it can search (no
   forced refresh: the index's own 1 s refresh). Each written chunk's latency is the
   time from its write to the first poll that sees it; p50/p99/max are printed.

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


def _latency(
    server: SearchServer, work: Path, rate: int, seconds: float, flush: str, refresh: str = ""
) -> dict[str, float]:
    import threading

    from support.podlogs import PodLog

    node = work / "latency-node"
    pod = PodLog(node, namespace="lat", pod="lat-1-abcde")
    index = "bench-latency"
    cfg = _config(
        work / "lat.yaml",
        work / "lat-data",
        node,
        {
            "type": "elasticsearch",
            "hosts": [server.url],
            "index": index,
            "bulk": {"flush_interval": flush},
            **({"template": {"refresh_interval": refresh}} if refresh else {}),
        },
    )
    log = (work / "lat.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubelogs", "run", "-c", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    chunks: list[tuple[int, float]] = []  # (offset of the chunk's last line, write time)
    stop = threading.Event()

    def write() -> None:
        seq = 0
        period = 0.01
        per_chunk = max(1, int(rate * period))
        nxt = time.monotonic()
        while not stop.is_set():
            lines = [f"latency probe {seq + i}" for i in range(per_chunk)]
            size = pod.path.stat().st_size
            data = b"".join(pod.line(m) for m in lines)
            last = size + len(data) - len(pod.line(lines[-1]))
            pod.write_raw(data)
            chunks.append((last, time.time()))
            seq += per_chunk
            nxt += period
            time.sleep(max(0.0, nxt - time.monotonic()))

    seen: dict[int, float] = {}

    def poll() -> None:
        body = {"size": 0, "aggs": {"m": {"max": {"field": "log.offset"}}}}
        done = 0
        while not stop.is_set() or done < len(chunks):
            try:
                res = server.request("POST", f"/{index}/_search?ignore_unavailable=true", body)
                top = ((res or {}).get("aggregations", {}).get("m", {}).get("value")) or -1
            except ValueError:
                top = -1
            now = time.time()
            while done < len(chunks) and chunks[done][0] <= top:
                seen[done] = now - chunks[done][1]
                done += 1
            if stop.is_set() and time.time() - stop_time[0] > 30:
                return
            time.sleep(0.05)

    stop_time = [0.0]
    writer = threading.Thread(target=write)
    poller = threading.Thread(target=poll)
    writer.start()
    poller.start()
    time.sleep(seconds)
    stop.set()
    stop_time[0] = time.time()
    writer.join()
    poller.join()
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    log.close()
    warm = [v for k, v in sorted(seen.items()) if k >= len(chunks) // 10]  # skip start-up
    warm.sort()
    return {
        "latency_rate_lines_per_s": rate,
        "flush_interval": flush,
        "latency_chunks": len(warm),
        "latency_p50_s": round(warm[len(warm) // 2], 3),
        "latency_p99_s": round(warm[int(len(warm) * 0.99)], 3),
        "latency_max_s": round(warm[-1], 3),
        "chunks_never_seen": len(chunks) - len(seen),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--containers", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--latency-rate", type=int, default=0, help="lines/s; 0 = skip")
    ap.add_argument("--latency-seconds", type=float, default=30.0)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--flush-interval", default="1s", help="the sink's bulk.flush_interval")
    ap.add_argument(
        "--refresh-interval", default="", help="the sink's template.refresh_interval (unset)"
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="es-bench-"))
    server = SearchServer("opensearch", home=work / "os", log_path=work / "os.log")
    server.prepare().start()
    print(f"opensearch started in {server.startup_seconds:.1f}s", file=sys.stderr)
    try:
        if args.latency_rate:
            lat = _latency(
                server,
                work,
                args.latency_rate,
                args.latency_seconds,
                args.flush_interval,
                args.refresh_interval,
            )
            print(json.dumps(lat, indent=1))
        if args.skip_throughput:
            return 0
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
                **(
                    {"template": {"refresh_interval": args.refresh_interval}}
                    if args.refresh_interval
                    else {}
                ),
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
