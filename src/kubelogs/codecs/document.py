"""Batch -> JSON documents (DESIGN.md section 5), by splicing pre-encoded bytes.

Pure: no I/O. The per-file parts (`log.file.path`, the Kubernetes metadata) are encoded
once per batch; per line only the timestamp, message, stream and offset are encoded.
Two field layouts: ``ecs`` (Filebeat-style, the default) and ``fluentd``
(fluent-plugin-kubernetes_metadata_filter names, for existing dashboards).
"""

from __future__ import annotations

import time
from typing import Literal

import msgspec

from kubelogs.pipeline.event import Batch

Schema = Literal["ecs", "fluentd"]

_json_encode = msgspec.json.Encoder().encode
_sec_cache: dict[int, str] = {}


def format_timestamp(ns: int) -> str:
    """RFC 3339 UTC with nanoseconds: ``2021-02-15T10:00:00.123456789Z``."""
    sec, frac = divmod(ns, 1_000_000_000)
    prefix = _sec_cache.get(sec)
    if prefix is None:
        if len(_sec_cache) > 4096:
            _sec_cache.clear()
        prefix = _sec_cache[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{prefix}.{frac:09d}Z"


_RESERVED = frozenset(
    {"@timestamp", "message", "stream", "log", "kubernetes", "host", "docker", "time"}
)


def _members(fields: dict[str, object]) -> bytes:
    """Encode parsed fields as JSON object members (no braces), for splicing.

    A parsed key that collides with a field kubelogs writes itself is renamed
    ``<key>_parsed`` rather than written twice (Elasticsearch rejects duplicate keys)."""
    if not _RESERVED.isdisjoint(fields):
        fields = {(f"{k}_parsed" if k in _RESERVED else k): v for k, v in fields.items()}
    return _json_encode(fields)[1:-1]


def encode_documents(batch: Batch, schema: Schema = "ecs") -> list[bytes]:
    """One JSON document (bytes, no newline) per event of `batch`."""
    ctx = batch.ctx
    flags = batch.flags or {}
    fields = batch.fields or {}
    times, messages, streams, offsets = batch.times, batch.messages, batch.streams, batch.offsets
    out: list[bytes] = []
    append = out.append
    if schema == "ecs":
        path_part = b',"log":{"file":{"path":' + _json_encode(ctx.path) + b'},"offset":'
        meta = b"," + ctx.meta_ecs if ctx.meta_ecs else b""
        for i in range(len(messages)):
            stream = streams[i]
            doc = (
                b'{"@timestamp":"'
                + format_timestamp(times[i]).encode()
                + b'","message":'
                + _json_encode(messages[i])
                + (b',"stream":"' + stream.encode() + b'"' if stream else b"")
                + path_part
                + str(offsets[i]).encode()
            )
            if i in flags:
                doc += b',"flags":' + _json_encode(list(flags[i]))
            doc += b"}" + meta
            if fields.get(i):
                doc += b"," + _members(fields[i])
            append(doc + b"}")
    else:
        meta = b"," + ctx.meta_fluentd if ctx.meta_fluentd else b""
        for i in range(len(messages)):
            stream = streams[i]
            ts = format_timestamp(times[i]).encode()
            doc = (
                b'{"@timestamp":"'
                + ts
                + b'","log":'
                + _json_encode(messages[i])
                + (b',"stream":"' + stream.encode() + b'"' if stream else b"")
                + b',"time":"'
                + ts
                + b'"'
                + meta
            )
            if i in flags:
                doc += b',"flags":' + _json_encode(list(flags[i]))
            if fields.get(i):
                doc += b"," + _members(fields[i])
            append(doc + b"}")
    return out


def encode_ndjson(batch: Batch, schema: Schema = "ecs") -> bytes:
    """The batch as newline-delimited JSON, one document per line."""
    docs = encode_documents(batch, schema)
    if not docs:
        return b""
    return b"\n".join(docs) + b"\n"
