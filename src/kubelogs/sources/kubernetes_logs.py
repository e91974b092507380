"""`kubernetes_logs`: container logs of this node, CRI or Docker json-file, per file.

Namespace, pod, pod uid, container and container id come from the path
(``/var/log/containers/<pod>_<ns>_<container>-<id>.log`` -> ``/var/log/pods/<ns>_<pod>_<uid>/
<container>/0.log``), so every line is attributable without the API server; the
`kubernetes_metadata` transform adds the rest.
"""

from __future__ import annotations

import glob
import logging
import sys
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from kubelogs.config.base import BuildContext
from kubelogs.config.registry import register
from kubelogs.kubernetes.paths import parse_log_path
from kubelogs.pipeline.event import FileContext
from kubelogs.sources.tail_options import TailingSource, TailOptions, file_context
from kubelogs.tailing.discovery import ContextFactory, Match

if TYPE_CHECKING:
    from kubelogs.kubernetes.pod_files import PodFileGlob

log = logging.getLogger("kubelogs.kubernetes")


@register("source", "kubernetes_logs", "Container logs of this node (CRI and Docker json-file).")
class KubernetesLogsConfig(TailOptions):
    type: Literal["kubernetes_logs"]
    include: list[str] = Field(default_factory=lambda: ["/var/log/containers/*.log"])
    """Globs of container log files; symlinks are followed."""
    exclude_namespaces: list[str] = Field(default_factory=list)
    """Namespaces whose containers are not read at all."""
    pod_files: bool = True
    """Also read application log files inside pods named by their `kubelogs.io/files`
    annotation (needs a `kubernetes_metadata` transform, which watches the pods)."""
    kubelet_root: str = "/var/lib/kubelet"
    """The kubelet's root directory as mounted in the agent (pod volumes live below it)."""
    host_root: str = ""
    """Prefix for hostPath volumes: where the node's `/` is mounted in the agent."""

    def build(self, cx: BuildContext) -> KubernetesLogsSource:
        return KubernetesLogsSource(self, cx)


class KubernetesLogsSource(TailingSource):
    def __init__(self, config: KubernetesLogsConfig, cx: BuildContext) -> None:
        self.config = config
        excluded = set(config.exclude_namespaces)

        def accept(path: str) -> bool:
            if not excluded:
                return True
            info = parse_log_path(path)
            return info is None or info.namespace not in excluded

        def context(link: str, real: str, key: str, id_prefix: str) -> FileContext:
            ns = pod = uid = container = cid = ""
            # The real path names the pod uid, the /var/log/containers link the container id.
            for i in (parse_log_path(real), parse_log_path(link)):
                if i is None:
                    continue
                ns = ns or i.namespace
                pod = pod or i.pod
                uid = uid or i.pod_uid
                container = container or i.container
                cid = cid or i.container_id
            return file_context(
                source_id=cx.component_id,
                node=cx.node_name,
                path=real,
                key=key,
                id_prefix=id_prefix,
                namespace=ns,
                pod=pod,
                pod_uid=uid,
                container=container,
                container_id=cid,
            )

        pod_files = _PodFileFinder(config, cx) if config.pod_files else None
        self.tailer = config.build_tailer(
            cx,
            include=list(config.include),
            format="auto",
            context_factory=context,
            accept=accept,
            extra_paths=pod_files.paths if pod_files else None,
            annotations=True,
        )


_WATCHER_MODULE = "kubelogs.kubernetes.pod_watcher"


class _PodFileFinder:
    """Files inside pods named by `kubelogs.io/files`, found through the pod watcher.

    The annotation's container paths are mapped to host paths once per change of the pod
    cache; the host globs are expanded at every scan, so new files appear within
    `glob_interval` and an annotation change takes effect without a restart.
    """

    def __init__(self, config: KubernetesLogsConfig, cx: BuildContext) -> None:
        self._config = config
        self._shared = cx.shared
        self._node = cx.node_name
        self._source_id = cx.component_id
        self._version = -1
        self._globs: list[PodFileGlob] = []
        self._warned: set[str] = set()

    def paths(self) -> list[Match]:
        if _WATCHER_MODULE not in sys.modules:
            # No component started a pod watcher (it would have imported the module):
            # nothing to find, and aiohttp (~8 MiB) stays out of an agent without
            # Kubernetes metadata.
            return []
        from kubelogs.kubernetes.pod_files import resolve_pod_files
        from kubelogs.kubernetes.pod_watcher import find_pod_watcher

        watcher = find_pod_watcher(self._shared)
        if watcher is None:
            return []
        cache = watcher.cache
        if cache.version != self._version:
            self._version = cache.version
            globs: list[PodFileGlob] = []
            for entry in cache.pods():
                found = resolve_pod_files(
                    entry.record,
                    kubelet_root=self._config.kubelet_root,
                    host_root=self._config.host_root,
                )
                globs.extend(found.globs)
                for warning in found.warnings:
                    if warning not in self._warned:
                        self._warned.add(warning)
                        log.warning("%s", warning)
            self._globs = globs
        out: list[Match] = []
        for g in self._globs:
            for path in sorted(glob.glob(g.host_glob)):
                # Application files are plain lines, not container runtime lines.
                out.append(Match(path, self._factory(g), "plain"))
        return out

    def _factory(self, g: PodFileGlob) -> ContextFactory:
        node, source_id = self._node, self._source_id

        def context(link: str, real: str, key: str, id_prefix: str) -> FileContext:
            return file_context(
                source_id=source_id,
                node=node,
                path=real,
                key=key,
                id_prefix=id_prefix,
                namespace=g.namespace,
                pod=g.pod,
                pod_uid=g.pod_uid,
                container=g.container,
            )

        return context
