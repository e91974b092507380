"""The subset of the Pod, Namespace, List, Status and watch-event objects kubelogs reads.

Why typed msgspec structs instead of dicts: a node runs up to ~110 pods, and a pod object
from the API is 5-50 KiB of JSON (managed fields, last-applied configuration, probes,
env). Decoding only the fields we use keeps the idle agent small (PERFORMANCE.md: idle
<= 40 MiB) and decoding fast; unknown fields are skipped by the decoder without building
Python objects for them.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec


class OwnerReference(msgspec.Struct, omit_defaults=True):
    kind: str = ""
    name: str = ""
    controller: bool = False


class ObjectMeta(msgspec.Struct, omit_defaults=True):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    resourceVersion: str = ""
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    ownerReferences: list[OwnerReference] | None = None
    deletionTimestamp: str | None = None


class VolumeMount(msgspec.Struct, omit_defaults=True):
    name: str
    mountPath: str
    subPath: str = ""
    subPathExpr: str = ""
    readOnly: bool = False


class Container(msgspec.Struct, omit_defaults=True):
    name: str
    image: str = ""
    volumeMounts: list[VolumeMount] | None = None


class PodSpec(msgspec.Struct, omit_defaults=True):
    nodeName: str = ""
    containers: list[Container] | None = None
    initContainers: list[Container] | None = None
    ephemeralContainers: list[Container] | None = None
    volumes: list[dict[str, Any]] | None = None
    """Kept as dicts: a volume is ``{"name": ..., "<type>": {...}}`` with dozens of
    possible types, and we need the type's name even for the ones we cannot read."""


class ContainerStatus(msgspec.Struct, omit_defaults=True):
    name: str
    containerID: str = ""
    image: str = ""


class PodStatus(msgspec.Struct, omit_defaults=True):
    podIP: str = ""
    phase: str = ""
    containerStatuses: list[ContainerStatus] | None = None
    initContainerStatuses: list[ContainerStatus] | None = None
    ephemeralContainerStatuses: list[ContainerStatus] | None = None


class Pod(msgspec.Struct, omit_defaults=True):
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: PodSpec = msgspec.field(default_factory=PodSpec)
    status: PodStatus = msgspec.field(default_factory=PodStatus)


class Namespace(msgspec.Struct, omit_defaults=True):
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)


class Status(msgspec.Struct, omit_defaults=True):
    """The API's error object (``kind: Status``), in HTTP error bodies and ERROR events."""

    kind: str = ""
    status: str = ""
    message: str = ""
    reason: str = ""
    code: int = 0


class ListMeta(msgspec.Struct, omit_defaults=True):
    resourceVersion: str = ""
    continue_: str = msgspec.field(default="", name="continue")
    remainingItemCount: int | None = None


T = TypeVar("T", Pod, Namespace)


class ObjectList(msgspec.Struct, Generic[T]):
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[T] | None = None


class RawWatchEvent(msgspec.Struct):
    """One line of a watch stream; `object` is decoded once its `type` is known."""

    type: str
    object: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


class WatchEvent(msgspec.Struct, Generic[T]):
    """A decoded watch event: `obj` for ADDED/MODIFIED/DELETED, `status` for ERROR;
    BOOKMARK carries only `resource_version`."""

    type: str
    resource_version: str
    obj: T | None = None
    status: Status | None = None
