"""Compile a query for the local store: which blocks, which runs, which documents.

The store never evaluates a query on data it can rule out from what it already knows.
A query is *partially evaluated* against facts, in three steps of growing cost:

1. **Time** - ``@timestamp`` ranges joined by ``and`` at the top of the query (and
   ``--since``/``--until``) become one interval; the SQL over the block index keeps
   blocks overlapping it.
2. **Labels** - every indexed field (namespace, pod, container, node, stream) has one
   value per run, recorded per label set. Conditions on them become true or false per
   label set; label sets that make the query false are excluded in SQL, so such blocks are
   never read, and a run whose label set makes the query *true* is counted without
   decompressing anything.
3. **Message column** - a word, phrase or wildcard of the message whose needles
   (`store.column.needles`) do not all occur in a block's message column is false for
   every document of that block (`with_column`); this holds anywhere in the query,
   under ``not`` and ``or`` too. Then the lines of the column that can hold a match
   select the rows to decode (`message_lines`): those holding the needles of the terms
   a match requires (``and``), or of one of the alternatives (``or``); ``not`` selects
   nothing, so a term under it never narrows the rows.

Before any of these, **field lists** (`store.index`, ``field_sets``): a condition on a
field that no document of a block has is false for the whole block (`with_fields`), so
such blocks are excluded in SQL, and the CLI can say that no document has the field.

What is left (the *residual*) is compiled once per distinct residual by
`store.matcher.compile_matcher` and run per selected document, after a cheap substring
test on the raw JSON (`Prefilter`) that rejects most non-matching documents without
decoding them (a residual that looks only at the message decodes only the message:
`needs_only_message`). Partial evaluation only substitutes facts the exact matcher would
compute from the document itself, so pruning never changes an answer (tests check this
against a brute-force count).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import msgspec

from kubelogs.store.column import SearchColumn, needles
from kubelogs.store.index import Layout, row_fields
from kubelogs.store.matcher import (
    TIMESTAMP_FIELD,
    WORD_RE,
    parse_number,
    range_matcher,
    text_matcher,
    time_range,
    value_matcher,
)
from kubelogs.store.query import (
    And,
    Exists,
    Match,
    MatchAll,
    Node,
    Not,
    Or,
    Range,
    Residual,
    substitute,
)

_Leaf = Callable[[Node], Residual]

MIN_TIME = -(2**63)
MAX_TIME = 2**63 - 1


def split_time(node: Node) -> tuple[Node, int, int]:
    """Move ``@timestamp`` ranges that must hold for every match into an interval."""
    lo, hi = MIN_TIME, MAX_TIME
    items = node.items if isinstance(node, And) else (node,)
    rest: list[Node] = []
    for item in items:
        if isinstance(item, Range) and item.field == TIMESTAMP_FIELD:
            a, b = time_range(item)
            lo, hi = max(lo, a), min(hi, b)
        else:
            rest.append(item)
    if not rest:
        return MatchAll(), lo, hi
    return (rest[0] if len(rest) == 1 else And(tuple(rest))), lo, hi


def with_labels(node: Residual, labels: Mapping[str, str], layout: Layout) -> Residual:
    """Substitute the values of indexed fields, known for a whole run."""
    indexed = layout.indexed

    def leaf(n: Node) -> Residual:
        if isinstance(n, Match | Exists | Range) and n.field in indexed:
            value = labels.get(n.field)
            if isinstance(n, Exists):
                return value is not None
            if value is None:
                return False
            if isinstance(n, Range):
                return range_matcher(n)(value)
            if n.field == layout.message_field:
                return text_matcher(n.value, n.phrase)(value)
            return value_matcher(n)(value)
        return n

    return substitute(node, leaf)


def with_column(node: Residual, column: SearchColumn, layout: Layout) -> Residual:
    """Rule out message terms with a needle absent from a block's message column."""

    def leaf(n: Node) -> Residual:
        term = _message_term(n, layout)
        if term is not None:
            for needle in needles(term.value, term.phrase):
                if not column.contains(needle):
                    return False
        return n

    return substitute(node, leaf)


