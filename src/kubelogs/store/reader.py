"""Reading the store: search, count and follow, from any process while a writer writes.

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
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec

from kubelogs.store.errors import StoreCorruptError
from kubelogs.store.index import SEGMENTS_DIR, Layout, connect, read_layout
from kubelogs.store.matcher import DocMatcher, compile_matcher
from kubelogs.store.planner import (
    MAX_TIME,
    MIN_TIME,
    Prefilter,
    Residual,
    prefilter,
    split_time,
    uses_message,
    with_bloom,
    with_labels,
    with_span,
)
from kubelogs.store.query import Node
from kubelogs.store.query_parser import parse_query
from kubelogs.store.segments import (
    BlockCodec,
    BlockCorrupt,
    DecodedBlock,
    checksum,
    decode_block,
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


@dataclass(frozen=True, slots=True)
class _BlockRef:
    id: int
    segment: int
    offset: int
    bloom_len: int
    data_len: int
    bloom_crc: int
    data_crc: int
    min_time: int
    max_time: int
    docs: int


@dataclass(slots=True)
class PreparedQuery:
    """A parsed query with its time interval split out, ready for any reader call."""

    node: Node
    lo: int
    hi: int
    label_sets: list[int] | None
    """Label sets that may match (None: all); refreshed when new ones appear."""
    known_label_sets: int
    until_block: int | None = None
    """Only blocks up to this id (a snapshot, so `--follow` can continue after it)."""
    matchers: dict[Residual, tuple[DocMatcher | None, Prefilter]] = field(default_factory=dict)
    by_labels: dict[tuple[Residual, int], Residual] = field(default_factory=dict)
    """Memo of `with_labels` per (block residual, label set): blocks share both."""


@dataclass(frozen=True, slots=True)
class StoreStats:
    blocks: int
    docs: int
    segments: int
    bytes: int
    raw_bytes: int
    min_time: int | None
    max_time: int | None


_BLOCK_COLUMNS = (
    "id, segment, offset, bloom_len, data_len, bloom_crc, data_crc, min_time, max_time, docs"
)


class StoreReader:
    """Read-only access to a store directory."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fds: dict[int, int] = {}
        self._labels: dict[int, dict[str, str]] = {}
        self._codec = BlockCodec()
        self.corrupt_blocks = 0
        """Blocks skipped because their bytes do not match the index."""
        self._conn: sqlite3.Connection | None = connect(self.path, readonly=True)
        try:
            self.layout: Layout = read_layout(self._conn, self.path)
        except BaseException:
            self.close()
            raise

    # -- queries -----------------------------------------------------------------------

    def prepare(
        self, query: str | Node, *, since_ns: int | None = None, until_ns: int | None = None
    ) -> PreparedQuery:
        """Parse (if needed) and plan `query`; raises `QueryError` for a bad query."""
        node = parse_query(query) if isinstance(query, str) else query
        node, lo, hi = split_time(node)
        if since_ns is not None:
            lo = max(lo, since_ns)
        if until_ns is not None:
            hi = min(hi, until_ns)
        prepared = PreparedQuery(node, lo, hi, None, 0)
        self._refresh_label_sets(prepared)
        return prepared

    def count(self, query: str | Node | PreparedQuery) -> int:
        """How many documents match (index-only for label and time conditions)."""
        q = self._prepared(query)
        total = 0
        for ref in self._blocks(q, order="id"):
            inside = q.lo <= ref.min_time and ref.max_time <= q.hi
            residual = self._block_residual(q, ref)
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
                total += sum(
                    1 for _ in self._block_hits(q, ref, residual, skip_index_counted=inside)
                )
        return total

    def search(self, query: str | Node | PreparedQuery, *, limit: int = 100) -> list[Hit]:
        """The newest `limit` matches (all if 0), oldest first."""
        q = self._prepared(query)
        if limit <= 0:
            return list(self.iter_matches(q))
        newest: list[Hit] = []  # min-heap of the newest `limit` hits
        for ref in self._blocks(q, order="max_time DESC"):
            if len(newest) >= limit and ref.max_time < newest[0].time_ns:
                break
            residual = self._block_residual(q, ref)
            if residual is False:
                continue
            for hit in self._block_hits(q, ref, residual):
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
            residual = self._block_residual(q, ref)
            if residual is False:
                continue
            for hit in self._block_hits(q, ref, residual):
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
        hits: list[Hit] = []
        for ref in self._blocks(q, order="id", after=after_block):
            residual = self._block_residual(q, ref)
            if residual is not False:
                hits.extend(self._block_hits(q, ref, residual))
        hits.sort()
        return hits, max(snapshot, after_block)

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

    def _blocks(self, q: PreparedQuery, *, order: str, after: int = 0) -> Iterator[_BlockRef]:
        sql = f"SELECT {_BLOCK_COLUMNS} FROM blocks WHERE max_time >= ? AND min_time <= ?"
        params: list[Any] = [q.lo, q.hi]
        if after:
            sql += " AND id > ?"
            params.append(after)
        if q.until_block is not None:
            sql += " AND id <= ?"
            params.append(q.until_block)
        if q.label_sets is not None:
            sql += (
                " AND id IN (SELECT block FROM block_labels WHERE label_set IN "
                "(SELECT value FROM json_each(?)))"
            )
            params.append(json.dumps(q.label_sets))
        sql += f" ORDER BY {order}"
        for row in self._sql(sql, tuple(params)):
            yield _BlockRef(*row)

    def _block_labels(self, block: int) -> list[tuple[int, int]]:
        return self._sql("SELECT label_set, docs FROM block_labels WHERE block = ?", (block,))

    def _block_residual(self, q: PreparedQuery, ref: _BlockRef) -> Residual:
        residual: Residual = with_span(q.node, ref.min_time, ref.max_time)
        if not isinstance(residual, bool) and uses_message(residual, self.layout):
            blob = self._read_bloom(ref)
            if blob is not None:
                residual = with_bloom(residual, blob, self.layout)
        return residual

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
        ref: _BlockRef,
        residual: Residual,
        *,
        skip_index_counted: bool = False,
    ) -> Iterator[Hit]:
        """Matches in one block. With `skip_index_counted`, runs whose label set alone
        makes the query true are left out (`count` took them from the index)."""
        block = self._read_block(ref)
        if block is None:
            return
        times = block.times
        lo, hi = q.lo, q.hi
        for label_set, first, end in block.runs:
            r = self._run_residual(q, residual, label_set)
            if r is False or (r is True and skip_index_counted):
                continue
            matcher, pre = self._matcher(q, r)
            starts, data = block.starts, block.data
            rows: Iterable[int] = range(first, end)
            if matcher is not None and pre:
                rows = candidate_rows(pre, data, starts, first, end)
            for i in rows:
                t = times[i]
                if t < lo or t > hi:
                    continue
                doc = data[starts[i] : starts[i + 1]]
                if matcher is not None:
                    if pre and pre.rejects(doc):
                        continue
                    try:
                        decoded = _decode_json(doc)
                    except msgspec.DecodeError:
                        continue
                    if not isinstance(decoded, dict) or not matcher(decoded, t):
                        continue
                yield Hit(t, ref.id, i, doc)

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

    def _read_bloom(self, ref: _BlockRef) -> bytes | None:
        fd = self._fd(ref.segment)
        if fd is None:
            return None
        try:
            blob = read_exact(fd, ref.offset, ref.bloom_len)
        except BlockCorrupt:
            return None
        return blob if checksum(blob) == ref.bloom_crc else None

    def _read_block(self, ref: _BlockRef) -> DecodedBlock | None:
        fd = self._fd(ref.segment)
        if fd is None:
            return None
        try:
            frame = read_exact(fd, ref.offset + ref.bloom_len, ref.data_len)
            if checksum(frame) != ref.data_crc:
                raise BlockCorrupt("checksum mismatch")
            block = decode_block(self._codec.decompress(frame))
            if len(block.times) != ref.docs:
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


def candidate_rows(
    pre: Prefilter, data: bytes, starts: list[int], first: int, end: int
) -> Iterable[int]:
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
