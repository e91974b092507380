"""Conditions of `filter` and `route`: the search query language, evaluated on batches.

One language for searching and routing: a condition means exactly what `kubelogs search`
means by the same query on the documents the batch would become (ECS layout,
`codecs.document`), as `store.matcher.compile_matcher` defines it. A property test
compares both on rendered documents.

Why not render and match every document: that is several microseconds per line, and a
filter must cost well under one (issue 13: at most +0.5 CPU-s per 1M lines). Instead the
query is *partially evaluated* per file, as the store's planner does per block:

1. Everything a file shares (`kubernetes.*`, `host.*`, `log.file.path`, anything the
   file's metadata holds) is decided once per `FileContext` from the file's fields
   (`render_file_fields`, decoded once and cached): a condition on them alone costs
   nothing per line. For rows without parsed fields, conditions on a field neither
   the file nor the columns have are false (a missing field never matches).
2. What is left (the *residual*) is run column by column over candidate rows: message
   terms (words, phrases, wildcards: the store's `text_pattern`) by `str.find` of the
   term's longest literal part in the batch's messages joined and lower-cased once,
   the regex only where it occurs; `stream` once per distinct value; `@timestamp`
   and `log.offset` on their columns; ``and`` narrows the rows its next item looks at,
   ``or`` unites, ``not`` is a set difference.
3. Rows with parsed fields or flags (sparse) use a second residual in which only the
   file's fields are decided; their parsed fields are read from the row's own dict.
   A row whose parsed field names could stand in for a decided field in its document
   (a literal dotted key such as ``"kubernetes.namespace"``) is rendered and matched as
   a document with the exact matcher.
"""

from __future__ import annotations

import functools
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import msgspec

from kubelogs.codecs.document import render_file_fields, render_ndjson
from kubelogs.codecs.timestamps import format_timestamp
from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.store.aliases import resolve_aliases
from kubelogs.store.matcher import (
    TIMESTAMP_FIELD,
    WORD_RE,
    compile_matcher,
    range_matcher,
    text_pattern,
    time_range,
    value_matcher,
)
from kubelogs.store.query import (
    And,
    Exists,
    Match,
    Node,
    Not,
    Or,
    Range,
    Residual,
    substitute,
)
from kubelogs.store.query_parser import parse_query
from kubelogs.transforms.fields import LOG_OWN, RESERVED_TOP

__all__ = ["Condition", "ConditionError", "checked_condition"]

MESSAGE = "message"
_ROW_FIELDS = (TIMESTAMP_FIELD, MESSAGE, "stream", "log.offset", "log.flags")
_MAX_CONTEXTS = 4096
"""Plans kept per condition (one per file context); the oldest are forgotten and
recomputed when their file shows up again."""

_decode = msgspec.json.decode


