"""The client's list/watch against FakeApiServer, which follows the real API semantics
(pagination over a snapshot, watch replay from a resourceVersion, field selectors,
410 Gone), and the fake's thread mode for subprocess-based tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kubelogs.kubernetes.client import KubeClient
from kubelogs.kubernetes.connection import ConnectionSettings
from kubelogs.kubernetes.errors import ApiGoneError, ApiUnauthorizedError
from kubelogs.kubernetes.metadata_cache import PodChange
from kubelogs.kubernetes.pod_files import resolve_pod_files
from kubelogs.kubernetes.pod_watcher import (
    WatcherSettings,
    WatcherTuning,
    find_pod_watcher,
    get_pod_watcher,
)
from kubelogs.kubernetes.resources import Pod
from kubelogs.testing.fake_apiserver import FakeApiServer, wait_until


def client_for(srv: FakeApiServer, tmp_path: Path) -> KubeClient:
    token = srv.write_token(tmp_path / "token") if srv.token else None
    return KubeClient(
        ConnectionSettings(server=srv.url, token_file=str(token) if token else None),
        token_recheck_interval=0,
    )


async def test_list_pages_through_one_consistent_snapshot(tmp_path: Path) -> None:
    async with FakeApiServer() as srv:
        for i in range(7):
            srv.create_pod(name=f"p{i}", node="node-1")
        srv.create_pod(name="q", node="node-2")
        client = client_for(srv, tmp_path)
        try:
            first = await client.list_page(
                "/api/v1/pods", Pod, {"limit": "3", "fieldSelector": "spec.nodeName=node-1"}
            )
            srv.create_pod(name="p9", node="node-1")  # after the snapshot: not in this list
            result = await client.list_all(
                "/api/v1/pods", Pod, field_selector="spec.nodeName=node-1", limit=3
            )
            cached = await client.list_all("/api/v1/pods", Pod, limit=3, resource_version="0")
        finally:
            await client.close()

    assert first.metadata.remainingItemCount == 4
    assert result.pages == 3
    assert [f"p{i}" for i in range(7)] + ["p9"] == [p.metadata.name for p in result.items]
    assert cached.pages == 1  # a cache read is not paginated, as with the real watch cache
    assert len(cached.items) == 9


async def test_an_expired_continue_token_is_410(tmp_path: Path) -> None:
    async with FakeApiServer() as srv:
        for i in range(4):
            srv.create_pod(name=f"p{i}")
        client = client_for(srv, tmp_path)
        try:
            page = await client.list_page("/api/v1/pods", Pod, {"limit": "2"})
            srv.create_pod(name="later")
            srv.compact()
            with pytest.raises(ApiGoneError, match="410 Gone"):
                await client.list_page(
                    "/api/v1/pods", Pod, {"limit": "2", "continue": page.metadata.continue_}
                )
        finally:
            await client.close()


async def test_watch_replays_changes_and_follows_the_selector(tmp_path: Path) -> None:
    async with FakeApiServer() as srv:
        srv.create_pod(name="a", node="node-1")
        start_rv = str(srv.resource_version)
        srv.create_pod(name="b", node="node-1")
        srv.modify_pod("default", "a", lambda o: o["spec"].update(nodeName="node-2"))
        srv.create_pod(name="c", node="node-2")
        srv.delete_pod("default", "b")
        client = client_for(srv, tmp_path)
        events: list[tuple[str, str]] = []
        try:
            stream = client.watch(
                "/api/v1/pods",
                Pod,
                resource_version=start_rv,
                field_selector="spec.nodeName=node-1",
                timeout_seconds=30,
            )
            async with stream:
                async for ev in stream:
                    assert ev.obj is not None
                    events.append((ev.type, ev.obj.metadata.name))
                    if len(events) == 3:
                        break
        finally:
            await client.close()

    assert events == [("ADDED", "b"), ("DELETED", "a"), ("DELETED", "b")]
    assert srv.requests["watch pods"] == 1


async def test_watch_from_a_compacted_version_gets_an_error_event(tmp_path: Path) -> None:
    async with FakeApiServer() as srv:
        srv.create_pod(name="a")
        old = str(srv.resource_version)
        srv.create_pod(name="b")
        srv.compact()
        client = client_for(srv, tmp_path)
        try:
            stream = client.watch("/api/v1/pods", Pod, resource_version=old, timeout_seconds=5)
            async with stream:
                events = [ev async for ev in stream]
        finally:
            await client.close()

    assert [e.type for e in events] == ["ERROR"]
    assert events[0].status is not None
    assert events[0].status.code == 410


async def test_wrong_token_is_401_and_counted(tmp_path: Path) -> None:
    async with FakeApiServer(token="good") as srv:
        client = KubeClient(ConnectionSettings(server=srv.url, token="bad"))
        try:
            expected = r"rejected the credentials \(401 Unauthorized\)"
            with pytest.raises(ApiUnauthorizedError, match=expected):
                await client.list_page("/api/v1/pods", Pod, {})
        finally:
            await client.close()

    assert srv.requests["unauthorized"] == 1


def test_the_fake_serves_from_a_thread_for_other_processes(tmp_path: Path) -> None:
    srv = FakeApiServer()
    with srv.in_thread():
        srv.create_pod(name="from-main-thread", node="node-1")  # called outside the loop

        async def fetch() -> list[str]:
            client = client_for(srv, tmp_path)
            try:
                result = await client.list_all("/api/v1/pods", Pod)
            finally:
                await client.close()
            return [p.metadata.name for p in result.items]

        names = asyncio.run(fetch())
        srv.delete_pod("default", "from-main-thread")
        left = srv.pods()

    assert names == ["from-main-thread"]
    assert left == []
    assert srv.requests["list pods"] == 1


async def test_the_tailer_can_follow_pod_files_through_the_shared_watcher(tmp_path: Path) -> None:
    """What the kubernetes_logs source does for ``kubelogs.io/files``: find the shared
    watcher, subscribe to pod changes, map each pod's annotation to host globs."""
    async with FakeApiServer() as srv:
        shared: dict[str, object] = {}
        settings = WatcherSettings(
            api_server=srv.url, token_file=str(srv.write_token(tmp_path / "t")), node_name="node-1"
        )
        watcher = get_pod_watcher(shared, settings, data_dir=tmp_path, tuning=WatcherTuning())
        assert find_pod_watcher(shared, "node-1") is watcher
        assert find_pod_watcher(shared, "node-2") is None
        changes: list[PodChange] = []
        unsubscribe = watcher.cache.subscribe(changes.append)
        await watcher.start(sync_timeout=5)
        try:
            srv.create_pod(
                name="app",
                uid="uid-files",
                node="node-1",
                annotations={"kubelogs.io/files": "/var/log/app/*.log"},
                volumes=[{"name": "logs", "emptyDir": {}}],
                volume_mounts={"app": [{"name": "logs", "mountPath": "/var/log/app"}]},
            )
            await wait_until(lambda: any(c.pod.uid == "uid-files" for c in changes))
            srv.delete_pod("default", "app")
            await wait_until(lambda: changes[-1].kind == "deleted")
        finally:
            unsubscribe()
            await watcher.stop()

    added = next(c for c in changes if c.pod.uid == "uid-files")
    globs = resolve_pod_files(added.pod, kubelet_root=str(tmp_path / "kubelet")).globs
    assert added.kind == "added"
    assert [f"{tmp_path}/kubelet/pods/uid-files/volumes/kubernetes.io~empty-dir/logs/*.log"] == [
        g.host_glob for g in globs
    ]
    assert (tmp_path / "kubernetes" / "pods-node-1.json").exists()  # saved on stop


async def test_stopping_a_watcher_that_never_started_keeps_the_saved_cache(tmp_path: Path) -> None:
    watcher = get_pod_watcher({}, WatcherSettings(node_name="n"), data_dir=tmp_path)
    assert watcher.cache_path is not None
    watcher.cache_path.parent.mkdir(parents=True)
    watcher.cache_path.write_bytes(b"saved")

    await watcher.stop()

    assert watcher.cache_path.read_bytes() == b"saved"
