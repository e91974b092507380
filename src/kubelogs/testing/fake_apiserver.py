"""A small Kubernetes API server for tests and benchmarks: pods and namespaces, list/watch.

Why not mocks: the metadata code is only right if it survives what a real API server does
(DESIGN.md section 8), so this fake follows the real list/watch semantics:

- every change bumps one cluster-wide ``resourceVersion``; objects carry the version of
  their last change; lists carry the version they are a snapshot of;
- LIST: ``limit`` + ``continue`` pagination over a consistent snapshot (a continue token
  names the snapshot; once compacted it answers ``410 Gone``, reason ``Expired``);
  ``resourceVersion=0`` is a cache read that ignores ``limit`` (as the watch cache
  does), unset is a consistent paginated read;
- WATCH (``watch=1``): ``{"type": ..., "object": ...}`` lines; from an explicit version
  it replays the changes after it, from ``""``/``"0"`` it starts with ADDED events for
  the current objects; a version older than the compaction point is answered by an ERROR
  event with a ``Status`` of code 410 (or an HTTP 410, `gone_as_http_status`);
  ``allowWatchBookmarks=true`` enables BOOKMARK events; ``timeoutSeconds`` ends the stream;
  a field selector turns a change in or out of the selection into ADDED or DELETED;
- bearer tokens (401 with a ``Status`` body otherwise; `token` can change at runtime),
  optional TLS with a trustme CA.

Tests mutate state with `create_pod`, `modify_pod`, `delete_pod`, `create_namespace`...,
cut connections with `drop_watches`, force relists with `compact`, and assert on
`requests` (e.g. no per-pod GET). Use ``async with FakeApiServer() as srv`` in asyncio
tests, or ``with FakeApiServer().in_thread() as srv`` when the client is another process;
the mutation helpers are plain methods that work from any thread.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import contextlib
import copy
import hashlib
import socket
import ssl
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import yaml
from aiohttp import web

R = TypeVar("R")

_encode = msgspec.json.encode
_END = b""
_DROP = b"\x00"


async def wait_until(
    predicate: Callable[[], object], *, within: float = 10.0, what: str = "the condition"
) -> None:
    """Poll `predicate` until it is truthy; fail naming `what` after `within` seconds.

    For tests of asynchronous effects (a watch event reaching a cache): waits on the
    condition itself with a deadline instead of sleeping a guessed time.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.005)


def container_id_for(pod_uid: str, container: str) -> str:
    """The deterministic 64-hex container id the fake reports for a pod's container."""
    return hashlib.sha256(f"{pod_uid}/{container}".encode()).hexdigest()


def make_pod(
    name: str,
    namespace: str = "default",
    *,
    node: str = "node-1",
    uid: str | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owners: list[tuple[str, str]] | None = None,
    containers: list[str] | None = None,
    images: dict[str, str] | None = None,
    init_containers: list[str] | None = None,
    volumes: list[dict[str, Any]] | None = None,
    volume_mounts: dict[str, list[dict[str, Any]]] | None = None,
    ip: str = "10.244.1.5",
    phase: str = "Running",
) -> dict[str, Any]:
    """A realistic pod object (with fields kubelogs ignores, like managedFields).

    `owners` are ``(kind, name)`` controller references; `volume_mounts` maps a container
    name to its ``volumeMounts``.
    """
    uid = uid or str(uuid.uuid4())
    containers = containers or ["app"]
    images = images or {}
    mounts = volume_mounts or {}

    def spec_of(c: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": c,
            "image": images.get(c, f"registry.example/{c}:1.0"),
            "resources": {"limits": {"memory": "128Mi"}},
            "terminationMessagePath": "/dev/termination-log",
        }
        if c in mounts:
            out["volumeMounts"] = mounts[c]
        return out

    def status_of(c: str) -> dict[str, Any]:
        return {
            "name": c,
            "containerID": "containerd://" + container_id_for(uid, c),
            "image": "docker.io/" + images.get(c, f"registry.example/{c}:1.0"),
            "ready": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}},
        }

    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": uid,
        "creationTimestamp": "2024-01-01T00:00:00Z",
        "labels": dict(labels or {}),
        "annotations": dict(annotations or {}),
        "managedFields": [{"manager": "kube-controller-manager", "operation": "Update"}],
    }
    if owners:
        metadata["ownerReferences"] = [
            {
                "apiVersion": "batch/v1" if kind in ("Job", "CronJob") else "apps/v1",
                "kind": kind,
                "name": oname,
                "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}/{oname}")),
                "controller": True,
                "blockOwnerDeletion": True,
            }
            for kind, oname in owners
        ]
    pod: dict[str, Any] = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": metadata,
        "spec": {
            "nodeName": node,
            "containers": [spec_of(c) for c in containers],
            "volumes": list(volumes or []),
            "restartPolicy": "Always",
            "serviceAccountName": "default",
        },
        "status": {
            "phase": phase,
            "podIP": ip,
            "hostIP": "192.168.0.10",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [status_of(c) for c in containers],
        },
    }
    if init_containers:
        pod["spec"]["initContainers"] = [spec_of(c) for c in init_containers]
        pod["status"]["initContainerStatuses"] = [status_of(c) for c in init_containers]
    return pod


