"""Exact per-document matching: the definition of what a query means.

Block pruning (`store.planner`) only ever skips data that this module would reject; every
document that reaches the output has passed `compile_matcher`. Tests compare both with
an independent count, so the rules live here once:

- **Text match** on the message field: the value's words (``\\w+``, lower-cased) must
  appear as consecutive words of the lower-cased message (a word is a one-word phrase);
  ``*`` in an unquoted value stands for any run of word characters (``err*``).
  A value without any word character is matched as a case-insensitive substring.
- **Value match** on other fields: exact, case-sensitive equality with the field's value
  (a JSON number equals a query number of the same value, ``true``/``false`` match
  booleans, a list matches if one element does); ``*`` matches any run of characters.
- **Ranges** compare numbers as numbers, ``@timestamp`` (and values that both look like
  RFC 3339 times) as times, anything else as strings. A missing field never matches.

The matcher takes a decoded document and the event's time in nanoseconds (the store keeps
times in a column, so ``@timestamp`` conditions never parse the document's string).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from typing import Any

from kubelogs.codecs.timestamps import parse_rfc3339_ns
from kubelogs.store.errors import QueryError
from kubelogs.store.query import And, Exists, Match, MatchAll, Node, Not, Or, Range

DocMatcher = Callable[[dict[str, Any], int], bool]

TIMESTAMP_FIELD = "@timestamp"
WORD_RE = re.compile(r"\w+")
_MISSING: Any = object()
_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?$")


def query_words(value: str) -> list[str]:
    """The lower-cased words of a query value, as the message matcher sees them."""
    return WORD_RE.findall(value.lower())


def text_pattern(value: str, phrase: bool) -> re.Pattern[str] | None:
    """The regex a lower-cased message must contain, or None for a substring match."""
    lowered = value.lower()
    if not phrase and "*" in lowered:
        parts = [re.escape(p) for p in lowered.split("*")]
        return re.compile(r"(?<!\w)" + r"\w*".join(parts) + r"(?!\w)")
    words = WORD_RE.findall(lowered)
    if not words:
        return None
    return re.compile(r"(?<!\w)" + r"\W+".join(map(re.escape, words)) + r"(?!\w)")


def text_matcher(value: str, phrase: bool) -> Callable[[str], bool]:
    """A predicate on the (not yet lower-cased) message text."""
    pattern = text_pattern(value, phrase)
    if pattern is None:
        needle = value.lower()
        return lambda text: needle in text.lower()
    search = pattern.search
    # The pattern starts with a lookbehind, so `re` cannot jump to its literal part and
    # tries every position (about 4 us per message). Every literal part must occur in a
    # match, so the longest one is looked for first with `str.find` (C speed): most
    # messages are ruled out without the regex.
    lowered = value.lower()
    parts = lowered.split("*") if not phrase and "*" in lowered else WORD_RE.findall(lowered)
    key = max(parts, key=len, default="")
    if not key:
        return lambda text: search(text.lower()) is not None

    def check(text: str) -> bool:
        low = text.lower()
        return key in low and search(low) is not None

    return check


def message_predicate(node: Node, message_field: str) -> Callable[[str], bool] | None:
    """`compile_matcher(node)` as a test of the message text alone, for a query made
    only of words and phrases of the message with ``and``, ``or`` and ``not``; None for
    any other query. The store applies it to a block's messages in one comprehension."""
    if isinstance(node, Match) and (node.field or message_field) == message_field:
        return text_matcher(node.value, node.phrase)
    if isinstance(node, Not):
        inner = message_predicate(node.item, message_field)
        return None if inner is None else (lambda text: not inner(text))
    if isinstance(node, And | Or):
        parts = [message_predicate(n, message_field) for n in node.items]
        if any(p is None for p in parts):
            return None
        tests = [p for p in parts if p is not None]
        if isinstance(node, And):
            return lambda text: all(test(text) for test in tests)
        return lambda text: any(test(text) for test in tests)
    return None


def get_field(doc: Any, path: str) -> Any:
    """The value at dotted `path`, walking nested objects; literal dotted keys also work."""
    if not isinstance(doc, dict):
        return _MISSING
    value = doc.get(path, _MISSING)
    if value is not _MISSING:
        return value
    head, dot, rest = path.partition(".")
    while dot:
        inner = doc.get(head, _MISSING)
        if isinstance(inner, dict):
            found = get_field(inner, rest)
            if found is not _MISSING:
                return found
        nxt, dot, rest = rest.partition(".")
        head = f"{head}.{nxt}"
    return _MISSING


def is_missing(value: Any) -> bool:
    return value is _MISSING or value is None


def parse_number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number == number else None  # NaN never compares


