"""Per-pod multiline by annotation, end to end: `kubelogs run` with the metadata
transform against the fake API server. The container annotation wins over the pod's,
which wins over the config; a pod whose metadata arrives after its file was opened gets
its setting then; a bad value is logged once and ignored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelogs.testing.fake_apiserver import FakeApiServer
from support.agent import FAST_TAIL, Agent, read_docs, write_config
from support.podlogs import LivePodLog
from support.waiting import wait_for

NODE = "node-test"

PY_TB = [
    "ERROR job failed",
    "Traceback (most recent call last):",
    '  File "/app/job.py", line 3, in <module>',
    "    run()",
    "KeyError: 'x'",
    "",
    "During handling of the above exception, another exception occurred:",
    "",
    "Traceback (most recent call last):",
    '  File "/app/job.py", line 5, in <module>',
    "RuntimeError: job failed",
]
JAVA = [
    "ERROR order failed",
    "java.lang.IllegalStateException: x",
    "\tat com.example.A.a(A.java:1)",
    "Caused by: java.io.IOException: y",
    "\t... 3 more",
]


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer(tls=True, token="secret-token-1").in_thread() as srv:
        yield srv


def config(tmp: Path, api: FakeApiServer, node: Path) -> Path:
    return write_config(
        tmp / "kubelogs.yaml",
        {
            "data_dir": str(tmp / "data"),
            "node_name": NODE,
            "api": {"listen": "127.0.0.1:0"},
            "sources": {
                "logs": {
                    "type": "kubernetes_logs",
                    **FAST_TAIL,
                    "include": [str(node / "var/log/containers/*.log")],
                    "kubelet_root": str(node / "var/lib/kubelet"),
                    "multiline": "go",
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
            "sinks": {"out": {"type": "file", "inputs": ["k8s"], "path": str(tmp / "out.ndjson")}},
        },
    )


def pod(
    api: FakeApiServer, node: Path, name: str, containers: list[str], **kw: Any
) -> dict[str, LivePodLog]:
    obj = api.create_pod(name=name, node=NODE, containers=containers, **kw)
    uid = obj["metadata"]["uid"]
    return {c: LivePodLog(node, pod=name, container=c, uid=uid) for c in containers}


def messages(out: Path, pod: str, container: str) -> list[str]:
    return [
        d["message"]
        for d in read_docs(out)
        if d["kubernetes"]["pod"]["name"] == pod
        and d["kubernetes"]["container"]["name"] == container
    ]


def test_annotations_choose_multiline_per_pod_and_container(
    api: FakeApiServer, tmp_path: Path
) -> None:
    node = tmp_path / "node"
    out = tmp_path / "out.ndjson"
    shop = pod(
        api,
        node,
        "shop-1",
        ["app", "worker", "api"],
        annotations={
            "kubelogs.io/multiline": "python",
            "kubelogs.io/multiline-app": "java",
            "kubelogs.io/multiline-api": "java",
            "kubelogs.io/parser-api": "json",
        },
    )
    bad = pod(api, node, "bad-1", ["app"], annotations={"kubelogs.io/multiline": "(["})
    shop["app"].write(*JAVA, "INFO app done")
    shop["worker"].write(*PY_TB, "INFO worker done")
    shop["api"].write('{"level":"ERR","msg":"order failed","user":7}', *JAVA)
    shop["api"].write('{"level":"info","msg":"api done"}')
    bad["app"].write(*JAVA[:2], "INFO bad done")
    late = LivePodLog(node, pod="late-1", container="app", uid="uid-late-1")
    late.write("INFO late before")
    cfg = config(tmp_path, api, node)
    with Agent(cfg, tmp_path / "agent.log") as agent:
        wait_for(lambda: "INFO late before" in messages(out, "late-1", "app"), what="late line")
        api.create_pod(
            name="late-1",
            node=NODE,
            uid="uid-late-1",
            labels={"app": "late"},
            annotations={"kubelogs.io/multiline": "python"},
        )

        written: list[str] = []

        def known() -> bool:
            late.write("INFO probe")
            written.append("INFO probe")
            return any(
                d["kubernetes"].get("labels") == {"app": "late"}
                for d in read_docs(out)
                if d["kubernetes"]["pod"]["name"] == "late-1"
            )

        wait_for(known, what="the late pod's metadata")
        # The source resolves again at its next scan: probe until tracebacks are joined.
        probe = ["Traceback (most recent call last):", '  File "p.py", line 1', "ValueError: p"]

        def joining() -> bool:
            late.write(*probe)
            written.extend(probe)
            return "\n".join(probe) in messages(out, "late-1", "app")

        wait_for(joining, what="the late pod's multiline setting")
        late.write(*PY_TB, "INFO late done")
        wait_for(
            lambda: (
                "INFO late done" in messages(out, "late-1", "app")
                and "INFO app done" in messages(out, "shop-1", "app")
                and "INFO worker done" in messages(out, "shop-1", "worker")
                and len(messages(out, "shop-1", "api")) == 3
                and "INFO bad done" in messages(out, "bad-1", "app")
            ),
            what="every pod's last line",
        )
        assert agent.stop() == 0
    log = agent.stderr()

    assert ["\n".join(JAVA), "INFO app done"] == messages(out, "shop-1", "app")
    assert ["\n".join(PY_TB), "INFO worker done"] == messages(out, "shop-1", "worker")
    api = [d for d in read_docs(out) if d["kubernetes"]["container"]["name"] == "api"]
    assert [7, None, None] == [d.get("user") for d in api]  # parsed by the json parser
    assert ["error", None, "info"] == [d["log"].get("level") for d in api]
    assert ["multiline", "parse_error"] == sorted(api[1]["log"]["flags"])
    assert "\n".join(JAVA) == api[1]["message"]
    assert [*JAVA[:2], "INFO bad done"] == messages(out, "bad-1", "app")  # config's go: no join
    assert 1 == log.count("annotation kubelogs.io/multiline ignored"), log
    late_msgs = messages(out, "late-1", "app")
    assert "INFO late before" == late_msgs[0]
    assert ["\n".join(PY_TB), "INFO late done"] == late_msgs[-2:]
    # The probes: every line once (python joins a message to the traceback after it).
    assert sorted(written) == sorted(ln for m in late_msgs[1:-2] for ln in m.split("\n"))
