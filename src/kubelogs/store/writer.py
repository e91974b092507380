"""Appending to the store: blocks, exactly-once marks, crash recovery, retention.

Invariants (what a reader and a restarted writer may rely on):

1. A block's bytes are written to its segment and fsynced **before** the SQLite
   transaction that indexes it commits; the index never points at bytes that may vanish.
2. The high-water mark of every source (the offset of the last stored event of a file) is
   committed **in the same transaction** as the blocks holding those events. `write`
   drops events whose offset is at or below the mark, so a resend after ``kill -9`` - the
   source re-reads from its last checkpoint - stores nothing twice.
3. Bytes after the last indexed record of a segment belong to a write that never
   committed: opening a writer truncates them, and segment files with no index row are
   deleted. Readers only ever read indexed ranges and check CRCs.
4. One writer per store (an ``flock`` on ``writer.lock``); any number of readers.

Retention deletes whole segments, oldest first: those last written to more than
``retention`` ago, then more until the total is below ``max_size``. Age counts from when
data was *stored*, not from its event time, so a backlog of old logs read late (or a
generated test tree from another year) is kept for the full retention. Age retention runs
inside `write` at most every `retention_interval` seconds; size retention runs after every
write that took the total past ``max_size`` (and when a writer opens an oversized store),
so segments exceed ``max_size`` by at most what one write appended. Either takes one short
transaction plus an ``unlink``; a reader that still holds the file open finishes reading it.

A full disk (ENOSPC, EDQUOT, SQLite's "database or disk is full") is not an error the
caller has to solve: `write` undoes what it appended, evicts the oldest segment and tries
again, until the write fits or the store holds nothing more to evict; then it raises
`StoreFullError` and keeps nothing of the write, and the caller holds the events back and
retries later (the local sink does, without acknowledging them). Eviction deletes the index
rows first, as retention does; when the disk is so full that even that transaction fails,
the segment file is unlinked first (readers skip a segment file that is gone, and its rows
go with the next eviction). Every deleted segment is reported to `on_evict` with a reason
(``age``, ``max_size`` or ``disk_full``), so none vanishes uncounted.

Cost (PERFORMANCE.md): `write` does Python work per group, per run of equal label values
and per block, never per event. A *piece* is the new events of one group; blocks are cut
from consecutive pieces, splitting one where a block fills up, and each block's columns
are built and encoded at once (`store.block`: ``str.join``, ``array``, ``map``) and
compressed with zstd level 1; runs of equal label values (a stream change) are found by
C-level scans.

Resource handling: the writer owns the lock file descriptor, the current segment's file
descriptor and the SQLite connection; `close` releases all three (it is also a context
manager). Error handling: an I/O or SQLite error during `write` rolls the transaction back,
truncates the segment to where it was, and propagates; only a full disk is retried here
(after an eviction), any other error is the caller's to retry.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, groupby
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import msgspec

from kubelogs.store.block import BlockBuilder, Piece, Runs
from kubelogs.store.errors import StoreError, StoreFullError, StoreLockedError, is_disk_full
from kubelogs.store.group import WriteGroup
from kubelogs.store.index import (
    LOCK_NAME,
    SEGMENTS_DIR,
    BlockRecord,
    Layout,
    canonical_labels,
    connect,
    initialise,
    insert_block,
)
from kubelogs.store.segments import (
    SEGMENT_HEADER_SIZE,
    BlockCodec,
    checksum,
    segment_header,
    segment_name,
)

_T = TypeVar("_T")

log = logging.getLogger(__name__)

EvictReason = Literal["age", "max_size", "disk_full"]
EvictCallback = Callable[[EvictReason, int, int], None]
"""Called with (reason, segments, bytes) each time segments are deleted."""

DEFAULT_BLOCK_DOCS = 20_000
DEFAULT_BLOCK_BYTES = 8 * 1024 * 1024
"""Uncompressed bytes per block at most: bounds memory when documents are large (a block
is held about three times over while it is encoded and compressed)."""
_MIN_TIME = -(2**63)
_MAX_TIME = 2**63 - 1
DEFAULT_SEGMENT_SPAN = 3600.0
"""A segment takes new blocks for at most an hour, so age retention frees space steadily
even when little is written."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    written: int
    """Events stored by this call."""
    skipped: int
    """Events at or below their source's mark: already stored by an earlier call."""
    blocks: int
    bytes: int
    """Bytes appended to segment files."""


