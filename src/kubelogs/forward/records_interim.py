"""Stand-in for `kubelogs.codecs.records` until it lands on main (same interface).

TEMPORARY: replaced by the shared codec on merge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from kubelogs.codecs.document import encode_documents
from kubelogs.pipeline.event import Batch, FileContext, make_id_prefix

_decode = msgspec.json.Decoder().decode


def batch_to_records(batch: Batch, schema: str = "ecs") -> list[dict[str, Any]]:
    docs = [_decode(d) for d in encode_documents(batch, "ecs")]
    for i, d in enumerate(docs):
        d["event"] = {"id": batch.event_id(i)}
    return docs


def split_event_id(text: str) -> tuple[str, int] | None:
    prefix, sep, off = text.rpartition("-")
    if not sep:
        return None
    try:
        return prefix, int(off, 16)
    except ValueError:
        return None


class RecordDecoder:
    def __init__(self, source_id: str, node: str) -> None:
        self.source_id = source_id
        self.node = node
        self._counters: dict[str, int] = {}

    def decode(
        self, records: Sequence[tuple[int | None, Mapping[str, Any]]], origin: str
    ) -> list[Batch]:
        groups: dict[str, Batch] = {}
        for t, rec in records:
            rec = dict(rec)
            ev = rec.pop("event", None)
            ident = split_event_id(ev["id"]) if isinstance(ev, dict) and "id" in ev else None
            msg = rec.pop("message", None)
            if msg is None:
                msg = rec.pop("log", None)
            if msg is None:
                msg = rec.pop("msg", "")
            if ident is not None:
                prefix, offset = ident
                key = f"fwd:{prefix}"
                path = str(rec.pop("log", {}).get("file", {}).get("path", ""))
                rec.pop("@timestamp", None)
                stream = str(rec.pop("stream", ""))
                rec.pop("kubernetes", None)
                rec.pop("host", None)
            else:
                n = self._counters.get(origin, 0)
                self._counters[origin] = n + 1
                prefix, offset, key, path, stream = (
                    make_id_prefix(self.node, origin),
                    n,
                    "",
                    "",
                    "",
                )
            b = groups.get(prefix)
            if b is None:
                ctx = FileContext(self.source_id, path, key, prefix, node=self.node)
                b = groups[prefix] = Batch(ctx, [], [], [], [], fields={})
            row = len(b.messages)
            b.times.append(t or 0)
            b.messages.append(msg if isinstance(msg, str) else str(msg))
            b.streams.append(stream)
            b.offsets.append(offset)
            if rec:
                assert b.fields is not None
                b.fields[row] = rec
        for b in groups.values():
            b.fields = b.fields or None
            b.end_offset = b.offsets[-1] + 1 if b.offsets else 0
        return list(groups.values())