class ConditionError(ValueError):
    """The condition cannot be used; the message is one line, `detail` may add a caret."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class Condition:
    """A parsed, checked condition; `select(batch)` gives the rows that match."""

    def __init__(self, text: str) -> None:
        from kubelogs.store.errors import QueryError, QuerySyntaxError

        self.text = text
        try:
            # `level` means the parsers' normalised `log.level` (or a `level` field), as
            # in `kubelogs search` (`store.aliases`).
            self.node: Node = resolve_aliases(parse_query(text), "ecs")
            self._matcher = compile_matcher(self.node, MESSAGE)
        except QuerySyntaxError as exc:
            raise ConditionError(str(exc), exc.caret_lines()) from None
        except QueryError as exc:
            raise ConditionError(str(exc)) from None
        self._plans: dict[tuple[str, bytes], _Plan] = {}

    def __repr__(self) -> str:
        return f"Condition({self.text!r})"

    # -- per file ---------------------------------------------------------------------

    def residual(self, ctx: FileContext) -> Residual:
        """The condition for rows without flags or parsed fields of files like `ctx`."""
        return self._plan(ctx).plain

    def _plan(self, ctx: FileContext) -> _Plan:
        key = (ctx.path, ctx.meta_ecs)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= _MAX_CONTEXTS:
                del self._plans[next(iter(self._plans))]
            file_doc = _decode(render_file_fields("ecs", path=ctx.path, meta=ctx.meta_ecs))
            plain = substitute(self.node, lambda n: _file_leaf(n, file_doc))
            shadow: set[str] = set()
            meta_roots = frozenset(file_doc) - {"log"}
            extra = substitute(self.node, lambda n: _extra_leaf(n, file_doc, meta_roots, shadow))
            plan = self._plans[key] = _Plan(plain, extra, frozenset(shadow))
        return plan

    # -- per batch --------------------------------------------------------------------

    def select(self, batch: Batch) -> list[int]:
        """The rows of `batch` that match, ascending."""
        n = len(batch)
        if n == 0:
            return []
        plan = self._plan(batch.ctx)
        residual = plan.plain
        special: set[int] = set()
        if batch.flags:
            special.update(batch.flags)
        fields = batch.fields or {}
        if fields:
            special.update(i for i, f in fields.items() if f)
        if not special:
            if residual is True:
                return list(range(n))
            if residual is False:
                return []
            return _Rows(batch).select(residual, range(n))
        shadow = plan.shadow
        names = tuple(shadow)
        if names and fields and not shadow.isdisjoint(set().union(*fields.values())):
            unsure = [i for i in sorted(fields) if (f := fields[i]) and any(k in f for k in names)]
        else:
            unsure = []
        if not unsure and plan.extra == residual:
            # Nothing parsed changes the answer (the usual case): one pass for all rows.
            if residual is True:
                return list(range(n))
            if residual is False:
                return []
            return _Rows(batch).select(residual, range(n))
        rows = _Rows(batch)
        plain = [i for i in range(n) if i not in special]
        if residual is True:
            kept = plain
        elif residual is False or not plain:
            kept = []
        else:
            kept = rows.select(residual, plain)
        # Rows with flags or fields: the same partial evaluation holds unless one of
        # their field names could stand in for a field it decided (a literal dotted
        # key such as "kubernetes.namespace"); those few are matched as documents.
        own = sorted(special)
        if unsure:
            doubt = set(unsure)
            own = [i for i in own if i not in doubt]
            kept.extend(self._match_documents(batch, unsure))
        if plan.extra is True:
            kept.extend(own)
        elif plan.extra is not False and own:
            kept.extend(rows.select(plan.extra, own))
        kept.sort()
        return kept

    def matches(self, batch: Batch) -> list[bool]:
        """One boolean per row (for tests and for code that wants a mask)."""
        mask = [False] * len(batch)
        for i in self.select(batch):
            mask[i] = True
        return mask

    def _match_documents(self, batch: Batch, rows: list[int]) -> list[int]:
        """Rows among `rows` whose rendered document matches (the exact definition)."""
        sub = batch.select(rows)
        ctx = sub.ctx
        data = render_ndjson(
            "ecs",
            path=ctx.path,
            meta=ctx.meta_ecs,
            times=sub.times,
            tstrs=sub.tstrs,
            messages=sub.messages,
            streams=sub.streams,
            offsets=sub.offsets,
            flags=sub.flags,
            fields=sub.fields,
        )
        docs = data.split(b"\n")
        matcher = self._matcher
        return [
            row
            for row, doc, t in zip(rows, docs, sub.times, strict=False)
            if matcher(_decode(doc), t)
        ]


# -- partial evaluation against the file's fields ----------------------------------------


def _is_row_field(field: str) -> bool:
    """Whether `field` reads (a part of) a per-row field of an events document."""
    for name in _ROW_FIELDS:
        if field == name or field.startswith(name + ".") or name.startswith(field + "."):
            return True
    return False


def _file_leaf(n: Node, file_doc: dict[str, Any]) -> Residual:
    """A leaf decided by the file's fields, or `n` when it needs the row."""
    if not isinstance(n, Match | Exists | Range):
        return n
    field = n.field or MESSAGE
    if field == "log":
        return isinstance(n, Exists)  # an object: exists, equals no value
    if _is_row_field(field):
        if field == "log.flags" or field.startswith("log.flags."):
            return False  # rows with flags are matched as documents
        if field in (MESSAGE, TIMESTAMP_FIELD, "stream", "log.offset"):
            if isinstance(n, Exists) and field in (MESSAGE, TIMESTAMP_FIELD, "log.offset"):
                return True
            return n
        return False  # a part of a string or number: missing
    return compile_matcher(n, MESSAGE)(file_doc, 0)


