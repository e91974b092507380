"""Realistic documents for store tests: generated lines -> batches -> ECS documents.

Everything the local sink would hand to the store, built through the real encoders
(`encode_meta`, `encode_documents`) so the store is tested on the documents it will hold.
JSON application lines get their fields parsed beside the message (``level``, ``http``,
``user_id``) to give range and field queries something to work on.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from kubelogs.codecs.document import Schema, encode_documents
from kubelogs.kubernetes.document_meta import ContainerMeta, PodMeta, encode_meta
from kubelogs.pipeline.event import Batch, FileContext, make_id_prefix
from kubelogs.sinks.local import labels_from_meta, layout_for
from kubelogs.store import StoreReader, WriteGroup
from kubelogs.testing.generate import container_lines, plan_containers


@dataclass
class Dataset:
    batches: list[Batch]
    groups: list[WriteGroup]
    docs: list[bytes]
    """Every document, in write order, as `encode_documents` makes it: what the store
    must give back."""

    def docs_of(self, groups: list[WriteGroup]) -> list[bytes]:
        """The documents of some of `groups` (encoded from their batches)."""
        batch_of = {id(g): b for g, b in zip(self.groups, self.batches, strict=True)}
        return [d for g in groups for d in encode_documents(batch_of[id(g)])]


def make_batches(
    *, seed: int = 3, containers: int = 4, lines: int = 2000, per_batch: int = 250
) -> list[Batch]:
    plan = plan_containers(random.Random(seed), containers, 0)
    out: list[Batch] = []
    for c in plan:
        path = f"/var/log/pods/{c.namespace}_{c.pod}_{c.pod_uid}/{c.name}/0.log"
        pod_meta = PodMeta(
            name=c.pod,
            namespace=c.namespace,
            uid=c.pod_uid,
            node="node-1",
            labels={"app": c.app, "app.kubernetes.io/name": c.app},
            containers={c.name: ContainerMeta(image=f"example/{c.app}:1")},
        )
        ecs, fluentd = encode_meta(
            namespace=c.namespace,
            pod=c.pod,
            pod_uid=c.pod_uid,
            container=c.name,
            container_id=c.container_id,
            node="node-1",
            pod_meta=pod_meta,
        )
        ctx = FileContext(
            source_id="test",
            path=path,
            file_key=f"1:{c.container_id[:12]}:fp",
            id_prefix=make_id_prefix("node-1", path),
            node="node-1",
            namespace=c.namespace,
            pod=c.pod,
            pod_uid=c.pod_uid,
            container=c.name,
            container_id=c.container_id,
            meta_ecs=ecs,
            meta_fluentd=fluentd,
        )
        records = [ln for ln in container_lines(seed, c, lines) if ln.final]
        offset = 0
        for i in range(0, len(records), per_batch):
            chunk = records[i : i + per_batch]
            offsets = []
            fields: dict[int, dict[str, object]] = {}
            for row, ln in enumerate(chunk):
                offsets.append(offset)
                offset += len(ln.message) + 40
                if ln.message.startswith('{"level"'):
                    parsed = json.loads(ln.message)
                    if "http" in parsed:
                        fields[row] = {
                            k: parsed[k] for k in ("level", "http", "user_id") if k in parsed
                        }
            out.append(
                Batch(
                    ctx,
                    [ln.time_ns for ln in chunk],
                    [ln.message for ln in chunk],
                    [ln.stream for ln in chunk],
                    offsets,
                    fields=fields or None,
                    end_offset=offset,
                )
            )
    out.sort(key=lambda b: b.times[0])
    return out


def groups_of(batches: list[Batch], schema: Schema = "ecs") -> list[WriteGroup]:
    """Events groups, as the local sink builds them."""
    layout = layout_for(schema)
    groups = []
    for b in batches:
        meta = b.ctx.meta_fluentd if schema == "fluentd" else b.ctx.meta_ecs
        groups.append(
            WriteGroup(
                b.ctx.file_key,
                b.offsets,
                b.times,
                labels=labels_from_meta(meta, layout),
                streams=b.streams,
                messages=b.messages,
                path=b.ctx.path,
                meta=meta,
                flags=b.flags,
                fields=b.fields,
            )
        )
    return groups


def make_dataset(**kwargs: int) -> Dataset:
    batches = make_batches(**kwargs)
    return Dataset(batches, groups_of(batches), [d for b in batches for d in encode_documents(b)])


def counting_reads(reader: StoreReader) -> list[int]:
    """Record the id of every block `reader` decodes from now on, in the returned list:
    what the pruning tests count (a query must read only the blocks that can match)."""
    reads: list[int] = []
    original = reader._read_block

    def read(ref: Any, text: Any) -> Any:
        reads.append(ref.id)
        return original(ref, text)

    reader._read_block = read  # type: ignore[method-assign]
    return reads
