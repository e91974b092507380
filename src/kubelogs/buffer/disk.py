"""Durable FIFO of framed records in segment files: the disk buffer's storage.

Layout under the buffer's directory (``<data_dir>/buffers/<sink id>``):
``<seq:016x>.seg`` segment files, appended in order, each at most about `segment_size`
bytes; ``position``, the read position up to which the sink has acknowledged every record
(written atomically, by rename); ``lock``, held with `flock` so that two processes never
share one buffer.

A position is one integer, ``seq << 40 | offset`` (`pos`), so that "every record before
this point is delivered" is an ordinary ordered ledger of ints (the same idea as a
file source's checkpoint). Segments entirely before the persisted position are deleted.

Why a new segment on every start: the last segment of a crashed process may end in a
torn record. It is never appended to again; its reader skips the torn tail (counted)
and moves on, so a damaged file can never put later good records out of reach.

Threads: the writer side (`append`, `seal`, `sync`) runs in one thread at a time (the
buffer's writer task), the reader side (`read_next`) in one thread at a time (its reader
task), `commit` in a third; `_lock` guards the writer state that the others read.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from kubelogs.buffer import records

log = logging.getLogger("kubelogs.buffer")

OFFSET_BITS = 40
"""A segment is far smaller than 2**40 bytes."""
SCAN_CHUNK = 1024 * 1024
"""Bytes read at a time while looking for the next good record after a damaged one."""
_os_write = os.write
"""The write system call (a seam: tests put a full disk behind it)."""


def pos(seq: int, offset: int) -> int:
    return (seq << OFFSET_BITS) | offset


def split_pos(position: int) -> tuple[int, int]:
    return position >> OFFSET_BITS, position & ((1 << OFFSET_BITS) - 1)


@dataclass(slots=True)
class Record:
    payload: bytes
    events: int
    end: int
    """Position just after this record."""


@dataclass(slots=True)
class SegmentEnd:
    """The reader finished a sealed segment: everything before `end` is read."""

    end: int


class BufferLocked(OSError):
    """Another process holds this buffer; ``str()`` is one sentence."""

    def __str__(self) -> str:
        return str(self.strerror)


class DiskBuffer:
    def __init__(self, directory: Path, *, max_size: int, segment_size: int) -> None:
        self.dir = directory
        self.max_size = max_size
        self.segment_size = segment_size
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise BufferLocked(
                errno.EBUSY, f"{directory} is in use by another kubelogs process"
            ) from None
        self._lock = threading.Lock()
        self._wio = threading.Lock()
        """Held while a writer-side call uses descriptors; `close` waits for it, so a
        write still running in a thread after its task was cancelled never lands in a
        reused descriptor."""
        self._rio = threading.Lock()
        """The same for the reader side."""
        self._closed = False
        self.corrupt_records = 0
        """Damaged or torn records skipped since start (their events are lost)."""
        self.corrupt_bytes = 0

        sizes = {}
        for p in directory.glob("*.seg"):
            try:
                sizes[int(p.stem, 16)] = p.stat().st_size
            except (ValueError, OSError):
                continue
        start = self._read_position()
        start_seq, start_off = split_pos(start)
        for seq in [s for s in sizes if s < start_seq]:
            self._unlink(seq)
            del sizes[seq]
        if start_seq not in sizes:
            start_off = 0
            start_seq = min(sizes, default=start_seq)
        self._sizes: dict[int, int] = sizes
        """seq -> bytes, of every segment on disk (the active one included)."""
        self.total_bytes = sum(sizes.values())
        # writer state: the next segment is created on the first append
        self.write_seq = max(max(sizes, default=-1) + 1, start_seq)
        self.written = 0
        """Bytes written to segment `write_seq` (only whole records)."""
        self._wfd = -1
        self._sealed: list[int] = []
        """Descriptors of sealed segments still to be fsynced and closed."""
        self._dir_dirty = False
        # reader state
        self.read_seq = start_seq
        self.read_off = start_off
        self._rfd = -1
        self._rfd_seq = -1
        self.committed = pos(start_seq, start_off)
        self.pending_events = self._count_events()
        """Events written and not yet acknowledged (counted from headers at open)."""

    # -- paths and position -------------------------------------------------------------

    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq:016x}.seg"

    def _read_position(self) -> int:
        try:
            data = json.loads((self.dir / "position").read_text())
            return pos(int(data["seq"]), int(data["offset"]))
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError):
            # A damaged position file: start from the oldest segment (resend, never lose).
            log.warning("%s: unreadable read position; delivering from the start", self.dir)
            return 0

    def _unlink(self, seq: int) -> None:
        try:
            os.unlink(self._path(seq))
        except FileNotFoundError:
            pass

    def _count_events(self) -> int:
        """Events from the read position on, from the record headers (no payload read)."""
        total = 0
        for seq in sorted(self._sizes):
            if seq < self.read_seq:
                continue
            off = self.read_off if seq == self.read_seq else 0
            try:
                with open(self._path(seq), "rb") as f:
                    while True:
                        f.seek(off)
                        header = f.read(records.HEADER.size)
                        if len(header) < records.HEADER.size:
                            break
                        try:
                            length, events, _ = records.parse_header(header)
                        except records.CorruptRecord:
                            break
                        total += events
                        off += records.HEADER.size + length
            except OSError:
                continue
        return total

    # -- writer side --------------------------------------------------------------------

    def would_overflow(self, nbytes: int) -> bool:
        """True if `nbytes` more would pass `max_size` (an empty buffer takes anything, so
        that one oversized batch cannot wedge it)."""
        return self.total_bytes > 0 and self.total_bytes + nbytes > self.max_size

    def append(self, record: bytes) -> None:
        """Append whole records (one or several joined), or nothing: a failed or short
        write is cut back off, then the error raised for the caller to retry."""
        with self._wio:
            self._check_open()
            self._append(record)

    def _append(self, record: bytes) -> None:
        with self._lock:
            if self._wfd < 0:
                self._wfd = os.open(
                    self._path(self.write_seq),
                    os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                    0o644,
                )
                self._sizes.setdefault(self.write_seq, 0)
                self._dir_dirty = True
            fd = self._wfd
            before = self.written
        try:
            view = memoryview(record)
            while view:
                view = view[_os_write(fd, view) :]
        except BaseException:
            try:
                os.ftruncate(fd, before)
            except OSError:
                # cannot cut it: seal the segment at the last whole record instead
                with self._lock:
                    self._seal_locked()
            raise
        with self._lock:
            self.written += len(record)
            self._sizes[self.write_seq] = self.written
            self.total_bytes += len(record)
            if self.written >= self.segment_size:
                self._seal_locked()

    def seal(self) -> None:
        """End the active segment (if it holds anything): once delivered it can go."""
        with self._lock:
            if self.written:
                self._seal_locked()

    def _seal_locked(self) -> None:
        if self._wfd >= 0:
            self._sealed.append(self._wfd)
        self._wfd = -1
        self.write_seq += 1
        self.written = 0

    def sync(self) -> None:
        """fsync everything appended so far (sealed segments, the active one, and the
        directory when segments were created); then it survives a crash or power loss."""
        with self._wio:
            self._check_open()
            self._sync()

    def _sync(self) -> None:
        with self._lock:
            sealed, self._sealed = self._sealed, []
            active = self._wfd
            dir_dirty, self._dir_dirty = self._dir_dirty, False
        try:
            for fd in sealed:
                os.fsync(fd)
            if active >= 0:
                os.fsync(active)
            if dir_dirty:
                dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        except BaseException:
            with self._lock:
                self._sealed[:0] = sealed
                self._dir_dirty = self._dir_dirty or dir_dirty
            raise
        for fd in sealed:
            os.close(fd)

    # -- reader side --------------------------------------------------------------------

    def read_many(self, max_records: int, max_bytes: int) -> list[Record | SegmentEnd]:
        """Up to `max_records` items (or about `max_bytes` of records) from the read
        cursor, in order; empty when everything written has been read. One call per
        group: a hand-off to a thread costs more than reading a small record."""
        items: list[Record | SegmentEnd] = []
        size = 0
        with self._rio:
            self._check_open()
            while len(items) < max_records and size < max_bytes:
                item = self._read_next()
                if item is None:
                    break
                items.append(item)
                if isinstance(item, Record):
                    size += len(item.payload)
        return items

    def read_next(self) -> Record | SegmentEnd | None:
        """The next record at the read cursor, a `SegmentEnd` when a sealed segment is
        finished, or None when everything written so far has been read.

        Damage (a bad header, a checksum mismatch, a torn tail) is skipped and counted:
        the cursor moves to the next frame that checks out, never stops for good.
        """
        with self._rio:
            self._check_open()
            return self._read_next()

    def _read_next(self) -> Record | SegmentEnd | None:
        while True:
            with self._lock:
                write_seq, written = self.write_seq, self.written
            seq = self.read_seq
            if seq > write_seq:
                return None
            sealed = seq < write_seq
            if sealed and seq not in self._sizes:
                self._next_segment()
                return SegmentEnd(pos(self.read_seq, 0))
            fd = self._reader_fd(seq)
            if fd < 0:
                if sealed:
                    self._next_segment()
                    return SegmentEnd(pos(self.read_seq, 0))
                return None
            limit = os.fstat(fd).st_size if sealed else written
            off = self.read_off
            hsize = records.HEADER.size
            if off >= limit:
                if sealed:
                    self._next_segment()
                    return SegmentEnd(pos(self.read_seq, 0))
                return None
            header = os.pread(fd, hsize, off)
            try:
                if len(header) < hsize:
                    raise records.CorruptRecord("torn header")
                length, events, _ = records.parse_header(header)
                end = off + hsize + length
                if end > limit:
                    raise records.CorruptRecord("torn record")
                payload = os.pread(fd, length, off + hsize)
                if len(payload) < length:
                    raise records.CorruptRecord("short read")
                records.check(header, payload)
            except records.CorruptRecord as exc:
                nxt = self._resync(fd, off + 1, limit)
                self.corrupt_records += 1
                self.corrupt_bytes += nxt - off
                log.warning(
                    "%s: skipped %d damaged bytes at offset %d (%s)",
                    self._path(seq),
                    nxt - off,
                    off,
                    exc,
                )
                self.read_off = nxt
                continue
            self.read_off = end
            return Record(payload, events, pos(seq, end))

    def _reader_fd(self, seq: int) -> int:
        if self._rfd_seq != seq:
            if self._rfd >= 0:
                os.close(self._rfd)
            self._rfd, self._rfd_seq = -1, -1
            try:
                self._rfd = os.open(self._path(seq), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return -1
            self._rfd_seq = seq
        return self._rfd

    def _next_segment(self) -> None:
        self.read_seq += 1
        self.read_off = 0

    def _resync(self, fd: int, start: int, limit: int) -> int:
        """Offset of the first good frame in ``[start, limit)``, else `limit`."""
        hsize = records.HEADER.size
        at = start
        while at < limit:
            chunk = os.pread(fd, min(SCAN_CHUNK, limit - at) + len(records.MAGIC) - 1, at)
            i = chunk.find(records.MAGIC)
            while i >= 0 and at + i < limit:
                cand = at + i
                header = os.pread(fd, hsize, cand)
                try:
                    if len(header) == hsize:
                        length, _, _ = records.parse_header(header)
                        if cand + hsize + length <= limit:
                            records.check(header, os.pread(fd, length, cand + hsize))
                            return cand
                except records.CorruptRecord:
                    pass
                i = chunk.find(records.MAGIC, i + 1)
            at += SCAN_CHUNK
        return limit

    # -- acknowledged position ----------------------------------------------------------

    def commit(self, position: int) -> int:
        """Persist `position` (everything before it is delivered) and delete the segments
        entirely before it; the bytes freed."""
        if position <= self.committed:
            return 0
        seq, off = split_pos(position)
        tmp = self.dir / "position.tmp"
        tmp.write_text(json.dumps({"seq": seq, "offset": off}))
        os.replace(tmp, self.dir / "position")
        self.committed = position
        freed = 0
        with self._lock:
            gone = [s for s in self._sizes if s < seq]
        for s in gone:
            self._unlink(s)
            with self._lock:
                size = self._sizes.pop(s, 0)
                self.total_bytes -= size
            freed += size
        return freed

    @property
    def drained(self) -> bool:
        """The reader has read everything written."""
        with self._lock:
            return self.read_seq > self.write_seq or (
                self.read_seq == self.write_seq and self.read_off >= self.written
            )

    def _check_open(self) -> None:
        if self._closed:
            raise OSError(errno.EBADF, f"the disk buffer in {self.dir} is closed")

    def close(self) -> None:
        """Close every descriptor, once no thread uses them (after 5 s they are left
        open rather than closed under a write stuck in the kernel)."""
        if self._closed:
            return
        if not self._wio.acquire(timeout=5):
            return
        try:
            if not self._rio.acquire(timeout=5):
                return
            try:
                self._closed = True
                with self._lock:
                    fds = [*self._sealed, self._wfd, self._rfd]
                    self._sealed, self._wfd, self._rfd = [], -1, -1
                for fd in fds:
                    if fd >= 0:
                        try:
                            os.close(fd)
                        except OSError:
                            pass
            finally:
                self._rio.release()
        finally:
            self._wio.release()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
