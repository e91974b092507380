"""`kubelogs run` (a subprocess, as users run it) shipping to a real OpenSearch and a real
Elasticsearch: every document once by `_id`, fields and nanoseconds intact, through
kill -9, injected faults, an outage of the node, TLS + basic auth.

The order matters: the outage test stops and restarts the session's Elasticsearch node,
so it comes last in this module.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from es_helpers import (
    agent_config,
    count,
    docs_by_id,
    es_sink,
    messages,
    read_ndjson,
    unique_index,
)

from support.agent import Agent, generate_tree
from support.chaos import RotatingWriter, kill9_cycles
from support.es_proxy import FaultProxy, Faults
from support.es_servers import SearchServer, free_port
from support.podlogs import PodLog
from support.waiting import wait_for


def generate(node: Path, lines: int, containers: int = 4, seed: int = 7) -> int:
    return int(generate_tree(node, lines=lines, containers=containers, seed=seed)["records"])


def test_generated_tree_arrives_once_with_fields_and_nanoseconds_intact(
    tmp_path: Path, server: SearchServer
) -> None:
    """A generated node tree through `kubelogs run`: the node holds each event exactly
    once under its id, and each document equals the one the `file` sink wrote for the
    same event (same encoder), `@timestamp` with its nanoseconds; one of the two hosts
    is down all along."""
    node = tmp_path / "node"
    records = generate(node, 20_000)
    index = unique_index("e2e")
    out = tmp_path / "docs.ndjson"
    cfg = agent_config(
        tmp_path,
        node,
        {
            # a dead host first: requests rotate past it to the live node
            "es": es_sink([f"http://127.0.0.1:{free_port()}", server.url], f"{index}-%Y.%m.%d"),
            "file": {"type": "file", "inputs": ["logs"], "path": str(out)},
        },
    )
    with Agent(cfg, tmp_path / "agent.log") as agent:
        wait_for(lambda: count(server, f"{index}-*") >= records, timeout=180, what="all docs")
        assert 0 == agent.stop(), agent.stderr()
    ids, sources = docs_by_id(server, f"{index}-*")
    written = read_ndjson(out)
    by_offset = {(d["log"]["file"]["path"], d["log"]["offset"]): d for d in written}
    mapping = server.request("GET", f"/{index}-*/_mapping")

    assert records == len(written)
    assert records == len(ids)
    assert [] == [i for i, n in ids.items() if n != 1]
    assert [] == [
        s
        for s in sources.values()
        if by_offset[(s["log"]["file"]["path"], s["log"]["offset"])] != s
    ]
    assert all(len(s["@timestamp"]) == 30 for s in sources.values())  # ...SS.nnnnnnnnnZ
    props = next(iter(mapping.values()))["mappings"]["properties"]
    assert "date_nanos" == props["@timestamp"]["type"]
    assert "keyword" == props["kubernetes"]["properties"]["namespace"]["type"]


def test_kill9_loop_while_shipping_loses_and_duplicates_nothing(
    tmp_path: Path, elasticsearch: SearchServer
) -> None:
    """kill -9 at random moments while pods write and rotate: every line is in the
    node once (resends are 409s under the same ids)."""
    server = elasticsearch
    node = tmp_path / "node"
    pods = [PodLog(node, pod=f"busy-{i}-abcde") for i in range(3)]
    index = unique_index("k9")
    cfg = agent_config(tmp_path, node, {"es": es_sink([server.url], index)})
    with RotatingWriter(pods, seed=3) as writer:
        kill9_cycles(cfg, tmp_path, lambda: count(server, index), cycles=6, seed=5, spread=3000)
    written = writer.written
    with Agent(cfg, tmp_path / "final.log") as agent:
        wait_for(lambda: count(server, index) >= len(written), timeout=120, what="all lines")
        assert 0 == agent.stop()
    got = messages(server, index)
    ids, _ = docs_by_id(server, index)

    assert len(written) == len(set(written))
    assert [] == [m for m in written if got[m] != 1]
    assert len(written) == sum(got.values())
    assert [] == [i for i, n in ids.items() if n != 1]


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param(Faults(request_status=[429] * 8 + [503] * 8), id="429-503-storm"),
        pytest.param(Faults(item_429_share=0.3), id="item-429s"),
        pytest.param(Faults(drop_share=0.3), id="dropped-connections"),
        pytest.param(Faults(slow_share=0.3, slow_seconds=1.5), id="slow-responses"),
    ],
)
def test_faults_between_agent_and_node_lose_and_duplicate_nothing(
    tmp_path: Path, opensearch: SearchServer, faults: Faults
) -> None:
    server = opensearch
    node = tmp_path / "node"
    records = generate(node, 6_000, containers=3, seed=11)
    index = unique_index("fault")
    with FaultProxy(server.url, faults=faults) as proxy:
        sink = es_sink([proxy.url], index, bulk={"max_events": 500, "timeout": "1s"})
        cfg = agent_config(tmp_path, node, {"es": sink})
        with Agent(cfg, tmp_path / "agent.log") as agent:
            wait_for(lambda: count(server, index) >= records, timeout=120, what="all docs")
            assert 0 == agent.stop(), agent.stderr()
        stats = proxy.stats
    ids, _ = docs_by_id(server, index)

    assert records == len(ids)
    assert [] == [i for i, n in ids.items() if n != 1]
    assert stats.statuses_given + stats.items_429 + stats.dropped + stats.slowed > 0


def test_mapping_conflicts_go_to_the_dlq_and_replay_after_the_fix(
    tmp_path: Path, server: SearchServer
) -> None:
    """Documents the mapping refuses land in the DLQ with the reason, the rest of the
    stream is indexed meanwhile, and `kubelogs dlq replay` delivers them once the
    mapping is fixed. The refusal: a strict mapping without `log.flags`, met by lines
    over `max_line_size` (flagged `truncated`)."""
    node = tmp_path / "node"
    pod = PodLog(node)
    short = [f"short line {i}" for i in range(200)]
    long = [f"long line {i} " + "x" * 3000 for i in range(5)]
    pod.write(*short[:100], *long, *short[100:])
    index = unique_index("dlq")
    strict = {
        "index_patterns": [f"{index}*"],
        "priority": 500,
        "template": {
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "@timestamp": {"type": "date_nanos"},
                    "message": {"type": "text"},
                    "stream": {"type": "keyword"},
                    "log": {
                        "properties": {
                            "file": {"properties": {"path": {"type": "keyword"}}},
                            "offset": {"type": "long"},
                        }
                    },
                    "kubernetes": {"type": "object", "dynamic": True},
                    "host": {"type": "object", "dynamic": True},
                },
            }
        },
    }
    server.request("PUT", f"/_index_template/{index}", strict)
    sink = es_sink([server.url], index, template={"enabled": False})
    cfg = agent_config(tmp_path, node, {"es": sink}, source={"max_line_size": "1KiB"})
    with Agent(cfg, tmp_path / "agent.log") as agent:
        wait_for(lambda: count(server, index) >= 200, timeout=60, what="the short lines")
        dlq_dir = tmp_path / "data" / "dead_letter" / "es"
        wait_for(lambda: list(dlq_dir.glob("*.ndjson")), timeout=30, what="a DLQ file")
        assert 0 == agent.stop()
    env = {**os.environ}
    listed = subprocess.run(
        [sys.executable, "-m", "kubelogs", "dlq", "list", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    shown = subprocess.run(
        [sys.executable, "-m", "kubelogs", "dlq", "show", "-c", str(cfg), "--output", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    entries = [json.loads(line) for line in shown.stdout.splitlines()]
    before_fix = subprocess.run(
        [sys.executable, "-m", "kubelogs", "dlq", "replay", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    server.request(
        "PUT",
        f"/{index}/_mapping",
        {"properties": {"log": {"properties": {"flags": {"type": "keyword"}}}}},
    )
    replayed = subprocess.run(
        [sys.executable, "-m", "kubelogs", "dlq", "replay", "-c", str(cfg), "--sink", "es"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    after = subprocess.run(
        [sys.executable, "-m", "kubelogs", "dlq", "list", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    got = messages(server, index)

    assert 0 == listed.returncode, listed.stderr
    assert "es" in listed.stdout
    assert " 5 " in f" {listed.stdout} "
    assert 5 == len(entries)
    assert all(e["status"] == 400 for e in entries)
    assert all("strict" in e["reason"] or "flags" in e["reason"] for e in entries)
    assert all(e["document"]["log"]["flags"] == ["truncated"] for e in entries)
    assert 0 != before_fix.returncode
    assert 0 == replayed.returncode, replayed.stderr
    assert "5 delivered" in replayed.stdout
    assert 205 == sum(got.values())
    assert all(got[m] == 1 for m in short)
    assert "no dead letters" in after.stdout


def _tls_proxy(tmp_path: Path, upstream: str) -> tuple[FaultProxy, Path]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    proxy = FaultProxy(upstream, ssl_context=ctx, basic_auth=("shipper", "s3cr3t-pw"))
    return proxy, ca_file


def test_tls_and_basic_auth_through_a_terminating_proxy(
    tmp_path: Path, opensearch: SearchServer
) -> None:
    """https with a CA made by the test and basic auth from the environment: delivered;
    a wrong password and a missing CA are each one line in the agent's log, and the
    password appears in no log."""
    server = opensearch
    node = tmp_path / "node"
    pod = PodLog(node)
    pod.write(*[f"secure line {i}" for i in range(300)])
    index = unique_index("tls")
    proxy, ca_file = _tls_proxy(tmp_path, server.url)
    with proxy:
        auth = {"user": "${ES_USER}", "password": "${ES_PASSWORD}"}
        good = es_sink([proxy.url], index, auth=auth, tls={"ca_file": str(ca_file)})
        cfg = agent_config(tmp_path / "good", node, {"es": good})
        env = {"ES_USER": "shipper", "ES_PASSWORD": "s3cr3t-pw"}
        with Agent(cfg, tmp_path / "good.log", env=env) as agent:
            wait_for(lambda: count(server, index) >= 300, timeout=60, what="docs over TLS")
            assert 0 == agent.stop()
        bad_env = {"ES_USER": "shipper", "ES_PASSWORD": "wrong-pw-123"}
        cfg_bad = agent_config(tmp_path / "bad", node, {"es": {**good, "health_check": "fail"}})
        wrong_pw = subprocess.run(
            [sys.executable, "-m", "kubelogs", "run", "-c", str(cfg_bad)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **bad_env},
        )
        no_ca = {**good, "health_check": "fail", "tls": {}}
        cfg_no_ca = agent_config(tmp_path / "noca", node, {"es": no_ca})
        untrusted = subprocess.run(
            [sys.executable, "-m", "kubelogs", "run", "-c", str(cfg_no_ca)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env},
        )
    logs = (tmp_path / "good.log").read_text() + wrong_pw.stderr + untrusted.stderr

    assert 300 == len(docs_by_id(server, index)[0])
    assert 2 == wrong_pw.returncode
    assert "authentication failed (401)" in wrong_pw.stderr
    assert 1 == sum("401" in line for line in wrong_pw.stderr.splitlines()), wrong_pw.stderr
    assert 2 == untrusted.returncode
    assert "TLS" in untrusted.stderr
    assert "ca_file" in untrusted.stderr
    assert "s3cr3t-pw" not in logs
    assert "wrong-pw-123" not in logs


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_node_down_mid_stream_then_back_loses_and_duplicates_nothing(
    tmp_path: Path, elasticsearch: SearchServer
) -> None:
    """The node is stopped for ~20 s while pods keep writing, then started again: the
    agent holds back (memory bounded meanwhile), then delivers every line once."""
    server = elasticsearch
    node = tmp_path / "node"
    pods = [PodLog(node, pod=f"steady-{i}-abcde") for i in range(2)]
    index = unique_index("outage")
    cfg = agent_config(tmp_path, node, {"es": es_sink([server.url], index)})
    rss: list[int] = []
    with Agent(cfg, tmp_path / "agent.log") as agent:
        assert agent.proc is not None
        with RotatingWriter(pods, seed=21) as writer:
            wait_for(lambda: count(server, index) > 500, timeout=60, what="first documents")
            server.stop()
            down_until = __import__("time").monotonic() + 20

            def sample_until_due() -> bool:
                rss.append(_rss_kib(agent.proc.pid))  # type: ignore[union-attr]
                return __import__("time").monotonic() >= down_until

            wait_for(sample_until_due, timeout=40, interval=0.5, what="the outage to last 20s")
            written_during_outage = len(writer.written)
            server.start()
        written = writer.written
        wait_for(lambda: count(server, index) >= len(written), timeout=120, what="catch-up")
        assert 0 == agent.stop()
    got = messages(server, index)
    ids, _ = docs_by_id(server, index)

    assert written_during_outage > 1000
    assert [] == [m for m in written if got[m] != 1]
    assert len(written) == sum(got.values())
    assert [] == [i for i, n in ids.items() if n != 1]
    assert max(rss) < 200 * 1024, f"agent RSS peaked at {max(rss) // 1024} MiB"
    assert Counter(ids.values()) == Counter({1: len(written)})
