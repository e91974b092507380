"""Batches <-> JSON-like records: the one shape every network hop agrees on.

A kubelogs pipeline sends its events to another kubelogs (forward protocol, Kafka, HTTP)
and receives events from foreign senders (fluent-logger, Fluent Bit, curl). Both sides
meet here:

- `batch_to_records` renders the documents of DESIGN.md section 5 as dicts and adds
  ECS ``event.id`` (``<id_prefix>-<hex offset>``, `Batch.event_id`).
- `RecordDecoder.decode` turns received records back into batches. A record that carries
  a kubelogs ``event.id`` keeps its identity: the batch's ``ctx.id_prefix`` and
  ``offsets`` come from the id and ``ctx.file_key`` is derived from the prefix, so the
  receiving local store drops a resend by its per-file high-water mark and
  Elasticsearch keeps the sender's ``_id`` - exactly once end to end. Foreign records
  get ``file_key=""`` (the store keeps each one: at-least-once, as Fluentd promises)
  and ids unique per origin.

**Order matters for exactly-once**: the local store drops events at or below a file's
high-water mark, so the events of one origin file must reach a store in offset order. A
sender must not let a later batch of a file be stored before an earlier one it is still
retrying (one connection/partition per file at a time, unacknowledged batches resent in
their original order before anything newer). Within one decoded batch rows are sorted by
offset.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Mapping, Sequence
from itertools import islice
from typing import Any

import msgspec

from kubelogs.codecs.document import Schema, encode_documents
from kubelogs.codecs.timestamps import parse_rfc3339_ns
from kubelogs.kubernetes.document_meta import ContainerMeta, PodMeta, encode_meta
from kubelogs.pipeline.event import Batch, FileContext, make_id_prefix

__all__ = [
    "KubelogsDocument",
    "RecordDecoder",
    "batch_to_records",
    "decode_kubelogs_document",
    "file_key_for_prefix",
    "split_event_id",
]

_decode = msgspec.json.Decoder().decode
_MESSAGE_KEYS = ("message", "log", "msg")
_OWNER_KINDS = ("deployment", "replicaset", "statefulset", "daemonset", "job", "cronjob")
REMOTE_KEY_PREFIX = "remote:"


def batch_to_records(batch: Batch, schema: Schema = "ecs") -> list[dict[str, Any]]:
    """The batch's documents as dicts, each with ``event.id``.

    A parsed field named ``event`` that is not an object moves to ``event_parsed``
    (ECS ``event`` is an object)."""
    out: list[dict[str, Any]] = []
    prefix = batch.ctx.id_prefix
    offsets = batch.offsets
    for i, doc in enumerate(encode_documents(batch, schema)):
        rec: dict[str, Any] = _decode(doc)
        ev = rec.get("event")
        if not isinstance(ev, dict):
            if ev is not None:
                rec["event_parsed"] = ev
            ev = rec["event"] = {}
        ev["id"] = f"{prefix}-{offsets[i]:x}"
        out.append(rec)
    return out


class _DocFile(msgspec.Struct, forbid_unknown_fields=True):
    path: str


class _DocLog(msgspec.Struct, forbid_unknown_fields=True):
    file: _DocFile
    offset: int = 0
    flags: list[str] = []


class _DocEvent(msgspec.Struct, forbid_unknown_fields=True):
    id: str


class KubelogsDocument(
    msgspec.Struct, forbid_unknown_fields=True, rename={"timestamp": "@timestamp"}
):
    """A kubelogs ECS document with its ``event.id`` and nothing else (no parsed
    fields): what the `kafka` sink sends for a plain log line, decoded by msgspec into
    typed fields in C. The metadata stays raw JSON (`msgspec.Raw`): the decoder parses
    it once per distinct value, not once per record. Anything else (parsed fields, the
    fluentd layout, foreign maps) fails to decode and takes the general path."""

    timestamp: str
    message: str
    log: _DocLog
    event: _DocEvent
    stream: str = ""
    host: msgspec.Raw = msgspec.Raw(b"")
    kubernetes: msgspec.Raw = msgspec.Raw(b"")


_decode_document = msgspec.json.Decoder(KubelogsDocument).decode
_SECONDS: dict[str, int] = {}
"""``YYYY-mm-ddTHH:MM:SS`` -> nanoseconds since the epoch, for `KubelogsDocument`
timestamps (bounded: a few per second of log time)."""


def decode_kubelogs_document(value: bytes) -> KubelogsDocument | None:
    """`value` as a `KubelogsDocument`, or None if it is anything else (then decode it
    as a map for `RecordDecoder.decode`). ~1.6 us a record where the map costs ~5 us
    and its conversion to columns ~5 us more (700-byte documents)."""
    try:
        doc = _decode_document(value)
    except msgspec.DecodeError:  # also a ValidationError: another shape
        return None
    if split_event_id(doc.event.id) is None:
        return None
    return doc


def split_event_id(text: object) -> tuple[str, int] | None:
    """``"<prefix>-<hex offset>"`` -> ``(prefix, offset)``; None for anything else."""
    if not isinstance(text, str):
        return None
    prefix, sep, hex_offset = text.rpartition("-")
    if not sep or not prefix or not hex_offset or len(hex_offset) > 16:
        return None
    try:
        offset = int(hex_offset, 16)
    except ValueError:
        return None
    return prefix, offset


def file_key_for_prefix(id_prefix: str) -> str:
    """The `FileContext.file_key` a receiver uses for events of a sender's file: stable
    for the same sender file, distinct from the receiver's own files."""
    return REMOTE_KEY_PREFIX + id_prefix


