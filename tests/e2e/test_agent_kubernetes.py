"""The agent with Kubernetes metadata, as deployed: `kubelogs run` against an API server.

The API server is the test suite's FakeApiServer (real list/watch semantics, bearer
token, TLS with a CA made by trustme), run in a thread; the agent is a subprocess.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelogs.testing.fake_apiserver import FakeApiServer
from support.agent import FAST_TAIL, Agent, read_docs, write_config
from support.podlogs import PodLog
from support.waiting import wait_for

NODE = "node-test"


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer(tls=True, token="secret-token-1").in_thread() as srv:
        yield srv


def k8s_config(tmp: Path, api: FakeApiServer, node: Path) -> Path:
    tail: dict[str, Any] = {
        "type": "kubernetes_logs",
        **FAST_TAIL,
        "include": [str(node / "var/log/containers/*.log")],
        "kubelet_root": str(node / "var/lib/kubelet"),
    }
    return write_config(
        tmp / "kubelogs.yaml",
        {
            "data_dir": str(tmp / "data"),
            "node_name": NODE,
            "api": {"listen": "127.0.0.1:0"},
            "sources": {"logs": tail},
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
                "ecs": {"type": "file", "inputs": ["k8s"], "path": str(tmp / "ecs.ndjson")},
                "fluentd": {
                    "type": "file",
                    "inputs": ["k8s"],
                    "schema": "fluentd",
                    "path": str(tmp / "fluentd.ndjson"),
                },
            },
        },
    )


def docs_of(path: Path, pod: str) -> list[dict[str, Any]]:
    out = []
    for d in read_docs(path):
        k = d.get("kubernetes", {})
        if k.get("pod", {}).get("name") == pod or k.get("pod_name") == pod:
            out.append(d)
    return out


def make_pod(api: FakeApiServer, node: Path, name: str, **kw: Any) -> PodLog:
    obj = api.create_pod(name=name, node=NODE, **kw)
    return PodLog(
        node, namespace=obj["metadata"]["namespace"], pod=name, uid=obj["metadata"]["uid"]
    )


def metric(port: int, prefix: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(prefix))


def test_metadata_on_every_event_in_both_schemas(api: FakeApiServer, tmp_path: Path) -> None:
    """Labels (de-dotted), owner, image, IP and node from the API, on every event; a pod
    created after the agent started is enriched too."""
    node = tmp_path / "node"
    api.create_namespace("default", labels={"team": "web"})
    web = make_pod(
        api,
        node,
        "web-7d4b9-x2x2x",
        labels={"app": "web", "app.kubernetes.io/name": "web", "pod-template-hash": "7d4b9"},
        owners=[("ReplicaSet", "web-7d4b9")],
        images={"app": "nginx:1.25"},
        ip="10.244.1.7",
    )
    web.write(*[f"web-{i}" for i in range(200)])
    cfg = k8s_config(tmp_path, api, node)
    with Agent(cfg, tmp_path / "agent.log") as agent:
        wait_for(lambda: len(docs_of(tmp_path / "ecs.ndjson", web.pod)) == 200, what="web docs")
        late = make_pod(api, node, "db-0", owners=[("StatefulSet", "db")], labels={"app": "db"})
        late.write(*[f"db-{i}" for i in range(50)])
        wait_for(lambda: len(docs_of(tmp_path / "fluentd.ndjson", "db-0")) == 50, what="db")
        assert agent.stop() == 0
    ecs = docs_of(tmp_path / "ecs.ndjson", web.pod)
    flu = docs_of(tmp_path / "fluentd.ndjson", web.pod)
    db = docs_of(tmp_path / "ecs.ndjson", "db-0")

    for d in ecs:
        k = d["kubernetes"]
        assert {"app": "web", "app_kubernetes_io/name": "web", "pod-template-hash": "7d4b9"} == k[
            "labels"
        ]
        assert {"name": "web"} == k["deployment"]
        assert "10.244.1.7" == k["pod"]["ip"]
        assert web.uid == k["pod"]["uid"]
        assert "nginx:1.25" in k["container"]["image"]
        assert {"name": NODE} == k["node"]
        assert "web" == k["namespace_labels"]["team"]
    assert 200 == len(flu)
    f = flu[0]
    assert "web-0" == f["log"]
    assert "default" == f["kubernetes"]["namespace_name"]
    assert "app" == f["kubernetes"]["container_name"]
    assert web.uid == f["kubernetes"]["pod_id"]
    assert NODE == f["kubernetes"]["host"]
    assert web.container_id == f["docker"]["container_id"]
    assert all({"name": "db"} == d["kubernetes"]["statefulset"] for d in db)


def test_annotations_exclude_and_pod_files(api: FakeApiServer, tmp_path: Path) -> None:
    """`kubelogs.io/exclude` drops a pod (also when set at runtime); `kubelogs.io/files`
    reads an app log inside an emptyDir, through its rotation."""
    node = tmp_path / "node"
    quiet = make_pod(api, node, "quiet-1", annotations={"kubelogs.io/exclude": "true"})
    quiet.write(*[f"quiet-{i}" for i in range(20)])
    noisy = make_pod(api, node, "noisy-1")
    noisy.write("noisy-before")
    app = api.create_pod(
        name="files-1",
        node=NODE,
        annotations={"kubelogs.io/files": "/var/log/app/*.log"},
        volumes=[{"name": "applogs", "emptyDir": {}}],
        volume_mounts={"app": [{"name": "applogs", "mountPath": "/var/log/app"}]},
    )
    vol = (
        node
        / "var/lib/kubelet/pods"
        / app["metadata"]["uid"]
        / "volumes/kubernetes.io~empty-dir/applogs"
    )
    vol.mkdir(parents=True)
    applog = vol / "app.log"
    applog.write_text("".join(f"app-{i}\n" for i in range(100)))
    cfg = k8s_config(tmp_path, api, node)
    out = tmp_path / "ecs.ndjson"
    with Agent(cfg, tmp_path / "agent.log") as agent:
        port = agent.api_port
        wait_for(
            lambda: len(docs_of(out, "files-1")) == 100 and docs_of(out, "noisy-1"),
            what="app file lines and the noisy pod's line",
        )
        applog.rename(vol / "app.log.1")  # the app rotates its own file
        with open(vol / "app.log.1", "a") as f:
            f.write("app-late\n")
        applog.write_text("app-new\n")
        wait_for(lambda: len(docs_of(out, "files-1")) == 102, what="rotated app file")
        # Exclude the noisy pod at runtime: once a discard is counted, nothing more arrives.
        api.set_pod_annotation("default", "noisy-1", "kubelogs.io/exclude", "true")
        base = metric(port, "kubelogs_component_discarded_events_total")
        i = 0

        def dropped() -> bool:
            nonlocal i
            i += 1
            noisy.write(f"probe-{i}")
            return metric(port, "kubelogs_component_discarded_events_total") > base + 0

        wait_for(dropped, what="the exclude annotation to take effect")
        noisy.write("after-exclude")
        quiet.write("quiet-last")
        make_pod(api, node, "marker-1").write("marker")
        wait_for(lambda: docs_of(out, "marker-1"), what="a later pod's line")
        assert agent.stop() == 0
    files_docs = docs_of(out, "files-1")

    assert [] == docs_of(out, "quiet-1")
    assert "after-exclude" not in [d["message"] for d in docs_of(out, "noisy-1")]
    expected_app = [f"app-{i}" for i in range(100)] + ["app-late", "app-new"]
    assert sorted(expected_app) == sorted(d["message"] for d in files_docs)
    assert all("app" == d["kubernetes"]["container"]["name"] for d in files_docs)
    # Plain lines, not container runtime lines: nothing is flagged malformed.
    assert [] == [d for d in files_docs if d.get("log", {}).get("flags")]
    assert all(
        re.search(r"kubernetes\.io~empty-dir/applogs/app\.log", d["log"]["file"]["path"])
        for d in files_docs
    )


def test_restart_with_api_down_uses_the_persisted_cache(api: FakeApiServer, tmp_path: Path) -> None:
    """A pod deleted (and the API server unreachable) while the agent was down: its last
    lines are still enriched from the cache saved in data_dir."""
    node = tmp_path / "node"
    job = make_pod(
        api, node, "backup-28391-abcde", labels={"app": "backup"}, owners=[("Job", "backup-28391")]
    )
    job.write("job-start")
    cfg = k8s_config(tmp_path, api, node)
    out = tmp_path / "ecs.ndjson"
    with Agent(cfg, tmp_path / "agent.log") as agent:
        wait_for(lambda: docs_of(out, job.pod), what="first line")
        assert agent.stop() == 0
    job.write("job-end-1", "job-end-2")
    api.delete_pod("default", job.pod)
    api.fail_with = 503
    with Agent(cfg, tmp_path / "agent2.log") as agent:
        wait_for(lambda: len(docs_of(out, job.pod)) == 3, what="the last lines")
        assert agent.stop() == 0
    docs = docs_of(out, job.pod)

    assert ["job-start", "job-end-1", "job-end-2"] == [d["message"] for d in docs]
    assert all({"app": "backup"} == d["kubernetes"]["labels"] for d in docs)
    assert all({"name": "backup-28391"} == d["kubernetes"]["job"] for d in docs)
    assert "secret-token-1" not in (tmp_path / "agent2.log").read_text()
