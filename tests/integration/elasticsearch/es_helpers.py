"""Agent configs and checks shared by the tests that ship to a real node."""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from support.agent import FAST_TAIL, Agent, generate_tree, write_config
from support.es_servers import SearchServer
from support.waiting import wait_for

_names = itertools.count()


def unique_index(prefix: str) -> str:
    """An index prefix no other test uses (the nodes are shared by the session, and the
    Elasticsearch test node cannot delete data streams)."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


def es_sink(hosts: list[str], index: str, **extra: Any) -> dict[str, Any]:
    sink: dict[str, Any] = {
        "type": "elasticsearch",
        "inputs": ["logs"],
        "hosts": hosts,
        "index": index,
        "bulk": {"flush_interval": "100ms", "max_events": 2000},
        "retry": {"initial_backoff": "50ms", "max_backoff": "1s"},
        "template": {"name": index.split("%")[0].rstrip("-.") or "kubelogs"},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(sink.get(key), dict):
            sink[key] = {**sink[key], **value}
        else:
            sink[key] = value
    return sink


def agent_config(
    tmp: Path,
    node: Path,
    sinks: dict[str, dict[str, Any]],
    *,
    source: dict[str, Any] | None = None,
) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "data_dir": str(tmp / "data"),
        "node_name": "node-test",
        "api": {"listen": "127.0.0.1:0"},
        "shutdown_grace_period": "10s",
        "sources": {
            "logs": {
                "type": "kubernetes_logs",
                **FAST_TAIL,
                "include": [str(node / "var/log/containers/*.log")],
                **(source or {}),
            }
        },
        "sinks": sinks,
    }
    return write_config(tmp / "kubelogs.yaml", data)


def count(server: SearchServer, pattern: str) -> int:
    """Documents in `pattern` now (after a refresh): a cheap progress probe."""
    server.refresh(pattern)
    try:
        res = server.request("GET", f"/{pattern}/_count?ignore_unavailable=true")
    except ValueError:
        return 0
    return int((res or {}).get("count", 0))


def docs_by_id(server: SearchServer, pattern: str) -> tuple[Counter[str], dict[str, Any]]:
    """How often each `_id` occurs across the indices of `pattern`, and the sources."""
    server.refresh(pattern)
    hits = server.search(pattern, {"match_all": {}})
    return Counter(h["_id"] for h in hits), {h["_id"]: h["_source"] for h in hits}


def messages(server: SearchServer, pattern: str) -> Counter[str]:
    server.refresh(pattern)
    return Counter(h["_source"]["message"] for h in server.search(pattern, {"match_all": {}}))


def read_ndjson(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ship_to_node_and_store(
    tmp: Path, server: SearchServer, *, lines: int, seed: int, prefix: str
) -> tuple[str, Path, int]:
    """One agent drains a generated tree (4 containers) into a new index of `server` and
    a local store at once; returns the index, the store and the number of records, all
    in both: what the tests that compare the node's answers with the store's start from."""
    node = tmp / "node"
    records = int(generate_tree(node, lines=lines, containers=4, seed=seed)["records"])
    index = unique_index(prefix)
    store = tmp / "store"
    cfg = agent_config(
        tmp,
        node,
        {
            "es": es_sink([server.url], index),
            "store": {
                "type": "local",
                "inputs": ["logs"],
                "path": str(store),
                "flush_interval": "100ms",
            },
        },
    )
    with Agent(cfg, tmp / "agent.log") as agent:
        wait_for(lambda: count(server, index) >= records, timeout=120, what="docs in the node")
        assert 0 == agent.stop()
    server.refresh(index)
    return index, store, records
