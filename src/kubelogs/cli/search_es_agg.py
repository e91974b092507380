"""``kubelogs search --es URL --histogram / --top FIELD``: the aggregations of the local
store (`store.aggregate`) asked of Elasticsearch or OpenSearch.

One ``_search`` with ``size: 0``: a ``date_histogram`` on ``@timestamp`` with the same
``fixed_interval`` as the local store's buckets (`store.aggregate.Buckets`; both align on
multiples of the interval from the epoch, so the bars are the same) and
``extended_bounds`` so that empty bars at either end are there too, and one ``terms``
per ``--top`` field (`_aggregatable` picks the ``.keyword`` sub-field of a ``text``
field). When the range is open on a side, a first request asks the ``min``/``max`` of
``@timestamp`` over every document (the local store takes the same span from its index,
whatever the query), so the bars of any two queries line up. Shared by the explorer
(`kubelogs ui --es`).
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from typing import Any

from kubelogs.cli.search_es import _OPTS, EsSearchError, _Client


def _time_of(agg: Any) -> int | None:
    """An ``@timestamp`` min/max aggregation's value in nanoseconds."""
    from kubelogs.codecs.timestamps import parse_rfc3339_ns

    if not isinstance(agg, dict) or agg.get("value") is None:
        return None
    text = agg.get("value_as_string")
    if isinstance(text, str):
        ns = parse_rfc3339_ns(text.encode())
        if ns is not None:
            return ns
    return int(float(agg["value"]) * 1_000_000)


def _aggregatable(client: _Client, index: str, fields: list[str]) -> dict[str, str | None]:
    """For each field, the name to aggregate on: itself (keyword, number, date...), its
    ``.keyword`` sub-field when it is mapped as ``text`` (dynamic mappings), or None
    when it is text without one (``message``: no ``terms`` on analysed text; its top
    values are then empty rather than the whole request failing)."""
    from kubelogs.cli.search_es import _OPTS

    if not fields:
        return {}
    names = ",".join(urllib.parse.quote(f, safe="") for f in fields)
    try:
        res = client.call("GET", f"/{index}/_mapping/field/{names}?{_OPTS}")
    except EsSearchError:
        return {f: f for f in fields}  # let the search itself say what is wrong
    out: dict[str, str | None] = {f: f for f in fields}
    for mapping in (res or {}).values():
        for name, found in ((mapping or {}).get("mappings") or {}).items():
            leaf: dict[str, Any] = next(iter((found.get("mapping") or {}).values()), {})
            if name in out and leaf.get("type") == "text":
                keyword = (leaf.get("fields") or {}).get("keyword")
                out[name] = f"{name}.keyword" if keyword else None
    return out


def es_aggregate(
    client: _Client,
    index: str,
    query: dict[str, Any],
    bounds: tuple[int | None, int | None],
    *,
    histogram: bool,
    fields: list[str],
    size: int,
) -> tuple[int, int, int, list[int], dict[str, list[tuple[Any, int]]]]:
    """(total, bucket start, step, counts, top values) of `query` on the cluster."""
    from kubelogs.store.aggregate import Buckets

    path = f"/{index}/_search?{_OPTS}"
    aggs: dict[str, Any] = {}
    buckets = None
    if histogram:
        import time

        from kubelogs.cli.search_agg import histogram_span

        lo, hi = bounds
        data_lo = data_hi = None
        if lo is None or hi is None:
            span = client.call(
                "POST",
                path,
                {  # the span of all the data, as the local store's index gives it
                    "size": 0,
                    "aggs": {
                        "lo": {"min": {"field": "@timestamp"}},
                        "hi": {"max": {"field": "@timestamp"}},
                    },
                },
            ).get("aggregations", {})
            data_lo, data_hi = _time_of(span.get("lo")), _time_of(span.get("hi"))
        covered = histogram_span(lo, hi, data_lo, data_hi, time.time_ns())
        if covered is not None:
            buckets = Buckets.for_range(*covered)
            aggs["histogram"] = {
                "date_histogram": {
                    "field": "@timestamp",
                    "fixed_interval": f"{buckets.step // 1_000_000}ms",
                    "min_doc_count": 0,
                    "extended_bounds": {
                        "min": buckets.start // 1_000_000,
                        "max": (buckets.start + (buckets.count - 1) * buckets.step) // 1_000_000,
                    },
                }
            }
    names = {f"top{k}": f for k, f in enumerate(fields)}
    usable = _aggregatable(client, index, fields)
    for key, f in names.items():
        if usable.get(f) is not None:
            aggs[key] = {"terms": {"field": usable[f], "size": size}}
    body = {"size": 0, "track_total_hits": True, "query": query, "aggs": aggs}
    res = client.call("POST", path, body)
    hits_total = res.get("hits", {}).get("total", 0)
    total = int(hits_total.get("value", 0) if isinstance(hits_total, dict) else hits_total)
    result = res.get("aggregations", {})
    counts: list[int] = []
    start, step = 0, 0
    if buckets is not None:
        start, step = buckets.start, buckets.step
        counts = [0] * buckets.count
        for b in result.get("histogram", {}).get("buckets", []):
            k = buckets.index(int(b["key"]) * 1_000_000)
            if 0 <= k < buckets.count:
                counts[k] += int(b["doc_count"])
    top: dict[str, list[tuple[Any, int]]] = {}
    for key, f in names.items():
        values = [
            (b.get("key_as_string", b["key"]), int(b["doc_count"]))
            for b in result.get(key, {}).get("buckets", [])
        ]
        top[f] = sorted(values, key=lambda kv: (-kv[1], str(kv[0])))
    return total, start, step, counts, top


def run_es_aggregate(
    args: argparse.Namespace,
    client: _Client,
    index: str,
    query: dict[str, Any],
    bounds: tuple[int | None, int | None],
) -> int:
    """``--histogram``/``--top`` against the cluster; prints as the local store does."""
    from kubelogs.cli.search_agg import print_result

    fields = list(dict.fromkeys(args.top or []))
    try:
        total, start, step, counts, top = es_aggregate(
            client, index, query, bounds, histogram=args.histogram, fields=fields, size=args.top_n
        )
    except EsSearchError as exc:
        print(f"kubelogs search: {exc}", file=sys.stderr)
        return 2
    print_result(args, total, start, step, counts, top)
    return 0
