"""Batch -> JSON documents (DESIGN.md section 5), by splicing pre-encoded bytes.

Pure: no I/O. Everything is done column by column in C: the messages, offsets and
timestamps of a batch are each encoded with one `encode_lines` call, and the documents
are spliced from those pieces and the per-file parts (`log.file.path`, the Kubernetes
metadata, encoded once per batch) with a single ``b"".join`` over a ``zip`` - no Python
code runs per document. Rows with flags or parsed fields get their own tail piece.
Two field layouts: ``ecs`` (Filebeat-style, the default) and ``fluentd``
(fluent-plugin-kubernetes_metadata_filter names, for existing dashboards).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import chain, repeat
from typing import Any, Literal

import msgspec

from kubelogs.codecs.timestamps import format_timestamp
from kubelogs.pipeline.event import Batch

Schema = Literal["ecs", "fluentd"]

__all__ = [
    "Schema",
    "encode_documents",
    "encode_ndjson",
    "format_timestamp",
    "render_file_fields",
    "render_ndjson",
]

_encoder = msgspec.json.Encoder()
_json_encode = _encoder.encode
_encode_lines = _encoder.encode_lines

_RESERVED = frozenset(
    {"@timestamp", "message", "stream", "log", "kubernetes", "host", "docker", "time"}
)
_STREAM_PART = {"stdout": b',"stream":"stdout"', "stderr": b',"stream":"stderr"', "": b""}


_LOG_OWN = frozenset({"file", "offset", "flags"})
"""Members of the ECS ``log`` object that kubelogs writes itself."""


def _members(fields: Mapping[str, Any], ecs: bool) -> tuple[bytes, bytes]:
    """Encode parsed fields as JSON object members (no braces), for splicing: the
    members that go inside the document's ``log`` object, and the top-level ones.

    Parsed ``log.*`` members (``log.level`` from a parser) belong with kubelogs' own
    ``log`` object: inside it in ECS documents (a member named like one of kubelogs'
    own, ``file``/``offset``/``flags``, becomes ``<name>_parsed``); in fluentd
    documents, where ``log`` is the message, as top-level ``log_<name>``
    (``log_level``). Any other parsed key that collides with a field kubelogs writes
    itself is renamed ``<key>_parsed`` rather than written twice (Elasticsearch rejects
    duplicate keys)."""
    log_part = b""
    log = fields.get("log")
    if isinstance(log, dict):
        fields = {k: v for k, v in fields.items() if k != "log"}
        if ecs:
            if not _LOG_OWN.isdisjoint(log):
                log = {(f"{k}_parsed" if k in _LOG_OWN else k): v for k, v in log.items()}
            if log:
                log_part = b"," + _json_encode(log)[1:-1]
        else:
            flat = {f"log_{k}": v for k, v in log.items()}
            fields = {**{k: v for k, v in fields.items() if k not in flat}, **flat}
    if not _RESERVED.isdisjoint(fields):
        fields = {(f"{k}_parsed" if k in _RESERVED else k): v for k, v in fields.items()}
    top = b"," + _json_encode(fields)[1:-1] if fields else b""
    return log_part, top


def _column(values: Sequence[Any]) -> list[bytes]:
    """Each value JSON-encoded, in one C call (messages cannot contain a raw newline)."""
    return _encode_lines(values).split(b"\n")


def _stream_parts(streams: Sequence[str]) -> list[bytes]:
    get = _STREAM_PART.get
    parts = list(map(get, streams))
    if None in parts:
        parts = [
            p if p is not None else b',"stream":' + _json_encode(s)
            for p, s in zip(parts, streams, strict=True)
        ]
    return parts  # type: ignore[return-value]


def _tails(
    n: int,
    flags: Mapping[int, Sequence[str]] | None,
    fields: Mapping[int, Mapping[str, Any]] | None,
    tail: Callable[[bytes, bytes], bytes],
    ecs: bool,
) -> list[bytes] | repeat[bytes]:
    """The end of each of `n` documents: ``tail(log_members, fields_members)``, with
    both empty for every row but the sparse few that have flags or parsed fields.
    `log_members` go inside the ``log`` object (ECS; flags and parsed ``log.*``
    members), or after the metadata (fluentd: flags only)."""
    plain = tail(b"", b"")
    if not (flags or fields):
        return repeat(plain, n)
    flags = flags or {}
    fields = fields or {}
    tails = [plain] * n
    for i in set(flags) | set(fields):
        f = b',"flags":' + _json_encode(list(flags[i])) if i in flags else b""
        parsed = fields.get(i)
        if parsed:
            log_part, m = _members(parsed, ecs)
            tails[i] = tail(f + log_part, m)
        else:
            tails[i] = tail(f, b"")
    return tails


def encode_ndjson(batch: Batch, schema: Schema = "ecs") -> bytes:
    """The batch as newline-delimited JSON, one document per line."""
    ctx = batch.ctx
    return render_ndjson(
        schema,
        path=ctx.path,
        meta=ctx.meta_fluentd if schema == "fluentd" else ctx.meta_ecs,
        times=batch.times,
        tstrs=batch.tstrs,
        messages=batch.messages,
        streams=batch.streams,
        offsets=batch.offsets,
        flags=batch.flags,
        fields=batch.fields,
    )


def render_file_fields(schema: Schema, *, path: str, meta: bytes) -> bytes:
    """A document of only the fields every event of a file shares (``log.file.path`` in
    ECS, the Kubernetes metadata): what a query on those fields needs to see, rendered
    once for many events."""
    members = [b'"log":{"file":{"path":' + _json_encode(path) + b"}}"] if schema == "ecs" else []
    if meta:
        members.append(meta)
    return b"{" + b",".join(members) + b"}"


def render_ndjson(
    schema: Schema,
    *,
    path: str,
    meta: bytes,
    times: Sequence[int],
    tstrs: Sequence[bytes] | None,
    messages: Sequence[str],
    streams: Sequence[str],
    offsets: Sequence[int],
    flags: Mapping[int, Sequence[str]] | None = None,
    fields: Mapping[int, Mapping[str, Any]] | None = None,
) -> bytes:
    """Documents from event columns and their file's constant parts: what
    `encode_ndjson` does for a batch, and what the local store does to give back the
    documents it keeps as columns (`store.block`), so both produce the same bytes.

    `meta` is the schema's pre-encoded metadata members (`FileContext.meta_ecs` or
    `meta_fluentd`); `tstrs`, when given, are the timestamps exactly as the runtime
    wrote them, else they are formatted from `times` (nanosecond precision)."""
    if not messages:
        return b""
    pieces = _pieces(
        schema, path, meta, times, tstrs, messages, streams, offsets, flags, fields, None, b"\n"
    )
    return b"".join(chain.from_iterable(pieces))


def _pieces(
    schema: Schema,
    path: str,
    meta: bytes,
    times: Sequence[int],
    tstrs: Sequence[bytes] | None,
    messages: Sequence[str],
    streams: Sequence[str],
    offsets: Sequence[int],
    flags: Mapping[int, Sequence[str]] | None,
    fields: Mapping[int, Mapping[str, Any]] | None,
    heads: Sequence[bytes] | None,
    end: bytes,
) -> Iterator[tuple[bytes, ...]]:
    """The pieces of each document, one tuple per row, in order: joined, a row's tuple
    is its document followed by `end`. `heads`, when given, replaces the piece between
    the timestamp and the message of each row (``","message":`` in ECS, ``","log":``
    in fluentd) - how `encode_documents` adds ``event.id`` without another pass."""
    n = len(messages)
    ts: Sequence[bytes] | None = tstrs
    if ts is None or len(ts) != n:
        ts = [format_timestamp(t).encode() for t in times]
    msgs = map(_json_encode, messages)
    stream_parts = _stream_parts(streams)
    meta_part = b"," + meta if meta else b""
    if schema == "ecs":
        # `flags` and parsed `log.*` members go inside the `log` object, before the metadata.
        tails = _tails(n, flags, fields, lambda f, m: f + b"}" + meta_part + m + b"}" + end, True)
        path_part = b',"log":{"file":{"path":' + _json_encode(path) + b'},"offset":'
        offs = _column(offsets)
        return zip(
            repeat(b'{"@timestamp":"', n),
            ts,
            heads if heads is not None else repeat(b'","message":', n),
            msgs,
            stream_parts,
            repeat(path_part, n),
            offs,
            tails,
            strict=False,  # the encoded columns end with one empty element; n rows count
        )
    tails = _tails(n, flags, fields, lambda f, m: meta_part + f + m + b"}" + end, False)
    return zip(
        repeat(b'{"@timestamp":"', n),
        ts,
        heads if heads is not None else repeat(b'","log":', n),
        msgs,
        stream_parts,
        repeat(b',"time":"', n),
        ts,
        repeat(b'"', n),
        tails,
        strict=False,
    )


def encode_documents(
    batch: Batch, schema: Schema = "ecs", *, event_ids: bool = False
) -> list[bytes]:
    """One JSON document (bytes, no newline) per event of `batch`.

    Each document is joined from its pieces on its own (`map` over the rows, in C): one
    copy of its bytes, where joining the batch and splitting it again made two (~0.4 us
    a document less on ~700-byte documents).

    `event_ids` adds ECS ``event.id`` (``<id_prefix>-<hex offset>``, `Batch.event_id`)
    to every document, as `codecs.records.batch_to_records` does: what a receiver needs
    to keep the event's identity (the `kafka` sink's records). A parsed field named
    ``event`` that is an object gets the ``id`` member; one that is not moves to
    ``event_parsed``."""
    n = len(batch)
    if n == 0:
        return []
    ctx = batch.ctx
    fields: Mapping[int, Mapping[str, Any]] | None = batch.fields
    heads = None
    if event_ids:
        heads, fields = _event_id_heads(batch, schema)
    pieces = _pieces(
        schema,
        ctx.path,
        ctx.meta_fluentd if schema == "fluentd" else ctx.meta_ecs,
        batch.times,
        batch.tstrs,
        batch.messages,
        batch.streams,
        batch.offsets,
        batch.flags,
        fields,
        heads,
        b"",
    )
    return list(map(b"".join, pieces))


def _event_id_heads(
    batch: Batch, schema: Schema
) -> tuple[list[bytes], Mapping[int, Mapping[str, Any]] | None]:
    """The piece before each row's message with its ``"event":{"id":...}`` member,
    formatted for the whole batch by one ``%`` (C, no Python per row), and the batch's
    parsed fields with any ``event`` field of theirs adjusted (see `encode_documents`)."""
    after = b'","message":' if schema == "ecs" else b'","log":'
    prefix = _json_encode(batch.ctx.id_prefix + "-")[1:-1].replace(b"%", b"%%")
    template = b'","event":{"id":"' + prefix + b'%x"}' + after[1:] + b"\n"
    n = len(batch)
    heads = (template * n % tuple(batch.offsets)).split(b"\n")
    fields = batch.fields
    if fields and any("event" in f for f in fields.values()):
        fields = dict(fields)
        for row, f in fields.items():
            if "event" not in f:
                continue
            ev = f["event"]
            rest = {k: v for k, v in f.items() if k != "event"}
            if isinstance(ev, dict):
                # the parsed `event` object is the document's: it carries the id
                fields[row] = {**rest, "event": {**ev, "id": batch.event_id(row)}}
                heads[row] = after
            else:
                fields[row] = rest if ev is None else {**rest, "event_parsed": ev}
    return heads, fields