def _str(v: object) -> str:
    return v if isinstance(v, str) else ""


def _str_map(v: object) -> dict[str, str]:
    if not isinstance(v, dict):
        return {}
    return {str(k): str(x) for k, x in v.items() if isinstance(x, str | int | float | bool)}


def _dig(obj: object, *path: str) -> object:
    for part in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


class _Origin:
    """Where a group of records came from: one sender file, or one foreign stream."""

    __slots__ = (
        "ctx",
        "fields",
        "flags",
        "messages",
        "offsets",
        "streams",
        "times",
    )

    def __init__(self, ctx: FileContext) -> None:
        self.ctx = ctx
        self.times: list[int] = []
        self.messages: list[str] = []
        self.streams: list[str] = []
        self.offsets: list[int] = []
        self.flags: dict[int, tuple[str, ...]] = {}
        self.fields: dict[int, dict[str, Any]] = {}

    def batch(self) -> Batch:
        offsets = self.offsets
        order = None
        if any(map(operator.ge, offsets, islice(offsets, 1, None))):  # C, not per row
            # Out of order, or the same event twice: a resend that arrived in the same
            # read as the original (a Kafka poll holds both after the sender restarted).
            # The store drops resends by a high-water mark *between* writes, so within a
            # batch every offset must be new: keep the first copy of each.
            seen: set[int] = set()
            order = []
            for i in sorted(range(len(offsets)), key=offsets.__getitem__):
                if offsets[i] not in seen:
                    seen.add(offsets[i])
                    order.append(i)
        b = Batch(
            ctx=self.ctx,
            times=self.times,
            messages=self.messages,
            streams=self.streams,
            offsets=offsets,
            flags=self.flags or None,
            fields=self.fields or None,
            end_offset=max(offsets) + 1 if offsets else 0,
        )
        if order is not None:
            b = _reorder(b, order)
        return b


def _reorder(b: Batch, order: list[int]) -> Batch:
    flags = {new: b.flags[old] for new, old in enumerate(order) if b.flags and old in b.flags}
    fields = {new: b.fields[old] for new, old in enumerate(order) if b.fields and old in b.fields}
    return b.derive(
        times=[b.times[i] for i in order],
        messages=[b.messages[i] for i in order],
        streams=[b.streams[i] for i in order],
        offsets=[b.offsets[i] for i in order],
        flags=flags or None,
        fields=fields or None,
    )


