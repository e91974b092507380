"""`data_stream: true`: one data stream per namespace, created by the template the sink
installs, on both flavours (the Elasticsearch test node has no `_data_stream` GET API, so
the backing `.ds-` indices of the hits are what is checked). `retention` on a node
without ILM/ISM is a warning, not a failure."""

from __future__ import annotations

from pathlib import Path

from es_helpers import agent_config, count, es_sink, unique_index

from support.agent import Agent
from support.es_servers import SearchServer
from support.podlogs import PodLog
from support.waiting import wait_for


def test_data_stream_per_namespace_with_nanosecond_timestamps(
    tmp_path: Path, server: SearchServer
) -> None:
    node = tmp_path / "node"
    ns = unique_index("ns")
    PodLog(node, namespace=ns, pod="web-1-abcde").write(*[f"web {i}" for i in range(40)])
    PodLog(node, namespace=f"{ns}-b", pod="db-1-abcde").write(*[f"db {i}" for i in range(10)])
    sink = es_sink(
        [server.url],
        "unused",
        data_stream=True,
        data_stream_name="logs-kltest-{kubernetes.namespace}",
        template={"name": f"kltest-{ns}", "patterns": [f"logs-kltest-{ns}*"]},
        retention="7d",  # neither test node has ILM/ISM: a warning, delivery goes on
    )
    cfg = agent_config(tmp_path, node, {"es": sink})
    with Agent(cfg, tmp_path / "agent.log") as agent:
        wait_for(lambda: count(server, f"logs-kltest-{ns}*") >= 50, timeout=60, what="docs")
        assert 0 == agent.stop()
    server.refresh(f"logs-kltest-{ns}*")
    hits = server.search(f"logs-kltest-{ns}*", {"match_all": {}})
    by_stream: dict[str, int] = {}
    for h in hits:
        by_stream[h["_index"].split("-000")[0]] = by_stream.get(h["_index"].split("-000")[0], 0) + 1
    mapping = server.request("GET", f"/logs-kltest-{ns}/_mapping")

    assert "retention not applied" in (tmp_path / "agent.log").read_text()
    assert 50 == len(hits)
    assert all(h["_index"].startswith(".ds-logs-kltest-") for h in hits)
    assert [10, 40] == sorted(by_stream.values())
    props = next(iter(mapping.values()))["mappings"]["properties"]
    assert "date_nanos" == props["@timestamp"]["type"]
