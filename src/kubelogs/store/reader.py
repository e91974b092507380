"""Reading the store: search, count and follow, from any process while a writer writes.

Word searches: for a block in range whose query still depends on the message, the reader
first reads, checks, decompresses and lower-cases only the block's message column
(`store.column`): terms whose words are absent make the block's query false or true
without the rest of the block, and when the query requires words, only the lines holding
them are matched, and a block without such a line is not read further. A query on the
message alone is matched on the column's messages; documents are rendered from the
block's columns (`store.block`) only for queries on other fields and for the hits
returned (at most `limit` per block for `search`), never for `count`.

A reader opens the index read-only; every SQL statement sees a committed snapshot (WAL),
and every block it lists was fsynced before that commit, so it is complete on disk. A
segment deleted by retention between listing and reading is skipped (its data is gone
by policy). A block whose CRC does not match is skipped and counted in
`corrupt_blocks`: a damaged disk never produces garbage documents.

Order: `search` returns the newest `limit` matches, oldest first, reading blocks newest
first and stopping once no older block can hold a newer match; `iter_matches` streams
every match in time order (a merge over blocks ordered by their first time); `poll`
returns the matches of blocks committed after a given block id, for ``--follow``.

Resource handling: the reader owns the SQLite connection and one descriptor per segment
it has read; `close` (or the context manager) releases them.
"""

from __future__ import annotations

import heapq
import json
import os
import sqlite3
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec

from kubelogs.store.aliases import FIELD_ALIASES, resolve_aliases
from kubelogs.store.block import DecodedBlock
from kubelogs.store.column import SearchColumn
from kubelogs.store.errors import StoreCorruptError
from kubelogs.store.index import (
    BLOCK_COLUMNS,
    SEGMENTS_DIR,
    BlockRecord,
    Layout,
    connect,
    has_field_sets,
    read_layout,
    row_fields,
)
from kubelogs.store.matcher import (
    DocMatcher,
    compile_matcher,
    message_predicate,
    range_matcher,
    value_matcher,
)
from kubelogs.store.planner import (
    MAX_TIME,
    MIN_TIME,
    OFFSET_FIELDS,
    Prefilter,
    message_lines,
    needs_no_row_fields,
    needs_only_columns,
    needs_only_message,
    prefilter,
    present_fields,
    query_fields,
    split_time,
    uses_message,
    uses_offset,
    with_column,
    with_fields,
    with_labels,
    with_span,
)
from kubelogs.store.query import Match, Node, Range, Residual
from kubelogs.store.query_parser import parse_query
from kubelogs.store.segments import (
    BlockCodec,
    BlockCorrupt,
    checksum,
    read_exact,
    segment_name,
)

_decode_json = msgspec.json.Decoder().decode


@dataclass(frozen=True, slots=True, order=True)
class Hit:
    """One matching document; ordered by time, then by where it is stored."""

    time_ns: int
    block: int
    row: int
    doc: bytes = field(compare=False)


@dataclass(slots=True)
class PreparedQuery:
    """A parsed query with its time interval split out, ready for any reader call."""

    node: Node
    lo: int
    hi: int
    label_sets: list[int] | None
    """Label sets that may match (None: all); refreshed when new ones appear."""
    known_label_sets: int
    field_sets: list[int] | None = None
    """Field lists of blocks that may match (None: all): a block whose list lacks a
    field the query requires is excluded in SQL (blocks without a list never are)."""
    known_field_sets: int = 0
    until_block: int | None = None
    """Only blocks up to this id (a snapshot, so `--follow` can continue after it)."""
    block_range: tuple[int, int] | None = None
    """Only blocks with ids in this inclusive range, so that processes can share a
    search (`store.parallel`)."""
    matchers: dict[Residual, tuple[DocMatcher | None, Prefilter]] = field(default_factory=dict)
    by_labels: dict[tuple[Residual, int], Residual] = field(default_factory=dict)
    """Memo of `with_labels` per (block residual, label set): blocks share both."""
    plans: dict[tuple[Residual, bool], _RunPlan] = field(default_factory=dict)
    """Memo of `StoreReader._plan` per (run residual, rows chosen by the column)."""