class RecordDecoder:
    """Received records -> batches, one per origin file (kubelogs senders) or origin
    stream (foreign senders). Not thread-safe; one per source."""

    def __init__(self, source_id: str, node: str) -> None:
        self.source_id = source_id
        self.node = node
        self._contexts: dict[tuple[str, str, bytes], FileContext] = {}
        self._last_offset = 0
        self._infos: dict[bytes, _Info] = {}
        self._doc_infos: dict[tuple[bytes, bytes], tuple[_Info, dict[str, Any]]] = {}
        """`KubelogsDocument` metadata (raw ``kubernetes``, raw ``host``) -> its parsed
        form and what of it stays a field (a ``host`` with more than a name)."""
        self._last_doc_meta: (
            tuple[msgspec.Raw, msgspec.Raw, tuple[_Info, dict[str, Any]]] | None
        ) = None

    def _next_offset(self) -> int:
        """A foreign record's offset: unique and increasing within this process and
        across restarts (wall clock in nanoseconds, never repeating)."""
        now = time.time_ns()
        self._last_offset = now if now > self._last_offset else self._last_offset + 1
        return self._last_offset

    def decode(
        self,
        records: Sequence[tuple[int | None, Mapping[str, Any] | KubelogsDocument]],
        origin: str,
    ) -> list[Batch]:
        """Batches of `records` (each ``(time_ns or None, record)``) in arrival order of
        their first record. `origin` names the foreign stream (a forward tag, an HTTP
        path, a Kafka topic) for records without a kubelogs ``event.id``. A record may
        be a `KubelogsDocument` (`decode_kubelogs_document`): the same event as its
        map, taken without the map's per-record work."""
        groups: dict[tuple[str, str, bytes], _Origin] = {}
        for t, rec in records:
            if type(rec) is KubelogsDocument:
                self._add_document(groups, t, rec)
            else:
                self._add(groups, t, rec, origin)  # type: ignore[arg-type]
        return [g.batch() for g in groups.values()]

    def _add_document(
        self,
        groups: dict[tuple[str, str, bytes], _Origin],
        t: int | None,
        doc: KubelogsDocument,
    ) -> None:
        """`_add` for a `KubelogsDocument`: the same event, fields taken by attribute."""
        ident = split_event_id(doc.event.id)
        assert ident is not None  # checked by decode_kubelogs_document
        id_prefix, offset = ident
        log_obj = doc.log
        path = log_obj.file.path
        last = self._last_doc_meta
        if last is not None and doc.kubernetes == last[0] and doc.host == last[1]:
            known = last[2]  # the same file as the record before: compared, not hashed
        else:
            meta_key = (bytes(doc.kubernetes), bytes(doc.host))
            found = self._doc_infos.get(meta_key)
            if found is None:
                rec: dict[str, Any] = {}
                if meta_key[0]:
                    rec["kubernetes"] = _decode(meta_key[0])
                if meta_key[1]:
                    rec["host"] = _decode(meta_key[1])
                found = (_context_info(rec, self._infos), rec)
                if len(self._doc_infos) >= 4096:
                    self._doc_infos.clear()
                self._doc_infos[meta_key] = found
            known = found
            self._last_doc_meta = (doc.kubernetes, doc.host, known)
        ctx_info, rest = known
        ts = doc.timestamp
        ns: int | None
        frac = ts[20:29]
        if len(ts) == 30 and ts[29] == "Z" and ts[19] == "." and frac.isdigit():
            # the sink's own form: the second is looked up, not parsed again
            sec = _SECONDS.get(ts[:19])
            if sec is not None:
                ns = sec + int(frac)
            else:
                ns = parse_rfc3339_ns(ts.encode("ascii", "replace"))
                if ns is not None and len(_SECONDS) < 65536:
                    _SECONDS[ts[:19]] = ns - int(frac)
        else:
            ns = parse_rfc3339_ns(ts.encode("ascii", "replace"))
        if ns is None:
            ns = t if t is not None else time.time_ns()
        gkey = (id_prefix, path, ctx_info[-1])
        group = groups.get(gkey)
        if group is None:
            ctx = self._contexts.get(gkey)
            if ctx is None:
                ctx = self._context(True, id_prefix, path, "", ctx_info)
                if len(self._contexts) >= 4096:
                    self._contexts.clear()
                self._contexts[gkey] = ctx
            group = groups[gkey] = _Origin(ctx)
        row = len(group.messages)
        group.times.append(ns)
        group.messages.append(doc.message)
        group.streams.append(doc.stream)
        group.offsets.append(offset)
        if log_obj.flags:
            group.flags[row] = tuple(log_obj.flags)
        if rest:
            group.fields[row] = dict(rest)

    def _add(
        self,
        groups: dict[tuple[str, str, bytes], _Origin],
        t: int | None,
        record: Mapping[str, Any],
        origin: str,
    ) -> None:
        rec = dict(record)
        ident = split_event_id(_dig(rec, "event", "id"))
        if ident is not None:
            ev = rec.get("event")
            assert isinstance(ev, dict)
            ev = {k: v for k, v in ev.items() if k != "id"}
            if ev:
                rec["event"] = ev
            else:
                del rec["event"]
        log_obj = rec.get("log")
        fluentd_shape = isinstance(log_obj, str) and "message" not in rec
        message: object = None
        if fluentd_shape:
            message = rec.pop("log")
            log_obj = None
            rec.pop("time", None)
        else:
            for key in _MESSAGE_KEYS:
                if isinstance(rec.get(key), str):
                    message = rec.pop(key)
                    break
        if not isinstance(message, str):
            message = "" if message is None else str(message)
        path = ""
        flags: tuple[str, ...] = ()
        if isinstance(log_obj, dict):
            rec.pop("log")
            log_rest = dict(log_obj)
            path = _str(_dig(log_rest.pop("file", None), "path"))
            log_rest.pop("offset", None)  # the event id carries it
            raw_flags = log_rest.pop("flags", None)
            if isinstance(raw_flags, list):
                flags = tuple(str(f) for f in raw_flags)
            if log_rest:
                rec["log"] = log_rest
        top_flags = rec.get("flags")
        if fluentd_shape and isinstance(top_flags, list):
            rec.pop("flags")
            flags = tuple(str(f) for f in top_flags)
        stream = _str(rec.pop("stream", None))
        ts = rec.pop("@timestamp", None)
        ns: int | None = None
        if isinstance(ts, str):
            ns = parse_rfc3339_ns(ts.encode("ascii", "replace"))
        if ns is None:
            ns = t if t is not None else time.time_ns()

        ctx_info = _context_info(rec, self._infos)
        if ident is not None:
            id_prefix, offset = ident
            gkey = (id_prefix, path, ctx_info[-1])
        else:
            id_prefix = ""
            offset = self._next_offset()
            gkey = ("", origin, ctx_info[-1])
        group = groups.get(gkey)
        if group is None:
            ctx = self._contexts.get(gkey)
            if ctx is None:
                ctx = self._context(ident is not None, id_prefix, path, origin, ctx_info)
                if len(self._contexts) >= 4096:
                    self._contexts.clear()
                self._contexts[gkey] = ctx
            group = groups[gkey] = _Origin(ctx)
        row = len(group.messages)
        group.times.append(ns)
        group.messages.append(message)
        group.streams.append(stream)
        group.offsets.append(offset)
        if flags:
            group.flags[row] = flags
        if rec:
            group.fields[row] = rec

    def _context(
        self,
        own: bool,
        id_prefix: str,
        path: str,
        origin: str,
        info: _Info,
    ) -> FileContext:
        namespace, pod, uid, container, cid, node, pod_meta, _ = info
        if own:
            file_key = file_key_for_prefix(id_prefix)
        else:
            file_key = ""
            id_prefix = make_id_prefix(self.node, f"{self.source_id}\x00{origin}")
        ecs, fluentd = (b"", b"")
        if namespace or pod or node:
            ecs, fluentd = encode_meta(
                namespace=namespace,
                pod=pod,
                pod_uid=uid,
                container=container,
                container_id=cid,
                node=node,
                pod_meta=pod_meta,
                include_annotations=bool(pod_meta and pod_meta.annotations),
            )
        return FileContext(
            source_id=self.source_id,
            path=path,
            file_key=file_key,
            id_prefix=id_prefix,
            node=node,
            namespace=namespace,
            pod=pod,
            pod_uid=uid,
            container=container,
            container_id=cid,
            meta_ecs=ecs,
            meta_fluentd=fluentd,
        )


