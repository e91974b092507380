"""One watcher of this node's pods per process, shared by every component that needs it.

The `kubernetes_metadata` transform needs pod metadata; the `kubernetes_logs` source needs
the ``kubelogs.io/files`` annotation and the pod specs behind it. Both get the same
`PodWatcher` from `get_pod_watcher(cx.shared, settings, ...)`, keyed by the connection
settings, so the API server sees one LIST and one WATCH per resource from each agent,
however many components use the metadata.

Lifecycle: each user calls `start()` and `stop()` once; the first `start()` loads the
persisted cache and starts the watch tasks, the last `stop()` cancels and awaits them and
saves the cache. `start()` never waits for the API server longer than `sync_timeout`, and
not at all once the first attempt has failed (the persisted cache serves meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubelogs.kubernetes.client import KubeClient
from kubelogs.kubernetes.connection import ConnectionSettings, resolve_connection
from kubelogs.kubernetes.errors import KubernetesConfigError
from kubelogs.kubernetes.metadata_cache import PodCache
from kubelogs.kubernetes.resources import Namespace, Pod
from kubelogs.kubernetes.watch import Backoff, Handler, ProblemReporter, Reflector

log = logging.getLogger("kubelogs.kubernetes")

SHARED_KEY_PREFIX = "kubernetes.pod_watcher:"

_CONSEQUENCE = "; lines keep the metadata of their file names until it works (retrying)"


@dataclass(frozen=True)
class WatcherSettings:
    """How to reach the API server and which pods to watch; the sharing key."""

    api_server: str | None = None
    token_file: str | None = None
    ca_file: str | None = None
    kubeconfig: str | None = None
    insecure_skip_tls_verify: bool = False
    node_name: str = ""

    def key(self) -> str:
        # Paths and URLs only: nothing secret, fine in a dict key and a debug line.
        return SHARED_KEY_PREFIX + repr(
            (
                self.api_server,
                self.token_file,
                self.ca_file,
                self.kubeconfig,
                self.insecure_skip_tls_verify,
                self.node_name,
            )
        )


@dataclass
class WatcherTuning:
    """Knobs with production defaults; tests shorten the delays."""

    page_size: int = 500
    grace_period: float = 3600.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    watch_timeout: tuple[int, int] = (300, 600)
    request_timeout: float = 30.0
    token_recheck_interval: float = 10.0
    persist_interval: float = 30.0
    """Seconds between saves of a changed cache (and on stop); bounds what a kill -9
    loses to that many seconds of changes."""
    problem_repeat_interval: float = 300.0


@dataclass
class PodWatcher:
    """The shared service: `cache`, plus the tasks that keep it current."""

    settings: WatcherSettings
    data_dir: Path | None = None
    tuning: WatcherTuning = field(default_factory=WatcherTuning)
    cache: PodCache = field(init=False)
    reporter: ProblemReporter = field(init=False)
    watch_namespaces: bool = False
    """Also watch namespaces (for namespace labels); set by users before `start()`."""
    connection: ConnectionSettings | None = field(init=False, default=None)
    pods: Reflector[Pod] | None = field(init=False, default=None)
    namespaces: Reflector[Namespace] | None = field(init=False, default=None)
    _users: int = field(init=False, default=0)
    _client: KubeClient | None = field(init=False, default=None)
    _tasks: list[asyncio.Task[None]] = field(init=False, default_factory=list)
    _lock: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)
    _loaded: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.cache = PodCache(grace_period=self.tuning.grace_period)
        self.reporter = ProblemReporter(repeat_interval=self.tuning.problem_repeat_interval)

    @property
    def cache_path(self) -> Path | None:
        if self.data_dir is None:
            return None
        node = re.sub(r"[^A-Za-z0-9._-]", "_", self.settings.node_name) or "all-nodes"
        return self.data_dir / "kubernetes" / f"pods-{node}.json"

    @property
    def synced(self) -> bool:
        return self.pods is not None and self.pods.synced.is_set()

    @property
    def client(self) -> KubeClient | None:
        return self._client

    async def start(self, *, sync_timeout: float = 0.0) -> None:
        """Start (first user) or join; then wait up to `sync_timeout` seconds for the
        first LIST of pods, returning early when that LIST failed.

        Error handling: settings that cannot be resolved are logged once (the watcher
        then serves the persisted cache only); nothing is raised.
        """
        async with self._lock:
            self._users += 1
            if self._users == 1:
                self._start_tasks()
        await self.wait_synced(sync_timeout, any_attempt=True)

    def _start_tasks(self) -> None:
        path = self.cache_path
        if path is not None and not self._loaded:
            restored = self.cache.load(path)
            self._loaded = True
            if restored:
                log.info("restored metadata of %d pods from %s", restored, path)
        try:
            self.connection = resolve_connection(
                api_server=self.settings.api_server,
                token_file=self.settings.token_file,
                ca_file=self.settings.ca_file,
                kubeconfig=self.settings.kubeconfig,
                insecure_skip_tls_verify=self.settings.insecure_skip_tls_verify,
            )
        except KubernetesConfigError as exc:
            self.reporter.report(exc, consequence="; lines keep the metadata of their file names")
            self._spawn(self._housekeeping, "kubernetes:cache-housekeeping")
            return
        t = self.tuning
        self._client = KubeClient(
            self.connection,
            request_timeout=t.request_timeout,
            token_recheck_interval=t.token_recheck_interval,
        )
        node = self.settings.node_name
        if not node:
            log.warning(
                "no node name is configured (node_name, NODE_NAME): watching the pods of "
                "every node of the cluster"
            )
        cache = self.cache
        self.pods = Reflector(
            client=self._client,
            path="/api/v1/pods",
            item_type=Pod,
            handler=Handler(cache.replace, cache.upsert, cache.delete),
            reporter=self.reporter,
            field_selector=f"spec.nodeName={node}" if node else "",
            page_size=t.page_size,
            backoff=Backoff(t.backoff_initial, t.backoff_max),
            watch_timeout=t.watch_timeout,
            consequence=_CONSEQUENCE,
        )
        # Each task below lives until the last user stops the watcher.
        # Keeps the pods of this node in the cache.
        self._spawn(self.pods.run, "kubernetes:watch-pods")
        if self.watch_namespaces:
            self.namespaces = Reflector(
                client=self._client,
                path="/api/v1/namespaces",
                item_type=Namespace,
                handler=Handler(
                    cache.replace_namespaces, cache.upsert_namespace, cache.delete_namespace
                ),
                reporter=self.reporter,
                page_size=t.page_size,
                backoff=Backoff(t.backoff_initial, t.backoff_max),
                watch_timeout=t.watch_timeout,
                consequence=_CONSEQUENCE,
            )
            # Keeps namespace labels in the cache.
            self._spawn(self.namespaces.run, "kubernetes:watch-namespaces")
        # Saves the cache when it changed and forgets pods past their grace period.
        self._spawn(self._housekeeping, "kubernetes:cache-housekeeping")

    def _spawn(self, factory: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        self._tasks.append(asyncio.create_task(_supervised(factory, name), name=name))

    async def wait_synced(self, seconds: float, *, any_attempt: bool = False) -> bool:
        """Wait up to `seconds` for the first LIST of pods and of namespaces (with
        `any_attempt`, for the first attempts, failed or not); True when pods are synced.

        Both are awaited so that the first lines read already carry namespace labels."""
        pods = self.pods
        if pods is None or seconds <= 0:
            return self.synced
        reflectors = [r for r in (pods, getattr(self, "namespaces", None)) if r is not None]
        events = [r.attempted if any_attempt else r.synced for r in reflectors]
        try:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), seconds)
        except TimeoutError:
            pass
        return self.synced

    async def stop(self) -> None:
        """Leave; the last user cancels and awaits the tasks and saves the cache."""
        async with self._lock:
            if self._users <= 0:
                return  # never started: nothing to stop, and no empty cache to save
            self._users -= 1
            if self._users > 0:
                return
            tasks, self._tasks = self._tasks, []
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._client is not None:
                await self._client.close()
                self._client = None
            self.save()

    def save(self) -> None:
        path = self.cache_path
        if path is None:
            return
        try:
            self.cache.save(path)
        except OSError as exc:
            log.warning("cannot save the pod metadata cache %s: %s", path, exc.strerror)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.tuning.persist_interval)
            self.cache.expire()
            if self.cache.dirty:
                self.save()


async def _supervised(factory: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
    """Run a watcher task; a bug in it is logged and the task restarted after a pause,
    because enrichment failing must not stop the pipeline that ships the lines."""
    while True:
        try:
            await factory()
            return
        except Exception:
            log.exception("the Kubernetes task %s failed; restarting it in 10 s", name)
        await asyncio.sleep(10)


def get_pod_watcher(
    shared: dict[str, Any],
    settings: WatcherSettings,
    *,
    data_dir: Path | None,
    tuning: WatcherTuning | None = None,
) -> PodWatcher:
    """The process-wide watcher for `settings`, created on first request."""
    key = settings.key()
    watcher = shared.get(key)
    if watcher is None:
        watcher = PodWatcher(settings=settings, data_dir=data_dir, tuning=tuning or WatcherTuning())
        shared[key] = watcher
    assert isinstance(watcher, PodWatcher)
    return watcher


def find_pod_watcher(shared: dict[str, Any], node_name: str | None = None) -> PodWatcher | None:
    """A watcher some component registered (for `node_name` when given), or None."""
    for key, value in shared.items():
        if (
            key.startswith(SHARED_KEY_PREFIX)
            and isinstance(value, PodWatcher)
            and (node_name is None or value.settings.node_name == node_name)
        ):
            return value
    return None