def message_lines(node: Residual, column: SearchColumn, layout: Layout) -> list[int] | None:
    """The lines of a block's message column (ascending; line ``i`` is document ``i``)
    that may hold a document matching `node`, or None when any may.

    A message term selects the lines holding all its needles; ``and`` intersects (the
    needles of its message terms are looked for on the same line at once), ``or``
    unites when each of its items selects; ``not`` and other fields select nothing."""
    rows = _lines(node, column, layout)
    return None if rows is None else sorted(rows)


def _lines(node: Residual, column: SearchColumn, layout: Layout) -> set[int] | None:
    if node is False:
        return set()
    if isinstance(node, And):
        together: list[bytes] = []
        rest: list[Node] = []
        for item in node.items:
            term = _message_term(item, layout)
            if term is not None:
                together.extend(needles(term.value, term.phrase))
            else:
                rest.append(item)
        rows = set(column.lines_with(tuple(dict.fromkeys(together)))) if together else None
        for item in rest:
            if rows is not None and not rows:
                break
            more = _lines(item, column, layout)
            if more is not None:
                rows = more if rows is None else rows & more
        return rows
    if isinstance(node, Or):
        union: set[int] = set()
        for item in node.items:
            more = _lines(item, column, layout)
            if more is None:
                return None
            union |= more
        return union
    term = _message_term(node, layout) if not isinstance(node, bool) else None
    if term is not None:
        required = needles(term.value, term.phrase)
        if required:
            return set(column.lines_with(required))
    return None


def _message_term(node: Node, layout: Layout) -> Match | None:
    """`node` if it is a word, phrase or wildcard of the message."""
    if isinstance(node, Match) and (node.field is None or node.field == layout.message_field):
        return node
    return None


def present_fields(paths: list[str], layout: Layout) -> frozenset[str]:
    """Every field a query can name and find in documents with the leaf `paths` of a
    field list: the paths, their prefixes (objects), and the schema's per-row fields."""
    out: set[str] = set()
    for path in (*paths, *row_fields(layout.schema)):
        out.add(path)
        dot = path.find(".")
        while dot != -1:
            out.add(path[:dot])
            dot = path.find(".", dot + 1)
    return frozenset(out)


def query_fields(node: Node, layout: Layout) -> list[str]:
    """The fields `node` names, other than the message and ``@timestamp``, in order."""
    out: dict[str, None] = {}

    def walk(n: Node) -> None:
        if isinstance(n, And | Or):
            for item in n.items:
                walk(item)
        elif isinstance(n, Not):
            walk(n.item)
        elif isinstance(n, Match | Exists | Range):
            field = n.field
            if field is not None and field not in (layout.message_field, TIMESTAMP_FIELD):
                out[field] = None

    walk(node)
    return list(out)


def with_fields(node: Residual, present: frozenset[str], layout: Layout) -> Residual:
    """Rule out conditions on fields absent from every document (`present_fields`): a
    missing field never matches (`store.matcher`), so they are false."""

    def leaf(n: Node) -> Residual:
        if isinstance(n, Match | Exists | Range):
            field = n.field
            if (
                field is not None
                and field not in present
                and field not in (layout.message_field, TIMESTAMP_FIELD)
            ):
                return False
        return n

    return substitute(node, leaf)


OFFSET_FIELDS: dict[str, str] = {"ecs": "log.offset"}
"""Per schema, the field that holds the offset column of events documents (fluentd
documents have none)."""


def needs_only_columns(node: Node, layout: Layout) -> bool:
    """Whether `compile_matcher(node)` reads nothing of an events document but what the
    block keeps as columns: the message, ``@timestamp`` and the offset (``log.offset``).
    Then rows of events runs are matched on a two-field dict built from the columns,
    without rendering documents (a numeric range on ``log.offset`` costs a comparison
    per row instead of a render and a JSON decode)."""
    offset = OFFSET_FIELDS.get(layout.schema)
    if isinstance(node, And | Or):
        return all(needs_only_columns(n, layout) for n in node.items)
    if isinstance(node, Not):
        return needs_only_columns(node.item, layout)
    if isinstance(node, Match | Exists | Range) and offset is not None and node.field == offset:
        return True
    return needs_only_message(node, layout)


def uses_offset(node: Node, layout: Layout) -> bool:
    """Whether `node` names the schema's offset field."""
    offset = OFFSET_FIELDS.get(layout.schema)
    return offset is not None and offset in query_fields(node, layout)