def make_namespace(name: str, *, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid4()),
            "labels": {"kubernetes.io/metadata.name": name, **(labels or {})},
        },
        "status": {"phase": "Active"},
    }


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _status_response(code: int, reason: str, message: str) -> web.Response:
    return web.Response(
        status=code, body=_encode(_status(code, reason, message)), content_type="application/json"
    )


@dataclass
class _Change:
    rv: int
    resource: str
    type: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None


def _field(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    return "" if cur is None else str(cur)


def _parse_selector(text: str) -> list[tuple[str, bool, str]]:
    out: list[tuple[str, bool, str]] = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            out.append((k.strip(), False, v.strip()))
        else:
            k, v = term.replace("==", "=").split("=", 1)
            out.append((k.strip(), True, v.strip()))
    return out


@dataclass(eq=False)
class _Watch:
    resource: str
    namespace: str
    selector: list[tuple[str, bool, str]]
    bookmarks: bool
    queue: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)

    def matches(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        if self.namespace and obj["metadata"].get("namespace") != self.namespace:
            return False
        return all((_field(obj, k) == v) == eq for k, eq, v in self.selector)

    def translate(self, change: _Change) -> bytes | None:
        if change.resource != self.resource:
            return None
        old_m, new_m = self.matches(change.old), self.matches(change.new)
        if change.type == "DELETED":
            if not old_m:
                return None
            return _event("DELETED", change.new)
        if old_m and new_m:
            return _event("MODIFIED", change.new)
        if new_m:
            return _event("ADDED", change.new)
        if old_m:
            return _event("DELETED", change.new)
        return None


def _event(kind: str, obj: dict[str, Any] | None) -> bytes:
    return _encode({"type": kind, "object": obj}) + b"\n"


class FakeApiServer:
    """See the module docstring.

    Resource handling: binds 127.0.0.1 on a random port while started; `stop()` (or
    leaving the context) ends open watches, closes the listener and removes the files it
    wrote (CA, token, kubeconfig) from its temporary directory.
    """

    def __init__(
        self,
        *,
        token: str | None = "test-token",
        tls: bool = False,
        gone_as_http_status: bool = False,
        paginate_cached_lists: bool = False,
        bookmark_interval: float | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.token = token
        """The accepted bearer token; None accepts anonymous requests. Change it at runtime
        to test rotation."""
        self.tls = tls
        self.gone_as_http_status = gone_as_http_status
        self.paginate_cached_lists = paginate_cached_lists
        self.bookmark_interval = bookmark_interval
        self.host = host
        self.fail_with: int | None = None
        """When set, every request is answered with this HTTP status (e.g. 403, 503)."""
        self.requests: collections.Counter[str] = collections.Counter()
        """``"list pods"``, ``"watch pods"``, ``"get pods"``, ``"list namespaces"``, ...,
        plus ``"unauthorized"`` for rejected tokens."""
        self.request_log: list[tuple[str, str, dict[str, str]]] = []
        """(verb, resource, query parameters) of every request, in order."""
        self.resource_version = 1
        self.compacted_rv = 0
        self._history: dict[str, dict[str, list[tuple[int, dict[str, Any] | None]]]] = {
            "pods": {},
            "namespaces": {},
        }
        self._changes: list[_Change] = []
        self._watches: set[_Watch] = set()
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix="kubelogs-fake-apiserver-"))
        self._bookmark_task: asyncio.Task[None] | None = None
        self.port = 0
        self.ca_pem = b""
        self._server_ssl: ssl.SSLContext | None = None
        if tls:
            import trustme

            ca = trustme.CA()
            cert = ca.issue_cert(host, "localhost")
            self._server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(self._server_ssl)
            self.ca_pem = ca.cert_pem.bytes()

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        app = web.Application()
        app.router.add_get("/api/v1/pods", self._handle_pods)
        app.router.add_get("/api/v1/namespaces/{ns}/pods", self._handle_pods)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}", self._handle_get_pod)
        app.router.add_get("/api/v1/namespaces", self._handle_namespaces)
        app.router.add_get("/api/v1/namespaces/{name}", self._handle_get_namespace)
        app.middlewares.append(self._auth_middleware)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock, ssl_context=self._server_ssl)
        await site.start()
        if self.bookmark_interval:
            self._bookmark_task = asyncio.create_task(self._bookmarks_forever())

    async def stop(self) -> None:
        if self._bookmark_task is not None:
            self._bookmark_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._bookmark_task
            self._bookmark_task = None
        self.end_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for p in self._tmp.glob("*"):
            p.unlink()
        with contextlib.suppress(OSError):
            self._tmp.rmdir()

    async def __aenter__(self) -> FakeApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[FakeApiServer]:
        """Serve from a background thread with its own event loop (for subprocess tests
        and benchmarks); the mutation helpers may be called from the calling thread."""
        started = threading.Event()
        loop = asyncio.new_event_loop()
        errors: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                errors.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=serve, name="fake-apiserver", daemon=True)
        self._thread.start()
        if not started.wait(30):
            raise RuntimeError("the fake API server did not start within 30 s")
        if errors:
            raise errors[0]
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(30)
            self._thread = None

    def _call(self, fn: Callable[[], R]) -> R:
        """Run `fn` in the server's loop thread (directly when already there)."""
        loop = self._loop
        if self._thread is None or loop is None or threading.current_thread() is self._thread:
            return fn()
        fut: concurrent.futures.Future[R] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return fut.result(30)

    # -- files for clients ---------------------------------------------------------------

    def write_ca(self, path: Path | None = None) -> Path:
        """The CA bundle that signed the server's certificate (TLS servers only)."""
        if not self.tls:
            raise RuntimeError("this FakeApiServer does not use TLS")
        path = path or self._tmp / "ca.crt"
        path.write_bytes(self.ca_pem)
        return path

    def write_token(self, path: Path | None = None, token: str | None = None) -> Path:
        path = path or self._tmp / "token"
        path.write_text(token if token is not None else (self.token or ""))
        return path

    def write_kubeconfig(self, path: Path | None = None, *, inline: bool = True) -> Path:
        """A kubeconfig for this server: token and CA inline (`inline`) or as files."""
        path = path or self._tmp / "kubeconfig"
        cluster: dict[str, Any] = {"server": self.url}
        user: dict[str, Any] = {}
        if self.tls:
            if inline:
                cluster["certificate-authority-data"] = base64.b64encode(self.ca_pem).decode()
            else:
                cluster["certificate-authority"] = str(self.write_ca(path.parent / "ca.crt"))
        if self.token:
            if inline:
                user["token"] = self.token
            else:
                user["tokenFile"] = str(self.write_token(path.parent / "token"))
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "fake",
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": "fake", "user": user}],
        }
        path.write_text(yaml.safe_dump(doc))
        return path

    # -- state changes (any thread) ------------------------------------------------------

    def create_pod(self, pod: dict[str, Any] | None = None, /, **make: Any) -> dict[str, Any]:
        """Add a pod: a full object, or `make_pod` keyword arguments. Returns the stored copy."""
        obj = pod if pod is not None else make_pod(**make)
        return self._call(lambda: self._put("pods", copy.deepcopy(obj), create=True))

    def modify_pod(
        self,
        namespace: str,
        name: str,
        mutate: Callable[[dict[str, Any]], None] | None = None,
        *,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Change a pod: replace its labels/annotations and/or apply `mutate` to a copy."""

        def run() -> dict[str, Any]:
            obj = copy.deepcopy(self._current("pods", f"{namespace}/{name}"))
            if labels is not None:
                obj["metadata"]["labels"] = dict(labels)
            if annotations is not None:
                obj["metadata"]["annotations"] = dict(annotations)
            if mutate is not None:
                mutate(obj)
            return self._put("pods", obj, create=False)

        return self._call(run)

    def set_pod_annotation(
        self, namespace: str, name: str, key: str, value: str | None
    ) -> dict[str, Any]:
        def mutate(obj: dict[str, Any]) -> None:
            ann = obj["metadata"].setdefault("annotations", {})
            if value is None:
                ann.pop(key, None)
            else:
                ann[key] = value

        return self.modify_pod(namespace, name, mutate)

    def delete_pod(self, namespace: str, name: str) -> None:
        self._call(lambda: self._remove("pods", f"{namespace}/{name}"))

    def create_namespace(self, name: str, *, labels: dict[str, str] | None = None) -> None:
        obj = make_namespace(name, labels=labels)
        self._call(lambda: self._put("namespaces", obj, create=True))

    def modify_namespace(self, name: str, *, labels: dict[str, str]) -> None:
        def run() -> None:
            obj = copy.deepcopy(self._current("namespaces", name))
            obj["metadata"]["labels"] = {"kubernetes.io/metadata.name": name, **labels}
            self._put("namespaces", obj, create=False)

        self._call(run)

    def delete_namespace(self, name: str) -> None:
        self._call(lambda: self._remove("namespaces", name))

    def compact(self) -> int:
        """Forget history up to now: older versions and continue tokens answer 410."""
        return self._call(self._compact)

    def drop_watches(self) -> int:
        """Cut every open watch connection abruptly (as a network failure would)."""
        return self._call(lambda: self._signal_watches(_DROP))

    def end_watches(self) -> int:
        """End every open watch cleanly (as when ``timeoutSeconds`` expires)."""
        return self._call(lambda: self._signal_watches(_END))

    def send_bookmarks(self) -> int:
        """Send a BOOKMARK with the current resourceVersion to watches that allow them."""
        return self._call(self._bookmark_all)

    def open_watches(self, resource: str | None = None) -> int:
        return self._call(
            lambda: sum(1 for w in self._watches if resource is None or w.resource == resource)
        )

    def pods(self) -> list[dict[str, Any]]:
        return self._call(lambda: self._state("pods", self.resource_version))

    # -- internals (loop thread) ---------------------------------------------------------

    def _current(self, resource: str, key: str) -> dict[str, Any]:
        versions = self._history[resource].get(key)
        if not versions or versions[-1][1] is None:
            raise KeyError(f"{resource} {key} does not exist")
        obj = versions[-1][1]
        assert obj is not None
        return obj

    def _key(self, resource: str, obj: dict[str, Any]) -> str:
        meta = obj["metadata"]
        return f"{meta['namespace']}/{meta['name']}" if resource == "pods" else meta["name"]

    def _put(self, resource: str, obj: dict[str, Any], *, create: bool) -> dict[str, Any]:
        key = self._key(resource, obj)
        versions = self._history[resource].setdefault(key, [])
        old = versions[-1][1] if versions else None
        if create and old is not None:
            raise ValueError(f"{resource} {key} already exists")
        if not create and old is None:
            raise KeyError(f"{resource} {key} does not exist")
        self.resource_version += 1
        rv = self.resource_version
        obj["metadata"]["resourceVersion"] = str(rv)
        obj["metadata"].setdefault("uid", str(uuid.uuid4()))
        versions.append((rv, obj))
        self._publish(_Change(rv, resource, "ADDED" if old is None else "MODIFIED", old, obj))
        return copy.deepcopy(obj)

    def _remove(self, resource: str, key: str) -> None:
        old = self._current(resource, key)
        self.resource_version += 1
        rv = self.resource_version
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(rv)
        self._history[resource][key].append((rv, None))
        self._publish(_Change(rv, resource, "DELETED", old, gone))

    def _publish(self, change: _Change) -> None:
        self._changes.append(change)
        for w in self._watches:
            line = w.translate(change)
            if line is not None:
                w.queue.put_nowait(line)

    def _compact(self) -> int:
        self.compacted_rv = self.resource_version
        self._changes = [c for c in self._changes if c.rv > self.compacted_rv]
        return self.compacted_rv

    def _signal_watches(self, signal: bytes) -> int:
        for w in self._watches:
            w.queue.put_nowait(signal)
        return len(self._watches)

    def _bookmark_all(self) -> int:
        n = 0
        for w in self._watches:
            if w.bookmarks:
                kind = "Pod" if w.resource == "pods" else "Namespace"
                obj = {
                    "kind": kind,
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(self.resource_version)},
                }
                w.queue.put_nowait(_event("BOOKMARK", obj))
                n += 1
        return n

    async def _bookmarks_forever(self) -> None:
        assert self.bookmark_interval
        while True:
            await asyncio.sleep(self.bookmark_interval)
            self._bookmark_all()

    def _state(self, resource: str, rv: int) -> list[dict[str, Any]]:
        """Objects as of `rv`, sorted by key (as etcd returns them)."""
        out: list[dict[str, Any]] = []
        for key in sorted(self._history[resource]):
            obj: dict[str, Any] | None = None
            for vrv, vobj in self._history[resource][key]:
                if vrv > rv:
                    break
                obj = vobj
            if obj is not None:
                out.append(obj)
        return out

    # -- HTTP ----------------------------------------------------------------------------

    @web.middleware
    async def _auth_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        if self.fail_with is not None:
            code = self.fail_with
            self.requests[f"failed {code}"] += 1
            reason = {403: "Forbidden", 500: "InternalError", 503: "ServiceUnavailable"}
            return _status_response(code, reason.get(code, "Failure"), f"injected {code}")
        if self.token is not None:
            header = request.headers.get("Authorization", "")
            if header != f"Bearer {self.token}":
                self.requests["unauthorized"] += 1
                return _status_response(401, "Unauthorized", "Unauthorized")
        response: web.StreamResponse = await handler(request)
        return response

    def _record(self, verb: str, resource: str, request: web.Request) -> None:
        self.requests[f"{verb} {resource}"] += 1
        self.request_log.append((verb, resource, dict(request.query)))

    async def _handle_pods(self, request: web.Request) -> web.StreamResponse:
        return await self._collection(request, "pods", request.match_info.get("ns", ""))

    async def _handle_namespaces(self, request: web.Request) -> web.StreamResponse:
        return await self._collection(request, "namespaces", "")

    async def _handle_get_pod(self, request: web.Request) -> web.StreamResponse:
        self._record("get", "pods", request)
        key = f"{request.match_info['ns']}/{request.match_info['name']}"
        try:
            obj = self._current("pods", key)
        except KeyError:
            return _status_response(404, "NotFound", f'pods "{key}" not found')
        return web.Response(body=_encode(obj), content_type="application/json")

    async def _handle_get_namespace(self, request: web.Request) -> web.StreamResponse:
        self._record("get", "namespaces", request)
        name = request.match_info["name"]
        try:
            obj = self._current("namespaces", name)
        except KeyError:
            return _status_response(404, "NotFound", f'namespaces "{name}" not found')
        return web.Response(body=_encode(obj), content_type="application/json")

    async def _collection(
        self, request: web.Request, resource: str, namespace: str
    ) -> web.StreamResponse:
        q = request.query
        watching = q.get("watch", "") in ("1", "true")
        self._record("watch" if watching else "list", resource, request)
        try:
            selector = _parse_selector(q.get("fieldSelector", ""))
        except ValueError:
            return _status_response(400, "BadRequest", "invalid field selector")
        if watching:
            return await self._watch(request, resource, namespace, selector)
        return self._list(request, resource, namespace, selector)

    def _list(
        self,
        request: web.Request,
        resource: str,
        namespace: str,
        selector: list[tuple[str, bool, str]],
    ) -> web.Response:
        q = request.query
        limit = int(q.get("limit", "0") or 0)
        start_after = ""
        snapshot = self.resource_version
        if q.get("continue"):
            try:
                token = msgspec.json.decode(base64.urlsafe_b64decode(q["continue"]))
                snapshot, start_after = int(token["rv"]), str(token["start"])
            except (ValueError, KeyError, TypeError, msgspec.DecodeError):
                return _status_response(400, "BadRequest", "invalid continue token")
            if snapshot < self.compacted_rv:
                return _status_response(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter.",
                )
        elif q.get("resourceVersion") == "0" and not self.paginate_cached_lists:
            limit = 0  # a cache read: the watch cache does not paginate
        w = _Watch(resource, namespace, selector, False)
        items = [o for o in self._state(resource, snapshot) if w.matches(o)]
        if start_after:
            items = [o for o in items if self._key(resource, o) > start_after]
        meta: dict[str, Any] = {"resourceVersion": str(snapshot)}
        if limit and len(items) > limit:
            rest = len(items) - limit
            items = items[:limit]
            token = {"rv": snapshot, "start": self._key(resource, items[-1])}
            meta["continue"] = base64.urlsafe_b64encode(_encode(token)).decode()
            meta["remainingItemCount"] = rest
        kind = "PodList" if resource == "pods" else "NamespaceList"
        body = {"kind": kind, "apiVersion": "v1", "metadata": meta, "items": items}
        return web.Response(body=_encode(body), content_type="application/json")

    async def _watch(
        self,
        request: web.Request,
        resource: str,
        namespace: str,
        selector: list[tuple[str, bool, str]],
    ) -> web.StreamResponse:
        q = request.query
        rv_param = q.get("resourceVersion", "")
        bookmarks = q.get("allowWatchBookmarks", "") in ("1", "true")
        timeout = float(q.get("timeoutSeconds", "1800") or 1800)
        w = _Watch(resource, namespace, selector, bookmarks)
        initial: list[bytes] = []
        if rv_param in ("", "0"):
            current = self._state(resource, self.resource_version)
            initial = [_event("ADDED", o) for o in current if w.matches(o)]
        else:
            try:
                since = int(rv_param)
            except ValueError:
                return _status_response(400, "BadRequest", f"invalid resourceVersion {rv_param}")
            if since < self.compacted_rv:
                message = f"too old resource version: {since} ({self.compacted_rv})"
                if self.gone_as_http_status:
                    return _status_response(410, "Expired", message)
                error = {"type": "ERROR", "object": _status(410, "Expired", message)}
                initial = [_encode(error) + b"\n", _END]
            else:
                for change in self._changes:
                    if change.rv > since:
                        line = w.translate(change)
                        if line is not None:
                            initial.append(line)
        # Registered before the first await: no change can slip between replay and live.
        self._watches.add(w)
        for line in initial:
            w.queue.put_nowait(line)
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            await resp.prepare(request)
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    line = await asyncio.wait_for(w.queue.get(), remaining)
                except TimeoutError:
                    break
                if line == _END:
                    break
                if line == _DROP:
                    if request.transport is not None:
                        request.transport.abort()
                    return resp
                await resp.write(line)
        except (ConnectionError, RuntimeError):
            return resp
        finally:
            self._watches.discard(w)
        return resp