@dataclass(frozen=True, slots=True)
class _RunPlan:
    matcher: DocMatcher | None
    """None: every document of the run matches (within the time interval)."""
    prefilter: Prefilter
    rejects: Callable[[bytes], bool] | None
    """`prefilter.rejects`, None when it has nothing to check."""
    decode: Callable[[bytes], Any]
    message_only: bool
    """The matcher looks at the message alone, or at the message and the offset: rows
    of events groups are matched on the message and offset columns, without rendering
    their documents (`needs_only_columns`)."""
    row_invariant: bool = False
    """The matcher reads only file and parsed fields (`needs_no_row_fields`): the file's
    fields decide for every row of an events run that has no parsed fields or flags."""
    text_check: Callable[[str], bool] | None = None
    """For a query of words and phrases of the message alone (`message_predicate`): the
    matcher's test of the message text, applied to the column's messages in one
    comprehension."""
    offset_field: str | None = None
    """The matcher reads the offset: the column's value is given to it under this name."""
    offset_check: Callable[[Any], bool] | None = None
    """For a query that is one condition on the offset: its test of the offset value,
    applied to the offset column in one comprehension."""

    def needs_doc(self, block: DecodedBlock, run: int) -> bool:
        return self.matcher is not None and not (self.message_only and not block.is_raw(run))


@dataclass(frozen=True, slots=True)
class StoreStats:
    blocks: int
    docs: int
    segments: int
    bytes: int
    raw_bytes: int
    min_time: int | None
    max_time: int | None


