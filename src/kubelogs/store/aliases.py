"""Short field names of the query language: ``level`` for the normalised level.

Parsers write a recognised level, normalised (``E``, ``ERR``, ``Error`` -> ``error``),
into ``log.level`` (ECS documents) or ``log_level`` (fluentd documents, where ``log``
is the message) and keep the application's own field as it was. ``level:error`` is
what users type, so a query's ``level`` means "the normalised level, or a top-level
``level`` field" - the second for documents nobody parsed here (a record received
from another agent that already has a ``level``). Resolved once, on the query tree,
before any backend plans or compiles it, so the local store and Elasticsearch agree.
"""

from __future__ import annotations

from dataclasses import replace

from kubelogs.store.query import And, Exists, Match, MatchAll, Node, Not, Or, Range

__all__ = ["FIELD_ALIASES", "resolve_aliases"]

FIELD_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "ecs": {"level": ("log.level", "level")},
    "fluentd": {"level": ("log_level", "level")},
}
"""Per schema: a query field -> the document fields it stands for (any may match)."""


def resolve_aliases(node: Node, schema: str) -> Node:
    """`node` with aliased fields replaced by an ``or`` of the fields they stand for
    (``not`` of an alias is true only when none matches)."""
    aliases = FIELD_ALIASES.get(schema, {})
    if not aliases:
        return node
    return _resolve(node, aliases)


def _resolve(node: Node, aliases: dict[str, tuple[str, ...]]) -> Node:
    if isinstance(node, And):
        return And(tuple(_resolve(n, aliases) for n in node.items))
    if isinstance(node, Or):
        return Or(tuple(_resolve(n, aliases) for n in node.items))
    if isinstance(node, Not):
        return Not(_resolve(node.item, aliases))
    if isinstance(node, MatchAll):
        return node
    if isinstance(node, Match | Exists | Range) and node.field in aliases:
        fields = aliases[node.field]
        options: list[Node] = [replace(node, field=f) for f in fields]
        return options[0] if len(options) == 1 else Or(tuple(options))
    return node