_Info = tuple[str, str, str, str, str, str, PodMeta | None, bytes]
_encode = msgspec.json.encode


def _context_info(rec: dict[str, Any], cache: dict[bytes, _Info]) -> _Info:
    """Kubernetes metadata of a record (ECS or fluentd field names), removed from it:
    ``(namespace, pod, uid, container, container_id, node, pod_meta, group_key)``.

    Parsed once per distinct metadata (`cache`, keyed by its JSON): the records of one
    sender file all carry the same object, and building it anew cost ~15 us a record."""
    k8s = rec.get("kubernetes")
    host = rec.get("host")
    if not isinstance(k8s, dict):
        if isinstance(host, dict) and set(host) == {"name"} and isinstance(host["name"], str):
            del rec["host"]
            node = host["name"]
            return "", "", "", "", "", node, None, node.encode()
        return "", "", "", "", "", "", None, b""
    del rec["kubernetes"]
    if isinstance(host, dict) and set(host) <= {"name"}:
        rec.pop("host", None)
    fluentd = "namespace_name" in k8s or "pod_name" in k8s
    docker = rec.pop("docker", None) if fluentd and isinstance(rec.get("docker"), dict) else None
    group_key = _encode(k8s) if docker is None else _encode([k8s, docker])
    info = cache.get(group_key)
    if info is None:
        info = _parse_meta(k8s, docker, fluentd, group_key)
        if len(cache) >= 4096:
            cache.clear()
        cache[group_key] = info
    return info