class StoreReader:
    """Read-only access to a store directory."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fds: dict[int, int] = {}
        self._labels: dict[int, dict[str, str]] = {}
        self._fields: dict[int, frozenset[str]] = {}
        """`present_fields` of each field list, by id."""
        self._leaves: set[str] = set()
        """Every field list's leaf paths: the names `unknown_fields` suggests."""
        self._codec = BlockCodec()
        self.corrupt_blocks = 0
        """Blocks skipped because their bytes do not match the index."""
        self._conn: sqlite3.Connection | None = connect(self.path, readonly=True)
        try:
            self.layout: Layout = read_layout(self._conn, self.path)
            self._has_fields = has_field_sets(self._conn)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StoreCorruptError(f"{self.path}: the store index cannot be read ({exc})") from exc
        except BaseException:
            self.close()
            raise
        message = msgspec.defstruct(
            "_Message", [("value", Any, None)], rename={"value": self.layout.message_field}
        )
        self._message_decoder = msgspec.json.Decoder(message).decode

    # -- queries -----------------------------------------------------------------------

    def prepare(
        self, query: str | Node, *, since_ns: int | None = None, until_ns: int | None = None
    ) -> PreparedQuery:
        """Parse (if needed) and plan `query`; raises `QueryError` for a bad query."""
        node = parse_query(query) if isinstance(query, str) else query
        node = resolve_aliases(node, self.layout.schema)
        node, lo, hi = split_time(node)
        if since_ns is not None:
            lo = max(lo, since_ns)
        if until_ns is not None:
            hi = min(hi, until_ns)
        prepared = PreparedQuery(node, lo, hi, None, 0)
        self._refresh_label_sets(prepared)
        self._refresh_field_sets(prepared)
        return prepared

    def label_values(self, query: str | Node | PreparedQuery, field: str) -> list[str]:
        """The values of the indexed `field` in the label sets that may match `query`
        (from the index alone), sorted: which containers a pod has, which pods a
        namespace has."""
        q = self._prepared(query)
        ids = q.label_sets if q.label_sets is not None else list(self._labels)
        values = {self._label_values(i).get(field) for i in ids}
        return sorted(v for v in values if v is not None)

    def unknown_fields(self, query: str | Node | PreparedQuery) -> list[tuple[str, str | None]]:
        """Fields the query names that no document in its time range has, each with the
        closest known field name (or None): answered from the field lists alone. Empty
        when any block in range has no list (written before field lists existed)."""
        import difflib

        q = self._prepared(query)
        wanted = query_fields(q.node, self.layout)
        if not wanted or not self._has_fields:
            return []
        sql = "SELECT DISTINCT field_set FROM blocks WHERE max_time >= ? AND min_time <= ?"
        params: list[Any] = [q.lo, q.hi]
        if q.until_block is not None:
            sql += " AND id <= ?"
            params.append(q.until_block)
        ids = [row[0] for row in self._sql(sql, tuple(params))]
        if not ids or None in ids:
            # No block in range: every field is "unknown" there, and naming one as its
            # own closest match (`--since 15m` on older data) misleads; `range_hint` says
            # what is wrong instead.
            return []
        present: set[str] = set()
        for i in ids:
            present |= self._field_set(i)
        names = sorted({*self._leaves, *row_fields(self.layout.schema)})
        out: list[tuple[str, str | None]] = []
        aliases = FIELD_ALIASES.get(self.layout.schema, {})
        for alias, fields in aliases.items():
            # `level` stands for several fields (`store.aliases`): unknown only when
            # none of them is present, and then reported under the name the user wrote.
            if all(f in wanted for f in fields):
                wanted = [w for w in wanted if w not in fields or w == fields[0]]
                if any(f in present for f in fields):
                    wanted.remove(fields[0])
                else:
                    wanted[wanted.index(fields[0])] = alias
        for name in wanted:
            if name not in present:
                # A short name of a known field (`namespace`), else a close spelling
                # (`namspace`); 0.75 keeps `labels.app` from suggesting `namespace`.
                ends = [n for n in names if n.endswith("." + name)]
                close = ends or difflib.get_close_matches(name, names, n=1, cutoff=0.75)
                out.append((name, min(close, key=len) if close else None))
        return out

    def count(self, query: str | Node | PreparedQuery) -> int:
        """How many documents match (index-only for label and time conditions)."""
        q = self._prepared(query)
        total = 0
        for ref in self._blocks(q, order="id"):
            inside = q.lo <= ref.min_time and ref.max_time <= q.hi
            residual, column = self._block_residual(q, ref)
            if residual is False:
                continue
            need_data = False
            for label_set, docs in self._block_labels(ref.id):
                r = self._run_residual(q, residual, label_set)
                if r is True and inside:
                    total += docs
                elif r is not False:
                    need_data = True
            if need_data:
                _, matches = self._block_matches(
                    q, ref, residual, column, skip_index_counted=inside
                )
                total += len(matches)
        return total

    def search(
        self,
        query: str | Node | PreparedQuery,
        *,
        limit: int = 100,
        before: tuple[int, int, int] | None = None,
    ) -> list[Hit]:
        """The newest `limit` matches (all if 0), oldest first; with `before` (a hit's
        time, block and row), only matches strictly older in that order: a cursor for
        pages that hold every match once however many share one nanosecond."""
        q = self._prepared(query)
        if before is not None and before[0] < q.hi:
            q = replace(q, hi=before[0])  # not the caller's query: it may be reused
        if limit <= 0:
            every = self.iter_matches(q)
            return [h for h in every if before is None or (h.time_ns, h.block, h.row) < before]
        newest: list[Hit] = []  # min-heap of the newest `limit` hits
        for ref in self._blocks(q, order="max_time DESC"):
            if len(newest) >= limit and ref.max_time < newest[0].time_ns:
                break
            residual, column = self._block_residual(q, ref)
            if residual is False:
                continue
            for hit in self._block_hits(q, ref, residual, column, newest=limit, before=before):
                if len(newest) < limit:
                    heapq.heappush(newest, hit)
                elif hit > newest[0]:
                    heapq.heapreplace(newest, hit)
        return sorted(newest)

    def iter_matches(self, query: str | Node | PreparedQuery) -> Iterator[Hit]:
        """Every match in time order, streaming (memory: the overlapping blocks)."""
        q = self._prepared(query)
        pending: list[Hit] = []
        for ref in self._blocks(q, order="min_time"):
            while pending and pending[0].time_ns < ref.min_time:
                yield heapq.heappop(pending)
            residual, column = self._block_residual(q, ref)
            if residual is False:
                continue
            for hit in self._block_hits(q, ref, residual, column):
                heapq.heappush(pending, hit)
        while pending:
            yield heapq.heappop(pending)

    def last_block(self) -> int:
        """The id of the newest committed block (0 when empty): a position for `poll`."""
        row = self._conn_().execute("SELECT max(id) FROM blocks").fetchone()
        return int(row[0] or 0)

    def poll(self, query: str | Node | PreparedQuery, after_block: int) -> tuple[list[Hit], int]:
        """Matches in blocks committed after `after_block`, in time order per poll, and
        the new position."""
        q = self._prepared(query)
        snapshot = self.last_block()  # first: a block committed meanwhile waits for next time
        q.until_block = snapshot
        self._refresh_label_sets(q)
        self._refresh_field_sets(q)
        hits: list[Hit] = []
        for ref in self._blocks(q, order="id", after=after_block):
            residual, column = self._block_residual(q, ref)
            if residual is not False:
                hits.extend(self._block_hits(q, ref, residual, column))
        hits.sort()
        return hits, max(snapshot, after_block)

    def block_sizes(self, until_block: int) -> list[tuple[int, int]]:
        """(id, documents) of every block up to `until_block`, by id."""
        rows = self._sql("SELECT id, docs FROM blocks WHERE id <= ? ORDER BY id", (until_block,))
        return [(int(i), int(n)) for i, n in rows]

    def stats(self) -> StoreStats:
        conn = self._conn_()
        blocks, docs, raw, lo, hi = conn.execute(
            "SELECT count(*), coalesce(sum(docs), 0), coalesce(sum(raw_bytes), 0), "
            "min(min_time), max(max_time) FROM blocks"
        ).fetchone()
        segments, size = conn.execute(
            "SELECT count(*), coalesce(sum(bytes), 0) FROM segments"
        ).fetchone()
        return StoreStats(blocks, docs, segments, size, raw, lo, hi)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- planning helpers ----------------------------------------------------------------

    def _prepared(self, query: str | Node | PreparedQuery) -> PreparedQuery:
        return query if isinstance(query, PreparedQuery) else self.prepare(query)

    def _refresh_label_sets(self, q: PreparedQuery) -> None:
        rows = self._sql("SELECT id, labels FROM label_sets WHERE id > ?", (q.known_label_sets,))
        for label_id, text in rows:
            self._labels[label_id] = json.loads(text)
        q.known_label_sets = max(self._labels, default=0)
        candidates = [
            i
            for i, labels in self._labels.items()
            if with_labels(q.node, labels, self.layout) is not False
        ]
        q.label_sets = None if len(candidates) == len(self._labels) else candidates

    def _refresh_field_sets(self, q: PreparedQuery) -> None:
        if not self._has_fields:
            return
        rows = self._sql(
            "SELECT id, fields FROM field_sets WHERE id > ?", (max(self._fields, default=0),)
        )
        for set_id, text in rows:
            leaves = json.loads(text)
            self._leaves.update(leaves)
            self._fields[set_id] = present_fields(leaves, self.layout)
        candidates = [
            i
            for i, present in self._fields.items()
            if with_fields(q.node, present, self.layout) is not False
        ]
        q.known_field_sets = max(self._fields, default=0)
        q.field_sets = None if len(candidates) == len(self._fields) else candidates

    def _field_set(self, set_id: int) -> frozenset[str]:
        present = self._fields.get(set_id)
        if present is None:
            rows = self._sql("SELECT fields FROM field_sets WHERE id = ?", (set_id,))
            names = json.loads(rows[0][0]) if rows else []
            self._leaves.update(names)
            present = self._fields[set_id] = present_fields(names, self.layout)
        return present

    def _label_values(self, label_set: int) -> dict[str, str]:
        labels = self._labels.get(label_set)
        if labels is None:
            row = (
                self._conn_()
                .execute("SELECT labels FROM label_sets WHERE id = ?", (label_set,))
                .fetchone()
            )
            labels = self._labels[label_set] = json.loads(row[0]) if row else {}
        return labels

    def _blocks(self, q: PreparedQuery, *, order: str, after: int = 0) -> Iterator[BlockRecord]:
        sql = f"SELECT {BLOCK_COLUMNS} FROM blocks WHERE max_time >= ? AND min_time <= ?"
        params: list[Any] = [q.lo, q.hi]
        if after:
            sql += " AND id > ?"
            params.append(after)
        if q.until_block is not None:
            sql += " AND id <= ?"
            params.append(q.until_block)
        if q.block_range is not None:
            sql += " AND id BETWEEN ? AND ?"
            params.extend(q.block_range)
        if q.label_sets is not None:
            sql += (
                " AND id IN (SELECT block FROM block_labels WHERE label_set IN "
                "(SELECT value FROM json_each(?)))"
            )
            params.append(json.dumps(q.label_sets))
        if q.field_sets is not None:
            sql += " AND (field_set IS NULL OR field_set IN (SELECT value FROM json_each(?)))"
            params.append(json.dumps(q.field_sets))
        sql += f" ORDER BY {order}"
        for row in self._sql(sql, tuple(params)):
            yield BlockRecord(*row)

    def _block_labels(self, block: int) -> list[tuple[int, int]]:
        return self._sql("SELECT label_set, docs FROM block_labels WHERE block = ?", (block,))

    def _block_residual(
        self, q: PreparedQuery, ref: BlockRecord
    ) -> tuple[Residual, SearchColumn | None]:
        """The query as far as the block's time span and message column decide it, and
        the column when it was read (None: not needed). A block whose column cannot
        be read is corrupt: False."""
        residual: Residual = with_span(q.node, ref.min_time, ref.max_time)
        column = None
        if not isinstance(residual, bool) and uses_message(residual, self.layout):
            text = self._read_text(ref)
            if text is None:
                return False, None
            column = SearchColumn(text)
            residual = with_column(residual, column, self.layout)
        return residual, column

    def _run_residual(self, q: PreparedQuery, residual: Residual, label_set: int) -> Residual:
        key = (residual, label_set)
        r = q.by_labels.get(key)
        if r is None:
            r = q.by_labels[key] = with_labels(residual, self._label_values(label_set), self.layout)
        return r

    def _matcher(self, q: PreparedQuery, residual: Residual) -> tuple[DocMatcher | None, Prefilter]:
        cached = q.matchers.get(residual)
        if cached is None:
            if residual is True:
                cached = (None, prefilter(True, self.layout))
            else:
                assert not isinstance(residual, bool)
                cached = (
                    compile_matcher(residual, self.layout.message_field),
                    prefilter(residual, self.layout),
                )
            q.matchers[residual] = cached
        return cached

    # -- reading blocks ------------------------------------------------------------------

    def _block_hits(
        self,
        q: PreparedQuery,
        ref: BlockRecord,
        residual: Residual,
        column: SearchColumn | None,
        newest: int = 0,
        before: tuple[int, int, int] | None = None,
    ) -> list[Hit]:
        """The block's matches with their documents; with `newest`, only that many of
        the newest (documents are rendered for those alone); with `before`, only those
        before that (time, block, row)."""
        block, matches = self._block_matches(q, ref, residual, column)
        if before is not None:
            matches = [(row, t) for row, t in matches if (t, ref.id, row) < before]
        if block is None or not matches:
            return []
        if 0 < newest < len(matches):
            matches = sorted(heapq.nlargest(newest, matches, key=lambda m: (m[1], m[0])))
        docs = block.docs([row for row, _ in matches])
        return [Hit(t, ref.id, row, doc) for (row, t), doc in zip(matches, docs, strict=True)]

    def _block_matches(
        self,
        q: PreparedQuery,
        ref: BlockRecord,
        residual: Residual,
        column: SearchColumn | None,
        *,
        skip_index_counted: bool = False,
    ) -> tuple[DecodedBlock | None, list[tuple[int, int]]]:
        """The block and the (row, time) of its matches, rows ascending.

        With `skip_index_counted`, runs whose label set alone makes the query true are
        left out (`count` took them from the index). With the block's message `column`,
        only rows whose line can match are looked at (`message_lines`), and a block
        without any is not read further."""
        selected: list[int] | None = None
        if column is not None:
            selected = message_lines(residual, column, self.layout)
            if selected is not None and not selected:
                return None, []
        block = self._read_block(ref, column.text if column is not None else None)
        if block is None:
            return None, []
        plans: dict[int, _RunPlan | None] = {}

        def plan_of(label_set: int) -> _RunPlan | None:
            if label_set not in plans:
                r = self._run_residual(q, residual, label_set)
                skip = r is False or (r is True and skip_index_counted)
                plans[label_set] = None if skip else self._plan(q, r, selected is not None)
            return plans[label_set]

        plans_by_run = [plan_of(label_set) for label_set, _, _ in block.runs]
        only = plans_by_run[0] if plans_by_run else None
        if (
            only is not None
            and not only.row_invariant
            and not block.has_raw_runs()
            and all(p is only for p in plans_by_run)
        ):
            # One test for the whole block (the usual case: stdout and stderr runs differ
            # in label set, not in what the query asks of them): no work per run.
            whole: Sequence[int] = selected if selected is not None else range(block.rows)
            return block, self._run_matches(q, block, only, 0, whole)
        out: list[tuple[int, int]] = []
        next_selected = 0
        for run, (_, first, end) in enumerate(block.runs):
            rows: Sequence[int] = range(first, end)
            if selected is not None:
                # Only the rows the column chose, found by bisecting (many runs with mixed
                # streams, few rows).
                stop = bisect_left(selected, end, next_selected)
                rows, next_selected = selected[next_selected:stop], stop
                if not rows:
                    continue
            plan = plans_by_run[run]
            if plan is not None:
                out += self._run_matches(q, block, plan, run, rows)
        return block, out

    def _run_matches(
        self, q: PreparedQuery, block: DecodedBlock, plan: _RunPlan, run: int, rows: Sequence[int]
    ) -> list[tuple[int, int]]:
        """(row, time) of the matches among `rows` (ascending) of one run of `block`, or
        of several runs of events that share `plan` (then `run` is any of them and
        `plan.row_invariant` is false)."""
        times, lo, hi = block.times, q.lo, q.hi
        if plan.matcher is None:
            return [(i, t) for i in rows if lo <= (t := times[i]) <= hi]
        if not plan.needs_doc(block, run):
            messages = block.messages()
            check = plan.text_check
            if check is not None:  # a single word or phrase: its test on the text alone
                return [(i, t) for i in rows if lo <= (t := times[i]) <= hi and check(messages[i])]
            offset_check = plan.offset_check
            if offset_check is not None:  # one condition on the offset: the column alone
                offsets = block.offsets()
                return [
                    (i, t) for i in rows if lo <= (t := times[i]) <= hi and offset_check(offsets[i])
                ]
            return [m for i in rows if (m := self._match(q, block, plan, i, None)) is not None]
        if plan.row_invariant and not block.is_raw(run):
            # Kubernetes metadata, parsed fields: the file's fields decide for every row
            # without parsed fields or flags; only the others are rendered.
            base = self._doc_matches(plan, block.file_fields_doc(run), times[rows[0]])
            special = block.rows_with_extras(rows[0], rows[-1] + 1)
            if not special:
                return [(i, t) for i in rows if lo <= (t := times[i]) <= hi] if base else []
            own = dict(zip(special, block.docs(special), strict=True))
            return [
                (i, t)
                for i in rows
                if lo <= (t := times[i]) <= hi
                and (base if i not in own else self._doc_matches(plan, own[i], t))
            ]
        if isinstance(rows, range):
            data, starts = block.rendered()
            if plan.prefilter:
                rows = candidate_rows(plan.prefilter, data, starts, rows.start, rows.stop)
            docs = [data[starts[i] : starts[i + 1]] for i in rows]
        else:
            docs = block.docs(rows)
        return [
            m
            for i, doc in zip(rows, docs, strict=True)
            if (m := self._match(q, block, plan, i, doc)) is not None
        ]

    def _plan(self, q: PreparedQuery, residual: Residual, column_checked: bool) -> _RunPlan:
        """How to test one document of a run whose query is `residual`."""
        key = (residual, column_checked)
        plan = q.plans.get(key)
        if plan is None:
            matcher, pre = self._matcher(q, residual)
            if column_checked:
                pre = Prefilter((), pre.exact)  # the message column has checked the words
            decode: Callable[[bytes], Any] = _decode_json
            if not isinstance(residual, bool) and needs_only_message(residual, self.layout):
                decode = self._decode_message
            only_message = decode is not _decode_json
            text_check = None
            offset_field = None
            offset_check: Callable[[Any], bool] | None = None
            if not isinstance(residual, bool):
                text_check = message_predicate(residual, self.layout.message_field)
                if needs_only_columns(residual, self.layout) and uses_offset(residual, self.layout):
                    only_message = True  # events rows: matched on the columns
                    offset_field = OFFSET_FIELDS[self.layout.schema]
                    offset_check = _offset_check(residual, offset_field)
            row_invariant = not isinstance(residual, bool) and needs_no_row_fields(
                residual, self.layout
            )
            plan = q.plans[key] = _RunPlan(
                matcher,
                pre,
                pre.rejects if pre else None,
                decode,
                only_message,
                row_invariant,
                text_check,
                offset_field,
                offset_check,
            )
        return plan

    def _match(
        self, q: PreparedQuery, block: DecodedBlock, plan: _RunPlan, i: int, doc: bytes | None
    ) -> tuple[int, int] | None:
        """(row, time) if row `i` of `block` matches; `doc` is its document when the plan
        needs one (`_RunPlan.needs_doc`)."""
        t = block.times[i]
        if t < q.lo or t > q.hi:
            return None
        matcher = plan.matcher
        if matcher is not None:
            if doc is None:
                row: dict[str, Any] = {self.layout.message_field: block.messages()[i]}
                if plan.offset_field is not None:
                    row[plan.offset_field] = block.offsets()[i]
                if not matcher(row, t):
                    return None
            elif not self._doc_matches(plan, doc, t):
                return None
        return i, t

    @staticmethod
    def _doc_matches(plan: _RunPlan, doc: bytes, t: int) -> bool:
        """Whether `doc` (at time `t`) matches the plan's matcher."""
        assert plan.matcher is not None
        if plan.rejects is not None and plan.rejects(doc):
            return False
        try:
            decoded = plan.decode(doc)
        except msgspec.DecodeError:
            return False
        return isinstance(decoded, dict) and plan.matcher(decoded, t)

    def _decode_message(self, doc: bytes) -> dict[str, Any]:
        """The document's message field only (what a query on the message needs): a
        decode that skips the rest of the document, about twice as fast."""
        decoded: Any = self._message_decoder(doc)
        value = decoded.value
        return {} if value is None else {self.layout.message_field: value}

    def _fd(self, segment: int) -> int | None:
        fd = self._fds.get(segment)
        if fd is None:
            try:
                fd = os.open(self.path / SEGMENTS_DIR / segment_name(segment), os.O_RDONLY)
            except FileNotFoundError:
                return None  # deleted by retention after we listed it
            if len(self._fds) >= 64:
                os.close(self._fds.pop(next(iter(self._fds))))
            self._fds[segment] = fd
        return fd

    def _read_text(self, ref: BlockRecord) -> bytes | None:
        """The block's message column (decompressed), or None when it cannot be read
        (counted in `corrupt_blocks`; the block is skipped)."""
        fd = self._fd(ref.segment)
        if fd is None:
            return None
        try:
            frame = read_exact(fd, ref.offset, ref.text_len)
            if checksum(frame) != ref.text_crc:
                raise BlockCorrupt("message column checksum mismatch")
            return self._codec.decompress(frame)
        except BlockCorrupt:
            self.corrupt_blocks += 1
            return None

    def _read_block(self, ref: BlockRecord, text: bytes | None) -> DecodedBlock | None:
        """The block, reading its message column too unless `text` is it already."""
        if text is None:
            text = self._read_text(ref)
            if text is None:
                return None
        fd = self._fd(ref.segment)
        if fd is None:
            return None
        try:
            frame = read_exact(fd, ref.offset + ref.text_len, ref.data_len)
            if checksum(frame) != ref.data_crc:
                raise BlockCorrupt("checksum mismatch")
            raw = self._codec.decompress(frame, ref.raw_bytes)
            if len(raw) != ref.raw_bytes:
                raise BlockCorrupt("block size differs from the index")
            block = DecodedBlock(text, raw, self.layout.schema)
            if block.rows != ref.docs:
                raise BlockCorrupt("document count differs from the index")
        except BlockCorrupt:
            self.corrupt_blocks += 1
            return None
        return block

    def _sql(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self._conn_().execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreCorruptError(f"{self.path}: the store index cannot be read ({exc})") from exc

    def _conn_(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreCorruptError(f"{self.path}: the store reader is closed")
        return self._conn


def _offset_check(residual: Residual, offset_field: str) -> Callable[[Any], bool] | None:
    """The test of one offset value when `residual` is a single range or value match on
    the offset field (`matcher.range_matcher`, `value_matcher`); None otherwise."""
    if isinstance(residual, Range) and residual.field == offset_field:
        return range_matcher(residual)
    if isinstance(residual, Match) and residual.field == offset_field:
        return value_matcher(residual)
    return None


def candidate_rows(
    pre: Prefilter, data: bytes, starts: list[int], first: int, end: int
) -> Sequence[int]:
    """Rows of a run whose raw JSON contains the prefilter's most selective needle.

    Searches the run's bytes once with `bytes.find` (C speed) and jumps from one hit to
    the next document, instead of looking at every document: this is what makes a word
    search cost a scan of bytes rather than a JSON decode per document.
    """
    lo, hi = starts[first], starts[end]
    if pre.exact:
        hay, base, needle = data, 0, max(pre.exact, key=len)
    else:
        chunk = data[lo:hi]
        if not chunk.isascii():
            return range(first, end)  # `bytes.lower` folds ASCII only: check per document
        hay, base, needle = chunk.lower(), lo, max(pre.lowered, key=len)
        if any(n not in hay for n in pre.lowered):
            return ()
    rows: list[int] = []
    pos = hay.find(needle, lo - base, hi - base)
    while pos != -1:
        i = bisect_right(starts, pos + base, first, end) - 1
        rows.append(i)
        pos = hay.find(needle, starts[i + 1] - base, hi - base)
    return rows


__all__ = ["MAX_TIME", "MIN_TIME", "Hit", "PreparedQuery", "StoreReader", "StoreStats"]
