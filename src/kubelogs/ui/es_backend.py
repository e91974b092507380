"""What the explorer asks of Elasticsearch/OpenSearch (`kubelogs ui --es URL`): the same
calls as `ui.backend.StoreBackend`, answered by the cluster.

The query is compiled as for ``kubelogs search --es`` (`search_es._query`); pages are
in time order, hits of one nanosecond ordered by the file and offset of their ``_id``
(`Key`; the cursor is the last hit's key, see `EsBackend.search`);
aggregations are those of ``search --es --histogram/--top``
(`cli.search_es_agg.es_aggregate`); the context of a line is the same query on
``log.file.path`` and ``log.offset``; the live tail asks for documents at or after the
newest time it has sent, skipping ``_id``s it sent at that time (as ``--follow``).
Plain blocking ``urllib`` in worker threads, as the CLI.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from kubelogs.store.query import And, Match, Node, Range
from kubelogs.ui.backend import CONTEXT_LINES, FLUENTD_NAMES, PAGE, TOP_FIELDS, _text
from kubelogs.ui.timerange import TimeRange, shift_to_data

_encode = msgspec.json.Encoder().encode
_GROUP = 1000


def _sort(order: str) -> list[dict[str, Any]]:
    """By time, then by file and offset: a total order for kubelogs documents (a line is
    one offset of one file), so `search_after` pages neither skip nor repeat. Not
    ``_id``: Elasticsearch 8 refuses to sort on it by default."""
    return [
        {"@timestamp": {"order": order}},
        {"log.file.path": {"order": order, "unmapped_type": "keyword"}},
        {"log.offset": {"order": order, "unmapped_type": "long"}},
    ]


Key = tuple[int, str, int, str]
"""The explorer's order of documents: time, then the file and the offset that the sink's
``_id`` (``<prefix>-<hex offset>``, `split_event_id`) carries, then the index. Both
schemas have it (fluentd documents have no ``log.offset``), and it is total for
kubelogs documents (a line is one offset of one file)."""


def _key(hit: Any) -> Key:
    from kubelogs.cli.search_es import _hit_time
    from kubelogs.codecs.records import split_event_id

    doc_id = str(hit.get("_id", ""))
    prefix, offset = split_event_id(doc_id) or (doc_id, -1)
    return _hit_time(hit), prefix, offset, str(hit.get("_index", ""))


def _flat(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"pod": {"name": x}}`` -> ``{"pod.name": x}``."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class EsCursor:
    """The `Key` of the last hit of a page, as text for the page."""

    @staticmethod
    def text(key: Key) -> str:
        return msgspec.json.encode(list(key)).decode()

    @staticmethod
    def parse(text: str) -> Key:
        try:
            value = msgspec.json.decode(text)
        except msgspec.DecodeError:
            value = None
        types = (int, str, int, str)
        if (
            not isinstance(value, list)
            or len(value) != len(types)
            or not all(type(v) is t for v, t in zip(value, types, strict=True))
        ):
            raise ValueError(f"before={text!r}: not a cursor this server gave")
        return value[0], value[1], value[2], value[3]


class EsBackend:
    kind = "es"

    def __init__(self, url: str, index: str | None) -> None:
        from kubelogs.cli.search_es import DEFAULT_INDEX, EsSearchError, _Client

        try:
            self.client = _Client(url)
        except EsSearchError as exc:
            raise ValueError(str(exc)) from None
        self.index = index or DEFAULT_INDEX
        self.where = f"{self.client.base} ({self.index})"
        self._schema: str | None = None

    @property
    def schema(self) -> str:
        """``fluentd`` when every index of the pattern maps ``log`` as the message text
        (the sink's ``schema: fluentd``), else ``ecs``. Asked of the cluster's mappings
        once there are indices (until then, and when it cannot answer: ``ecs``)."""
        from kubelogs.cli.search_es import _OPTS, EsSearchError

        if self._schema is not None:
            return self._schema
        try:
            found = self.client.call("GET", f"/{self.index}/_mapping?{_OPTS}")
        except EsSearchError:
            return "ecs"
        kinds = set()
        for mapping in (found or {}).values():
            props = (mapping.get("mappings") or {}).get("properties") or {}
            log = props.get("log") or {}
            kinds.add("fluentd" if "message" not in props and log.get("type") == "text" else "ecs")
        if kinds:
            self._schema = "fluentd" if kinds == {"fluentd"} else "ecs"
        return self._schema or "ecs"

    @property
    def message_field(self) -> str:
        return "log" if self.schema == "fluentd" else "message"

    @staticmethod
    def parse_cursor(text: str) -> Key:
        return EsCursor.parse(text)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "where": self.where, "message_field": self.message_field}

    def default_fields(self) -> list[str]:
        if self.schema == "fluentd":
            return [FLUENTD_NAMES.get(f, f) for f in TOP_FIELDS]
        return list(TOP_FIELDS)

    def _query(self, node: Node, lo: int | None, hi: int | None) -> dict[str, Any]:
        from kubelogs.cli.search_es import _query

        return _query(node, lo, hi, self.message_field)

    def _search(self, body: dict[str, Any]) -> Any:
        from kubelogs.cli.search_es import _OPTS

        return self.client.call("POST", f"/{self.index}/_search?{_OPTS}", body)

    def _newest(self) -> int | None:
        from kubelogs.cli.search_es_agg import _time_of

        res = self._search({"size": 0, "aggs": {"hi": {"max": {"field": "@timestamp"}}}})
        return _time_of(res.get("aggregations", {}).get("hi"))

    def resolve(self, r: TimeRange) -> TimeRange:
        return shift_to_data(r, self._newest()) if r.relative_ns is not None else r

    def _rows(self, hits: list[Any]) -> list[dict[str, Any]]:
        from kubelogs.cli.search_es import _hit_time

        return [
            {"t": str(_hit_time(h)), "id": h.get("_id", ""), "doc": h.get("_source", {})}
            for h in hits
        ]

    def _all_at(self, node: Node, t: int) -> list[Any]:
        """Every match at exactly `t`: one search, scrolled only when a nanosecond holds
        more than `_GROUP` matches (the scroll costs two more requests)."""
        from kubelogs.cli.search_es import _all

        query = self._query(node, t, t)
        hits: list[Any] = self._search({"query": query, "size": _GROUP})["hits"]["hits"]
        if len(hits) < _GROUP:
            return hits
        return list(_all(self.client, self.index, query))

    def search(self, node: Node, r: TimeRange, before: Key | None, limit: int = PAGE) -> bytes:
        """A page of hits newest first in `Key` order, and the cursor of the next.

        The cluster sorts by time alone; the order of hits that share a nanosecond is
        made here, with the whole group of that nanosecond in hand: a page that ends
        inside a group is completed from all of the group's matches, and the next page
        starts with the rest of that group (those below the cursor) before asking for
        older times. So every match comes once however many share a time, for either
        schema, and no sort on ``_id`` is needed (Elasticsearch 8 refuses it)."""
        hits: list[Any] = []
        hi = r.hi
        if before is not None:
            t = before[0]
            hits = [h for h in self._all_at(node, t) if _key(h) < before]
            hi = t - 1 if hi is None else min(hi, t - 1)
        if len(hits) <= limit and (r.lo is None or hi is None or r.lo <= hi):
            size = limit + 1 - len(hits)
            older = self._search(
                {
                    "query": self._query(node, r.lo, hi),
                    "size": size,
                    "sort": [{"@timestamp": {"order": "desc"}}],
                }
            )["hits"]["hits"]
            if before is not None:  # a field mapped in ms rounds the bound: keep ours
                older = [h for h in older if _key(h) < before]
            if len(older) >= size:
                # The last time may have more matches than came: take all of them.
                last = _key(older[-1])[0]
                older = [h for h in older if _key(h)[0] != last] + self._all_at(node, last)
            hits += older
        hits.sort(key=_key, reverse=True)
        page = hits[:limit]
        more = len(hits) > limit
        return _encode(
            {
                "hits": self._rows(page),
                "next": EsCursor.text(_key(page[-1])) if page and more else None,
                "range": r.to_json(),
                "position": time.time_ns(),
            }
        )

    def aggregate(self, node: Node, r: TimeRange, fields: list[str], size: int) -> dict[str, Any]:
        from kubelogs.cli.search_es_agg import es_aggregate

        hi = r.hi if r.hi is not None or r.relative_ns is None else time.time_ns()
        total, start, step, counts, top = es_aggregate(
            self.client,
            self.index,
            self._query(node, r.lo, r.hi),
            (r.lo, hi),
            histogram=True,
            fields=fields,
            size=size,
        )
        return {
            "total": total,
            "start": str(start),
            "step": str(step),
            "counts": counts,
            "top": top,
            "unknown_fields": [],
            "newest": _text(self._newest()),
            "oldest": None,
        }

    def context(
        self, path: str | None, offset: int | None, time_ns: int, hit_id: str | None
    ) -> bytes:
        """The lines around one: by file and offset when the line has them (ECS), else
        by its container (`_container_context`, the fluentd schema)."""
        if path is None or offset is None:
            if not hit_id:
                raise ValueError("context needs path and offset, or the line's id")
            return self._container_context(hit_id, time_ns)
        same_file = Match("log.file.path", path, phrase=True)
        before = And((same_file, Range("log.offset", "<", str(offset))))
        after = And((same_file, Range("log.offset", ">", str(offset))))
        older = self._search(
            {
                "query": self._query(before, None, time_ns),
                "size": CONTEXT_LINES,
                "sort": [{"log.offset": {"order": "desc"}}],
            }
        )["hits"]["hits"]
        current = self._search(
            {
                "query": self._query(
                    And((same_file, Match("log.offset", str(offset)))), None, None
                ),
                "size": 1,
            }
        )["hits"]["hits"]
        newer = self._search(
            {
                "query": self._query(after, time_ns, None),
                "size": CONTEXT_LINES,
                "sort": [{"log.offset": {"order": "asc"}}],
            }
        )["hits"]["hits"]
        return self._lines([*reversed(older), *current, *newer], current)

    def _lines(self, hits: list[Any], current: list[Any]) -> bytes:
        rows = self._rows(hits)
        for row, hit in zip(rows, hits, strict=True):
            row["current"] = hit in current
        return _encode({"lines": rows})

    def _container_context(self, hit_id: str, time_ns: int) -> bytes:
        """The `CONTEXT_LINES` lines before and after line `hit_id` among those of its
        container (namespace, pod and container name: fluentd documents have no file
        path or offset), in `Key` order: by time, and within one nanosecond by the
        file and offset of the ``_id``."""
        found = self._search({"query": {"ids": {"values": [hit_id]}}, "size": 10})["hits"]["hits"]
        hit = next((h for h in found if _key(h)[0] == time_ns), None)
        if hit is None:
            raise ValueError(f"no line with id {hit_id!r} at that time (deleted since?)")
        k8s = (hit.get("_source") or {}).get("kubernetes") or {}
        names = ("namespace_name", "pod_name", "container_name")
        if not all(isinstance(k8s.get(n), str) and k8s.get(n) for n in names):
            names = ("namespace", "pod.name", "container.name")  # an ECS line without a file
            k8s = _flat(k8s)
            if not all(isinstance(k8s.get(n), str) and k8s.get(n) for n in names):
                raise ValueError(
                    "show context needs the line's log.file.path and log.offset, or its "
                    "kubernetes namespace, pod and container names: this line has neither"
                )
        same = And(tuple(Match(f"kubernetes.{n}", str(k8s[n]), phrase=True) for n in names))
        at = self._all_at(same, time_ns)
        older = self._search(
            {
                "query": self._query(same, None, time_ns - 1),
                "size": CONTEXT_LINES,
                "sort": [{"@timestamp": {"order": "desc"}}],
            }
        )["hits"]["hits"]
        newer = self._search(
            {
                "query": self._query(same, time_ns + 1, None),
                "size": CONTEXT_LINES,
                "sort": [{"@timestamp": {"order": "asc"}}],
            }
        )["hits"]["hits"]
        lines = sorted([*older, *at, *newer], key=_key)
        me = _key(hit)
        k = next(i for i, h in enumerate(lines) if _key(h) == me)
        shown = lines[max(0, k - CONTEXT_LINES) : k + CONTEXT_LINES + 1]
        return self._lines(shown, [lines[k]])

    def tail_start(self) -> int:
        return time.time_ns()

    def tail_poll(self, node: Node, r: TimeRange, position: int) -> tuple[bytes | None, int]:
        """Documents at or after `position` (a time in ns), oldest first; the next
        position is just after the newest sent (a line stored later with exactly that
        nanosecond is missed: the stream is a view, the search is the record)."""
        lo = max(position, r.lo or 0)
        res = self._search(
            {
                "query": self._query(node, lo, r.hi),
                "size": 1000,
                "sort": _sort("asc"),
            }
        )
        hits = res.get("hits", {}).get("hits", [])
        if not hits:
            return None, position
        rows = self._rows(hits)
        return _encode(rows), max(int(row["t"]) for row in rows) + 1