def _parse_meta(k8s: dict[str, Any], docker: object, fluentd: bool, group_key: bytes) -> _Info:
    if fluentd:
        namespace = _str(k8s.get("namespace_name"))
        pod = _str(k8s.get("pod_name"))
        uid = _str(k8s.get("pod_id"))
        container = _str(k8s.get("container_name"))
        node = _str(k8s.get("host"))
        cid = _str(_dig(docker, "container_id"))
        ip = _str(k8s.get("pod_ip"))
        image = _str(k8s.get("container_image"))
        owners: dict[str, str] = {}
    else:
        namespace = _str(k8s.get("namespace"))
        pod = _str(_dig(k8s, "pod", "name"))
        uid = _str(_dig(k8s, "pod", "uid"))
        ip = _str(_dig(k8s, "pod", "ip"))
        container = _str(_dig(k8s, "container", "name"))
        cid = _str(_dig(k8s, "container", "id"))
        image = _str(_dig(k8s, "container", "image"))
        node = _str(_dig(k8s, "node", "name")) or _str(k8s.get("host"))
        owners = {kind: _str(_dig(k8s, kind, "name")) for kind in _OWNER_KINDS if kind in k8s}
        owners = {k: v for k, v in owners.items() if v}
    if not namespace and not pod:
        return "", "", "", "", "", node, None, group_key
    pod_meta = PodMeta(
        name=pod,
        namespace=namespace,
        uid=uid,
        ip=ip,
        node=node,
        labels=_str_map(k8s.get("labels")),
        annotations=_str_map(k8s.get("annotations")),
        namespace_labels=_str_map(k8s.get("namespace_labels")),
        owners=owners,
        containers={container: ContainerMeta(image=image, container_id=cid)} if container else {},
    )
    return namespace, pod, uid, container, cid, node, pod_meta, group_key