def parse_time_ns(text: str) -> int | None:
    """Nanoseconds from RFC 3339 (``2025-01-15T10:00:00.5Z``) or a UTC date/time without
    zone (``2025-01-15``, ``2025-01-15T10:00``); None if `text` is neither."""
    ns = parse_rfc3339_ns(text.strip().encode())
    if ns is not None:
        return ns
    m = _DATE_RE.match(text.strip())
    if not m:
        return None
    y, mo, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    try:
        return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) * 1_000_000_000
    except (ValueError, OverflowError):
        return None


def value_matcher(m: Match) -> Callable[[Any], bool]:
    """A predicate on one field value, for fields that are not the message."""
    text = m.value
    wildcard: re.Pattern[str] | None = None
    if m.wildcard:
        wildcard = re.compile(".*".join(re.escape(p) for p in text.split("*")), re.DOTALL)
    number = parse_number(text)
    lowered = text.lower()

    def check(value: Any) -> bool:
        if isinstance(value, str):
            return value == text if wildcard is None else wildcard.fullmatch(value) is not None
        if isinstance(value, bool):
            return lowered == ("true" if value else "false")
        if isinstance(value, int | float):
            if number is not None:
                return bool(value == number)
            return wildcard is not None and wildcard.fullmatch(str(value)) is not None
        if isinstance(value, list):
            return any(check(v) for v in value)
        return False

    return check


def range_matcher(r: Range) -> Callable[[Any], bool]:
    """A predicate on one field value (not ``@timestamp``, which `time_range` handles)."""
    op = r.op
    number = parse_number(r.value)
    when = parse_time_ns(r.value) if number is None else None

    def cmp(a: Any, b: Any) -> bool:
        if op == ">":
            return bool(a > b)
        if op == ">=":
            return bool(a >= b)
        if op == "<":
            return bool(a < b)
        return bool(a <= b)

    def check(value: Any) -> bool:
        if isinstance(value, list):
            return any(check(v) for v in value)
        if isinstance(value, bool) or value is None or isinstance(value, dict):
            return False
        if number is not None:
            if isinstance(value, int | float):
                return cmp(value, number)
            if isinstance(value, str):
                other = parse_number(value)
                return other is not None and cmp(other, number)
            return False
        if when is not None and isinstance(value, str):
            other = parse_time_ns(value)
            if other is not None:
                return cmp(other, when)
        return cmp(str(value), r.value)

    return check


def time_range(r: Range) -> tuple[int, int]:
    """The inclusive ``[lo, hi]`` nanosecond interval an ``@timestamp`` range selects."""
    ns = parse_time_ns(r.value)
    if ns is None:
        number = parse_number(r.value)
        if number is None:
            raise QueryError(
                f"{r.field} {r.op} {r.value!r}: the value is not an RFC 3339 time "
                "like 2025-01-15T10:00:00Z"
            )
        ns = int(number * 1_000_000_000)  # epoch seconds
    lo, hi = -(2**63), 2**63 - 1
    if r.op == ">":
        return ns + 1, hi
    if r.op == ">=":
        return ns, hi
    if r.op == "<":
        return lo, ns - 1
    return lo, ns


def compile_matcher(node: Node, message_field: str) -> DocMatcher:
    """Compile `node` into ``matcher(doc, time_ns) -> bool`` (exact semantics)."""
    if isinstance(node, MatchAll):
        return lambda doc, t: True
    if isinstance(node, And):
        parts = [compile_matcher(n, message_field) for n in node.items]
        return lambda doc, t: all(p(doc, t) for p in parts)
    if isinstance(node, Or):
        parts = [compile_matcher(n, message_field) for n in node.items]
        return lambda doc, t: any(p(doc, t) for p in parts)
    if isinstance(node, Not):
        inner = compile_matcher(node.item, message_field)
        return lambda doc, t: not inner(doc, t)
    if isinstance(node, Exists):
        field = node.field
        if field == TIMESTAMP_FIELD:
            return lambda doc, t: True
        return lambda doc, t: not is_missing(get_field(doc, field))
    if isinstance(node, Range):
        if node.field == TIMESTAMP_FIELD:
            lo, hi = time_range(node)
            return lambda doc, t: lo <= t <= hi
        check_range = range_matcher(node)
        field = node.field
        return lambda doc, t: check_range(get_field(doc, field))
    field = node.field or message_field
    if field == message_field:
        check_text = text_matcher(node.value, node.phrase)

        def text(doc: dict[str, Any], t: int) -> bool:
            value = get_field(doc, field)
            return isinstance(value, str) and check_text(value)

        return text
    check_value = value_matcher(node)
    return lambda doc, t: check_value(get_field(doc, field))
