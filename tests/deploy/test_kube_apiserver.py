"""The chart against a real kube-apiserver (with etcd), built from the Go module proxy.

Every manifest the chart renders is applied with server-side dry run and strict field
validation (the API server's own defaulting, validation and admission). Then the agent's
ServiceAccount, ClusterRole and binding are applied for real, and `kubelogs run` watches
pods with that ServiceAccount's token: lines are enriched; with the binding removed lines
still flow, without metadata, and the refusal is logged once, no traceback;
with the binding back, metadata resumes by itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from support.agent import FAST_TAIL, Agent, read_docs, write_config
from support.podlogs import PodLog
from support.waiting import wait_for

from .chart import CRD_KINDS, NAMESPACE, VALUES, Doc, one, render, values_args
from .kube_cluster import ApiError, ControlPlane, KubeApi

pytestmark = [pytest.mark.kube_apiserver, pytest.mark.timeout(3000)]

NODE = "node-1"
APP_NAMESPACE = "shop"


@pytest.fixture(scope="module")
def admin(control_plane: ControlPlane) -> KubeApi:
    api = control_plane.api()
    api.ensure_namespace(NAMESPACE)
    api.ensure_namespace(APP_NAMESPACE, labels={"team": "checkout"})
    return api


def test_api_server_is_the_pinned_version(admin: KubeApi) -> None:
    assert "v1.37.2" == admin.request("GET", "/version")["gitVersion"]


@pytest.mark.parametrize("values", VALUES)
def test_rendered_manifests_pass_server_side_dry_run(
    helm: Path, admin: KubeApi, values: str
) -> None:
    docs = render(helm, *values_args(values))
    applied = []
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            continue
        result = admin.apply(doc, NAMESPACE, dry_run=True)
        assert doc["metadata"]["name"] == result["metadata"]["name"]
        applied.append(doc["kind"])

    assert "DaemonSet" in applied
    assert "ClusterRole" in applied


def test_dry_run_rejects_an_unknown_field(helm: Path, admin: KubeApi) -> None:
    """The check above can fail: the server refuses what the schema does not know."""
    ds = one(render(helm), "DaemonSet")
    ds["spec"]["template"]["spec"]["containers"][0]["readOnly"] = True

    with pytest.raises(
        ApiError, match=r"containers\[name=.*agent.*\]\.readOnly: field not declared"
    ):
        admin.apply(ds, NAMESPACE, dry_run=True)


# --- the agent's metadata watch with the chart's RBAC -----------------------------------


def _rbac(helm: Path) -> tuple[Doc, Doc, Doc]:
    docs = render(helm)
    return one(docs, "ServiceAccount"), one(docs, "ClusterRole"), one(docs, "ClusterRoleBinding")


def _pod(admin: KubeApi, node: Path, name: str) -> PodLog:
    """A pod bound to the agent's node (no scheduler: spec.nodeName is set) and its log."""
    created: dict[str, Any] = admin.request(
        "POST",
        f"/api/v1/namespaces/{APP_NAMESPACE}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": {"app": name, "app.kubernetes.io/part-of": "shop"},
            },
            "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "nginx:1.25"}]},
        },
    )
    return PodLog(node, namespace=APP_NAMESPACE, pod=name, uid=created["metadata"]["uid"])


def _agent_config(tmp: Path, plane: ControlPlane, node: Path, token: str) -> Path:
    (tmp / "token").write_text(token)
    return write_config(
        tmp / "kubelogs.yaml",
        {
            "data_dir": str(tmp / "data"),
            "node_name": NODE,
            "api": {"listen": "127.0.0.1:0"},
            "sources": {
                "containers": {
                    "type": "kubernetes_logs",
                    **FAST_TAIL,
                    "include": [str(node / "var/log/containers/*.log")],
                }
            },
            "transforms": {
                "k8s": {
                    "type": "kubernetes_metadata",
                    "inputs": ["containers"],
                    "api_server": plane.url,
                    "token_file": str(tmp / "token"),
                    "ca_file": str(plane.ca_file),
                }
            },
            "sinks": {"out": {"type": "file", "inputs": ["k8s"], "path": str(tmp / "out.ndjson")}},
        },
    )


def _docs(tmp: Path, pod: str) -> list[dict[str, Any]]:
    return [d for d in read_docs(tmp / "out.ndjson") if d["kubernetes"]["pod"]["name"] == pod]


