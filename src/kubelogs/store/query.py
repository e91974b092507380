"""The query language's syntax tree: parsed once, compiled per backend.

A query (DESIGN.md section 3, a KQL subset) becomes a small tree of frozen dataclasses.
Backends never see query text: the local store compiles the tree into block pruning
(`store.planner`) and an exact per-document matcher (`store.matcher`); the Elasticsearch
compiler (`store.compile_es`) turns it into query DSL. Keeping the tree tiny and
backend-free is what lets both agree on meaning.

Meaning of the nodes (the same in every backend):

- `Match(field=None, value)` - a bare word or quoted phrase: case-insensitive word or
  phrase match in the message field (``message``, or ``log`` for fluentd documents).
  ``*`` in an unquoted value is a wildcard.
- `Match(field, value)` - on the message field: as above; on any other field: the
  value equals the field's value exactly (numbers compare as numbers, lists match if any
  element does); ``*`` wildcards match the whole value.
- `Exists(field)` - ``field:*``.
- `Range(field, op, value)` - ``field >= value``: numbers as numbers, ``@timestamp`` and
  other RFC 3339 values as times, anything else as strings.
- `And`, `Or`, `Not`, and `MatchAll` (the empty query, or a bare ``*``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

RangeOp = Literal[">", ">=", "<", "<="]


@dataclass(frozen=True, slots=True)
class MatchAll:
    pass


@dataclass(frozen=True, slots=True)
class Match:
    field: str | None
    """None: the message field (a bare word or phrase)."""
    value: str
    phrase: bool = False
    """The value was quoted: no wildcards, matched as a phrase."""

    @property
    def wildcard(self) -> bool:
        return not self.phrase and "*" in self.value


@dataclass(frozen=True, slots=True)
class Exists:
    field: str


@dataclass(frozen=True, slots=True)
class Range:
    field: str
    op: RangeOp
    value: str


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


Node = MatchAll | Match | Exists | Range | And | Or | Not

Residual = Node | bool
"""What is left of a query once some leaves are decided: True, False or a smaller tree."""


def substitute(node: Residual, leaf: Callable[[Node], Residual]) -> Residual:
    """Replace each leaf by what `leaf` decides for it and simplify: a decided item
    settles or drops out of an `And`/`Or`, `Not` of a decided item is decided. The
    store's planner does this per block, the condition transform per file; one function
    keeps them agreeing on what a partly decided query means."""
    if isinstance(node, bool):
        return node
    if isinstance(node, And | Or):
        decisive = isinstance(node, Or)  # True decides an `or`, False an `and`
        kept: list[Node] = []
        for item in node.items:
            r = substitute(item, leaf)
            if r is decisive:
                return decisive
            if not isinstance(r, bool):
                kept.append(r)  # the other boolean changes nothing: dropped
        if not kept:
            return not decisive
        return kept[0] if len(kept) == 1 else type(node)(tuple(kept))
    if isinstance(node, Not):
        r = substitute(node.item, leaf)
        return (not r) if isinstance(r, bool) else Not(r)
    if isinstance(node, MatchAll):
        return True
    return leaf(node)
