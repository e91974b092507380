"""Pods of this node by UID, kept after deletion for a grace period and persisted on disk.

Why keyed by UID: the kubelet's log directory is ``/var/log/pods/<ns>_<pod>_<uid>/``, so
the UID is known for every line without asking anyone, and it survives name reuse (a
StatefulSet pod recreated under the same name is a new UID). Lookups by namespace and name
remain as a fallback for paths that carry no UID (``/var/log/containers``).

Why deleted pods are kept: a CronJob pod can finish and be deleted before the agent has
read its last lines (backlog, restart). Its entry stays for `grace_period` seconds after
the DELETED event, so those lines are still enriched.

Why persisted: after an agent restart the API server may be slow or down, and pods deleted
while the agent was down are not listed any more. `save()` writes the cache to a file in
the data dir atomically (temp file + fsync + rename, so a crash leaves the old or the new
file, never half of one); `load()` restores it at start without any network, so
`process()` never waits for the API server.

What is kept per pod is `PodRecord`: only what documents and ``kubelogs.io/files`` need,
with owner names resolved without extra GETs (a ReplicaSet named ``<deployment>-<pod-
template-hash>`` belongs to that Deployment; a Job named ``<cronjob>-<minutes since
epoch>`` was scheduled by that CronJob). Changes that do not affect these fields (status
flips, readiness) do not bump the pod's `version`, so consumers re-encode metadata only
when something they ship changed.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import msgspec

from kubelogs.kubernetes.document_meta import ContainerMeta, PodMeta
from kubelogs.kubernetes.resources import Namespace, ObjectMeta, Pod

log = logging.getLogger("kubelogs.kubernetes")

SKIPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
"""Annotations never kept: the last-applied configuration is the whole manifest again
(often tens of KiB per pod) and no dashboard wants it in every document."""

_CRONJOB_JOB_RE = re.compile(r"(.+)-(\d{8,})")
"""CronJob controller v2 names its Jobs ``<cronjob>-<scheduled time in minutes since the
epoch>``; that has been 8 digits since 1989 and stays so until 2160."""

_CACHE_FORMAT = 1


class MountRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    volume: str
    path: str
    sub_path: str = ""
    sub_path_expr: bool = False


class VolumeRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    kind: str
    """The volume type as named in the pod spec: ``emptyDir``, ``hostPath``, ``configMap``..."""
    host_path: str = ""


class ContainerRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    image: str = ""
    container_id: str = ""
    """With the runtime prefix (``containerd://...``), from the pod status."""
    mounts: tuple[MountRecord, ...] = ()


class PodRecord(msgspec.Struct, omit_defaults=True):
    """What kubelogs keeps of a pod; equal records mean nothing shipped changed."""

    uid: str
    name: str
    namespace: str
    ip: str = ""
    node: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    owners: dict[str, str] = msgspec.field(default_factory=dict)
    containers: dict[str, ContainerRecord] = msgspec.field(default_factory=dict)
    volumes: dict[str, VolumeRecord] = msgspec.field(default_factory=dict)


def resolve_owners(meta: ObjectMeta) -> dict[str, str]:
    """Workload names from owner references alone (no GET of the ReplicaSet or Job)."""
    refs = meta.ownerReferences or []
    controllers = [r for r in refs if r.controller] or refs
    owners: dict[str, str] = {}
    labels = meta.labels or {}
    for ref in controllers:
        if ref.kind == "ReplicaSet":
            owners["replicaset"] = ref.name
            h = labels.get("pod-template-hash", "")
            if h and ref.name.endswith("-" + h) and len(ref.name) > len(h) + 1:
                owners["deployment"] = ref.name[: -len(h) - 1]
        elif ref.kind == "StatefulSet":
            owners["statefulset"] = ref.name
        elif ref.kind == "DaemonSet":
            owners["daemonset"] = ref.name
        elif ref.kind == "Job":
            owners["job"] = ref.name
            m = _CRONJOB_JOB_RE.fullmatch(ref.name)
            if m:
                owners["cronjob"] = m.group(1)
        elif ref.kind == "CronJob":
            owners["cronjob"] = ref.name
    return owners


def pod_record_from(pod: Pod) -> PodRecord:
    """Reduce an API pod to a `PodRecord`."""
    meta, spec, status = pod.metadata, pod.spec, pod.status
    ids: dict[str, ContainerRecord] = {}
    for statuses in (
        status.initContainerStatuses,
        status.containerStatuses,
        status.ephemeralContainerStatuses,
    ):
        for st in statuses or ():
            ids[st.name] = ContainerRecord(image=st.image, container_id=st.containerID)
    containers: dict[str, ContainerRecord] = {}
    for group in (spec.initContainers, spec.containers, spec.ephemeralContainers):
        for c in group or ():
            st_rec = ids.get(c.name)
            containers[c.name] = ContainerRecord(
                image=c.image or (st_rec.image if st_rec else ""),
                container_id=st_rec.container_id if st_rec else "",
                mounts=tuple(
                    MountRecord(
                        volume=m.name,
                        path=m.mountPath,
                        sub_path=m.subPath,
                        sub_path_expr=bool(m.subPathExpr),
                    )
                    for m in c.volumeMounts or ()
                ),
            )
    volumes: dict[str, VolumeRecord] = {}
    for v in spec.volumes or ():
        name = str(v.get("name", ""))
        kinds = [k for k in v if k != "name"]
        kind = kinds[0] if kinds else "unknown"
        host_path = ""
        if kind == "hostPath" and isinstance(v[kind], dict):
            host_path = str(v[kind].get("path", ""))
        volumes[name] = VolumeRecord(kind=kind, host_path=host_path)
    annotations = meta.annotations or {}
    if SKIPPED_ANNOTATIONS.intersection(annotations):
        annotations = {k: v for k, v in annotations.items() if k not in SKIPPED_ANNOTATIONS}
    return PodRecord(
        uid=meta.uid,
        name=meta.name,
        namespace=meta.namespace,
        ip=status.podIP,
        node=spec.nodeName,
        labels=meta.labels or {},
        annotations=annotations,
        owners=resolve_owners(meta),
        containers=containers,
        volumes=volumes,
    )


@dataclass(slots=True)
class CachedPod:
    record: PodRecord
    version: int
    """Changes whenever anything shipped for this pod changes (its record or its
    namespace's labels); unique across the cache, so ``(file, version)`` is a safe key."""
    deleted_at: float | None = None
    """Wall-clock time of the DELETED event (or of the relist that no longer had it)."""
    _meta: PodMeta | None = None


class PodChange(NamedTuple):
    kind: Literal["added", "modified", "deleted"]
    pod: PodRecord
    version: int


Subscriber = Callable[[PodChange], None]


class _SavedPod(msgspec.Struct):
    record: PodRecord
    deleted_at: float | None = None


class _Snapshot(msgspec.Struct):
    format: int
    saved_at: float
    pods: list[_SavedPod]
    namespaces: dict[str, dict[str, str]]


class PodCache:
    """The cache; fed by the reflectors, read by transforms and the tailer.

    Not thread-safe: used from the event loop only (lookups are plain dict reads).
    """

    def __init__(
        self,
        *,
        grace_period: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.grace_period = grace_period
        self._clock = clock
        self._pods: dict[str, CachedPod] = {}
        self._by_name: dict[tuple[str, str], str] = {}
        self._ns_labels: dict[str, dict[str, str]] = {}
        self._subscribers: list[Subscriber] = []
        self.version = 0
        """Bumped on every change; consumers compare it to skip work when nothing moved."""
        self.dirty = False
        """True when the cache changed since it was last saved or loaded."""

    # -- reading -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._pods)

    def get(self, uid: str) -> CachedPod | None:
        return self._pods.get(uid)

    def find(self, namespace: str, name: str) -> CachedPod | None:
        uid = self._by_name.get((namespace, name))
        return self._pods.get(uid) if uid else None

    def lookup(self, uid: str, namespace: str, name: str) -> CachedPod | None:
        """By UID when known, else by namespace and name (newest live pod of that name)."""
        if uid:
            entry = self._pods.get(uid)
            if entry is not None:
                return entry
        if namespace and name:
            entry = self.find(namespace, name)
            if entry is not None and (not uid or entry.record.uid == uid):
                return entry
        return None

    def pods(self, *, include_deleted: bool = False) -> list[CachedPod]:
        return [p for p in self._pods.values() if include_deleted or p.deleted_at is None]

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        return self._ns_labels.get(namespace, {})

    def pod_meta(self, entry: CachedPod) -> PodMeta:
        """The entry as `PodMeta` for `encode_meta`, built once per version."""
        meta = entry._meta
        if meta is None:
            r = entry.record
            meta = entry._meta = PodMeta(
                name=r.name,
                namespace=r.namespace,
                uid=r.uid,
                ip=r.ip,
                node=r.node,
                labels=r.labels,
                annotations=r.annotations,
                namespace_labels=self._ns_labels.get(r.namespace, {}),
                owners=r.owners,
                containers={
                    n: ContainerMeta(image=c.image, container_id=c.container_id)
                    for n, c in r.containers.items()
                },
            )
        return meta

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback` on every pod change; returns the function that unsubscribes.

        Callbacks run synchronously in the reflector's task: keep them short (set a flag,
        put on a queue). An exception in a callback is logged and does not stop others.
        """
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    # -- updates from the reflectors -----------------------------------------------------

    def _next_version(self) -> int:
        self.version += 1
        self.dirty = True
        return self.version

    def _notify(self, change: PodChange) -> None:
        for cb in list(self._subscribers):
            try:
                cb(change)
            except Exception:
                log.exception("a pod change subscriber failed")

    def upsert(self, pod: Pod) -> None:
        """An ADDED or MODIFIED pod."""
        self.put(pod_record_from(pod))

    def put(self, record: PodRecord) -> None:
        if not record.uid:
            return
        entry = self._pods.get(record.uid)
        key = (record.namespace, record.name)
        if entry is not None and entry.record == record and entry.deleted_at is None:
            self._by_name[key] = record.uid
            return
        kind: Literal["added", "modified"] = "added" if entry is None else "modified"
        entry = self._pods[record.uid] = CachedPod(record=record, version=self._next_version())
        self._by_name[key] = record.uid
        self._notify(PodChange(kind, record, entry.version))

    def delete(self, pod: Pod) -> None:
        """A DELETED pod: keep it for `grace_period` seconds."""
        uid = pod.metadata.uid
        entry = self._pods.get(uid)
        if entry is None:
            record = pod_record_from(pod)
            if not record.uid:
                return
            entry = self._pods[uid] = CachedPod(record=record, version=self._next_version())
            self._by_name.setdefault((record.namespace, record.name), uid)
        self._mark_deleted(entry)

    def _mark_deleted(self, entry: CachedPod) -> None:
        if entry.deleted_at is not None:
            return
        entry.deleted_at = self._clock()
        self.version += 1
        self.dirty = True
        self._notify(PodChange("deleted", entry.record, entry.version))

    def replace(self, pods: Iterable[Pod]) -> None:
        """The result of a LIST: upsert each pod, and mark pods that are gone as deleted
        (they were deleted while no watch was running)."""
        seen: set[str] = set()
        for pod in pods:
            seen.add(pod.metadata.uid)
            self.upsert(pod)
        for uid, entry in list(self._pods.items()):
            if uid not in seen and entry.deleted_at is None:
                self._mark_deleted(entry)

    def upsert_namespace(self, ns: Namespace) -> None:
        name = ns.metadata.name
        labels = ns.metadata.labels or {}
        if self._ns_labels.get(name) == labels and name in self._ns_labels:
            return
        self._ns_labels[name] = labels
        self._namespace_changed(name)

    def delete_namespace(self, ns: Namespace) -> None:
        # Pods of a deleted namespace are deleted too; keep the labels as long as they are.
        pass

    def replace_namespaces(self, namespaces: Iterable[Namespace]) -> None:
        seen: set[str] = set()
        for ns in namespaces:
            seen.add(ns.metadata.name)
            self.upsert_namespace(ns)
        live = {e.record.namespace for e in self._pods.values()}
        for name in list(self._ns_labels):
            if name not in seen and name not in live:
                del self._ns_labels[name]
                self.dirty = True

    def _namespace_changed(self, namespace: str) -> None:
        self.dirty = True
        for entry in self._pods.values():
            if entry.record.namespace == namespace:
                entry.version = self._next_version()
                entry._meta = None
                if entry.deleted_at is None:
                    self._notify(PodChange("modified", entry.record, entry.version))

    def expire(self, now: float | None = None) -> int:
        """Forget pods deleted more than `grace_period` ago; returns how many."""
        now = self._clock() if now is None else now
        limit = now - self.grace_period
        gone = [
            uid
            for uid, e in self._pods.items()
            if e.deleted_at is not None and e.deleted_at < limit
        ]
        for uid in gone:
            entry = self._pods.pop(uid)
            key = (entry.record.namespace, entry.record.name)
            if self._by_name.get(key) == uid:
                del self._by_name[key]
                for other_uid, other in self._pods.items():
                    if (other.record.namespace, other.record.name) == key:
                        self._by_name[key] = other_uid
        if gone:
            self.dirty = True
            self.version += 1
        return len(gone)

    # -- persistence ---------------------------------------------------------------------

    def dumps(self) -> bytes:
        snap = _Snapshot(
            format=_CACHE_FORMAT,
            saved_at=self._clock(),
            pods=[_SavedPod(e.record, e.deleted_at) for e in self._pods.values()],
            namespaces=self._ns_labels,
        )
        return msgspec.json.encode(snap)

    def loads(self, data: bytes) -> int:
        """Restore a `dumps()` snapshot (expired pods skipped); returns pods restored."""
        snap = msgspec.json.decode(data, type=_Snapshot)
        if snap.format != _CACHE_FORMAT:
            raise ValueError(f"unknown pod cache format {snap.format}")
        limit = self._clock() - self.grace_period
        self._ns_labels.update(snap.namespaces)
        restored = 0
        for saved in snap.pods:
            r = saved.record
            if saved.deleted_at is not None and saved.deleted_at < limit:
                continue
            if r.uid in self._pods:
                continue
            self._pods[r.uid] = CachedPod(
                record=r, version=self._next_version(), deleted_at=saved.deleted_at
            )
            key = (r.namespace, r.name)
            if saved.deleted_at is None or key not in self._by_name:
                self._by_name[key] = r.uid
            restored += 1
        self.dirty = False
        return restored

    def save(self, path: Path) -> None:
        """Write the cache to `path` atomically (temp file in the same dir, fsync, rename).

        Error handling: raises OSError; the caller logs it and keeps the old file.
        """
        self.expire()
        data = self.dumps()
        write_atomically(path, data)
        self.dirty = False

    def load(self, path: Path) -> int:
        """Restore from `path` if it exists; a missing file restores nothing.

        Error handling: a corrupt or unreadable file logs one warning and is ignored (the
        API server refills the cache); never raises.
        """
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.warning("cannot read the pod metadata cache %s: %s", path, exc.strerror)
            return 0
        try:
            return self.loads(data)
        except (msgspec.DecodeError, ValueError) as exc:
            log.warning("ignoring the corrupt pod metadata cache %s: %s", path, exc)
            return 0


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
