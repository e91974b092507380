"""PodCache: owner names, change versions, grace period, persistence."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

from kubelogs.kubernetes.metadata_cache import PodCache, PodChange
from kubelogs.kubernetes.resources import Namespace, Pod
from kubelogs.testing.fake_apiserver import make_namespace, make_pod


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def pod(name: str, **make: Any) -> Pod:
    return msgspec.convert(make_pod(name, **make), Pod)


@pytest.mark.parametrize(
    ("owners", "labels", "expected"),
    [
        (
            [("ReplicaSet", "web-7d4b9f")],
            {"pod-template-hash": "7d4b9f"},
            {"replicaset": "web-7d4b9f", "deployment": "web"},
        ),
        ([("ReplicaSet", "bare-rs")], {}, {"replicaset": "bare-rs"}),
        ([("StatefulSet", "db")], {}, {"statefulset": "db"}),
        ([("DaemonSet", "fluent")], {}, {"daemonset": "fluent"}),
        ([("Job", "migrate-1")], {}, {"job": "migrate-1"}),
        ([("Job", "backup-28391040")], {}, {"job": "backup-28391040", "cronjob": "backup"}),
        ([("Node", "node-1")], {}, {}),
        (None, {}, {}),
    ],
)
def test_owner_names_come_from_owner_references_alone(
    owners: list[tuple[str, str]] | None, labels: dict[str, str], expected: dict[str, str]
) -> None:
    cache = PodCache()

    cache.upsert(pod("p", uid="u1", owners=owners, labels=labels))

    entry = cache.get("u1")
    assert entry is not None
    assert expected == entry.record.owners
    assert expected == cache.pod_meta(entry).owners


def test_version_changes_only_when_shipped_fields_change() -> None:
    cache = PodCache()
    changes: list[PodChange] = []
    cache.subscribe(changes.append)
    obj = make_pod("web", uid="u1", labels={"app": "web"})
    cache.upsert(msgspec.convert(obj, Pod))
    first = cache.get("u1")
    assert first is not None
    v1 = first.version

    obj["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    obj["metadata"]["resourceVersion"] = "99"
    cache.upsert(msgspec.convert(obj, Pod))
    v2 = cache.get("u1").version  # type: ignore[union-attr]
    obj["metadata"]["labels"]["tier"] = "front"
    cache.upsert(msgspec.convert(obj, Pod))
    v3 = cache.get("u1").version  # type: ignore[union-attr]

    assert v1 == v2
    assert v3 > v2
    assert [c.kind for c in changes] == ["added", "modified"]


def test_deleted_pod_is_kept_for_the_grace_period() -> None:
    clock = Clock()
    cache = PodCache(grace_period=600, clock=clock)
    p = pod("cron-28391040-abcde", uid="u1")
    cache.upsert(p)

    cache.delete(p)
    clock.now += 599
    cache.expire()
    kept = cache.lookup("u1", "default", "cron-28391040-abcde")
    clock.now += 2
    cache.expire()

    assert kept is not None
    assert kept.deleted_at is not None
    assert cache.get("u1") is None
    assert cache.find("default", "cron-28391040-abcde") is None


def test_relist_marks_missing_pods_deleted_without_dropping_them() -> None:
    cache = PodCache()
    cache.upsert(pod("a", uid="ua"))
    cache.upsert(pod("b", uid="ub"))

    cache.replace([pod("a", uid="ua")])

    assert cache.get("ua").deleted_at is None  # type: ignore[union-attr]
    assert cache.get("ub").deleted_at is not None  # type: ignore[union-attr]


def test_lookup_by_name_prefers_the_new_pod_and_by_uid_finds_the_old() -> None:
    cache = PodCache()
    old = pod("db-0", uid="old", labels={"gen": "1"})
    cache.upsert(old)
    cache.delete(old)
    cache.upsert(pod("db-0", uid="new", labels={"gen": "2"}))

    by_name = cache.lookup("", "default", "db-0")
    by_uid = cache.lookup("old", "default", "db-0")
    unknown_uid = cache.lookup("other", "default", "db-0")

    assert by_name is not None
    assert by_name.record.uid == "new"
    assert by_uid is not None
    assert by_uid.record.labels["gen"] == "1"
    assert unknown_uid is None


def test_namespace_label_change_bumps_the_pods_of_that_namespace() -> None:
    cache = PodCache()
    cache.upsert_namespace(msgspec.convert(make_namespace("shop", labels={"team": "a"}), Namespace))
    cache.upsert(pod("p", namespace="shop", uid="u1"))
    cache.upsert(pod("q", namespace="other", uid="u2"))
    e1, e2 = cache.get("u1"), cache.get("u2")
    assert e1 is not None
    assert e2 is not None
    v1, v2 = e1.version, e2.version
    assert cache.pod_meta(e1).namespace_labels["team"] == "a"

    cache.upsert_namespace(msgspec.convert(make_namespace("shop", labels={"team": "b"}), Namespace))

    assert cache.get("u1").version > v1  # type: ignore[union-attr]
    assert v2 == cache.get("u2").version  # type: ignore[union-attr]
    assert cache.pod_meta(cache.get("u1")).namespace_labels["team"] == "b"  # type: ignore[arg-type]


def test_last_applied_configuration_is_not_kept() -> None:
    cache = PodCache()

    cache.upsert(
        pod(
            "p",
            uid="u1",
            annotations={
                "kubectl.kubernetes.io/last-applied-configuration": "{" + "x" * 10000 + "}",
                "kubelogs.io/parser": "json",
            },
        )
    )

    assert cache.get("u1").record.annotations == {"kubelogs.io/parser": "json"}  # type: ignore[union-attr]


def test_save_and_load_round_trip_keeps_deleted_pods_within_grace(tmp_path: Path) -> None:
    clock = Clock()
    cache = PodCache(grace_period=3600, clock=clock)
    cache.upsert_namespace(
        msgspec.convert(make_namespace("default", labels={"env": "prod"}), Namespace)
    )
    live = pod("live", uid="u-live", labels={"app": "x"}, owners=[("DaemonSet", "ds")])
    done = pod("done", uid="u-done")
    old = pod("old", uid="u-old")
    for p in (live, done, old):
        cache.upsert(p)
    cache.delete(old)
    clock.now += 3000
    cache.delete(done)
    clock.now += 700  # old is now past its grace period, done is not
    path = tmp_path / "kubernetes" / "pods.json"

    cache.save(path)
    restored = PodCache(grace_period=3600, clock=clock)
    count = restored.load(path)

    assert count == 2
    e = restored.get("u-live")
    assert e is not None
    assert e.record.labels == {"app": "x"}
    assert restored.pod_meta(e).owners == {"daemonset": "ds"}
    assert restored.pod_meta(e).namespace_labels["env"] == "prod"
    assert restored.get("u-done").deleted_at is not None  # type: ignore[union-attr]
    assert restored.get("u-old") is None
    assert [p.name for p in path.parent.iterdir()] == ["pods.json"]  # no temp file left


def test_load_ignores_a_corrupt_or_missing_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "pods.json"
    cache = PodCache()

    missing = cache.load(path)
    path.write_bytes(b'{"format": 1, "pods": [tru')
    corrupt = cache.load(path)

    assert (missing, corrupt) == (0, 0)
    assert "ignoring the corrupt pod metadata cache" in caplog.text


def test_save_replaces_the_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / "pods.json"
    path.write_bytes(b"old")
    inode_before = os.stat(path).st_ino
    cache = PodCache()
    cache.upsert(pod("p", uid="u1"))

    cache.save(path)

    assert os.stat(path).st_ino != inode_before  # renamed over, not rewritten in place
    assert b"u1" in path.read_bytes()
