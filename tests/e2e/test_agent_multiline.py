"""Multiline end to end: `kubelogs run` with the java preset, killed with ``kill -9``
while pods write stack traces (and rotate), restarted; every trace is stored exactly once
and joined. Lines are stamped with the real clock, as a container runtime stamps them.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from pathlib import Path

from support.agent import Agent, node_agent_config
from support.chaos import kill9_cycles
from support.podlogs import LivePodLog, PodLog
from support.store_probe import stored_count, stored_docs
from support.waiting import wait_for


def java_trace(n: int, frames: int) -> list[str]:
    lines = [f"ERROR request {n} failed", f"java.lang.IllegalStateException: order {n}"]
    lines += [f"\tat com.example.Shop{n}.step{i}(Shop.java:{10 + i})" for i in range(frames)]
    lines += [f"Caused by: java.io.IOException: db {n}", "\tat com.example.Db.q(Db.java:7)"]
    lines += ["\t... 12 more"]
    return lines


class TraceWriter:
    """Writes numbered log lines and Java traces to several pods, each trace in a few
    separate writes (a reader can see half of one), with a stderr line now and then
    between a trace's lines, and a kubelet rotation now and then (between traces)."""

    def __init__(self, pods: list[PodLog], seed: int) -> None:
        self.pods = pods
        self.expected: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trace-writer")

    def _run(self) -> None:
        n = 0
        rng = self._rng
        while not self._stop.is_set():
            for p in self.pods:
                n += 1
                if rng.random() < 0.5:
                    line = f"INFO {p.pod} served {n}"
                    p.write(line)
                    self.expected[line] += 1
                    continue
                lines = java_trace(n, rng.randint(1, 12))
                cut = sorted(rng.sample(range(1, len(lines)), k=2))
                for a, b in zip([0, *cut], [*cut, len(lines)], strict=True):
                    p.write(*lines[a:b])
                    if rng.random() < 0.3 and b < len(lines):
                        lone = f"WARN {p.pod} stderr {n}-{a}"
                        p.write(lone, stream="stderr")
                        self.expected[lone] += 1
                self.expected["\n".join(lines)] += 1
                if rng.random() < 0.03:
                    p.rotate()
            self._stop.wait(0.01)

    def __enter__(self) -> TraceWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def config(tmp: Path, node: Path) -> Path:
    return node_agent_config(
        tmp / "kubelogs.yaml",
        data_dir=tmp / "data",
        node=node,
        source={"multiline": {"preset": "java", "timeout": "2s"}},
        store=tmp / "store",
    )


def test_kill9_while_traces_are_written_stores_each_trace_once_and_joined(
    tmp_path: Path,
) -> None:
    node = tmp_path / "node"
    pods: list[PodLog] = [LivePodLog(node, pod=f"shop-{i}-abcde") for i in range(2)]
    cfg = config(tmp_path, node)
    store = tmp_path / "store"
    with TraceWriter(pods, seed=7) as writer:
        kill9_cycles(cfg, tmp_path, lambda: stored_count(store), cycles=4, seed=11, spread=300)
    expected = writer.expected
    with Agent(cfg, tmp_path / "final.log") as agent:
        wait_for(
            lambda: stored_count(store) >= sum(expected.values()),
            timeout=120,
            what="every trace and line",
        )
        assert agent.stop() == 0
    docs = stored_docs(store)
    got = Counter(d["message"] for d in docs)
    joined = [d for d in docs if "\n" in d["message"]]

    assert [] == [m for m, c in expected.items() if got[m] != c]
    assert sum(expected.values()) == len(docs)
    assert sum(1 for m in expected if "\n" in m) == len(joined)
    assert all("multiline" in d["log"]["flags"] for d in joined)