def with_span(node: Residual, min_time: int, max_time: int) -> Residual:
    """Decide ``@timestamp`` ranges (under ``or``/``not``) for a block's time span."""

    def leaf(n: Node) -> Residual:
        if isinstance(n, Range) and n.field == TIMESTAMP_FIELD:
            lo, hi = time_range(n)
            if lo <= min_time and max_time <= hi:
                return True
            if max_time < lo or min_time > hi:
                return False
        return n

    return substitute(node, leaf)


def uses_message(node: Node, layout: Layout) -> bool:
    """Whether the message column can decide anything for `node`."""
    if isinstance(node, And | Or):
        return any(uses_message(n, layout) for n in node.items)
    if isinstance(node, Not):
        return uses_message(node.item, layout)
    term = _message_term(node, layout)
    return term is not None and bool(needles(term.value, term.phrase))


def needs_only_message(node: Node, layout: Layout) -> bool:
    """Whether `compile_matcher(node)` reads no field of a document but the message
    (``@timestamp`` ranges and existence use the time column, not the document)."""
    if isinstance(node, And | Or):
        return all(needs_only_message(n, layout) for n in node.items)
    if isinstance(node, Not):
        return needs_only_message(node.item, layout)
    if isinstance(node, Match):
        return (node.field or layout.message_field) == layout.message_field
    if isinstance(node, Exists | Range):
        return node.field in (layout.message_field, TIMESTAMP_FIELD)
    return isinstance(node, MatchAll)


_ROW_FIELDS = ("@timestamp", "stream", "flags", "log.offset", "time")
"""Fields a rendered events document has per row (besides the message and parsed
fields): a query reading one of them, or a part of one, is decided row by row."""


def needs_no_row_fields(node: Node, layout: Layout) -> bool:
    """Whether `compile_matcher(node)` reads neither the message nor a per-row field of
    an events document (`_ROW_FIELDS`): only the file's fields (Kubernetes metadata,
    host, the file path) and parsed fields. Then every row of an events run without
    parsed fields or flags gets the answer of its file's fields alone
    (`DecodedBlock.file_fields_doc`), and only the others need their document."""
    if isinstance(node, And | Or):
        return all(needs_no_row_fields(n, layout) for n in node.items)
    if isinstance(node, Not):
        return needs_no_row_fields(node.item, layout)
    if isinstance(node, Match | Exists | Range):
        field = node.field
        if field is None:
            return False
        for name in (*_ROW_FIELDS, layout.message_field, layout.stream_field):
            if field == name or field.startswith(name + ".") or name.startswith(field + "."):
                return False
        return True
    return False


_encode = msgspec.json.encode


@dataclass(frozen=True, slots=True)
class Prefilter:
    """Substrings every matching document's raw JSON must contain.

    `lowered`: lower-case ASCII words of the message terms, looked up in the lower-cased
    document (only for ASCII documents: `bytes.lower` folds ASCII only). `exact`: the
    JSON encoding of exact string values (``"payments"``), looked up as they are.
    """

    lowered: tuple[bytes, ...]
    exact: tuple[bytes, ...]

    def __bool__(self) -> bool:
        return bool(self.lowered or self.exact)

    def rejects(self, doc: bytes) -> bool:
        for needle in self.exact:
            if needle not in doc:
                return True
        if self.lowered and doc.isascii():
            low = doc.lower()
            for needle in self.lowered:
                if needle not in low:
                    return True
        return False


def prefilter(node: Residual, layout: Layout) -> Prefilter:
    if isinstance(node, bool):
        return Prefilter((), ())
    lowered: list[bytes] = []
    exact: list[bytes] = []
    for item in node.items if isinstance(node, And) else (node,):
        if not isinstance(item, Match):
            continue
        field = item.field or layout.message_field
        if field == layout.message_field:
            parts = [item.value] if item.phrase else item.value.split("*")
            for part in parts:
                lowered.extend(w.encode() for w in WORD_RE.findall(part.lower()) if w.isascii())
        elif not item.wildcard and parse_number(item.value) is None:
            text = item.value
            plain = text.isascii() and text.isprintable() and not ('"' in text or "\\" in text)
            if plain and text.lower() not in ("true", "false"):
                exact.append(_encode(text))
    return Prefilter(tuple(dict.fromkeys(lowered)), tuple(dict.fromkeys(exact)))
