"""The kubernetes_metadata transform against a FakeApiServer: the whole path from the API
server's list/watch to the metadata spliced into batches."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path

import pytest
from k8s_integration_helpers import NODE, build_transform, file_batch, k8s

from kubelogs.testing.fake_apiserver import FakeApiServer, wait_until


async def test_metadata_from_the_api_server_appears_on_batches(tmp_path: Path) -> None:
    async with FakeApiServer() as srv:
        srv.create_namespace("shop", labels={"team": "payments"})
        web = srv.create_pod(
            name="web-7d4b9-x1",
            namespace="shop",
            node=NODE,
            labels={"app": "web", "app.kubernetes.io/name": "web", "pod-template-hash": "7d4b9"},
            owners=[("ReplicaSet", "web-7d4b9")],
            containers=["nginx"],
            images={"nginx": "nginx:1.25"},
        )
        srv.create_pod(name="elsewhere", namespace="shop", node="node-2")
        t = build_transform(tmp_path, srv)
        await t.start()
        try:
            uid = web["metadata"]["uid"]
            out = t.process(file_batch("shop", "web-7d4b9-x1", uid, "nginx"))

            meta = k8s(out)
            assert meta["deployment"] == {"name": "web"}
            assert meta["container"]["image"] == "nginx:1.25"
            assert (meta["labels"]) == {
                "app": "web",
                "app_kubernetes_io/name": "web",
                "pod-template-hash": "7d4b9",
            }
            assert meta["namespace_labels"]["team"] == "payments"
            assert [p.record.name for p in t.watcher.cache.pods()] == ["web-7d4b9-x1"]
            list_params = [q for verb, res, q in srv.request_log if (verb, res) == ("list", "pods")]
            assert [
                {"limit": "500", "fieldSelector": f"spec.nodeName={NODE}", "resourceVersion": "0"}
            ] == (list_params)
        finally:
            await t.stop()


async def test_pod_created_after_start_is_enriched(tmp_path: Path) -> None:
    async with FakeApiServer() as srv:
        t = build_transform(tmp_path, srv)
        await t.start()
        try:
            before = file_batch("default", "late", "uid-late")
            assert t.process(before) is before  # unknown yet: file-name metadata only

            srv.create_pod(name="late", uid="uid-late", node=NODE, labels={"app": "late"})
            await wait_until(lambda: t.watcher.cache.get("uid-late") is not None, what="ADDED")

            assert k8s(t.process(file_batch("default", "late", "uid-late")))["labels"] == {
                "app": "late"
            }
        finally:
            await t.stop()


async def test_pod_deleted_before_its_lines_are_read_is_still_enriched(tmp_path: Path) -> None:
    async with FakeApiServer() as srv:
        t = build_transform(tmp_path, srv, cache_grace_period="1h")
        srv.create_pod(
            name="report-28391040-abcde",
            uid="uid-cron",
            node=NODE,
            owners=[("Job", "report-28391040")],
            labels={"job-name": "report-28391040"},
        )
        await t.start()
        try:
            srv.delete_pod("default", "report-28391040-abcde")
            await wait_until(
                lambda: t.watcher.cache.get("uid-cron").deleted_at is not None,  # type: ignore[union-attr]
                what="DELETED",
            )

            meta = k8s(t.process(file_batch("default", "report-28391040-abcde", "uid-cron")))

            assert meta["cronjob"] == {"name": "report"}
            assert meta["job"] == {"name": "report-28391040"}
            t.watcher.cache.expire(now=time.time() + 3601)
            late = file_batch("default", "report-28391040-abcde", "uid-cron")
            assert t.process(late) is late  # after the grace period: file-name metadata only
        finally:
            await t.stop()


async def test_restart_with_the_api_server_down_uses_the_persisted_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeApiServer() as srv:
        srv.create_pod(name="gone-soon", uid="uid-1", node=NODE, labels={"app": "batch"})
        first = build_transform(tmp_path, srv)
        await first.start()
        srv.delete_pod("default", "gone-soon")
        await wait_until(lambda: first.watcher.cache.get("uid-1").deleted_at is not None)  # type: ignore[union-attr]
        await first.stop()
        url = srv.url
    # The server is gone now; a new process (new shared dict) starts from the data dir.
    second = build_transform(tmp_path, api_server=url, sync_timeout=30.0)
    started = time.monotonic()
    await second.start()
    took = time.monotonic() - started
    try:
        meta = k8s(second.process(file_batch("default", "gone-soon", "uid-1")))

        assert took < 5.0  # did not wait for the 30 s sync timeout
        assert meta["labels"] == {"app": "batch"}
        assert "cannot connect to the Kubernetes API server" in caplog.text
    finally:
        await second.stop()


async def test_token_rotation_is_picked_up_from_the_token_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeApiServer(token="token-1") as srv:
        t = build_transform(tmp_path, srv)
        token_file = tmp_path / "token"
        await t.start()
        try:
            assert t.watcher.synced
            srv.token = "token-2"  # the server now only accepts the rotated token
            srv.drop_watches()
            await wait_until(lambda: srv.requests["unauthorized"] >= 1, what="a 401")
            token_file.write_text("token-2\n")  # the kubelet rotates the projected token
            srv.create_pod(name="after-rotation", uid="uid-rot", node=NODE)

            await wait_until(lambda: t.watcher.cache.get("uid-rot") is not None, what="the pod")

            assert "rejected the credentials (401 Unauthorized)" in caplog.text
            assert f"{srv.url} answers again for /api/v1/pods" in caplog.text
            assert "token-1" not in caplog.text
            assert "token-2" not in caplog.text
        finally:
            await t.stop()


async def test_unauthorized_gives_one_clear_line_and_batches_still_pass(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "kubelogs.kubernetes")
    async with FakeApiServer(token="right") as srv:
        srv.create_pod(name="p", uid="uid-p", node=NODE)
        t = build_transform(tmp_path, srv, token_file=srv.write_token(tmp_path / "t", "wrong"))
        await t.start()
        try:
            await wait_until(lambda: srv.requests["unauthorized"] >= 4, what="retries")
            b = file_batch("default", "p", "uid-p")

            assert t.process(b) is b
            lines = [r for r in caplog.records if "401 Unauthorized" in r.getMessage()]
            assert len(lines) == 1
            assert f"check the token file {tmp_path / 't'}" in lines[0].getMessage()
            assert "wrong" not in caplog.text
        finally:
            await t.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_refused_connection_gives_one_clear_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "kubelogs.kubernetes")
    url = f"http://127.0.0.1:{closed_port()}"
    t = build_transform(tmp_path, api_server=url)
    await t.start()
    try:
        await wait_until(lambda: t.watcher.pods is not None and t.watcher.pods.stats.errors >= 4)
        b = file_batch("default", "p", "uid-p")

        assert t.process(b) is b
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1, lines
        assert f"cannot connect to the Kubernetes API server {url}: connection refused" in lines[0]
        assert "lines keep the metadata of their file names" in lines[0]
    finally:
        await t.stop()


async def test_wrong_url_and_forbidden_name_the_problem(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "kubelogs.kubernetes")
    async with FakeApiServer() as srv:
        wrong = build_transform(tmp_path / "a", srv, api_server=srv.url + "/not-the-api")
        await wrong.start()
        await wrong.stop()
        srv.fail_with = 403
        forbidden = build_transform(tmp_path / "b", srv)
        await forbidden.start()
        await forbidden.stop()

    messages = [r.getMessage() for r in caplog.records]
    not_found = [m for m in messages if "404" in m]
    assert len(not_found) == 1  # pods and namespaces fail alike: one line
    assert (
        f"{srv.url}/not-the-api answered 404 Not Found for the core API (/api/v1)" in (not_found[0])
    )
    assert "refused GET /api/v1/pods (403 Forbidden): injected 403" in caplog.text


@pytest.mark.parametrize("gone_as_http_status", [False, True])
async def test_too_old_resource_version_relists(tmp_path: Path, gone_as_http_status: bool) -> None:
    async with FakeApiServer(gone_as_http_status=gone_as_http_status) as srv:
        t = build_transform(tmp_path, srv, page_size=2, namespace_labels=False)
        srv.create_pod(name="a", uid="uid-a", node=NODE)
        await t.start()
        try:
            reflector = t.watcher.pods
            assert reflector is not None
            srv.fail_with = 503  # keep the agent away while history moves on
            srv.drop_watches()
            await wait_until(lambda: srv.requests["failed 503"] >= 1)
            for i in range(3):
                srv.create_pod(name=f"b{i}", uid=f"uid-b{i}", node=NODE)
                srv.create_pod(name=f"other{i}", node="node-2")
            srv.delete_pod("default", "a")
            srv.compact()
            srv.fail_with = None

            await wait_until(lambda: len(t.watcher.cache.pods()) == 3, what="the relist")

            assert reflector.stats.relists_after_gone == 1
            assert t.watcher.cache.get("uid-a").deleted_at is not None  # type: ignore[union-attr]
            relist = [q for v, r, q in srv.request_log if (v, r) == ("list", "pods")][1:]
            assert "resourceVersion" not in relist[0]  # consistent read, paginated
            assert len(relist) == 2  # 3 pods of this node, 2 per page
            assert "continue" in relist[1]
        finally:
            await t.stop()


async def test_dropped_connection_rewatches_from_the_last_resource_version(tmp_path: Path) -> None:
    async with FakeApiServer() as srv:
        t = build_transform(tmp_path, srv, namespace_labels=False)
        await t.start()
        try:
            created = srv.create_pod(name="x", uid="uid-x", node=NODE)
            await wait_until(lambda: t.watcher.cache.get("uid-x") is not None)

            assert srv.drop_watches() == 1
            await wait_until(lambda: srv.requests["watch pods"] == 2, what="a new watch")
            srv.create_pod(name="y", uid="uid-y", node=NODE)
            await wait_until(lambda: t.watcher.cache.get("uid-y") is not None)

            watches = [q for v, r, q in srv.request_log if (v, r) == ("watch", "pods")]
            assert created["metadata"]["resourceVersion"] == watches[1]["resourceVersion"]
            assert srv.requests["list pods"] == 1  # no relist for a dropped connection
        finally:
            await t.stop()


async def test_bookmarks_keep_the_resource_version_fresh(tmp_path: Path) -> None:
    async with FakeApiServer() as srv:
        t = build_transform(tmp_path, srv, namespace_labels=False)
        await t.start()
        try:
            reflector = t.watcher.pods
            assert reflector is not None
            await wait_until(lambda: srv.open_watches("pods") == 1, what="the watch")
            for i in range(3):
                srv.create_pod(name=f"o{i}", node="node-2")  # changes this agent does not see
            assert srv.send_bookmarks() == 1
            await wait_until(lambda: reflector.resource_version == str(srv.resource_version))
            srv.compact()
            srv.end_watches()
            await wait_until(lambda: srv.requests["watch pods"] == 2)
            srv.create_pod(name="mine", uid="uid-mine", node=NODE)
            await wait_until(lambda: t.watcher.cache.get("uid-mine") is not None)

            assert reflector.stats.relists_after_gone == 0
            assert srv.requests["list pods"] == 1
        finally:
            await t.stop()


async def test_tls_with_the_right_ca_works_and_a_wrong_ca_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "kubelogs.kubernetes")
    async with FakeApiServer(tls=True) as srv, FakeApiServer(tls=True) as other:
        srv.create_pod(name="p", uid="uid-tls", node=NODE)
        good = build_transform(tmp_path / "good", srv)
        wrong_ca = other.write_ca(tmp_path / "other-ca.crt")
        bad = build_transform(tmp_path / "bad", srv, ca_file=wrong_ca)
        await good.start()
        await bad.start()
        try:
            assert good.watcher.synced
            assert not bad.watcher.synced
            b = file_batch("default", "p", "uid-tls")
            assert bad.process(b) is b
            assert "image" in k8s(good.process(b))["container"]
            lines = [r.getMessage() for r in caplog.records]
            assert len(lines) == 1, lines
            assert (
                f"the TLS certificate of the Kubernetes API server {srv.url} is not trusted by "
                f"the CA in {wrong_ca}"
            ) in lines[0]
        finally:
            await good.stop()
            await bad.stop()


async def test_kubeconfig_connects_with_inline_credentials(tmp_path: Path) -> None:
    async with FakeApiServer(tls=True, token="kc-token") as srv:
        srv.create_pod(name="p", uid="uid-kc", node=NODE)
        t = build_transform(tmp_path, kubeconfig=srv.write_kubeconfig(tmp_path / "kubeconfig"))
        await t.start()
        try:
            assert t.watcher.cache.get("uid-kc") is not None
        finally:
            await t.stop()


async def test_annotation_changes_take_effect_without_restart(tmp_path: Path) -> None:
    async with FakeApiServer() as srv:
        srv.create_pod(name="noisy", uid="uid-n", node=NODE, containers=["app", "debug"])
        t = build_transform(tmp_path, srv)
        await t.start()
        try:

            def annotations() -> dict[str, str]:
                entry = t.watcher.cache.get("uid-n")
                return entry.record.annotations if entry else {}

            app = file_batch("default", "noisy", "uid-n", "app")
            debug = file_batch("default", "noisy", "uid-n", "debug")
            assert t.process(app) is not None
            assert t.process(debug) is not None

            srv.set_pod_annotation("default", "noisy", "kubelogs.io/exclude-debug", "true")
            srv.set_pod_annotation("default", "noisy", "kubelogs.io/index", "noisy-logs")
            await wait_until(lambda: "kubelogs.io/index" in annotations(), what="MODIFIED")
            app_out = t.process(app)

            assert t.process(debug) is None
            assert app_out is not None
            assert app_out.ctx.extra["index"] == "noisy-logs"

            srv.set_pod_annotation("default", "noisy", "kubelogs.io/exclude-debug", None)
            await wait_until(lambda: "kubelogs.io/exclude-debug" not in annotations())

            assert t.process(debug) is not None
        finally:
            await t.stop()


async def test_namespace_label_changes_reach_documents(tmp_path: Path) -> None:
    async with FakeApiServer() as srv:
        srv.create_namespace("shop", labels={"tier": "gold"})
        srv.create_pod(name="p", namespace="shop", uid="uid-ns", node=NODE)
        t = build_transform(tmp_path, srv)
        await t.start()
        try:
            b = file_batch("shop", "p", "uid-ns")
            assert k8s(t.process(b))["namespace_labels"]["tier"] == "gold"

            srv.modify_namespace("shop", labels={"tier": "silver"})
            await wait_until(
                lambda: t.watcher.cache.namespace_labels("shop").get("tier") == "silver"
            )

            assert k8s(t.process(b))["namespace_labels"]["tier"] == "silver"
        finally:
            await t.stop()


async def test_many_pods_cost_one_list_and_one_watch_not_a_get_each(tmp_path: Path) -> None:
    async with FakeApiServer() as srv:
        uids = [srv.create_pod(name=f"p{i}", node=NODE)["metadata"]["uid"] for i in range(30)]
        shared: dict[str, object] = {}
        a = build_transform(tmp_path, srv, shared=shared)
        b = build_transform(tmp_path, srv, shared=shared)  # a second transform, same watcher
        await a.start()
        await b.start()
        try:
            for i, uid in enumerate(uids):
                for t in (a, b):
                    assert (
                        f"p{i}"
                        == k8s(t.process(file_batch("default", f"p{i}", uid)))["pod"]["name"]
                    )
            srv.create_pod(name="late", uid="uid-late", node=NODE)
            await wait_until(lambda: a.watcher.cache.get("uid-late") is not None)

            assert dict(srv.requests) == {
                "list pods": 1,
                "watch pods": 1,
                "list namespaces": 1,
                "watch namespaces": 1,
            }
        finally:
            await a.stop()
            await b.stop()
        assert all(
            task.done() for task in asyncio.all_tasks() if task.get_name().startswith("kubernetes:")
        )