@dataclass(slots=True)
class _Segment:
    id: int
    fd: int
    size: int
    created: float
    is_new: bool


def default_segment_bytes(max_size: int) -> int:
    """A sixteenth of the size limit, between 1 MiB and 256 MiB: retention by size then
    frees space in steps of about 6%. Below 4 MiB of limit, a quarter of it: a segment
    larger than the limit would be deleted whole, everything at once, each time the
    store fills up."""
    return min(256 << 20, max(max_size // 16, min(1 << 20, max_size // 4)), max(1, max_size))


class StoreWriter:
    """The single writer of a store directory (created if missing)."""

    def __init__(
        self,
        path: Path | str,
        *,
        layout: Layout,
        retention: float = 7 * 86400.0,
        max_size: int = 5 << 30,
        block_docs: int = DEFAULT_BLOCK_DOCS,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        segment_bytes: int | None = None,
        segment_span: float = DEFAULT_SEGMENT_SPAN,
        compression_level: int = 1,
        retention_interval: float = 10.0,
        clock: Callable[[], float] = time.time,
        on_evict: EvictCallback | None = None,
    ) -> None:
        self.path = Path(path)
        self.retention = retention
        self.max_size = max_size
        self.block_docs = max(1, block_docs)
        self.block_bytes = max(1, block_bytes)
        self.segment_bytes = segment_bytes or default_segment_bytes(
            min(max_size, _filesystem_size(self.path))
        )
        self.segment_span = segment_span
        self.retention_interval = retention_interval
        self._clock = clock
        self._on_evict = on_evict
        self.evicted_segments = 0
        """Segments deleted by retention or to make room, since this writer opened."""
        self.evicted_bytes = 0
        self._unlinked: set[int] = set()
        """Segments whose file a full disk made us unlink before their index rows went
        (`_evict_oldest`): counted already, not again when the rows are deleted."""
        self._codec = BlockCodec(compression_level)
        self._label_texts: dict[tuple[tuple[tuple[str, str], ...], str], str] = {}
        """Canonical label-set text per (group labels, stream): JSON once per combination."""
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self.path}: exists and is not a directory")
        try:
            (self.path / SEGMENTS_DIR).mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if is_disk_full(exc):
                raise StoreFullError(
                    f"{self.path}: the disk is full; cannot create the store"
                ) from exc
            raise
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StoreLockedError(
                f"{self.path}: another process is writing to this store"
            ) from None
        self._conn: sqlite3.Connection | None = None
        self._segment: _Segment | None = None
        self._sealed: list[_Segment] = []
        try:
            self._conn = connect(self.path, readonly=False)
            self.layout = initialise(self._conn, self.path, layout, int(clock() * 1e9))
            self._recover()
            self._marks: dict[str, int] = dict(
                self._conn.execute("SELECT source_key, high_water FROM sources").fetchall()
            )
            self._label_ids: dict[str, int] = {
                text: i for i, text in self._conn.execute("SELECT id, labels FROM label_sets")
            }
            self._next_label_id = max(self._label_ids.values(), default=0) + 1
            self._next_segment_id = 1 + (
                self._conn.execute("SELECT max(id) FROM segments").fetchone()[0] or 0
            )
            self._bytes: int = self._conn.execute(
                "SELECT coalesce(sum(bytes), 0) FROM segments"
            ).fetchone()[0]
            """Bytes of the indexed segments: what `max_size` bounds."""
        except BaseException:
            self.close()
            raise
        self._message_decoder = msgspec.json.Decoder(
            msgspec.defstruct("_Message", [(self.layout.message_field, Any, None)])
        )
        self._label_fields = frozenset(self.layout.label_fields)
        self._last_retention = clock()
        # A smaller `max_size` than last time, or a store left oversized: shrink it now
        # rather than after the first write, which might not fit on the disk.
        try:
            self._retain()
        except BaseException:
            self.close()
            raise

    # -- public API ------------------------------------------------------------------

    def write(self, groups: Iterable[WriteGroup]) -> WriteResult:
        """Store `groups` durably (fsync, then one commit) and return what was stored.

        Events at or below their source's high-water mark are skipped, so writing the
        same groups twice stores them once. Returns after the commit: the caller may
        acknowledge the events then.
        """
        self._require_conn()
        marks: dict[str, int] = {}
        new_labels: dict[str, int] = {}
        pieces: list[Piece] = []
        written = skipped = 0
        for group in groups:
            kept, n_skipped = self._select_new(group, marks)
            skipped += n_skipped
            if kept is not None:
                pieces.append(self._piece(group, kept, new_labels))
                written += kept[1] - kept[0]
        if not pieces:
            self._retain()
            return WriteResult(0, skipped, 0, 0)

        while True:
            try:
                blocks, new_segments = self._write_pieces(pieces, new_labels, marks)
                break
            except (OSError, sqlite3.Error) as exc:
                if not is_disk_full(exc):
                    raise
                if not self._evict_oldest():
                    raise StoreFullError(
                        f"{self.path}: the disk is full and the store holds no data it could "
                        f"delete to make room ({exc})"
                    ) from exc
        self._marks.update(marks)
        self._label_ids.update(new_labels)
        appended = sum(b.record_len for b, _ in blocks)
        self._bytes += appended + new_segments * SEGMENT_HEADER_SIZE
        self._retain()
        return WriteResult(written, skipped, len(blocks), appended)

    def _write_pieces(
        self, pieces: list[Piece], new_labels: dict[str, int], marks: dict[str, int]
    ) -> tuple[list[tuple[BlockRecord, dict[int, int]]], int]:
        """Append `pieces` as blocks, fsync, commit; on any error leave the segments as
        they were. Returns the blocks and how many segments were created."""
        previous = self._segment
        previous_size = previous.size if previous is not None else 0
        blocks: list[tuple[BlockRecord, dict[int, int]]] = []
        touched: list[_Segment] = []
        try:
            for block in self._blocks(pieces):
                blocks.append(self._append_block(block, touched))
            for seg in touched:
                os.fdatasync(seg.fd)
            self._commit(blocks, new_labels, marks, touched)
        except BaseException:
            self._undo(touched, previous, previous_size)
            raise
        new_segments = sum(1 for seg in touched if seg.is_new)
        for seg in touched:
            seg.is_new = False
        self._close_sealed()
        return blocks, new_segments

    def high_water(self, source_key: str) -> int | None:
        """The offset of the last stored event of `source_key`, if any."""
        return self._marks.get(source_key)

    def enforce_retention(self, now: float | None = None) -> int:
        """Delete segments past `retention` or beyond `max_size`; return how many."""
        conn = self._require_conn()
        now = self._clock() if now is None else now
        self._last_retention = now
        cutoff_ns = int((now - self.retention) * 1e9)
        rows = conn.execute("SELECT id, bytes, written_ns FROM segments ORDER BY id").fetchall()
        total = sum(r[1] for r in rows)
        doomed: list[tuple[int, int, EvictReason]] = []
        for seg_id, size, written_ns in rows:
            if written_ns < cutoff_ns:
                doomed.append((seg_id, size, "age"))
            elif total > self.max_size:
                doomed.append((seg_id, size, "max_size"))
            else:
                continue
            total -= size
        if doomed:
            self._delete_segments(doomed, cutoff_ns)
        return len(doomed)

    def _delete_segments(
        self, doomed: list[tuple[int, int, EvictReason]], cutoff_ns: int | None = None
    ) -> None:
        """Drop `doomed` (id, bytes, reason) from the index, then unlink their files.

        With `cutoff_ns`, also forget the marks of files not written to since then."""
        conn = self._require_conn()
        ids = {seg_id for seg_id, _, _ in doomed}
        if self._segment is not None and self._segment.id in ids:
            self._seal()
            self._close_sealed()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for seg_id in ids:
                conn.execute(
                    "DELETE FROM block_labels WHERE block IN "
                    "(SELECT id FROM blocks WHERE segment = ?)",
                    (seg_id,),
                )
                conn.execute("DELETE FROM blocks WHERE segment = ?", (seg_id,))
                conn.execute("DELETE FROM segments WHERE id = ?", (seg_id,))
            if cutoff_ns is not None:
                # Marks of files not written to for longer than the retention: their
                # events are gone, and a resend that old cannot happen.
                conn.execute("DELETE FROM sources WHERE updated_ns < ?", (cutoff_ns,))
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        if cutoff_ns is not None:
            self._marks = dict(
                conn.execute("SELECT source_key, high_water FROM sources").fetchall()
            )
        self._bytes = conn.execute("SELECT coalesce(sum(bytes), 0) FROM segments").fetchone()[0]
        for seg_id, _, _ in doomed:
            try:
                os.unlink(self._segment_path(seg_id))
            except FileNotFoundError:
                pass
        self._count_evicted(doomed)

    def _evict_oldest(self) -> bool:
        """Make room on a full disk: delete the oldest segment whose file still exists
        (and the index rows of older ones whose file is already gone). False when there
        is no such segment: the store holds nothing more that could be freed."""
        conn = self._require_conn()
        doomed: list[tuple[int, int, EvictReason]] = []
        for seg_id, size in conn.execute("SELECT id, bytes FROM segments ORDER BY id").fetchall():
            doomed.append((seg_id, size, "disk_full"))
            if self._segment_path(seg_id).exists():
                break
        else:
            if doomed:  # rows only: drop them if the disk allows, nothing is freed
                try:
                    self._delete_segments(doomed)
                except (OSError, sqlite3.Error) as exc:
                    if not is_disk_full(exc):
                        raise
            return False
        seg_id, size, _ = doomed[-1]
        log.warning(
            "%s: disk full; evicting the oldest segment %s (%d bytes) to make room",
            self.path,
            segment_name(seg_id),
            size,
        )
        try:
            self._delete_segments(doomed)
        except (OSError, sqlite3.Error) as exc:
            if not is_disk_full(exc):
                raise
            # Not even the index can change: free the file first, its rows go later.
            if self._segment is not None and self._segment.id == seg_id:
                self._seal()
                self._close_sealed()
            os.unlink(self._segment_path(seg_id))
            self._count_evicted([doomed[-1]])
            self._unlinked.add(seg_id)
        return True

    def _count_evicted(self, doomed: list[tuple[int, int, EvictReason]]) -> None:
        for seg_id, size, reason in doomed:
            if seg_id in self._unlinked:
                self._unlinked.discard(seg_id)
                continue
            self.evicted_segments += 1
            self.evicted_bytes += size
            if self._on_evict is not None:
                self._on_evict(reason, 1, size)

    def close(self) -> None:
        """Close the segment, the index and release the writer lock (idempotent)."""
        self._seal()
        self._close_sealed()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the write path ----------------------------------------------------------------

    def _select_new(
        self, group: WriteGroup, marks: dict[str, int]
    ) -> tuple[tuple[int, int] | None, int]:
        """The index range of `group` above its mark, and how many events were dropped."""
        group.check()
        n = len(group.offsets)
        if n == 0:
            return None, 0
        key = group.source_key
        if not key:
            return (0, n), 0  # no file identity (e.g. received over the network): no mark
        mark = marks.get(key, self._marks.get(key, -1))
        offsets = group.offsets
        start = 0 if offsets[0] > mark else bisect_right(offsets, mark)
        if start >= n:
            return None, n
        marks[key] = max(mark, offsets[n - 1])
        return (start, n), start

    def _label_id(
        self,
        base: tuple[tuple[str, str], ...],
        stream: str,
        new_labels: dict[str, int],
    ) -> int:
        key = (base, stream)
        text = self._label_texts.get(key)
        if text is None:
            labels = {k: v for k, v in base if v}
            if stream:
                labels[self.layout.stream_field] = stream
            if len(self._label_texts) >= 65536:
                self._label_texts.clear()
            text = self._label_texts[key] = canonical_labels(labels)
        label_id = self._label_ids.get(text) or new_labels.get(text)
        if label_id is None:
            label_id = new_labels[text] = self._next_label_id
            self._next_label_id += 1
        return label_id

    def _piece(self, group: WriteGroup, kept: tuple[int, int], new_labels: dict[str, int]) -> Piece:
        """The rows `kept` of `group`, with their runs of equal label values."""
        start, end = kept
        n = end - start
        if not self._label_fields.issuperset(group.labels):
            unknown = set(group.labels) - self._label_fields
            raise ValueError(f"write group {group.source_key!r}: not label fields: {unknown}")
        base = tuple(group.labels.items())
        messages = group.messages
        if messages is None:
            assert group.docs is not None  # `WriteGroup.check`
            messages = self._messages_of(group.docs, start)
        streams = _part(group.streams, start, end) if group.streams is not None else None
        if not streams or streams.count(streams[0]) == n:
            stream = streams[0] if streams else ""
            runs = Runs([self._label_id(base, stream, new_labels)], [stream], [n])
        else:
            # Mixed streams (stack traces on stderr between stdout lines): one run per
            # stretch of equal values, in order, found by C-level scans.
            ids = {s: self._label_id(base, s, new_labels) for s in set(streams)}
            runs = _stretches(streams, ids)
        return Piece(group, messages, start, end, runs)

    def _messages_of(self, docs: Sequence[bytes], start: int) -> list[str]:
        """The message fields of `docs` from `start` on (rows before it are "")."""
        decode = self._message_decoder.decode
        field_name = self.layout.message_field
        out: list[str] = [""] * start
        for doc in docs[start:]:
            try:
                value = getattr(decode(doc), field_name)
            except msgspec.DecodeError:
                value = None
            out.append(value if isinstance(value, str) else "")
        return out

    def _blocks(self, pieces: list[Piece]) -> Iterator[BlockBuilder]:
        """Pieces added to blocks of at most `block_docs` rows / `block_bytes` (split
        where a block fills up), each yielded when full or at the end."""
        block = BlockBuilder()
        for piece in pieces:
            while True:
                n, size = len(piece), piece.size
                if block.rows + n <= self.block_docs and block.size + size <= self.block_bytes:
                    block.add(piece)
                    if block.rows >= self.block_docs or block.size >= self.block_bytes:
                        yield block
                        block = BlockBuilder()
                    break
                # The first rows that fit (at least one in an empty block).
                room = self.block_docs - block.rows
                ends = list(accumulate(piece.sizes()[:room]))
                take = min(room, bisect_right(ends, self.block_bytes - block.size))
                if take == 0 and not block.rows:
                    take = 1  # a row larger than `block_bytes` is a block alone
                if take >= n:
                    block.add(piece)
                    yield block
                    block = BlockBuilder()
                    break
                if take > 0:
                    head, piece = piece.split(take)
                    block.add(head)
                yield block
                block = BlockBuilder()
        if block.rows:
            yield block

    def _append_block(
        self, block: BlockBuilder, touched: list[_Segment]
    ) -> tuple[BlockRecord, dict[int, int]]:
        """Compress and append `block`; its index row and its rows per label set."""
        encoded = block.finish()
        text = self._codec.compress(encoded.text)
        data = self._codec.compress(encoded.data)
        seg = self._writable_segment(touched)
        offset = seg.size
        _write_all(seg.fd, [text, data], offset)
        seg.size += len(text) + len(data)
        record = BlockRecord(
            segment=seg.id,
            offset=offset,
            text_len=len(text),
            data_len=len(data),
            text_crc=checksum(text),
            data_crc=checksum(data),
            min_time=encoded.min_time,
            max_time=encoded.max_time,
            docs=encoded.rows,
            raw_bytes=len(encoded.data),
            fields=encoded.fields,
        )
        return record, encoded.per_label

    def _writable_segment(self, touched: list[_Segment]) -> _Segment:
        seg = self._segment
        now = self._clock()
        if seg is not None and (
            seg.size >= self.segment_bytes or now - seg.created >= self.segment_span
        ):
            self._seal()
            seg = None
        if seg is None:
            seg_id = self._next_segment_id
            self._next_segment_id += 1
            seg_path = self._segment_path(seg_id)
            fd = os.open(seg_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                _write_all(fd, [segment_header()], 0)
                _fsync_dir(self.path / SEGMENTS_DIR)
            except BaseException:
                os.close(fd)
                seg_path.unlink(missing_ok=True)
                raise
            seg = self._segment = _Segment(seg_id, fd, SEGMENT_HEADER_SIZE, now, True)
        if seg not in touched:
            touched.append(seg)
        return seg

    def _seal(self) -> None:
        """Stop appending to the current segment; its descriptor is closed once no
        uncommitted write needs it (`_close_sealed`)."""
        seg = self._segment
        if seg is not None:
            self._segment = None
            self._sealed.append(seg)

    def _commit(
        self,
        blocks: list[tuple[BlockRecord, dict[int, int]]],
        new_labels: dict[str, int],
        marks: dict[str, int],
        touched: list[_Segment],
    ) -> None:
        conn = self._require_conn()
        now_ns = int(self._clock() * 1e9)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO label_sets (id, labels) VALUES (?, ?)",
                [(i, text) for text, i in new_labels.items()],
            )
            for seg in touched:
                if seg.is_new:
                    conn.execute(
                        "INSERT INTO segments (id, created_ns, written_ns, bytes) "
                        "VALUES (?, ?, ?, ?)",
                        (seg.id, int(seg.created * 1e9), now_ns, SEGMENT_HEADER_SIZE),
                    )
            for b, per_label in blocks:
                block_id = insert_block(conn, b)
                conn.executemany(
                    "INSERT INTO block_labels (label_set, block, docs) VALUES (?, ?, ?)",
                    [(ls, block_id, n) for ls, n in per_label.items()],
                )
            for seg in touched:
                mine = [b for b, _ in blocks if b.segment == seg.id]
                conn.execute(
                    "UPDATE segments SET bytes = ?, blocks = blocks + ?, written_ns = ?, "
                    "min_time = min(coalesce(min_time, ?), ?), "
                    "max_time = max(coalesce(max_time, ?), ?) WHERE id = ?",
                    (
                        seg.size,
                        len(mine),
                        now_ns,
                        *(min(b.min_time for b in mine),) * 2,
                        *(max(b.max_time for b in mine),) * 2,
                        seg.id,
                    ),
                )
            conn.executemany(
                "INSERT INTO sources (source_key, high_water, updated_ns) VALUES (?, ?, ?) "
                "ON CONFLICT (source_key) DO UPDATE SET high_water = excluded.high_water, "
                "updated_ns = excluded.updated_ns",
                [(k, v, now_ns) for k, v in marks.items()],
            )
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    def _undo(self, touched: list[_Segment], previous: _Segment | None, size: int) -> None:
        """After a failed write: forget uncommitted bytes and segments."""
        for seg in touched:
            if seg is previous:
                try:
                    os.ftruncate(seg.fd, size)
                except OSError:
                    pass
                seg.size = size
            elif seg.is_new:
                if seg is self._segment:
                    self._segment = None
                    os.close(seg.fd)
                else:
                    self._sealed.remove(seg)
                    os.close(seg.fd)
                try:
                    os.unlink(self._segment_path(seg.id))
                except OSError:
                    pass
        if previous is not None and previous in self._sealed:
            # It was sealed during the failed write only: keep appending to it.
            self._sealed.remove(previous)
            self._segment = previous
        self._close_sealed()

    def _close_sealed(self) -> None:
        for seg in self._sealed:
            os.close(seg.fd)
        self._sealed.clear()

    # -- recovery and housekeeping --------------------------------------------------------

    def _recover(self) -> None:
        """Cut torn tails and delete segment files the index does not know (invariant 3)."""
        conn = self._require_conn()
        ends = dict(
            conn.execute(
                "SELECT s.id, coalesce(max(b.offset + b.text_len + b.data_len), ?) "
                "FROM segments s LEFT JOIN blocks b ON b.segment = s.id GROUP BY s.id",
                (SEGMENT_HEADER_SIZE,),
            ).fetchall()
        )
        for entry in os.scandir(self.path / SEGMENTS_DIR):
            name = entry.name
            if not name.endswith(".seg") or not name[:-4].isdigit():
                continue
            seg_id = int(name[:-4])
            end = ends.get(seg_id)
            if end is None:
                os.unlink(entry.path)  # created, never committed
            elif entry.stat().st_size > end:
                os.truncate(entry.path, end)  # a torn write after the last commit

    def _retain(self) -> None:
        """Retention by size whenever the store is over `max_size`, by age at most every
        `retention_interval`. On a full disk, where even the index cannot change, the
        oldest segment file is freed instead (`_evict_oldest`): the write that led here
        is committed already and must not be reported as failed."""
        if (
            self._bytes <= self.max_size
            and self._clock() - self._last_retention < self.retention_interval
        ):
            return
        try:
            self.enforce_retention()
        except (OSError, sqlite3.Error) as exc:
            if not is_disk_full(exc):
                raise
            self._evict_oldest()

    def _segment_path(self, seg_id: int) -> Path:
        return self.path / SEGMENTS_DIR / segment_name(seg_id)

    def _require_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: the store writer is closed")
        return self._conn


def _stretches(values: Sequence[str], ids: dict[str, int]) -> Runs:
    """The runs of equal consecutive `values` (label set ``ids[value]``).

    With two distinct values (stdout and stderr), each stretch ends where the other value
    next occurs: one `index` scan in C per stretch, Python work per stretch only, and the
    alternating label sets and streams are built by repeating a pair."""
    if len(ids) != 2:
        runs = Runs([], [], [])
        for value, same in groupby(values):
            runs.label_sets.append(ids[value])
            runs.streams.append(value)
            runs.rows.append(len(list(same)))
        return runs
    n = len(values)
    current = values[0]
    other = next(v for v in ids if v != current)
    index = values.index
    rows: list[int] = []
    pos = 0
    while pos < n:
        try:
            end = index(other, pos)
        except ValueError:
            end = n
        rows.append(end - pos)
        pos = end
        current, other = other, current
    k = len(rows)
    first, second = values[0], next(v for v in ids if v != values[0])
    pairs = (k + 1) // 2
    streams = [first, second] * pairs
    label_sets = [ids[first], ids[second]] * pairs
    del streams[k:], label_sets[k:]
    return Runs(label_sets, streams, rows)


def _part(column: Sequence[_T], start: int, end: int) -> Sequence[_T]:
    """`column[start:end]`, without a copy when that is all of it (the writer never
    modifies what it is given)."""
    if start == 0 and end == len(column):
        return column
    return column[start:end]


def _filesystem_size(path: Path) -> int:
    """The size of the filesystem that holds `path` (or its nearest existing parent).

    Segments are cut from the smaller of this and `max_size`: when the disk is smaller
    than the limit, a full disk then evicts a sixteenth of the data at a time, not a
    segment as large as the disk."""
    for candidate in (path, *path.parents):
        try:
            st = os.statvfs(candidate)
        except OSError:
            continue
        return st.f_blocks * st.f_frsize or 1 << 62
    return 1 << 62


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open: SQLite may already have rolled it back
    itself (it does on SQLITE_FULL), and a second ROLLBACK would raise and hide the
    original error."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _fsync_dir(path: Path) -> None:
    """Make a new file's directory entry durable (power loss), as databases do."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, parts: list[bytes], offset: int) -> None:
    """`pwritev` until every byte is written (short writes happen on some filesystems)."""
    buffers = [memoryview(p) for p in parts if p]
    while buffers:
        n = os.pwritev(fd, buffers, offset)
        offset += n
        while buffers and n >= len(buffers[0]):
            n -= len(buffers[0])
            buffers.pop(0)
        if buffers and n:
            buffers[0] = buffers[0][n:]
