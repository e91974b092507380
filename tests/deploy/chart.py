"""Rendering the chart with helm, shared by the deployment tests."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "kubelogs"
CI_VALUES = sorted((ROOT / "deploy" / "helm" / "ci").glob("*-values.yaml"))
VALUES = ["defaults", *(p.name for p in CI_VALUES)]
"""The chart's defaults and each values file under deploy/helm/ci/."""
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
"""Kinds of CRDs (the Prometheus Operator's): no schema in kubernetes-validate, no type
in a bare API server."""
NAMESPACE = "logging"

Doc = dict[str, Any]


def values_args(values: str) -> list[str]:
    return [] if values == "defaults" else ["--values", f"deploy/helm/ci/{values}"]


def helm_template(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), "template", "kubelogs", str(CHART), "--namespace", NAMESPACE,
         "--kube-version", "1.37.0", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip


def render(helm: Path, *args: str) -> list[Doc]:
    r = helm_template(helm, *args)
    assert 0 == r.returncode, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert 1 == len(found), f"{len(found)} {kind} {name or ''} rendered"
    return found[0]