_COLUMNS = (MESSAGE, TIMESTAMP_FIELD, "stream", "log.offset")
"""Fields read from the batch's columns, for every row."""


@functools.lru_cache(maxsize=1024)
def _parsed_only(field: str) -> bool:
    """Whether only a row's parsed fields can hold `field` in its document: none of
    the keys it may be found under is one kubelogs writes (or a renamed one)."""
    for p in _prefixes(field):
        if p in RESERVED_TOP or (p.endswith("_parsed") and p[: -len("_parsed")] in RESERVED_TOP):
            return False
    return True


def _prefixes(path: str) -> list[str]:
    """The top-level keys `store.matcher.get_field` may consult for `path`."""
    parts = path.split(".")
    return [".".join(parts[: k + 1]) for k in range(len(parts))]


def _extra_leaf(
    n: Node, file_doc: dict[str, Any], meta_roots: frozenset[str], shadow: set[str]
) -> Residual:
    """For rows with flags or parsed fields: decide the leaves that read file fields
    (metadata), keep the rest for the row; record in `shadow` the field names that
    would make the decision or a column's value wrong if a row's parsed fields had
    them (top-level names kubelogs writes itself are renamed ``<name>_parsed`` in
    documents, so they never shadow)."""
    if not isinstance(n, Match | Exists | Range):
        return n
    field = n.field or MESSAGE
    keys = [p for p in _prefixes(field) if p not in RESERVED_TOP]
    if field in _COLUMNS:
        shadow.update(keys)
        if isinstance(n, Exists) and field != "stream":
            return True
        return n
    if any(p in meta_roots for p in _prefixes(field)):
        shadow.update(keys)
        return compile_matcher(n, MESSAGE)(file_doc, 0)
    return n


@dataclass(frozen=True, slots=True)
class _Plan:
    """A condition partially evaluated for one file."""

    plain: Residual
    """For rows without flags or parsed fields."""
    extra: Residual
    """For rows with flags or parsed fields whose names are not in `shadow`: decided
    per row on the row's own fields (`_Rows._doc`)."""
    shadow: frozenset[str]


# -- the residual over columns ---------------------------------------------------------