def test_agent_enriches_lines_with_the_service_account_of_the_chart(
    helm: Path, admin: KubeApi, control_plane: ControlPlane, tmp_path: Path
) -> None:
    sa, role, binding = _rbac(helm)
    for doc in (sa, role, binding):
        admin.apply(doc, NAMESPACE)
    token = admin.service_account_token(NAMESPACE, sa["metadata"]["name"])
    user = f"system:serviceaccount:{NAMESPACE}:{sa['metadata']['name']}"
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}"]
    wait_for(
        lambda: all(admin.can_list(user, groups, r) for r in ("pods", "namespaces")),
        what="RBAC to allow listing pods and namespaces",
    )
    node = tmp_path / "node"
    web = _pod(admin, node, "web-1")
    web.write(*[f"web-{i}" for i in range(50)])

    with Agent(
        _agent_config(tmp_path, control_plane, node, token), tmp_path / "agent.log"
    ) as agent:
        wait_for(lambda: len(_docs(tmp_path, "web-1")) == 50, what="web-1's lines")
        late = _pod(admin, node, "late-1")  # created while the agent watches
        late.write("late line")
        wait_for(lambda: _docs(tmp_path, "late-1"), what="late-1's line")
        assert 0 == agent.stop()
    docs = _docs(tmp_path, "web-1") + _docs(tmp_path, "late-1")

    for d in docs:
        k = d["kubernetes"]
        assert d["kubernetes"]["pod"]["name"] == k["labels"]["app"]
        assert "shop" == k["labels"]["app_kubernetes_io/part-of"]
        assert "checkout" == k["namespace_labels"]["team"]
        assert {"name": NODE} == k["node"]
    assert web.uid == docs[0]["kubernetes"]["pod"]["uid"]
    assert "forbidden" not in agent.stderr().lower()


def test_without_the_role_lines_flow_and_the_refusal_is_logged_once(
    helm: Path, admin: KubeApi, control_plane: ControlPlane, tmp_path: Path
) -> None:
    sa, role, binding = _rbac(helm)
    for doc in (sa, role):
        admin.apply(doc, NAMESPACE)
    admin.delete(binding, NAMESPACE)
    token = admin.service_account_token(NAMESPACE, sa["metadata"]["name"])
    user = f"system:serviceaccount:{NAMESPACE}:{sa['metadata']['name']}"
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}"]
    wait_for(lambda: not admin.can_list(user, groups, "pods"), what="RBAC to drop the binding")
    node = tmp_path / "node"
    pod = _pod(admin, node, "norbac-1")
    pod.write(*[f"before-{i}" for i in range(20)])

    cfg = _agent_config(tmp_path, control_plane, node, token)
    with Agent(cfg, tmp_path / "agent.log") as agent:
        wait_for(
            lambda: len(_docs(tmp_path, "norbac-1")) == 20 and "403 Forbidden" in agent.stderr(),
            what="lines without metadata, and the refusal logged",
        )
        refused = [ln for ln in agent.stderr().splitlines() if "403 Forbidden" in ln]
        # Metadata comes back by itself once the binding is restored (the watch retries).
        admin.apply(binding, NAMESPACE)
        i = 0

        def enriched() -> bool:
            nonlocal i
            i += 1
            pod.write(f"after-{i}")
            return any("labels" in d["kubernetes"] for d in _docs(tmp_path, "norbac-1"))

        wait_for(enriched, timeout=120, interval=1.0, what="metadata after the role is back")
        assert 0 == agent.stop()
    before = _docs(tmp_path, "norbac-1")[:20]
    log = agent.stderr()

    assert [f"before-{i}" for i in range(20)] == [d["message"] for d in before]
    assert all("labels" not in d["kubernetes"] for d in before)
    assert all(APP_NAMESPACE == d["kubernetes"]["namespace"] for d in before)
    # One line for the refusal, not one per retry (it names whichever of the two watches,
    # pods or namespaces, was refused first), with the service account and the resource.
    assert 1 == len(refused), refused
    assert re.search(
        rf'User "{re.escape(user)}" cannot list resource "(pods|namespaces)"', refused[0]
    ), refused[0]
    assert "Traceback" not in log
    assert re.search(r"answers again.*pod metadata resumes", log), log[-3000:]


def test_agent_pod_needs_the_privileged_pod_security_level(helm: Path, admin: KubeApi) -> None:
    """As the README says: the agent's pod (hostPath volumes) is admitted where Pod
    Security is `privileged` and refused, naming hostPath, where it is `baseline`."""
    docs = render(helm)
    template = one(docs, "DaemonSet")["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kubelogs-agent-probe", **template["metadata"]},
        "spec": {**template["spec"], "nodeName": NODE},
    }
    admin.ensure_namespace(
        "logging-baseline", labels={"pod-security.kubernetes.io/enforce": "baseline"}
    )
    for namespace in (NAMESPACE, "logging-baseline"):
        sa = one(docs, "ServiceAccount")
        admin.apply({**sa, "metadata": {**sa["metadata"], "namespace": namespace}}, namespace)

    admitted = admin.apply(pod, NAMESPACE, dry_run=True)
    with pytest.raises(ApiError, match=r"violates PodSecurity \\?\"baseline:latest\\?\": hostPath"):
        admin.apply(pod, "logging-baseline", dry_run=True)

    assert "kubelogs-agent-probe" == admitted["metadata"]["name"]
