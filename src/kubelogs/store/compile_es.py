"""The query language compiled to Elasticsearch/OpenSearch query DSL.

`kubelogs search --es URL` (and the explorer) send the same queries to a cluster as to the
local store. The mapping follows what Kibana does for KQL, so results agree with the
dashboards users already have:

- phrases in the message field -> ``match_phrase`` (quoted, or a value of several
  words, like ``10.0.0.1``);
- with ``store_words=True`` (``kubelogs search --es``), one word (or a wildcard within
  one word) in the message -> a ``regexp`` on its terms that finds it as a whole word
  also inside a token the standard analyzer did not split (``com.example.orders.Handler``,
  ``can't``): the local store's words are ``\\w+`` runs, and ``match``/``wildcard``
  missed those (found by the same-answers test on real nodes); a term scan, slower
  than ``match`` on a large index, hence opt-in;
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

from kubelogs.store.aliases import resolve_aliases
from kubelogs.store.matcher import WORD_RE, parse_number
from kubelogs.store.query import And, Exists, MatchAll, Node, Not, Or, Range

_RANGE_OPS = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}
_IN_TOKEN = ".'’:,"
"""Characters the standard analyzer keeps inside one token (``com.example.orders``,
``can't``, ``1,000``) that end a word for the local store (``\\w+`` words)."""
_SEP = "[" + _IN_TOKEN + "]"
_NOT_SEP = "[^" + _IN_TOKEN + "]"
_REGEXP_RESERVED = set('.?+*|{}[]()"\\#@&<>~')


def _regexp_literal(text: str) -> str:
    return "".join("\\" + c if c in _REGEXP_RESERVED else c for c in text)


def _word_in_token(field: str, value: str) -> dict[str, Any]:
    """A message word or wildcard with the local store's meaning (a whole ``\\w+`` word,
    ``*`` within the word) over the analyzer's tokens, which may hold several words
    joined by dots or apostrophes: a ``regexp`` on the lower-cased terms."""
    body = _NOT_SEP + "*"
    word = body.join(_regexp_literal(part) for part in value.lower().split("*"))
    return {"regexp": {field: {"value": f"(.*{_SEP})?{word}({_SEP}.*)?"}}}


def compile_es(
    node: Node, *, message_field: str = "message", store_words: bool = False
) -> dict[str, Any]:
    """The ``query`` part of a search request for `node`; `store_words`: words of the
    message as the local store finds them (see the module docstring). Field aliases
    (``level``, `store.aliases`) are resolved for the schema whose message field is
    `message_field` (``log``: fluentd)."""
    schema = "fluentd" if message_field == "log" else "ecs"
    return _compile(resolve_aliases(node, schema), message_field, store_words)


def _compile(node: Node, message_field: str, store_words: bool) -> dict[str, Any]:
    if isinstance(node, MatchAll):
        return {"match_all": {}}
    if isinstance(node, And):
        return {"bool": {"filter": [_compile(n, message_field, store_words) for n in node.items]}}
    if isinstance(node, Or):
        return {
            "bool": {
                "should": [_compile(n, message_field, store_words) for n in node.items],
                "minimum_should_match": 1,
            }
        }
    if isinstance(node, Not):
        return {"bool": {"must_not": [_compile(node.item, message_field, store_words)]}}
    if isinstance(node, Exists):
        return {"exists": {"field": node.field}}
    if isinstance(node, Range):
        number = parse_number(node.value)
        bound: Any = node.value if number is None else number
        return {"range": {node.field: {_RANGE_OPS[node.op]: bound}}}
    field = node.field or message_field
    words = WORD_RE.findall(node.value)
    if (
        store_words
        and field == message_field
        and not node.phrase
        and (
            (node.wildcard and WORD_RE.fullmatch(node.value.replace("*", "")))
            or (not node.wildcard and words == [node.value])
        )
    ):
        return _word_in_token(field, node.value)
    if node.wildcard:
        if field == message_field:
            return {"wildcard": {field: {"value": node.value.lower(), "case_insensitive": True}}}
        return {"wildcard": {field: {"value": node.value}}}
    if node.phrase or (field == message_field and len(words) > 1):
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