class _Rows:
    """Column-wise evaluation of a residual over some rows of one batch."""

    __slots__ = ("_joined", "_lows", "_starts", "_timestamps", "batch")

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self._timestamps: list[str] | None = None
        self._lows: dict[int, str] = {}
        self._joined: str | None = None
        self._starts: list[int] = []

    def select(self, node: Node, rows: Sequence[int]) -> list[int]:
        if isinstance(node, And):
            current: Sequence[int] = rows
            for item in sorted(node.items, key=_cost):
                current = self.select(item, current)
                if not current:
                    return []
            return list(current)
        if isinstance(node, Or):
            found: set[int] = set()
            for item in node.items:
                found.update(self.select(item, rows))
            return sorted(found) if len(found) < len(rows) else list(rows)
        if isinstance(node, Not):
            hit = set(self.select(node.item, rows))
            if not hit:
                return list(rows)
            return [i for i in rows if i not in hit]
        return self._leaf(node, rows)

    def _leaf(self, node: Node, rows: Sequence[int]) -> list[int]:
        assert isinstance(node, Match | Exists | Range)
        field = node.field or MESSAGE
        b = self.batch
        if field == MESSAGE:
            if isinstance(node, Match):
                return self._text_rows(node, rows)
            if isinstance(node, Exists):
                return list(rows)
            messages = b.messages
            check = range_matcher(node)
            return [i for i in rows if check(messages[i])]
        if field == "stream":
            streams = b.streams
            decided: dict[str, bool] = {}
            value_check = _value_check(node)
            for s in set(streams[i] for i in rows):
                decided[s] = (isinstance(node, Exists) or value_check(s)) if s else False
            if all(decided.values()):
                return list(rows)
            return [i for i in rows if decided[streams[i]]]
        if field == "log.offset":
            offsets = b.offsets
            value_check = _value_check(node)
            return [i for i in rows if value_check(offsets[i])]
        if field == TIMESTAMP_FIELD:
            times = b.times
            if isinstance(node, Range):
                lo, hi = time_range(node)
                return [i for i in rows if lo <= times[i] <= hi]
            if isinstance(node, Exists):
                return list(rows)
            stamps = self._timestamp_strings()
            value_check = value_matcher(node)
            return [i for i in rows if value_check(stamps[i])]
        matcher = compile_matcher(node, MESSAGE)
        times = b.times
        if _parsed_only(field):
            # Only parsed fields can hold it: their own dict answers as the document.
            fields = b.fields or {}
            empty: dict[str, Any] = {}
            return [i for i in rows if matcher(fields.get(i) or empty, times[i])]
        doc = self._doc
        return [i for i in rows if matcher(doc(i), times[i])]

    def _doc(self, row: int) -> dict[str, Any]:
        """What the row's document holds besides the file's metadata: the columns,
        ``log.file.path``, flags and parsed fields (renamed as documents rename them)."""
        b = self.batch
        log: dict[str, Any] = {"file": {"path": b.ctx.path}, "offset": b.offsets[row]}
        flags = b.flags.get(row) if b.flags else None
        if flags:
            log["flags"] = list(flags)
        doc: dict[str, Any] = {"message": b.messages[row], "log": log}
        if b.streams[row]:
            doc["stream"] = b.streams[row]
        own = b.fields.get(row) if b.fields else None
        if own:
            parsed_log = own.get("log")
            if isinstance(parsed_log, dict):
                # written inside the document's `log` object (`codecs.document`), a
                # member named like kubelogs' own one renamed `<name>_parsed`
                log.update((f"{k}_parsed" if k in LOG_OWN else k, v) for k, v in parsed_log.items())
                own = {k: v for k, v in own.items() if k != "log"}
            if RESERVED_TOP.isdisjoint(own):
                doc.update(own)
            else:
                doc.update((f"{k}_parsed" if k in RESERVED_TOP else k, v) for k, v in own.items())
        return doc

    def _text_rows(self, node: Match, rows: Sequence[int]) -> list[int]:
        """`store.matcher.text_matcher` over the rows, cheaply.

        Over a whole batch: the messages are joined and lower-cased once for all terms;
        the term's longest literal part (every match holds it) is looked for with
        `str.find` (C speed), and the term's regex runs in the joined text only from the
        first occurrence of its first literal part in a row that holds the key, to the
        row's end (lookarounds see the newline before a row and the end of the search
        after it as they see the ends of a lone message). On fewer rows (after an
        ``and`` narrowed them) each message is lower-cased and tested alone."""
        key, first, search = _text_test(node.value, node.phrase)
        if key and "\n" not in key and self._whole(rows):
            joined = self._joined_lower()
            if joined is not None:
                return self._scan(joined, key, first, search)
        messages = self.batch.messages
        lows = self._lows
        out: list[int] = []
        for i in rows:
            low = lows.get(i)
            if low is None:
                low = lows[i] = messages[i].lower()
            if key in low and (search is None or search(low)):
                out.append(i)
        return out

    def _scan(
        self, joined: str, key: str, first: str, search: Callable[[str, int, int], Any] | None
    ) -> list[int]:
        out: list[int] = []
        pos = joined.find(key)
        if pos == -1:
            return out
        starts = self._row_starts()
        n = len(starts)
        size = len(joined)
        while pos != -1:
            row = bisect_right(starts, pos) - 1
            row_end = starts[row + 1] - 1 if row + 1 < n else size
            if search is None:
                out.append(row)
            else:
                if first == key:
                    at = pos  # the first occurrence in this row: rows before had none
                elif first:
                    at = joined.find(first, starts[row], row_end)
                else:
                    at = starts[row]
                if at != -1 and search(joined, at, row_end) is not None:
                    out.append(row)
            if row + 1 >= n:
                break
            pos = joined.find(key, row_end + 1)
        return out

    def _whole(self, rows: Sequence[int]) -> bool:
        return isinstance(rows, range) and len(rows) == len(self.batch.messages)

    def _joined_lower(self) -> str | None:
        """The messages lower-cased and joined by newlines, or None when lower-casing
        changed the length (a few non-ASCII letters): positions would not map back."""
        if self._joined is None:
            messages = self.batch.messages
            joined = "\n".join(messages).lower()
            expected = sum(map(len, messages)) + len(messages) - 1
            self._joined = joined if len(joined) == expected else ""
        return self._joined or None

    def _row_starts(self) -> list[int]:
        """Where each message starts in the joined text (only needed on a hit)."""
        if not self._starts:
            lengths = map(len, self.batch.messages[:-1])
            self._starts = list(accumulate(map((1).__add__, lengths), initial=0))
        return self._starts

    def _timestamp_strings(self) -> list[str]:
        """``@timestamp`` as rendered (only a ``@timestamp:value`` match needs it)."""
        if self._timestamps is None:
            b = self.batch
            if b.tstrs is not None and len(b.tstrs) == len(b.times):
                self._timestamps = [t.decode() for t in b.tstrs]
            else:
                self._timestamps = [format_timestamp(t) for t in b.times]
        return self._timestamps


