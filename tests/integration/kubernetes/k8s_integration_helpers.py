"""Shared pieces of the Kubernetes integration tests (FakeApiServer + transform)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubelogs.config.base import BuildContext
from kubelogs.kubernetes.document_meta import encode_meta
from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.telemetry.metrics import Metrics
from kubelogs.testing.fake_apiserver import FakeApiServer
from kubelogs.transforms.kubernetes_metadata import (
    KubernetesMetadataConfig,
    KubernetesMetadataTransform,
)

NODE = "node-1"


def build_transform(
    tmp_path: Path,
    srv: FakeApiServer | None = None,
    *,
    shared: dict[str, Any] | None = None,
    metrics: Metrics | None = None,
    **config: Any,
) -> KubernetesMetadataTransform:
    """A transform for `srv` (token file and CA written next to the data dir), with
    production settings except short retry delays."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    if srv is not None:
        config.setdefault("api_server", srv.url)
        if srv.token is not None and "token_file" not in config:
            config["token_file"] = srv.write_token(tmp_path / "token")
        if srv.tls and "ca_file" not in config:
            config["ca_file"] = srv.write_ca(tmp_path / "ca.crt")
    config.setdefault("sync_timeout", 5.0)
    cfg = KubernetesMetadataConfig(type="kubernetes_metadata", inputs=["containers"], **config)
    cx = BuildContext(
        component_id="k8s",
        data_dir=tmp_path / "data",
        node_name=NODE,
        metrics=metrics or Metrics(),
        shared=shared if shared is not None else {},
    )
    t = cfg.build(cx)
    tuning = t.watcher.tuning
    tuning.backoff_initial = 0.01
    tuning.backoff_max = 0.05
    tuning.token_recheck_interval = 0.0
    return t


def file_batch(
    namespace: str, pod: str, uid: str, container: str = "app", *, lines: int = 2
) -> Batch:
    """A batch as the tailer makes it: file-name metadata only."""
    ecs, fluentd = encode_meta(
        namespace=namespace, pod=pod, pod_uid=uid, container=container, container_id="", node=NODE
    )
    ctx = FileContext(
        source_id="containers",
        path=f"/var/log/pods/{namespace}_{pod}_{uid}/{container}/0.log",
        file_key=f"1:{abs(hash((uid, container)))}:x",
        id_prefix="p",
        node=NODE,
        namespace=namespace,
        pod=pod,
        pod_uid=uid,
        container=container,
        meta_ecs=ecs,
        meta_fluentd=fluentd,
    )
    return Batch(
        ctx=ctx,
        times=[1_700_000_000_000_000_000] * lines,
        messages=["hello"] * lines,
        streams=["stdout"] * lines,
        offsets=list(range(lines)),
        end_offset=lines,
    )


def k8s(batch: Batch | None) -> dict[str, Any]:
    """The ``kubernetes`` object of a batch's ECS metadata."""
    assert batch is not None
    doc: dict[str, Any] = json.loads(b"{" + batch.ctx.meta_ecs + b"}")
    result: dict[str, Any] = doc["kubernetes"]
    return result
