"""``json``: each message that is one JSON object becomes fields.

Column-wise, one C call for the usual batch: the messages that look like objects
(first character ``{``, last ``}``, no newline inside) are joined with newlines and
decoded by `msgspec`'s ``decode_lines``. That is safe because a message that starts
with ``{`` and ends with ``}`` cannot continue into the next one: in JSON a ``}`` that
closes an inner value is followed by ``,``, ``}`` or ``]``, never by the next line's
``{``, and a string cannot hold a raw newline. So when the joined decode succeeds with
one value per message, every value is exactly its message's; when it fails (one bad
line) or counts differently (``{} {}`` on one line), the messages are decoded one by one
and only the bad ones are flagged.

What is kept: a line whose value is not an object, whose nesting is deeper than
`MAX_DEPTH` (documents that deep break Elasticsearch's mapping and recursive readers)
or that is not JSON at all, keeps its message and gets the flag ``parse_error``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress, repeat
from operator import add
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


def parse_json(messages: Sequence[str]) -> dict[int, dict[str, Any]]:
    """``{row: object}`` for the messages that are JSON objects (see the module doc)."""
    n = len(messages)
    if n == 0:
        return {}
    # Candidates: "{...}", tested in C (`startswith` is False for an empty message);
    # only messages that start with "{" pay for the second test.
    starts = list(map(str.startswith, messages, repeat("{")))
    firsts = list(compress(messages, starts))
    if not firsts:
        return {}
    ends = list(map(str.endswith, firsts, repeat("}")))
    rows = list(compress(compress(range(n), starts), ends))
    if not rows:
        return {}
    cands = list(compress(firsts, ends)) if len(rows) < len(firsts) else firsts
    joined = "\n".join(cands)
    if joined.count("\n") != len(cands) - 1:  # some messages hold newlines (multiline)
        inner = [i for i, m in zip(rows, cands, strict=True) if "\n" in m]
        out = _one_by_one(inner, [messages[i] for i in inner])
        rest = [i for i in rows if i not in out and "\n" not in messages[i]]
        out.update(_joined(rest, [messages[i] for i in rest]))
        return out
    return _joined(rows, cands, joined)


def _joined(
    rows: list[int], cands: list[str], joined: str | None = None
) -> dict[int, dict[str, Any]]:
    """Decode newline-free candidates in one call, or one by one if that fails."""
    if not rows:
        return {}
    if joined is None:
        joined = "\n".join(cands)
    try:
        values = _decode_lines(joined)
    except (msgspec.DecodeError, RecursionError):
        return _one_by_one(rows, cands)
    if len(values) != len(cands):
        return _one_by_one(rows, cands)
    out = dict(zip(rows, values, strict=True))
    # Deep nesting needs more than MAX_DEPTH opening brackets: counted in C first.
    opens = _opening_brackets(cands)
    if max(opens) > MAX_DEPTH:
        for i, count in zip(rows, opens, strict=True):
            if count > MAX_DEPTH and not _depth(out[i], MAX_DEPTH):
                del out[i]
    return out


def _opening_brackets(messages: list[str]) -> list[int]:
    braces = map(str.count, messages, repeat("{"))
    return list(map(add, braces, map(str.count, messages, repeat("["))))


def _one_by_one(rows: list[int], cands: list[str]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for i, message in zip(rows, cands, strict=True):
        value = _one(message)
        if value is not None and (
            message.count("{") + message.count("[") <= MAX_DEPTH or _depth(value, MAX_DEPTH)
        ):
            out[i] = value
    return out
