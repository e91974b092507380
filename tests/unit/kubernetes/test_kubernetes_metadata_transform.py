"""The kubernetes_metadata transform over a cache fed directly (no network)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pydantic import ValidationError

from kubelogs.config.base import BuildContext
from kubelogs.kubernetes.resources import Namespace, Pod
from kubelogs.pipeline.acks import AckToken
from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.sources.tail_options import file_context
from kubelogs.telemetry.metrics import Metrics
from kubelogs.testing.fake_apiserver import container_id_for, make_namespace, make_pod
from kubelogs.transforms.kubernetes_metadata import (
    KubernetesMetadataConfig,
    KubernetesMetadataTransform,
)

UID = "5a1d0c3e-aaaa-4bbb-8ccc-000000000001"


def file_ctx(
    *,
    namespace: str = "default",
    pod: str = "web-7d4b9-abcde",
    uid: str = UID,
    container: str = "nginx",
    container_id: str = "",
    node: str = "node-1",
    key: str = "1:100:f00d",
) -> FileContext:
    return file_context(
        source_id="containers",
        node=node,
        path=f"/var/log/pods/{namespace}_{pod}_{uid}/{container}/0.log",
        key=key,
        id_prefix="abc",
        namespace=namespace,
        pod=pod,
        pod_uid=uid,
        container=container,
        container_id=container_id,
    )


def batch(ctx: FileContext, lines: int = 3, ack: AckToken | None = None) -> Batch:
    return Batch(
        ctx=ctx,
        times=[1_700_000_000_000_000_000 + i for i in range(lines)],
        messages=[f"line {i}" for i in range(lines)],
        streams=["stdout"] * lines,
        offsets=[i * 10 for i in range(lines)],
        ack=ack,
        end_offset=lines * 10,
    )


def members(raw: bytes) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(b"{" + raw + b"}")
    return result


def build(
    tmp_path: Path, metrics: Metrics | None = None, **config: Any
) -> KubernetesMetadataTransform:
    cfg = KubernetesMetadataConfig(
        type="kubernetes_metadata", inputs=["containers"], api_server="http://127.0.0.1:1", **config
    )
    cx = BuildContext(
        component_id="k8s", data_dir=tmp_path, node_name="node-1", metrics=metrics or Metrics()
    )
    return cfg.build(cx)


def add_pod(t: KubernetesMetadataTransform, **make: Any) -> dict[str, Any]:
    make.setdefault("uid", UID)
    obj = make_pod(make.pop("name", "web-7d4b9-abcde"), **make)
    t.watcher.cache.upsert(msgspec.convert(obj, Pod))
    return obj


WEB: dict[str, Any] = {
    "containers": ["nginx"],
    "images": {"nginx": "nginx:1.25"},
    "labels": {"app": "web", "app.kubernetes.io/name": "web", "pod-template-hash": "7d4b9"},
    "owners": [("ReplicaSet", "web-7d4b9")],
    "ip": "10.244.1.5",
}


def test_metadata_is_added_in_ecs_and_fluentd_layouts(tmp_path: Path) -> None:
    t = build(tmp_path)
    add_pod(t, **WEB)

    original = batch(file_ctx())

    out = t.process(original)

    assert out is not None
    assert out.messages is original.messages  # columns shared, only the context changes
    assert "web-7d4b9-abcde" in original.ctx.meta_ecs.decode()
    assert b"image" not in original.ctx.meta_ecs
    ecs = members(out.ctx.meta_ecs)["kubernetes"]
    assert ecs["namespace"] == "default"
    assert ecs["pod"] == {"name": "web-7d4b9-abcde", "uid": UID, "ip": "10.244.1.5"}
    cid = "containerd://" + container_id_for(UID, "nginx")
    assert {"name": "nginx", "id": cid, "image": "nginx:1.25"} == ecs["container"]
    assert ecs["deployment"] == {"name": "web"}
    assert ecs["replicaset"] == {"name": "web-7d4b9"}
    assert ecs["node"] == {"name": "node-1"}
    assert ecs["labels"] == {
        "app": "web",
        "app_kubernetes_io/name": "web",
        "pod-template-hash": "7d4b9",
    }
    fl = members(out.ctx.meta_fluentd)
    assert {
        "namespace_name": "default",
        "pod_name": "web-7d4b9-abcde",
        "container_name": "nginx",
        "container_image": "nginx:1.25",
        "pod_id": UID,
        "pod_ip": "10.244.1.5",
        "host": "node-1",
    }.items() <= fl["kubernetes"].items()
    assert fl["kubernetes"]["labels"]["app_kubernetes_io/name"] == "web"
    assert {"container_id": container_id_for(UID, "nginx")} == fl["docker"]


def test_context_is_encoded_once_per_pod_version(tmp_path: Path) -> None:
    t = build(tmp_path)
    add_pod(t, **WEB)
    ctx = file_ctx()

    first = t.process(batch(ctx))
    second = t.process(batch(ctx))
    t.watcher.cache.upsert(
        msgspec.convert(
            make_pod("web-7d4b9-abcde", uid=UID, **{**WEB, "labels": {"app": "v2"}}), Pod
        )
    )
    third = t.process(batch(ctx))

    assert first is not None
    assert second is not None
    assert third is not None
    assert first.ctx is second.ctx
    assert third.ctx is not first.ctx
    assert members(third.ctx.meta_ecs)["kubernetes"]["labels"] == {"app": "v2"}


def test_file_id_wins_over_status_id_after_a_restart(tmp_path: Path) -> None:
    t = build(tmp_path)
    add_pod(t, **WEB)
    old_id = "ab" * 32

    out = t.process(batch(file_ctx(container_id=old_id)))

    assert out is not None
    assert "containerd://" + old_id == members(out.ctx.meta_ecs)["kubernetes"]["container"]["id"]


def test_node_files_and_unknown_pods_pass_unchanged(tmp_path: Path) -> None:
    t = build(tmp_path)
    node_batch = batch(file_ctx(namespace="", pod="", uid="", container=""))
    unknown = batch(file_ctx(uid="not-in-cache", pod="ghost"))

    assert t.process(node_batch) is node_batch
    assert t.process(unknown) is unknown


def test_lookup_by_name_when_the_path_has_no_uid(tmp_path: Path) -> None:
    t = build(tmp_path)
    add_pod(t, **WEB)

    out = t.process(batch(file_ctx(uid="")))

    assert out is not None
    assert out.ctx.pod_uid == UID
    assert members(out.ctx.meta_ecs)["kubernetes"]["pod"]["uid"] == UID


@pytest.mark.parametrize(
    ("annotations", "container", "dropped"),
    [
        ({"kubelogs.io/exclude": "true"}, "nginx", True),
        ({"kubelogs.io/exclude": "false"}, "nginx", False),
        ({"kubelogs.io/exclude-nginx": "true"}, "nginx", True),
        ({"kubelogs.io/exclude-nginx": "true"}, "sidecar", False),
    ],
)
def test_exclude_annotations_drop_and_resolve_the_ack(
    tmp_path: Path, annotations: dict[str, str], container: str, dropped: bool
) -> None:
    metrics = Metrics()
    t = build(tmp_path, metrics)
    add_pod(t, containers=["nginx", "sidecar"], annotations=annotations)
    acked: list[bool] = []
    token = AckToken(lambda: acked.append(True))

    out = t.process(batch(file_ctx(container=container), lines=4, ack=token))

    assert dropped == (out is None)
    assert dropped == bool(acked)
    discarded = metrics.registry.get_sample_value(
        "kubelogs_component_discarded_events_total",
        {
            "component_id": "k8s",
            "component_kind": "transform",
            "component_type": "kubernetes_metadata",
            "intentional": "true",
        },
    )
    assert (4.0 if dropped else None) == discarded


def test_settings_annotations_go_to_extra_and_follow_changes(tmp_path: Path) -> None:
    t = build(tmp_path)
    obj = add_pod(
        t,
        containers=["nginx", "app"],
        annotations={
            "kubelogs.io/parser": "json",
            "kubelogs.io/parser-nginx": "nginx",
            "kubelogs.io/multiline": "java",
            "kubelogs.io/index": "shop-logs",
        },
    )
    ctx_nginx, ctx_app = file_ctx(container="nginx"), file_ctx(container="app", key="1:101:f00d")

    nginx = t.process(batch(ctx_nginx))
    app = t.process(batch(ctx_app))
    obj["metadata"]["annotations"] = {"kubelogs.io/index": "other", "kubelogs.io/exclude-app": "1"}
    t.watcher.cache.upsert(msgspec.convert(obj, Pod))
    nginx_after = t.process(batch(ctx_nginx))
    app_after = t.process(batch(ctx_app))

    assert nginx is not None
    assert app is not None
    assert nginx_after is not None
    assert nginx.ctx.extra == {"parser": "nginx", "multiline": "java", "index": "shop-logs"}
    assert app.ctx.extra == {"parser": "json", "multiline": "java", "index": "shop-logs"}
    assert nginx_after.ctx.extra == {"index": "other"}
    assert app_after is None


def test_annotations_are_shipped_only_when_allow_listed(tmp_path: Path) -> None:
    t = build(tmp_path, annotations=["team", "example.com/*"])
    add_pod(
        t,
        annotations={"team": "shop", "example.com/owner": "ann", "secret.io/key": "x"},
    )

    out = t.process(batch(file_ctx()))

    assert out is not None
    assert members(out.ctx.meta_ecs)["kubernetes"]["annotations"] == {
        "team": "shop",
        "example_com/owner": "ann",
    }
    plain = build(tmp_path / "2")
    add_pod(plain, annotations={"team": "shop"})
    out2 = plain.process(batch(file_ctx()))
    assert out2 is not None
    assert "annotations" not in members(out2.ctx.meta_ecs)["kubernetes"]


def test_namespace_labels_can_be_switched_off(tmp_path: Path) -> None:
    on, off = build(tmp_path / "on"), build(tmp_path / "off", namespace_labels=False)
    for t in (on, off):
        t.watcher.cache.upsert_namespace(
            msgspec.convert(make_namespace("default", labels={"team": "a"}), Namespace)
        )
        add_pod(t)

    with_labels, without = on.process(batch(file_ctx())), off.process(batch(file_ctx()))

    assert with_labels is not None
    assert without is not None
    assert members(with_labels.ctx.meta_ecs)["kubernetes"]["namespace_labels"]["team"] == "a"
    assert "namespace_labels" not in members(without.ctx.meta_ecs)["kubernetes"]
    assert on.watcher.watch_namespaces
    assert not off.watcher.watch_namespaces


def test_transforms_with_the_same_connection_share_one_watcher(tmp_path: Path) -> None:
    cx = BuildContext(component_id="a", data_dir=tmp_path, node_name="node-1", metrics=Metrics())
    base: dict[str, Any] = {
        "type": "kubernetes_metadata",
        "inputs": ["x"],
        "api_server": "http://h:1",
    }

    a = KubernetesMetadataConfig(**base).build(cx)
    b = KubernetesMetadataConfig(**base).build(cx)
    c = KubernetesMetadataConfig(**base, node_name="node-2").build(cx)

    assert a.watcher is b.watcher
    assert a.watcher is not c.watcher


def test_validate_rejects_api_server_and_kubeconfig() -> None:
    with pytest.raises(ValidationError, match="mutually exclusive"):
        KubernetesMetadataConfig(
            type="kubernetes_metadata",
            inputs=["x"],
            api_server="https://k:6443",
            kubeconfig=Path("k"),
        )


def test_validate_rejects_a_non_http_api_server() -> None:
    with pytest.raises(ValidationError, match="is not an http"):
        KubernetesMetadataConfig(type="kubernetes_metadata", inputs=["x"], api_server="k8s:6443")


def test_validate_rejects_unknown_keys_and_parses_durations() -> None:
    with pytest.raises(ValidationError):
        KubernetesMetadataConfig.model_validate(
            {"type": "kubernetes_metadata", "inputs": ["x"], "api_sever": "http://x"}
        )

    cfg = KubernetesMetadataConfig.model_validate(
        {"type": "kubernetes_metadata", "inputs": ["x"], "cache_grace_period": "2h"}
    )

    assert cfg.cache_grace_period == 7200.0
