"""``json``: each message that is one JSON object becomes fields.

Column-wise, one C call for the usual batch: the messages that look like objects
(first character ``{``, last ``}``) are joined with newlines and decoded by
`msgspec`'s ``decode_lines``. That is safe because a message that starts with ``{`` and
ends with ``}`` cannot continue into the next one: a string cannot hold a raw newline,
and a ``}`` that closes an inner value is followed by ``,``, ``}`` or ``]``, never by
the next message's ``{``. So each message starts at the top level; each holds at least
one value; when the joined decode succeeds with as many values as messages, every value
is exactly its message's (a newline inside a message, from multiline joining, is JSON
whitespace either way). When it fails (one bad line) or counts differently
(``{} {}`` in one message), the messages are decoded one by one and only the bad ones
are flagged. `tests/unit/parsing/test_parsing_bad_input.py` checks the batch result
against decoding each line alone on generated fragments.

What is kept: a line whose value is not an object, whose nesting is deeper than
`MAX_DEPTH` (documents that deep break Elasticsearch's mapping and recursive readers)
or that is not JSON at all, keeps its message and gets the flag ``parse_error``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress, repeat
from operator import add, and_, gt, le
from typing import Any

import msgspec

__all__ = ["MAX_DEPTH", "parse_json"]

MAX_DEPTH = 64
"""Deepest nesting of objects and arrays kept as fields."""

_decoder = msgspec.json.Decoder()
_decode = _decoder.decode
_decode_lines = _decoder.decode_lines


def _depth(value: Any, limit: int) -> bool:
    """Whether `value` nests at most `limit` containers deep (iterative: no recursion
    on hostile input)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, dict | list))
    return True


def _one(message: str) -> dict[str, Any] | None:
    try:
        value = _decode(message)
    except (msgspec.DecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


Rows = tuple[list[int], list[dict[str, Any]]]


def parse_json(messages: Sequence[str]) -> Rows:
    """The rows whose messages are JSON objects, and the objects (see the module doc)."""
    n = len(messages)
    if n == 0:
        return [], []
    # Candidates: "{...}", tested in C. A string comparison is half the cost of
    # `startswith`: `"{" <= m` keeps the messages whose first character is "{" or
    # above ("|", "}", "~", non-ASCII: rare in logs; False for an empty message), and
    # only those pay for `m < "|"` (first character exactly "{") and `endswith("}")`.
    high = list(map(le, repeat("{"), messages))
    firsts = list(compress(messages, high))
    if not firsts:
        return [], []
    good = list(map(and_, map(gt, repeat("|"), firsts), map(str.endswith, firsts, repeat("}"))))
    rows = list(compress(compress(range(n), high), good))
    if not rows:
        return [], []
    cands = list(compress(firsts, good)) if len(rows) < len(firsts) else firsts
    return _joined(rows, cands)


def _joined(rows: list[int], cands: list[str]) -> Rows:
    """Decode the candidates in one call, or one by one if that fails."""
    joined = "\n".join(cands)
    try:
        values = _decode_lines(joined)
    except (msgspec.DecodeError, RecursionError):
        return _one_by_one(rows, cands)
    if len(values) != len(cands):
        return _one_by_one(rows, cands)
    # Nesting deeper than MAX_DEPTH needs more than MAX_DEPTH opening brackets, counted
    # in C: the "{" of each line, the "[" of the whole batch first (arrays are rare).
    opens = list(map(str.count, cands, repeat("{")))
    if joined.count("[") > MAX_DEPTH // 2:
        opens = list(map(add, opens, map(str.count, cands, repeat("["))))
        limit = MAX_DEPTH
    else:
        limit = MAX_DEPTH - MAX_DEPTH // 2  # fewer than half the limit are "["
    if max(opens) > limit:
        keep = [
            count <= limit or _depth(v, MAX_DEPTH) for count, v in zip(opens, values, strict=True)
        ]
        return list(compress(rows, keep)), list(compress(values, keep))
    return rows, values


def _one_by_one(rows: list[int], cands: Sequence[str]) -> Rows:
    """Decode the candidates (one message per row) one at a time."""
    out_rows: list[int] = []
    out_values: list[dict[str, Any]] = []
    for i, message in zip(rows, cands, strict=True):
        value = _one(message)
        if value is not None and (
            message.count("{") + message.count("[") <= MAX_DEPTH or _depth(value, MAX_DEPTH)
        ):
            out_rows.append(i)
            out_values.append(value)
    return out_rows, out_values
