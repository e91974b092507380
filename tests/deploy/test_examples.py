"""The hand-written manifests of deploy/examples: valid against the Kubernetes API
schemas (strict), and the kubelogs configs in them (a ConfigMap's kubelogs.yaml, a
sidecar container's arguments) pass kubelogs' own validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kubelogs.cli.main import build_parser
from kubelogs.cli.sidecar import sidecar_config
from kubelogs.config.loader import config_from_data

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
ENV = {
    "FORWARD_SHARED_KEY": "k",
    "HTTP_TOKEN": "t",
    "ES_PASSWORD": "p",
    "KUBELOGS_FORWARD_SHARED_KEY": "k",
}


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


@pytest.mark.parametrize("name", ["aggregator.yaml", "sidecar.yaml"])
def test_examples_validate_strict(name: str) -> None:
    found = docs(name)
    for doc in found:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
    assert found


def test_aggregator_config_is_valid() -> None:
    cm = next(d for d in docs("aggregator.yaml") if d["kind"] == "ConfigMap")
    cfg = config_from_data(yaml.safe_load(cm["data"]["kubelogs.yaml"]), "aggregator", ENV)
    assert {"agents": "forward", "apps": "http", "es": "elasticsearch"} == {
        cid: c.type for cid, c in cfg.components.items()
    }
    assert "disk" == cfg.components["es"].buffer.type  # type: ignore[attr-defined]


def test_sidecar_arguments_make_a_valid_config(monkeypatch: pytest.MonkeyPatch) -> None:
    deploy = next(d for d in docs("sidecar.yaml") if d["kind"] == "Deployment")
    containers = deploy["spec"]["template"]["spec"]["containers"]
    args = next(c["args"] for c in containers if c["name"] == "kubelogs")
    monkeypatch.setenv("KUBELOGS_FORWARD_SHARED_KEY", "k")
    data = sidecar_config(build_parser().parse_args(args))
    cfg = config_from_data(data, "sidecar", ENV)
    sink = cfg.components["out"]
    assert "forward" == sink.type
    assert ["kubelogs-aggregator.kubelogs:24224"] == sink.servers  # type: ignore[attr-defined]
    assert sink.shared_key is not None  # type: ignore[attr-defined]
