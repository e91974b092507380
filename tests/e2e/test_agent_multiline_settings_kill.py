"""A pod's multiline annotation flips between ``java`` and ``none`` while it writes
Java traces, and `kubelogs run` is killed with ``kill -9`` again and again, with a long
checkpoint interval (so the store holds batches whose checkpoint was not written yet
when the agent dies, and setting changes fall inside that window). The restart re-reads
those lines with the setting they were first read with: every line written is stored
exactly once - whether joined into a trace or alone depends on when the setting flipped.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelogs.testing.fake_apiserver import FakeApiServer
from support.agent import FAST_TAIL, Agent, write_config
from support.chaos import kill9_cycles
from support.podlogs import LivePodLog
from support.waiting import wait_for

NODE = "node-test"
POD = "shop-1"
ANNOTATION = "kubelogs.io/multiline"


def java_trace(n: int, frames: int) -> list[str]:
    lines = [f"ERROR request {n} failed", f"java.lang.IllegalStateException: order {n}"]
    lines += [f"\tat com.example.Shop{n}.step{i}(Shop.java:{10 + i})" for i in range(frames)]
    return [*lines, f"Caused by: java.io.IOException: db {n}", "\t... 12 more"]


class Writer:
    """Lines and traces (each trace in a few writes) to one container, and the pod's
    multiline annotation flipped every quarter second (threads)."""

    def __init__(self, log: LivePodLog, api: FakeApiServer, seed: int) -> None:
        self.log = log
        self.api = api
        self.lines: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._write, name="trace-writer"),
            threading.Thread(target=self._flip, name="annotation-flipper"),
        ]

    def _write(self) -> None:
        rng = self._rng
        n = 0
        while not self._stop.is_set():
            n += 1
            trace = rng.random() >= 0.4
            lines = java_trace(n, rng.randint(1, 8)) if trace else [f"INFO served {n}"]
            cut = sorted(rng.sample(range(1, len(lines)), k=min(2, len(lines) - 1)))
            for a, b in zip([0, *cut], [*cut, len(lines)], strict=True):
                self.log.write(*lines[a:b])
                self._stop.wait(rng.random() * 0.01)
            self.lines.update(lines)
            self._stop.wait(0.005)

    def _flip(self) -> None:
        value = "none"
        while not self._stop.wait(0.25):
            value = "java" if value == "none" else "none"
            self.api.set_pod_annotation("default", POD, ANNOTATION, value)

    def __enter__(self) -> Writer:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer(tls=True, token="secret-token-1").in_thread() as srv:
        yield srv


def config(tmp: Path, api: FakeApiServer, node: Path, store: Path) -> Path:
    tail = {**FAST_TAIL, "checkpoint_interval": "2s"}
    return write_config(
        tmp / "kubelogs.yaml",
        {
            "data_dir": str(tmp / "data"),
            "node_name": NODE,
            "api": {"listen": "127.0.0.1:0"},
            "sources": {
                "logs": {
                    "type": "kubernetes_logs",
                    **tail,
                    "include": [str(node / "var/log/containers/*.log")],
                }
            },
            "transforms": {
                "k8s": {
                    "type": "kubernetes_metadata",
                    "inputs": ["logs"],
                    "api_server": api.url,
                    "token_file": str(api.write_token(tmp / "token")),
                    "ca_file": str(api.write_ca(tmp / "ca.crt")),
                }
            },
            "sinks": {
                "store": {
                    "type": "local",
                    "inputs": ["k8s"],
                    "path": str(store),
                    "flush_interval": "100ms",
                }
            },
        },
    )


def stored(store: Path) -> list[dict[str, Any]]:
    import json

    from kubelogs.store.errors import StoreError
    from kubelogs.store.reader import StoreReader

    if not (store / "index.sqlite").exists():
        return []
    try:
        with StoreReader(store) as reader:
            return [json.loads(h.doc) for h in reader.search("", limit=0)]
    except StoreError:
        return []


def stored_lines(store: Path) -> Counter[str]:
    return Counter(line for d in stored(store) for line in d["message"].split("\n"))


def test_kill9_while_the_multiline_annotation_flips_stores_every_line_once(
    api: FakeApiServer, tmp_path: Path
) -> None:
    node = tmp_path / "node"
    store = tmp_path / "store"
    obj = api.create_pod(name=POD, node=NODE, containers=["app"], annotations={ANNOTATION: "java"})
    log = LivePodLog(node, pod=POD, container="app", uid=obj["metadata"]["uid"])
    cfg = config(tmp_path, api, node, store)

    def progress() -> int:
        return len(stored(store))

    with Writer(log, api, seed=5) as writer:
        kill9_cycles(cfg, tmp_path, progress, cycles=4, seed=13, spread=200)
    expected = writer.lines
    with Agent(cfg, tmp_path / "final.log") as agent:
        wait_for(
            lambda: sum(stored_lines(store).values()) >= sum(expected.values()),
            timeout=120,
            interval=0.5,
            what="every line",
        )
        assert agent.stop() == 0
    docs = stored(store)
    got = Counter(line for d in docs for line in d["message"].split("\n"))

    assert [] == [(m, c, got[m]) for m, c in expected.items() if got[m] != c]
    assert sum(expected.values()) == sum(got.values())
    joined = [d for d in docs if "\n" in d["message"]]
    assert joined, "the java setting joined some traces"
    assert all("multiline" in d["log"]["flags"] for d in joined)
