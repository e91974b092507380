"""Kubernetes metadata -> the pre-encoded JSON members spliced into every document.

Two layouts (DESIGN.md section 5): ECS (``kubernetes.namespace``, ``kubernetes.pod.name``,
...) and fluentd (``kubernetes.namespace_name``, ``kubernetes.pod_name``, ...,
``docker.container_id``). Encoded once per file (or when the pod changes), never per line.
Label and annotation keys have ``.`` replaced by ``_``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

_encode = msgspec.json.Encoder(order="deterministic").encode


@dataclass(frozen=True)
class ContainerMeta:
    image: str = ""
    container_id: str = ""
    """With runtime prefix, e.g. ``containerd://3f2a...``."""


@dataclass(frozen=True)
class PodMeta:
    """What the API server tells about a pod, reduced to what documents carry."""

    name: str
    namespace: str
    uid: str
    ip: str = ""
    node: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    namespace_labels: dict[str, str] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    """Workload kind (``deployment``, ``replicaset``, ``statefulset``, ``daemonset``,
    ``job``, ``cronjob``) -> name."""
    containers: dict[str, ContainerMeta] = field(default_factory=dict)


def dedot(mapping: dict[str, str]) -> dict[str, str]:
    return {k.replace(".", "_"): v for k, v in mapping.items()}


def _with_runtime_prefix(container_id: str) -> str:
    if not container_id or "://" in container_id:
        return container_id
    return "containerd://" + container_id


def _container_id(from_file: str, from_status: str) -> str:
    """The file's id is the truth (after a restart the status names the new container);
    the status contributes the runtime prefix (``containerd://``, ``cri-o://``)."""
    if not from_file:
        return from_status
    if "://" in from_file:
        return from_file
    if from_status and "://" in from_status:
        runtime, _, status_hex = from_status.partition("://")
        return from_status if status_hex == from_file else f"{runtime}://{from_file}"
    return _with_runtime_prefix(from_file)


def encode_meta(
    *,
    namespace: str,
    pod: str,
    pod_uid: str,
    container: str,
    container_id: str,
    node: str,
    pod_meta: PodMeta | None = None,
    include_annotations: bool = False,
) -> tuple[bytes, bytes]:
    """Return ``(ecs_members, fluentd_members)`` for one container's file.

    Without `pod_meta` only what the file name tells is written, so a line is still
    attributable when the API server cannot be reached. A plain node file (no namespace
    and no pod) gets ``host.name`` and ``kubernetes.node.name`` only.
    """
    ecs: dict[str, Any] = {}
    fluentd: dict[str, Any] = {}
    if not namespace and not pod:
        if node:
            ecs = {"kubernetes": {"node": {"name": node}}, "host": {"name": node}}
            fluentd = {"kubernetes": {"host": node}, "host": {"name": node}}
        return _members(ecs), _members(fluentd)

    cmeta = pod_meta.containers.get(container) if pod_meta else None
    cid = _container_id(container_id, cmeta.container_id if cmeta else "")
    k8s: dict[str, Any] = {"namespace": namespace}
    pod_obj: dict[str, Any] = {"name": pod}
    if pod_uid:
        pod_obj["uid"] = pod_uid
    container_obj: dict[str, Any] = {"name": container}
    if cid:
        container_obj["id"] = cid
    fk: dict[str, Any] = {
        "namespace_name": namespace,
        "pod_name": pod,
        "container_name": container,
    }
    if pod_uid:
        fk["pod_id"] = pod_uid
    node_name = (pod_meta.node if pod_meta and pod_meta.node else "") or node
    if pod_meta is not None:
        if pod_meta.ip:
            pod_obj["ip"] = pod_meta.ip
            fk["pod_ip"] = pod_meta.ip
        if cmeta and cmeta.image:
            container_obj["image"] = cmeta.image
            fk["container_image"] = cmeta.image
        if pod_meta.labels:
            k8s_labels = dedot(pod_meta.labels)
            k8s["labels"] = k8s_labels
            fk["labels"] = k8s_labels
        if include_annotations and pod_meta.annotations:
            k8s["annotations"] = dedot(pod_meta.annotations)
            fk["annotations"] = k8s["annotations"]
        if pod_meta.namespace_labels:
            k8s["namespace_labels"] = dedot(pod_meta.namespace_labels)
            fk["namespace_labels"] = k8s["namespace_labels"]
        for kind, owner in sorted(pod_meta.owners.items()):
            k8s[kind] = {"name": owner}
    k8s["pod"] = pod_obj
    k8s["container"] = container_obj
    if node_name:
        k8s["node"] = {"name": node_name}
        fk["host"] = node_name
    ecs["kubernetes"] = k8s
    fluentd["kubernetes"] = fk
    if cid:
        fluentd["docker"] = {"container_id": cid.split("://", 1)[-1]}
    if node_name:
        ecs["host"] = {"name": node_name}
    return _members(ecs), _members(fluentd)


def _members(obj: dict[str, Any]) -> bytes:
    return _encode(obj)[1:-1] if obj else b""
