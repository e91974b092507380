"""``kubelogs.io/files`` -> host globs through the pod's volume mounts."""

from __future__ import annotations

from typing import Any

import msgspec

from kubelogs.kubernetes.metadata_cache import PodRecord, pod_record_from
from kubelogs.kubernetes.pod_files import PodFileGlob, resolve_pod_files
from kubelogs.kubernetes.resources import Pod
from kubelogs.testing.fake_apiserver import make_pod

UID = "0b1c2d3e-0000-4000-8000-000000000001"


def record(annotation: str, **make: Any) -> PodRecord:
    pod = make_pod("app-1", "shop", uid=UID, annotations={"kubelogs.io/files": annotation}, **make)
    return pod_record_from(msgspec.convert(pod, Pod))


def test_emptydir_maps_into_the_kubelet_pod_volume_dir() -> None:
    rec = record(
        "/var/log/app/*.log",
        containers=["app"],
        volumes=[{"name": "logs", "emptyDir": {}}],
        volume_mounts={"app": [{"name": "logs", "mountPath": "/var/log/app"}]},
    )

    result = resolve_pod_files(rec, kubelet_root="/kl")

    expected = PodFileGlob(
        namespace="shop",
        pod="app-1",
        pod_uid=UID,
        container="app",
        container_pattern="/var/log/app/*.log",
        host_glob=f"/kl/pods/{UID}/volumes/kubernetes.io~empty-dir/logs/*.log",
    )
    assert [expected] == result.globs
    assert result.warnings == []


def test_hostpath_maps_under_host_root_and_longest_mount_wins() -> None:
    rec = record(
        "/data/app/logs/**/*.log, /data/other.log",
        containers=["app"],
        volumes=[
            {"name": "data", "emptyDir": {}},
            {"name": "applogs", "hostPath": {"path": "/srv/logs/app", "type": "DirectoryOrCreate"}},
        ],
        volume_mounts={
            "app": [
                {"name": "data", "mountPath": "/data"},
                {"name": "applogs", "mountPath": "/data/app/logs/"},
            ]
        },
    )

    result = resolve_pod_files(rec, kubelet_root="/kl", host_root="/host")

    assert [
        "/host/srv/logs/app/**/*.log",
        f"/kl/pods/{UID}/volumes/kubernetes.io~empty-dir/data/other.log",
    ] == [g.host_glob for g in result.globs]


def test_subpath_is_inserted_between_volume_and_rest() -> None:
    rec = record(
        "/logs/*.txt",
        containers=["web", "sidecar"],
        volumes=[{"name": "shared", "emptyDir": {"medium": "Memory"}}],
        volume_mounts={
            "sidecar": [{"name": "shared", "mountPath": "/logs", "subPath": "web/logs"}],
        },
    )

    result = resolve_pod_files(rec, kubelet_root="/kl")

    assert [f"/kl/pods/{UID}/volumes/kubernetes.io~empty-dir/shared/web/logs/*.txt"] == [
        g.host_glob for g in result.globs
    ]
    assert result.globs[0].container == "sidecar"


def test_files_outside_volumes_and_unsupported_volumes_warn() -> None:
    rec = record(
        "/var/log/app/*.log,/etc/config/x.log,relative/*.log,/data/../etc/passwd",
        containers=["app"],
        volumes=[{"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "data", "emptyDir": {}}],
        volume_mounts={
            "app": [
                {"name": "cfg", "mountPath": "/etc/config"},
                {"name": "data", "mountPath": "/data"},
            ]
        },
    )

    result = resolve_pod_files(rec)

    assert result.globs == []
    assert len(result.warnings) == 4
    text = "\n".join(result.warnings)
    assert "'/var/log/app/*.log' is not on a volume" in text
    assert "mount an emptyDir" in text
    assert "of type configMap" in text
    assert "not an absolute path" in text
    assert "contains '..'" in text
    assert all(w.startswith("pod shop/app-1: ") for w in result.warnings)


def test_a_volume_mounted_by_two_containers_is_reported_once() -> None:
    rec = record(
        "/logs/*.log",
        containers=["a", "b"],
        volumes=[{"name": "l", "emptyDir": {}}],
        volume_mounts={
            "a": [{"name": "l", "mountPath": "/logs"}],
            "b": [{"name": "l", "mountPath": "/logs"}],
        },
    )

    result = resolve_pod_files(rec, kubelet_root="/kl")

    assert [g.container for g in result.globs] == ["a"]


def test_no_annotation_means_no_files() -> None:
    rec = pod_record_from(msgspec.convert(make_pod("x"), Pod))

    assert resolve_pod_files(rec).globs == []
