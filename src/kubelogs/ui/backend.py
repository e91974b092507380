"""What the explorer asks of the local store: pages of hits newest first, aggregations,
the lines around a hit, and new matches for the live tail.

Every call opens its own `StoreReader` (read-only SQLite connection and segment
descriptors, closed at the end): calls run in worker threads of the server
(`ui.server`), and a reader must not be shared between threads. Opening costs a
fraction of a millisecond next to any search.

Aggregations run in the calling thread (`store.aggregate.aggregate`), not forked per CPU
as ``kubelogs search`` does: forking a process that has threads is unsafe.

Documents go to the page as the stored JSON bytes, embedded without re-encoding
(`msgspec.Raw`); the page renders every value as text (`ui/static/app.js`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from kubelogs.store.query import And, Match, MatchAll, Node, Range
from kubelogs.ui.timerange import TimeRange, shift_to_data

PAGE = 200
"""Hits per page of results (the page asks for the next page as it is scrolled)."""
CONTEXT_LINES = 50
TOP_FIELDS = (
    "kubernetes.namespace",
    "kubernetes.pod.name",
    "kubernetes.container.name",
    "stream",
    "level",
)
"""Fields whose top values the sidebar shows without being asked (ECS names; the
fluentd schema's are mapped in `StoreBackend.default_fields`)."""
FLUENTD_NAMES = {
    "kubernetes.namespace": "kubernetes.namespace_name",
    "kubernetes.pod.name": "kubernetes.pod_name",
    "kubernetes.container.name": "kubernetes.container_name",
}
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page of newest-first hits ended: the next page is strictly older."""

    time_ns: int
    block: int
    row: int

    def text(self) -> str:
        return f"{self.time_ns}.{self.block}.{self.row}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        parts = text.split(".")
        if len(parts) != 3 or not all(p.lstrip("-").isdigit() for p in parts):
            raise ValueError(f"before={text!r}: not a cursor this server gave")
        return cls(int(parts[0]), int(parts[1]), int(parts[2]))


def _text(ns: int | None) -> str | None:
    """Nanoseconds as text: JSON numbers above 2**53 lose digits in a browser."""
    return None if ns is None else str(ns)


def _same_container(doc: Any, schema: str) -> Node:
    """A query for the lines of `doc`'s container, or a `ValueError` saying it has none."""
    names = ["kubernetes.namespace", "kubernetes.pod.name", "kubernetes.container.name"]
    if schema == "fluentd":
        names = [FLUENTD_NAMES[n] for n in names]
    values = [_get(doc, n) for n in names]
    if not all(isinstance(v, str) and v for v in values):
        raise ValueError(
            "show context needs the line's log.file.path and log.offset, or its "
            "kubernetes namespace, pod and container names: this line has neither"
        )
    return And(tuple(Match(n, str(v), phrase=True) for n, v in zip(names, values, strict=True)))


def _get(doc: Any, path: str) -> Any:
    for part in path.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


class StoreBackend:
    """The explorer's view of one store directory (read-only)."""

    kind = "store"

    def __init__(self, path: Path) -> None:
        from kubelogs.store.reader import StoreReader

        self.path = path
        with StoreReader(path) as reader:  # fails now (no store, other format), not later
            self.layout = reader.layout

    def _reader(self) -> Any:
        from kubelogs.store.reader import StoreReader

        return StoreReader(self.path)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "where": str(self.path), "message_field": self.message_field}

    @staticmethod
    def parse_cursor(text: str) -> Cursor:
        return Cursor.parse(text)

    @property
    def message_field(self) -> str:
        return self.layout.message_field

    def default_fields(self) -> list[str]:
        if self.layout.schema == "fluentd":
            return [FLUENTD_NAMES.get(f, f) for f in TOP_FIELDS]
        return list(TOP_FIELDS)

    def resolve(self, r: TimeRange) -> TimeRange:
        """`r`, moved to the newest data when it is a recent range without any."""
        with self._reader() as reader:
            return shift_to_data(r, reader.stats().max_time)

    def search(self, node: Node, r: TimeRange, before: Cursor | None, limit: int = PAGE) -> bytes:
        """A page of hits newest first, as the JSON body of the answer. The cursor is
        the (time, block, row) of the last hit shown, a total order of the store's
        events: the next page starts just after it however many hits share its time."""
        with self._reader() as reader:
            position = reader.last_block()  # where the live tail starts
            q = reader.prepare(node, since_ns=r.lo, until_ns=r.hi)
            q.until_block = position
            key = None if before is None else (before.time_ns, before.block, before.row)
            found = reader.search(q, limit=limit + 1, before=key)  # one more: is there more?
        hits = list(reversed(found))
        page = hits[:limit]
        more = len(hits) > limit
        body = {
            "hits": [
                {"t": str(h.time_ns), "id": f"{h.block}.{h.row}", "doc": msgspec.Raw(h.doc)}
                for h in page
            ],
            "next": Cursor(page[-1].time_ns, page[-1].block, page[-1].row).text()
            if page and more
            else None,
            "range": r.to_json(),
            "position": position,
        }
        return _encode(body)

    def aggregate(self, node: Node, r: TimeRange, fields: list[str], size: int) -> dict[str, Any]:
        """Total, histogram and the top values of `fields` over `r`."""
        from kubelogs.cli.search_agg import histogram_span
        from kubelogs.store.aggregate import Aggregation, Buckets, aggregate

        with self._reader() as reader:
            q = reader.prepare(node, since_ns=r.lo, until_ns=r.hi)
            q.until_block = reader.last_block()
            stats = reader.stats()
            span = histogram_span(q.lo, q.hi, stats.min_time, stats.max_time, time.time_ns())
            if span is None:  # an empty store
                result, buckets = Aggregation(), Buckets(0, 0, 0)
            else:
                buckets = Buckets.for_range(*span)
                result = aggregate(reader, q, buckets=buckets, fields=fields)
            unknown = [name for name, _ in reader.unknown_fields(q)]
        return {
            "total": result.total,
            "start": str(buckets.start),
            "step": str(buckets.step),
            "counts": result.counts,
            "top": {f: result.top_values(f, size) for f in fields},
            "unknown_fields": unknown,
            "newest": _text(stats.max_time),
            "oldest": _text(stats.min_time),
        }

    def context(
        self, path: str | None, offset: int | None, time_ns: int, hit_id: str | None = None
    ) -> bytes:
        """The `CONTEXT_LINES` lines before and after the line at `offset` of the file
        at `path` (by offset; the time bounds the search to that file's generation);
        without them (the fluentd schema keeps no file or offset in its documents), the
        lines around hit `hit_id` in its container (`_container_context`)."""
        if self.layout.schema != "ecs" or path is None or offset is None:
            if hit_id is None:
                raise ValueError("context needs the line's path and offset, or its id")
            return self._container_context(hit_id, time_ns)
        same_file = Match("log.file.path", path, phrase=True)
        before: Node = And((same_file, Range("log.offset", "<", str(offset))))
        after: Node = And((same_file, Range("log.offset", ">", str(offset))))
        with self._reader() as reader:
            older = reader.search(reader.prepare(before, until_ns=time_ns), limit=CONTEXT_LINES)
            newer = []
            for hit in reader.iter_matches(reader.prepare(after, since_ns=time_ns)):
                newer.append(hit)
                if len(newer) >= CONTEXT_LINES:
                    break
            current = reader.search(
                reader.prepare(
                    And((same_file, Match("log.offset", str(offset)))),
                    since_ns=time_ns,
                    until_ns=time_ns,
                ),
                limit=1,
            )
        rows = [
            {
                "t": str(h.time_ns),
                "id": f"{h.block}.{h.row}",
                "doc": msgspec.Raw(h.doc),
                "current": h in current,
            }
            for h in [*older, *current, *newer]
        ]
        return _encode({"lines": rows})

    def _container_context(self, hit_id: str, time_ns: int) -> bytes:
        """The lines before and after hit `hit_id` (``block.row``) at `time_ns` among
        those of its container (namespace, pod and container name), in the store's
        order (time, block, row)."""
        block, _, row = hit_id.partition(".")
        if not (block.isdigit() and row.isdigit()):
            raise ValueError(f"id={hit_id!r}: not a line id this server gave")
        key = (time_ns, int(block), int(row))
        with self._reader() as reader:
            at = reader.search(
                reader.prepare(MatchAll(), since_ns=time_ns, until_ns=time_ns), limit=0
            )
            hit = next((h for h in at if (h.time_ns, h.block, h.row) == key), None)
            if hit is None:
                raise ValueError(f"no line {hit_id} at that time (removed by retention?)")
            same = _same_container(msgspec.json.decode(hit.doc), self.layout.schema)
            older = reader.search(
                reader.prepare(same, until_ns=time_ns), limit=CONTEXT_LINES, before=key
            )
            newer = []
            for h in reader.iter_matches(reader.prepare(same, since_ns=time_ns)):
                if (h.time_ns, h.block, h.row) > key:
                    newer.append(h)
                    if len(newer) >= CONTEXT_LINES:
                        break
        rows = [
            {
                "t": str(h.time_ns),
                "id": f"{h.block}.{h.row}",
                "doc": msgspec.Raw(h.doc),
                "current": h is hit,
            }
            for h in [*older, hit, *newer]
        ]
        return _encode({"lines": rows})

    def tail_start(self) -> int:
        with self._reader() as reader:
            return int(reader.last_block())

    def tail_poll(self, node: Node, r: TimeRange, position: int) -> tuple[bytes | None, int]:
        """New matches committed after `position` (oldest first), as a JSON list, and
        the new position."""
        with self._reader() as reader:
            q = reader.prepare(node, since_ns=r.lo, until_ns=r.hi)
            hits, position = reader.poll(q, position)
        if not hits:
            return None, position
        rows = [
            {"t": str(h.time_ns), "id": f"{h.block}.{h.row}", "doc": msgspec.Raw(h.doc)}
            for h in hits
        ]
        return _encode(rows), position
