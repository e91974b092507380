"""Agent -> forward -> aggregator -> local store, as users run it (two `kubelogs run`
processes), with `kill -9` of the agent and of the aggregator in turns while pods write
and rotate: every line is stored exactly once, because event ids travel with the events
(the aggregator's store drops what a restarted agent sends again) and the agent moves
its checkpoints only when the aggregator acked (after its store committed).

Also: an application's `ForwardHandler` in a child process emitting records while the
aggregator is restarted: every record delivered exactly once.

`KUBELOGS_FORWARD_CHAOS_CYCLES` (default 6) sets the number of kills.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

from support.agent import Agent, node_agent_config, write_config
from support.podlogs import PodLog
from support.store_probe import stored_count, stored_docs
from support.waiting import wait_for

CYCLES = int(os.environ.get("KUBELOGS_FORWARD_CHAOS_CYCLES", "6"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def aggregator_config(tmp: Path, port: int) -> Path:
    d = tmp / "aggregator"
    d.mkdir(exist_ok=True)
    return write_config(
        d / "kubelogs.yaml",
        {
            "data_dir": str(d / "data"),
            "node_name": "aggregator",
            "api": {"listen": "127.0.0.1:0"},
            "sources": {"forward": {"type": "forward", "address": f"127.0.0.1:{port}"}},
            "sinks": {
                "store": {
                    "type": "local",
                    "inputs": ["forward"],
                    "path": str(d / "store"),
                    "flush_interval": "100ms",
                }
            },
        },
    )


def agent_config(tmp: Path, node: Path, port: int) -> Path:
    d = tmp / "agent"
    d.mkdir(exist_ok=True)
    return node_agent_config(
        d / "kubelogs.yaml",
        data_dir=d / "data",
        node=node,
        sinks={
            "aggregator": {
                "type": "forward",
                "inputs": ["logs"],
                "servers": [f"127.0.0.1:{port}"],
                "format": "kubelogs",
                "ack_timeout": "10s",
                "connect_timeout": "2s",
                "max_backoff": "500ms",
            }
        },
    )


def test_kill9_agent_and_aggregator_in_turns_keeps_every_line_exactly_once(
    tmp_path: Path,
) -> None:
    from support.chaos import RotatingWriter

    node = tmp_path / "node"
    pods = [PodLog(node, pod=f"busy-{i}-abcde") for i in range(3)]
    port = free_port()
    agg_cfg = aggregator_config(tmp_path, port)
    agent_cfg = agent_config(tmp_path, node, port)
    store = tmp_path / "aggregator" / "store"
    logs = tmp_path / "logs"
    logs.mkdir()
    rng = random.Random(7)
    t0 = time.monotonic()
    agg = Agent(agg_cfg, logs / "aggregator0.log").start()
    agent = Agent(agent_cfg, logs / "agent0.log").start()
    try:
        with RotatingWriter(pods, seed=11) as writer:
            for cycle in range(1, CYCLES + 1):
                before = stored_count(store)
                wait_for(lambda b=before: stored_count(store) > b, timeout=60, what="progress")
                target = stored_count(store) + rng.randint(0, 1500)
                wait_for(lambda t=target: stored_count(store) >= t, timeout=60, what="more")
                print(f"{time.monotonic() - t0:.1f}s cycle {cycle}: {stored_count(store)}")
                if cycle % 2:
                    agent.kill9()
                    agent = Agent(agent_cfg, logs / f"agent{cycle}.log").start()
                else:
                    agg.kill9()
                    agg = Agent(agg_cfg, logs / f"aggregator{cycle}.log").start()
        written = writer.written
        print(f"{time.monotonic() - t0:.1f}s writer stopped: {len(written)}")
        wait_for(lambda: stored_count(store) >= len(written), timeout=120, what="all lines")
        print(f"{time.monotonic() - t0:.1f}s all stored")
        assert 0 == agent.stop()
        assert 0 == agg.stop()
    finally:
        for p in (agent, agg):
            if p.proc is not None and p.proc.poll() is None:
                p.proc.kill()
                p.wait(30)
    docs = stored_docs(store)
    got = Counter(d["message"] for d in docs)

    assert len(written) == len(set(written))
    assert [] == [m for m in written if got[m] != 1]
    assert len(written) == sum(got.values())
    assert "busy-" in docs[0]["kubernetes"]["pod"]["name"]  # metadata travelled too


HANDLER_CHILD = textwrap.dedent(
    """
    import logging, sys
    from kubelogs.handlers import ForwardHandler

    port, n = int(sys.argv[1]), int(sys.argv[2])
    h = ForwardHandler("127.0.0.1", port, "app.child", queue_size=n, max_backoff=0.5)
    log = logging.getLogger("child")
    log.propagate = False
    log.addHandler(h)
    log.setLevel(logging.INFO)
    for i in range(n):
        log.info("record %d", i, extra={"seq": i})
        if i % 10000 == 0:
            print(i, flush=True)
    ok = h.flush(timeout=120)
    h.close()
    print("done", ok, h.dropped, h.errors, flush=True)
    """
)


def test_handler_in_a_child_process_survives_an_aggregator_restart(tmp_path: Path) -> None:
    n = int(os.environ.get("KUBELOGS_FORWARD_HANDLER_RECORDS", "100000"))
    port = free_port()
    agg_cfg = aggregator_config(tmp_path, port)
    store = tmp_path / "aggregator" / "store"
    logs = tmp_path / "logs"
    logs.mkdir()
    agg = Agent(agg_cfg, logs / "aggregator0.log").start()
    child = subprocess.Popen(
        [sys.executable, "-c", HANDLER_CHILD, str(port), str(n)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: stored_count(store) >= n // 5, timeout=120, what="a fifth stored")
        agg.kill9()
        agg = Agent(agg_cfg, logs / "aggregator1.log").start()
        out, _ = child.communicate(timeout=240)
        wait_for(lambda: stored_count(store) >= n, timeout=120, what="every record")
        assert 0 == agg.stop()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)
        if agg.proc is not None and agg.proc.poll() is None:
            agg.proc.kill()
            agg.wait(30)
    seqs = Counter(d["seq"] for d in stored_docs(store))

    assert "done True 0" in out, out
    assert set(range(n)) == set(seqs)
    assert [] == [s for s, c in seqs.items() if c != 1]  # no duplicate either
