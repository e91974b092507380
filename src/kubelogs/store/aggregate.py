"""Aggregations over the local store: a time histogram and the top values of fields.

What the explorer's histogram and field sidebar show, and ``kubelogs search --histogram``
and ``--top FIELD`` print: counts, never documents. They are computed from what the
store already keeps apart, in order of cost:

- **the index**: a block entirely inside the time range whose runs all match by their
  label set alone (`StoreReader.count`'s fast path) and whose top fields are indexed
  labels (namespace, pod, container, node, stream) is counted from ``block_labels``:
  not read at all when its span falls in one bucket, else only its time column (the
  data part, not the message column, which is most of a block's bytes);
- **the columns**: otherwise the matching rows come from the reader's own block matching
  (`StoreReader._block_matches`, so pruning and answers are those of `search`), their
  times from the time column (sorted once, then one bisection per bucket boundary rather
  than a division per row); a label field's value is the run's label set; a file field
  (Kubernetes metadata) is read once per run from the file's fields
  (`DecodedBlock.file_fields_doc`); the message and offset from their columns;
- **documents** are rendered only for rows whose own fields can differ from their
  file's (parsed fields, flags), for documents kept as given, and for other per-row
  fields.

A list value counts once per element (as Elasticsearch's ``terms`` does); an object
counts as its JSON text. Missing values are not counted.

Results of shards add up (`Aggregation.merge`), so `aggregate_parallel` runs one
process per CPU on ranges of blocks as ``search --count`` does (`store.parallel`; only
from a process without threads).
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec

from kubelogs.store.block import block_times
from kubelogs.store.index import BlockRecord, row_fields
from kubelogs.store.matcher import get_field, is_missing
from kubelogs.store.reader import PreparedQuery, StoreReader
from kubelogs.store.segments import BlockCorrupt, checksum, read_exact

_MS = 1_000_000
STEPS_NS: tuple[int, ...] = tuple(
    ms * _MS
    for ms in (
        1, 2, 5, 10, 20, 50, 100, 200, 500,
    )
) + tuple(
    s * 1000 * _MS
    for s in (
        1, 2, 5, 10, 15, 30,
        60, 120, 300, 600, 900, 1800,
        3600, 7200, 10800, 21600, 43200,
        86400, 172800, 604800, 1209600, 2592000, 7776000, 31536000,
    )
)  # fmt: skip
"""Bucket widths a person reads at a glance (1 ms ... 1 year)."""
MAX_BUCKETS = 120
_decode = msgspec.json.Decoder().decode


@dataclass(frozen=True, slots=True)
class Buckets:
    """Equal time buckets: ``[start + k*step, start + (k+1)*step)`` for k < `count`."""

    start: int
    step: int
    count: int

    @classmethod
    def for_range(cls, lo: int, hi: int, max_buckets: int = MAX_BUCKETS) -> Buckets:
        """The finest round step giving at most `max_buckets` over ``[lo, hi]``, aligned
        on a multiple of the step (so bars do not shift as the range moves): with steps
        at most 2.5 times apart that is 48 to 120 bars for a range above two minutes."""
        if hi < lo:
            lo, hi = hi, lo
        step = STEPS_NS[-1]
        for s in STEPS_NS:
            if (hi // s) - (lo // s) + 1 <= max_buckets:
                step = s
                break
        else:
            span = hi - lo + 1
            step = -(-span // max_buckets)
        start = (lo // step) * step
        return cls(start, step, (hi - start) // step + 1)

    def index(self, t: int) -> int:
        return (t - self.start) // self.step

    def bounds(self) -> list[int]:
        """Start of every bucket and the end of the last."""
        return [self.start + k * self.step for k in range(self.count + 1)]

    def add_sorted(self, counts: list[int], times: list[int]) -> None:
        """Add ascending `times` to `counts`: one bisection per bucket boundary."""
        if not times:
            return
        first, last = max(0, self.index(times[0])), min(self.count - 1, self.index(times[-1]))
        at = bisect_left(times, self.start)  # earlier times belong to no bucket
        for k in range(first, last + 1):
            end = bisect_left(times, self.start + (k + 1) * self.step, at)
            counts[k] += end - at
            at = end


@dataclass(slots=True)
class Aggregation:
    """Counts of matching documents: in all, per bucket, per value of each top field."""

    total: int = 0
    counts: list[int] = field(default_factory=list)
    top: dict[str, Counter[Any]] = field(default_factory=dict)

    def merge(self, other: Aggregation) -> Aggregation:
        self.total += other.total
        if other.counts:
            if not self.counts:
                self.counts = [0] * len(other.counts)
            self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        for name, counter in other.top.items():
            self.top.setdefault(name, Counter()).update(counter)
        return self

    def top_values(self, name: str, n: int) -> list[tuple[Any, int]]:
        """The `n` most frequent values of `name`, then by value for equal counts."""
        counter = self.top.get(name, Counter())
        ranked = sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))
        return ranked[:n]


def _add_value(counter: Counter[Any], value: Any, n: int = 1) -> None:
    if is_missing(value):
        return
    if isinstance(value, list):
        for item in value:
            _add_value(counter, item, n)
        return
    if isinstance(value, dict):
        value = json.dumps(value, sort_keys=True, separators=(",", ":"))
    counter[value] += n


def aggregate(
    reader: StoreReader,
    q: PreparedQuery,
    *,
    buckets: Buckets | None = None,
    fields: Sequence[str] = (),
) -> Aggregation:
    """Count the matches of `q` per bucket of `buckets` and per value of each of
    `fields`, in this process."""
    layout = reader.layout
    indexed = layout.indexed
    per_row = set(row_fields(layout.schema)) | {layout.message_field}
    out = Aggregation(0, [0] * buckets.count if buckets else [], {f: Counter() for f in fields})
    labels_only = all(f in indexed for f in fields)
    per_label_set: Counter[int] = Counter()
    """Matches per label set, from blocks not counted from the index (labels_only)."""
    for ref in reader._blocks(q, order="id"):
        residual, column = reader._block_residual(q, ref)
        if residual is False:
            continue
        runs = reader._block_labels(ref.id)
        inside = q.lo <= ref.min_time and ref.max_time <= q.hi
        one_bucket = buckets is None or buckets.index(ref.min_time) == buckets.index(ref.max_time)
        by_labels = (
            {ls: reader._run_residual(q, residual, ls) for ls, _ in runs}
            if inside and labels_only
            else {}
        )
        if by_labels and all(isinstance(r, bool) for r in by_labels.values()):
            # The label sets decide every row (inside the range): counts of labels from
            # the index, times from the time column alone (not even that when the block
            # falls in one bucket and every row matches).
            docs = sum(n for ls, n in runs if by_labels[ls] is True)
            if not docs:
                continue
            if buckets is not None:
                if one_bucket:
                    out.counts[buckets.index(ref.min_time)] += docs
                else:
                    columns = _times_only(reader, ref)
                    if columns is None:
                        continue
                    times, block_runs = columns
                    if docs != len(times):
                        picked: list[int] = []
                        for ls, first, end in block_runs:
                            if by_labels.get(ls) is True:
                                picked += times[first:end]  # a slice: no work per row
                        times = picked
                    buckets.add_sorted(out.counts, sorted(times))
            out.total += docs
            for ls, n in runs:
                if by_labels[ls] is True:
                    values = reader._label_values(ls)
                    for f in fields:
                        _add_value(out.top[f], values.get(f), n)
            continue
        block, matches = reader._block_matches(q, ref, residual, column)
        if block is None or not matches:
            continue
        out.total += len(matches)
        if buckets is not None:
            buckets.add_sorted(out.counts, sorted([t for _, t in matches]))
        if not fields:
            continue
        rows = [r for r, _ in matches]
        if labels_only:
            # Only label values: count matches per label set, one step per run that
            # holds matches; the values are looked up once per label set at the end.
            runs_of_block = block.runs
            ends = [end for _, _, end in runs_of_block]
            k, n = 0, len(rows)
            while k < n:
                run = bisect_right(ends, rows[k])
                j = bisect_left(rows, ends[run], k)
                per_label_set[runs_of_block[run][0]] += j - k
                k = j
            continue
        for run, (label_set, first, end) in enumerate(block.runs):
            lo, hi = bisect_left(rows, first), bisect_left(rows, end)
            if lo == hi:
                continue
            chosen = rows[lo:hi]
            labels = reader._label_values(label_set)
            docs_of_rows: list[Any] | None = None
            file_doc: Any = None
            for f in fields:
                counter = out.top[f]
                if f in indexed:
                    _add_value(counter, labels.get(f), len(chosen))
                    continue
                raw = block.is_raw(run)
                if not raw and f == layout.message_field:
                    messages = block.messages()
                    counter.update(messages[i] for i in chosen)
                    continue
                if raw or f in per_row:
                    if docs_of_rows is None:
                        docs_of_rows = [_safe_decode(d) for d in block.docs(chosen)]
                    for doc in docs_of_rows:
                        _add_value(counter, get_field(doc, f))
                    continue
                if file_doc is None:
                    file_doc = _safe_decode(block.file_fields_doc(run))
                special = block.rows_with_extras(first, end)
                own: list[int] = []
                if special:
                    wanted = set(chosen)
                    own = [i for i in special if i in wanted]
                _add_value(counter, get_field(file_doc, f), len(chosen) - len(own))
                for doc in block.docs(own):
                    _add_value(counter, get_field(_safe_decode(doc), f))
    for label_set, n in per_label_set.items():
        values = reader._label_values(label_set)
        for f in fields:
            _add_value(out.top[f], values.get(f), n)
    return out


def _times_only(
    reader: StoreReader, ref: BlockRecord
) -> tuple[list[int], list[tuple[int, int, int]]] | None:
    """The block's time column and runs, reading and decompressing its data part only;
    None for a block that is gone (retention) or damaged (counted in
    `corrupt_blocks`)."""
    fd = reader._fd(ref.segment)
    if fd is None:
        return None
    try:
        frame = read_exact(fd, ref.offset + ref.text_len, ref.data_len)
        if checksum(frame) != ref.data_crc:
            raise BlockCorrupt("checksum mismatch")
        times, runs = block_times(reader._codec.decompress(frame, ref.raw_bytes))
        if len(times) != ref.docs:
            raise BlockCorrupt("document count differs from the index")
    except BlockCorrupt:
        reader.corrupt_blocks += 1
        return None
    return times, runs


def _safe_decode(doc: bytes) -> Any:
    try:
        return _decode(doc)
    except msgspec.DecodeError:
        return {}


def aggregate_parallel(
    reader: StoreReader,
    q: PreparedQuery,
    workers: int,
    *,
    buckets: Buckets | None = None,
    fields: Sequence[str] = (),
) -> tuple[Aggregation, int]:
    """`aggregate` in `workers` processes (`store.parallel`), each on a share of the
    blocks of `q`'s snapshot (`until_block`, set here when unset); returns the merged
    result and the count of damaged blocks skipped. Only from a process without
    threads (it forks)."""
    from kubelogs.store.parallel import run_sharded, shard_ranges

    if q.until_block is None:
        q.until_block = reader.last_block()
    if workers <= 1:
        return aggregate(reader, q, buckets=buckets, fields=fields), reader.corrupt_blocks
    node, lo, hi, until = q.node, q.lo, q.hi, q.until_block

    def work(shard_reader: StoreReader, block_range: tuple[int, int]) -> Aggregation:
        shard_q = shard_reader.prepare(node, since_ns=lo, until_ns=hi)
        shard_q = replace(shard_q, until_block=until, block_range=block_range)
        return aggregate(shard_reader, shard_q, buckets=buckets, fields=fields)

    shards = shard_ranges(reader.block_sizes(until), workers)
    merged = Aggregation(0, [0] * buckets.count if buckets else [], {f: Counter() for f in fields})
    bad = 0
    for result, corrupt in run_sharded(reader.path, work, shards):
        merged.merge(result)
        bad += corrupt
    return merged, bad


__all__ = ["MAX_BUCKETS", "Aggregation", "Buckets", "aggregate", "aggregate_parallel"]
