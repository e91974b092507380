"""The query language compiled to Elasticsearch/OpenSearch query DSL.

`kubelogs search --es URL` (and the explorer) send the same queries to a cluster as to the
local store. The mapping follows what Kibana does for KQL, so results agree with the
dashboards users already have:

- words and phrases in the message field -> ``match`` (one word) / ``match_phrase``
  (quoted, or a value the analyzer splits into several words, like ``10.0.0.1``);
- ``field:value`` -> ``match`` (exact on ``keyword`` fields, which the ES sink's index
  template uses for the Kubernetes fields), quoted -> ``match_phrase``;
- ``*`` wildcards -> ``wildcard`` (case-insensitive on the message, whose terms are
  lower-cased by the analyzer);
- ``field:*`` -> ``exists``; ``field >= v`` -> ``range`` (numbers as numbers);
- ``and`` -> ``bool.filter`` (no scoring: logs are sorted by time), ``or`` ->
  ``bool.should`` with ``minimum_should_match: 1``, ``not`` -> ``bool.must_not``.

Pure: builds dicts, sends nothing.
"""

from __future__ import annotations

from typing import Any

from kubelogs.store.matcher import WORD_RE, parse_number
from kubelogs.store.query import And, Exists, MatchAll, Node, Not, Or, Range

_RANGE_OPS = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}


def compile_es(node: Node, *, message_field: str = "message") -> dict[str, Any]:
    """The ``query`` part of a search request for `node`."""
    if isinstance(node, MatchAll):
        return {"match_all": {}}
    if isinstance(node, And):
        return {
            "bool": {"filter": [compile_es(n, message_field=message_field) for n in node.items]}
        }
    if isinstance(node, Or):
        return {
            "bool": {
                "should": [compile_es(n, message_field=message_field) for n in node.items],
                "minimum_should_match": 1,
            }
        }
    if isinstance(node, Not):
        return {"bool": {"must_not": [compile_es(node.item, message_field=message_field)]}}
    if isinstance(node, Exists):
        return {"exists": {"field": node.field}}
    if isinstance(node, Range):
        number = parse_number(node.value)
        bound: Any = node.value if number is None else number
        return {"range": {node.field: {_RANGE_OPS[node.op]: bound}}}
    field = node.field or message_field
    if node.wildcard:
        if field == message_field:
            return {"wildcard": {field: {"value": node.value.lower(), "case_insensitive": True}}}
        return {"wildcard": {field: {"value": node.value}}}
    if node.phrase or (field == message_field and len(WORD_RE.findall(node.value)) > 1):
        return {"match_phrase": {field: node.value}}
    return {"match": {field: node.value}}


def search_body(
    node: Node,
    *,
    message_field: str = "message",
    since: str | None = None,
    until: str | None = None,
    size: int = 100,
) -> dict[str, Any]:
    """A complete ``_search`` body: newest first, optionally limited to a time range
    (RFC 3339 strings), as ``kubelogs search`` would send it."""
    query = compile_es(node, message_field=message_field)
    bounds: dict[str, str] = {}
    if since:
        bounds["gte"] = since
    if until:
        bounds["lte"] = until
    if bounds:
        query = {"bool": {"filter": [query, {"range": {"@timestamp": bounds}}]}}
    return {"query": query, "sort": [{"@timestamp": {"order": "desc"}}], "size": size}
