"""The Helm chart, checked with real tools: helm v3.22.0 (built from the Go module proxy),
kubernetes-validate (the API's own schemas, strict) and `kubelogs validate`.

Each values file under deploy/helm/ci/ and the chart's defaults are linted, rendered, and
every manifest validated for Kubernetes 1.35, 1.36 and 1.37; the agent config each render
puts in its ConfigMap is checked by `kubelogs validate` with the DaemonSet's environment.
The manifests committed under deploy/kubernetes/ must be what the chart renders today.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml

import kubelogs.components  # noqa: F401  (registers the built-in component types)
from kubelogs.config.unit_parsers import parse_duration

from .chart import (
    CHART,
    CRD_KINDS,
    NAMESPACE,
    ROOT,
    VALUES,
    Doc,
    helm_template,
    one,
    render,
    values_args,
)

KUBE_VERSIONS = ["1.35.0", "1.36.0", "1.37.0"]
STORE_SETUPS = {"agent-opensearch-values.yaml", "agent-elasticsearch-values.yaml"}

pytestmark = pytest.mark.timeout(3000)  # the first test may wait for a cold build of helm


@pytest.fixture(scope="module")
def rendered(helm: Path) -> dict[str, list[Doc]]:
    return {v: render(helm, *values_args(v)) for v in VALUES}


def agent_config(docs: list[Doc]) -> dict[str, Any]:
    cm = one(docs, "ConfigMap")
    config: dict[str, Any] = yaml.safe_load(cm["data"]["kubelogs.yaml"])
    return config


def agent_container(docs: list[Doc]) -> Doc:
    ds = one(docs, "DaemonSet")
    containers: list[Doc] = ds["spec"]["template"]["spec"]["containers"]
    assert ["agent"] == [c["name"] for c in containers]
    return containers[0]


# --- helm lint ------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUES)
def test_helm_lint_strict(helm: Path, values: str) -> None:
    r = subprocess.run(
        [str(helm), "lint", "--strict", "--kube-version", "1.37.0", str(CHART),
         *values_args(values)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip

    assert 0 == r.returncode, r.stdout + r.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in r.stdout
    assert "[WARNING]" not in r.stdout
    assert "[ERROR]" not in r.stdout


def test_helm_is_the_pinned_version(helm: Path) -> None:
    r = subprocess.run([str(helm), "version", "--short"], capture_output=True, text=True)

    assert r.stdout.startswith("v3.22.0"), r.stdout


# --- every manifest against the API's schemas --------------------------------------------


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("values", VALUES)
def test_manifests_validate_strict(
    rendered: dict[str, list[Doc]], values: str, kube_version: str
) -> None:
    checked = 0
    for doc in rendered[values]:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            continue
        kubernetes_validate.validate(doc, kube_version, strict=True)
        checked += 1

    assert checked >= 5


def test_strict_validation_rejects_an_unknown_field(rendered: dict[str, list[Doc]]) -> None:
    """The check above can fail: a misplaced key in the pod template is an error."""
    ds = one(rendered["defaults"], "DaemonSet")
    ds["spec"]["template"]["spec"]["hostPathz"] = True

    with pytest.raises(kubernetes_validate.ValidationError, match="hostPathz"):
        kubernetes_validate.validate(ds, "1.37.0", strict=True)


def test_only_known_crds_are_left_unvalidated(rendered: dict[str, list[Doc]]) -> None:
    for docs in rendered.values():
        for doc in docs:
            if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
                continue
            assert not doc["apiVersion"].endswith(".coreos.com/v1"), doc["kind"]
    assert any(d["kind"] == "ServiceMonitor" for d in rendered["options-values.yaml"]), (
        "options-values.yaml must exercise the ServiceMonitor"
    )


# --- the agent's config: kubelogs validate ---------------------------------------------


def _validate_agent_config(docs: list[Doc], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`kubelogs validate` on the rendered config, with the container's environment.

    The host paths (data_dir) are moved under tmp_path, as the hostPath mounts put them
    somewhere writable; everything else is validated as rendered.
    """
    text: str = one(docs, "ConfigMap")["data"]["kubelogs.yaml"]
    data_dir = yaml.safe_load(text)["data_dir"]
    moved = str(tmp_path / data_dir.lstrip("/"))
    config = tmp_path / "kubelogs.yaml"
    config.write_text(text.replace(data_dir, moved))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NODE_NAME": "node-1"}
    for var in agent_container(docs)["env"]:
        if "value" in var:
            env[var["name"]] = var["value"].replace(data_dir, moved)
    return subprocess.run(
        [sys.executable, "-m", "kubelogs", "validate", "-c", str(config)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("values", sorted(set(VALUES) - STORE_SETUPS))
def test_agent_config_passes_kubelogs_validate(
    rendered: dict[str, list[Doc]], values: str, tmp_path: Path
) -> None:
    r = _validate_agent_config(rendered[values], tmp_path)

    assert 0 == r.returncode, r.stdout + r.stderr


@pytest.mark.parametrize("values", sorted(STORE_SETUPS))
def test_store_setups_validate(rendered: dict[str, list[Doc]], values: str, tmp_path: Path) -> None:
    """The agent's `elasticsearch` sink pointing at the chart's own store is a valid
    config."""
    r = _validate_agent_config(rendered[values], tmp_path)

    assert 0 == r.returncode, r.stdout + r.stderr


def test_agent_config_validation_catches_a_bad_component(helm: Path, tmp_path: Path) -> None:
    """The check can fail: a misspelt key in values reaches `kubelogs validate`."""
    docs = render(helm, "--set", "agent.config.sources.containers.read_fron=end")

    r = _validate_agent_config(docs, tmp_path)

    assert 1 == r.returncode
    assert "sources.containers.read_fron" in r.stdout + r.stderr


# --- what the agent's pods get --------------------------------------------------------


def _mounts(container: Doc, pod: Doc) -> dict[str, tuple[str, bool]]:
    """mountPath -> (hostPath, read-only) for the container's hostPath mounts."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    out = {}
    for m in container["volumeMounts"]:
        host = volumes[m["name"]].get("hostPath")
        if host is not None:
            out[m["mountPath"]] = (host["path"], bool(m.get("readOnly")))
    return out


def test_agent_daemonset_mounts_host_logs_read_only_and_data_dir_read_write(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["defaults"]
    pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    mounts = _mounts(agent_container(docs), pod)
    config = agent_config(docs)

    assert {
        "/var/log": ("/var/log", True),
        "/var/log/pods": ("/var/log/pods", True),
        "/var/lib/docker/containers": ("/var/lib/docker/containers", True),
        "/var/lib/kubelet/pods": ("/var/lib/kubelet/pods", True),
        "/var/lib/kubelogs": ("/var/lib/kubelogs", False),
    } == mounts
    assert "/var/lib/kubelogs" == config["data_dir"]
    assert [m for m, (_h, ro) in mounts.items() if not ro] == [config["data_dir"]]


def test_agent_without_docker_and_pod_volumes_mounts_only_logs_and_data(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["options-values.yaml"]
    pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]

    assert {"/var/log", "/var/log/pods", "/var/lib/kubelogs"} == set(
        _mounts(agent_container(docs), pod)
    )


def test_agent_pod_spec(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["defaults"]
    ds = one(docs, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    container = agent_container(docs)
    config = agent_config(docs)
    port = int(config["api"]["listen"].rsplit(":", 1)[1])
    env = {e["name"]: e for e in container["env"]}

    assert {"fieldRef": {"fieldPath": "spec.nodeName"}} == env["NODE_NAME"]["valueFrom"]
    assert [{"operator": "Exists"}] == pod["tolerations"]
    assert "nodeSelector" not in pod
    assert "0.0.0.0:24231" == config["api"]["listen"]
    assert [{"name": "api", "containerPort": port, "protocol": "TCP"}] == container["ports"]
    assert {"path": "/healthz", "port": "api"} == container["livenessProbe"]["httpGet"]
    assert {"path": "/readyz", "port": "api"} == container["readinessProbe"]["httpGet"]
    assert pod["terminationGracePeriodSeconds"] > parse_duration(config["shutdown_grace_period"])
    assert ["run", "--config", "/etc/kubelogs/kubelogs.yaml"] == container["args"]
    annotations = ds["spec"]["template"]["metadata"]["annotations"]
    assert "true" == annotations["prometheus.io/scrape"]
    assert str(port) == annotations["prometheus.io/port"]
    assert "/metrics" == annotations["prometheus.io/path"]
    assert one(docs, "ServiceAccount")["metadata"]["name"] == pod["serviceAccountName"]


def test_agent_security_context_grants_only_reading(rendered: dict[str, list[Doc]]) -> None:
    sc = agent_container(rendered["defaults"])["securityContext"]

    assert {"drop": ["ALL"]} == sc["capabilities"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert 0 == sc["runAsUser"]  # the kubelet's log files are root's, mode 0640


def test_agent_options_render(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["options-values.yaml"]
    pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")

    assert {"beta.kubernetes.io/fluentd-ds-ready": "true"} == pod["nodeSelector"]
    assert "system-node-critical" == pod["priorityClassName"]
    assert 60 == pod["terminationGracePeriodSeconds"]
    assert "50s" == agent_config(docs)["shutdown_grace_period"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert [{"port": "api", "path": "/metrics", "interval": "30s"}] == monitor["spec"]["endpoints"]


def test_config_checksum_rolls_the_pods(helm: Path, rendered: dict[str, list[Doc]]) -> None:
    def checksum(docs: list[Doc]) -> str:
        ds = one(docs, "DaemonSet")
        value: str = ds["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return value

    docs = rendered["defaults"]
    text = one(docs, "ConfigMap")["data"]["kubelogs.yaml"]
    changed = render(helm, "--set", "agent.config.log.level=debug")

    assert hashlib.sha256(text.rstrip("\n").encode()).hexdigest() == checksum(docs)
    assert checksum(docs) != checksum(changed)


def test_termination_grace_period_must_exceed_the_drain(helm: Path) -> None:
    r = helm_template(helm, "--set", "agent.terminationGracePeriodSeconds=30")

    assert 0 != r.returncode
    assert "agent.terminationGracePeriodSeconds (30) must be above" in r.stderr


def test_values_schema_rejects_a_typo(helm: Path) -> None:
    r = helm_template(helm, "--set", "agent.tolerationz[0].operator=Exists")

    assert 0 != r.returncode
    assert "additional properties 'tolerationz' not allowed" in r.stderr


def test_agent_disabled_renders_nothing_of_the_agent(helm: Path) -> None:
    assert [] == render(helm, "--set", "agent.enabled=false")


# --- RBAC: exactly what the code asks ----------------------------------------------------


def test_cluster_role_is_get_list_watch_on_pods_and_namespaces(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["defaults"]
    role = one(docs, "ClusterRole")
    binding = one(docs, "ClusterRoleBinding")
    sa = one(docs, "ServiceAccount")

    assert [
        {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list", "watch"]}
    ] == role["rules"]
    assert {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole"} | {
        "name": role["metadata"]["name"]
    } == binding["roleRef"]
    assert [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}
    ] == binding["subjects"]


def test_cluster_role_covers_every_resource_the_agent_requests(
    rendered: dict[str, list[Doc]],
) -> None:
    """The API paths in src/kubelogs/kubernetes name the role's resources, no more."""
    code = "\n".join(p.read_text() for p in (ROOT / "src" / "kubelogs" / "kubernetes").glob("*.py"))
    requested = set(re.findall(r'"/api/v1/([a-z]+)"', code))
    role = one(rendered["defaults"], "ClusterRole")

    assert requested == set(role["rules"][0]["resources"])


# --- the store ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "engine", "master_role", "dashboards_image"),
    [
        ("agent-opensearch-values.yaml", "opensearch", "cluster_manager", "opensearch-dashboards"),
        ("agent-elasticsearch-values.yaml", "elasticsearch", "master", "kibana"),
    ],
)
def test_store_roles_services_and_dashboards(
    rendered: dict[str, list[Doc]],
    values: str,
    engine: str,
    master_role: str,
    dashboards_image: str,
) -> None:
    docs = rendered[values]
    store = f"kubelogs-{engine}"
    sets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "StatefulSet"}
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    pdbs = {d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"}
    sink = agent_config(docs)["sinks"]["store"]

    def roles(name: str) -> str:
        env = sets[name]["spec"]["template"]["spec"]["containers"][0]["env"]
        value: str = next(e["value"] for e in env if e["name"] == "node.roles")
        return value

    assert {f"{store}-master", f"{store}-data", f"{store}-coordinating"} == set(sets)
    assert master_role == roles(f"{store}-master")
    assert "data,ingest" == roles(f"{store}-data")
    assert "" == roles(f"{store}-coordinating")
    assert 3 == sets[f"{store}-master"]["spec"]["replicas"]
    assert set(sets) == pdbs
    for name, sts in sets.items():
        headless = services[sts["spec"]["serviceName"]]
        assert "None" == headless["spec"]["clusterIP"]
        assert (
            headless["spec"]["selector"].items()
            <= sts["spec"]["template"]["metadata"]["labels"].items()
        ), name
    client = services[store]
    coordinating = sets[f"{store}-coordinating"]["spec"]["template"]["metadata"]["labels"]
    assert client["spec"]["selector"].items() <= coordinating.items()
    assert "elasticsearch" == sink["type"]
    assert [f"http://{store}.logging.svc:9200"] == sink["hosts"]
    assert ["k8s", "node"] == sink["inputs"]
    dashboards = one(docs, "Deployment")
    image = dashboards["spec"]["template"]["spec"]["containers"][0]["image"]
    assert f"/{dashboards_image}:" in image
    assert f"{store}-dashboards" in services
    job = one(docs, "Job")
    job_env = {
        e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert f"http://{store}-dashboards.logging.svc:5601" == job_env["DASHBOARDS_URL"]
    assert "logstash-*" == job_env["INDEX_PATTERN"]


def test_no_store_no_store_objects(rendered: dict[str, list[Doc]]) -> None:
    kinds = {d["kind"] for d in rendered["defaults"]}

    assert {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "DaemonSet",
    } == kinds
    assert "local" == agent_config(rendered["defaults"])["sinks"]["store"]["type"]


# --- NOTES.txt ------------------------------------------------------------------------


def _notes(helm: Path, tmp_path: Path, *args: str) -> str:
    """NOTES.txt as `helm install` prints it (rendered through `tpl` in a copy of the
    chart: `helm template` leaves NOTES out and `helm install` needs a cluster)."""
    chart = tmp_path / "kubelogs"
    shutil.copytree(CHART, chart)
    (chart / "notes.txt").write_text((chart / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "notes-as-configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data: {notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}}\n'
    )
    r = subprocess.run(
        [str(helm), "template", "kubelogs", str(chart), "--namespace", "logging",
         "--show-only", "templates/notes-as-configmap.yaml", *args],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert 0 == r.returncode, r.stderr
    notes: str = yaml.safe_load(r.stdout)["data"]["notes"]
    return notes


def test_notes_tell_how_to_search(helm: Path, tmp_path: Path) -> None:
    local = _notes(helm, tmp_path / "a")
    opensearch = _notes(helm, tmp_path / "b", "--set", "store.type=opensearch")
    labelled = _notes(
        helm,
        tmp_path / "c",
        "--set-string",
        "agent.nodeSelector.beta\\.kubernetes\\.io/fluentd-ds-ready=true",
    )

    assert "kubelogs search --store /var/lib/kubelogs/store" in local
    assert "exec ds/kubelogs-agent" in local
    assert "port-forward svc/kubelogs-opensearch-dashboards 5601:5601" in opensearch
    assert "kubectl label node NODE beta.kubernetes.io/fluentd-ds-ready=true" in labelled


# --- the committed manifests ------------------------------------------------------------


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "kubelogs_generate", ROOT / "deploy" / "kubernetes" / "generate.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _committed(setup: str) -> Iterator[Path]:
    yield from sorted((ROOT / "deploy" / "kubernetes" / setup).glob("*.yaml"))


def test_committed_manifests_are_what_the_chart_renders(helm: Path) -> None:
    generate = _generator()
    fresh: dict[str, dict[str, str]] = generate.render(str(helm))
    stale = []
    for setup, files in fresh.items():
        on_disk = {p.name: p.read_text() for p in _committed(setup)}
        if on_disk != files:
            stale.append(setup)

    assert [] == stale, (
        f"deploy/kubernetes/{{{','.join(stale)}}} differ from the chart: "
        "run `python3 deploy/kubernetes/generate.py` (HELM=path/to/helm v3.22.0) and commit"
    )
    assert {"agent-local", "agent-opensearch", "agent-elasticsearch"} == set(fresh)


def test_committed_manifests_name_their_command() -> None:
    for setup in ("agent-local", "agent-opensearch", "agent-elasticsearch"):
        files = list(_committed(setup))
        assert files, setup
        for path in files:
            head = path.read_text().splitlines()[:2]
            assert head[0].startswith("# Generated by `python3 deploy/kubernetes/generate.py`")
            assert f"--values deploy/helm/ci/{setup}-values.yaml" in head[1]
