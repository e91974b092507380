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
