"""``kubelogs.io/files`` annotation -> glob patterns of the host files to tail.

Applications that write log files instead of stdout (``/var/log/app/*.log`` inside the
container) can be read by the node agent without a sidecar, as log-pilot does, when the
directory is a volume: the kubelet keeps an ``emptyDir`` under
``<kubelet_root>/pods/<uid>/volumes/kubernetes.io~empty-dir/<volume>/`` and a ``hostPath``
is a directory of the node anyway. A file on the container's own root filesystem is not
reachable (its overlay path is a runtime detail), so such a pattern gets a warning that
says to mount a volume there.

Mapping a container path: the volume mount with the longest ``mountPath`` that is a
prefix of the pattern wins (as in the container's mount table), its ``subPath`` is
inserted, and the rest of the pattern (globs included) is appended. Patterns with ``..``
are refused: an annotation must not make the agent read outside the pod's volumes.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from kubelogs.kubernetes.metadata_cache import MountRecord, PodRecord

FILES_ANNOTATION = "kubelogs.io/files"
DEFAULT_KUBELET_ROOT = "/var/lib/kubelet"


@dataclass(frozen=True)
class PodFileGlob:
    """One host glob to tail for a pod, and whose lines they are."""

    namespace: str
    pod: str
    pod_uid: str
    container: str
    container_pattern: str
    """The pattern as written in the annotation (a path inside the container)."""
    host_glob: str
    """The same files as seen from the node (prefixed with `host_root`)."""


@dataclass(frozen=True)
class PodFiles:
    globs: list[PodFileGlob] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """One sentence per pattern that could not be mapped, naming the pod and the path."""


def split_patterns(annotation: str) -> list[str]:
    return [p.strip() for p in annotation.split(",") if p.strip()]


def resolve_pod_files(
    pod: PodRecord,
    *,
    kubelet_root: str = DEFAULT_KUBELET_ROOT,
    host_root: str = "",
    annotation: str | None = None,
) -> PodFiles:
    """Map the pod's ``kubelogs.io/files`` patterns (or `annotation`) to host globs.

    `host_root` is prepended to hostPath directories (the node's ``/`` as mounted in the
    agent's container, or a temp dir in tests); `kubelet_root` is the kubelet's root as
    seen by the agent. A pattern mounted by several containers of the pod is reported
    once, for the first container in spec order.
    """
    value = pod.annotations.get(FILES_ANNOTATION, "") if annotation is None else annotation
    ref = f"pod {pod.namespace}/{pod.name}"
    globs: list[PodFileGlob] = []
    warnings: list[str] = []
    seen: set[str] = set()
    for pattern in split_patterns(value):
        if not pattern.startswith("/"):
            warnings.append(
                f"{ref}: {FILES_ANNOTATION} pattern {pattern!r} is not an absolute path"
            )
            continue
        norm = posixpath.normpath(pattern)
        if ".." in pattern.split("/"):
            warnings.append(f"{ref}: {FILES_ANNOTATION} pattern {pattern!r} contains '..'")
            continue
        found = False
        problems: list[str] = []
        for cname, container in pod.containers.items():
            mount = _longest_mount(container.mounts, norm)
            if mount is None:
                continue
            volume = pod.volumes.get(mount.volume)
            rest = norm[len(mount.path.rstrip("/")) :].lstrip("/")
            if mount.sub_path_expr:
                problems.append(
                    f"{ref}: {pattern!r} is on volume {mount.volume!r} mounted with "
                    f"subPathExpr in container {cname!r}, which kubelogs cannot expand"
                )
                continue
            if ".." in mount.sub_path.split("/"):
                problems.append(f"{ref}: the subPath of volume {mount.volume!r} contains '..'")
                continue
            if volume is None:
                problems.append(f"{ref}: volume {mount.volume!r} of {pattern!r} is not declared")
                continue
            if volume.kind == "emptyDir":
                base = posixpath.join(
                    kubelet_root,
                    "pods",
                    pod.uid,
                    "volumes",
                    "kubernetes.io~empty-dir",
                    mount.volume,
                )
            elif volume.kind == "hostPath":
                base = host_root.rstrip("/") + "/" + volume.host_path.strip("/")
            else:
                problems.append(
                    f"{ref}: {pattern!r} is on volume {mount.volume!r} of type "
                    f"{volume.kind}, which the node agent cannot read; use an emptyDir or "
                    "hostPath volume for log files"
                )
                continue
            host_glob = posixpath.join(base, mount.sub_path.strip("/"), rest).rstrip("/")
            found = True
            if host_glob not in seen:
                seen.add(host_glob)
                globs.append(
                    PodFileGlob(
                        namespace=pod.namespace,
                        pod=pod.name,
                        pod_uid=pod.uid,
                        container=cname,
                        container_pattern=pattern,
                        host_glob=host_glob,
                    )
                )
        if not found:
            warnings.extend(problems)
            if not problems:
                warnings.append(
                    f"{ref}: {FILES_ANNOTATION} pattern {pattern!r} is not on a volume of any "
                    "container, so the node agent cannot read it; mount an emptyDir at its "
                    "directory"
                )
    return PodFiles(globs=globs, warnings=warnings)


def _longest_mount(mounts: tuple[MountRecord, ...], path: str) -> MountRecord | None:
    best: MountRecord | None = None
    for m in mounts:
        mp = m.path.rstrip("/") or "/"
        inside = path == mp or path.startswith(mp if mp == "/" else mp + "/")
        if inside and (best is None or len(mp) > len(best.path.rstrip("/"))):
            best = m
    return best