@functools.lru_cache(maxsize=1024)
def _text_test(value: str, phrase: bool) -> tuple[str, str, Callable[..., Any] | None]:
    """For `text_matcher(value, phrase)` on lower-cased text: a substring every match
    contains (may be empty), the literal every match starts with (may be empty), and
    the regex search (None: the substring decides)."""
    pattern = text_pattern(value, phrase)
    lowered = value.lower()
    if pattern is None:
        return lowered, "", None
    parts = lowered.split("*") if not phrase and "*" in lowered else WORD_RE.findall(lowered)
    search: Callable[..., Any] = pattern.search
    wildcard = not phrase and "*" in lowered
    if (
        wildcard
        and len(parts) >= 3
        and all(WORD_RE.fullmatch(p) for p in parts[1:-1])
        and all(p == "" or WORD_RE.fullmatch(p) for p in (parts[0], parts[-1]))
    ):
        search = _WordWildcard(parts)
    return max(parts, key=len, default=""), parts[0] if parts else "", search


class _WordWildcard:
    r"""``a*b*c`` without backtracking: the regex ``(?<!\w)a\w*b\w*c(?!\w)`` matches
    exactly the whole words that start with ``a``, end with ``c`` and hold ``b`` in
    between, which a left-to-right `str.find` decides in linear time. (The regex
    backtracks quadratically per part on a long word: a hostile line must not stall
    a filter.) Called like `re.Pattern.search`: truthy when a word matches."""

    __slots__ = ("_first", "_last", "_middle")

    def __init__(self, parts: list[str]) -> None:
        self._first = parts[0]
        self._last = parts[-1]
        self._middle = parts[1:-1]

    def __call__(self, text: str, pos: int = 0, endpos: int | None = None) -> bool | None:
        end = len(text) if endpos is None else endpos
        for m in WORD_RE.finditer(text, pos, end):
            start = m.start()
            if start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
                continue  # the rest of a word that began before `pos`
            if self._word_matches(m.group()):
                return True
        return None

    def _word_matches(self, word: str) -> bool:
        if not word.startswith(self._first):
            return False
        i = len(self._first)
        for part in self._middle:
            j = word.find(part, i)
            if j < 0:
                return False
            i = j + len(part)
        return len(word) - len(self._last) >= i and word.endswith(self._last)


def _value_check(node: Match | Exists | Range) -> Callable[[Any], bool]:
    if isinstance(node, Match):
        return value_matcher(node)
    if isinstance(node, Range):
        return range_matcher(node)
    return lambda value: True


def _cost(node: Node) -> int:
    """Cheap tests first in an ``and``: they leave fewer rows to the message tests."""
    if isinstance(node, Match | Exists | Range):
        field = node.field or MESSAGE
        return 2 if field == MESSAGE else 0
    return 1 if isinstance(node, Not) else 3


def checked_condition(text: str) -> str:
    """A pydantic validator body: `text` if it is a usable condition, else a
    `ValueError` whose message ends with the condition and a caret under the error, so
    `kubelogs validate` shows it as `kubelogs search` does."""
    try:
        Condition(text)
    except ConditionError as exc:
        detail = "\n".join("    " + line for line in exc.detail.splitlines())
        raise ValueError(f"{exc}\n{detail}" if detail else str(exc)) from None
    return text
