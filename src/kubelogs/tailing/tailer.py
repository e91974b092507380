"""The tailing engine shared by the `kubernetes_logs` and `file` sources.

Problem: follow thousands of files that are appended to, rotated by rename
(kubelet: ``0.log`` -> ``0.log.<timestamp>`` and a new ``0.log``), rotated by copytruncate,
deleted, and re-created with reused inodes - without losing or repeating a line across
restarts and ``kill -9``.

Design:
- Files are found by globbing (`include` minus `exclude`) every `glob_interval`; a
  symlink's target is opened. A file is identified by device, inode and a fingerprint of
  its first line (`fingerprint.py`).
- Each open file is read in chunks (`read_chunk`, round-robin so a noisy container cannot
  starve the others); complete lines go to the format's parser; the incomplete tail waits
  for its newline. One read becomes one `Batch` with an ack token from the file's
  `AckLedger`; the checkpoint (SQLite, `checkpoints.py`) only ever stores the ledger's
  committed offset, which never sits inside a pending partial line.
- When the path's target changes, the old file keeps being read to its end (it is
  "rotated") and is released once it is deleted or has not grown for `rotate_wait`.
  Size below the read position, or a changed fingerprint, means copytruncate: the file
  is read again from 0 under a new identity (so event ids do not collide).
- On start, rotated siblings (``<name>.*`` next to each file) with an unfinished
  checkpoint are finished first; siblings without a checkpoint in a directory the agent
  was already following were rotated while it was down, and are read from 0.
- Bytes that disappear before being read (a file deleted while the agent was down, or
  truncated past the read position) are counted in `kubelogs_lost_bytes_total` and logged.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Protocol

from kubelogs.codecs.columns import Columns
from kubelogs.codecs.cri import CriParser
from kubelogs.codecs.docker_json import DockerJsonParser
from kubelogs.codecs.plain import PlainParser
from kubelogs.pipeline.acks import AckLedger
from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.pipeline.runtime import Output
from kubelogs.tailing.checkpoints import Checkpoint, CheckpointStore
from kubelogs.tailing.fingerprint import fingerprint
from kubelogs.telemetry.metrics import ComponentMetrics, Metrics

log = logging.getLogger("kubelogs.tail")

_SKIP_SUFFIXES = (".gz", ".tmp", ".zst", ".bz2", ".xz", ".zip")


class LineParser(Protocol):
    @property
    def pending_offset(self) -> int | None: ...

    def reset(self) -> None: ...

    def flush(self, cols: Columns) -> None: ...

    def feed(
        self, lines: list[bytes], offset: int, cols: Columns, truncated: bool = False
    ) -> int: ...


ContextFactory = Callable[[str, str, str, str], FileContext]
"""(link path, real path, file key, id prefix) -> the file's context."""


@dataclass
class TailSettings:
    source_id: str
    source_type: str
    """The component type, for metric labels."""
    include: list[str]
    exclude: list[str]
    read_from: str
    max_line_size: int
    format: str
    """``auto`` (CRI or Docker json-file, detected per file) or ``plain``."""
    node_name: str
    context_factory: ContextFactory
    accept: Callable[[str], bool] = lambda _path: True
    """Extra filter on matched paths (e.g. excluded namespaces)."""
    read_chunk: int = 256 * 1024
    glob_interval: float = 1.0
    poll_interval: float = 0.05
    rotate_wait: float = 5.0
    checkpoint_interval: float = 1.0
    extra_paths: Callable[[], Iterable[tuple[str, Callable[[str, str, str, str], FileContext]]]] = (
        lambda: ()
    )
    """Additional (path, context factory) pairs found by other means (pod annotations)."""


class TailedFile:
    """One open file and everything needed to resume it exactly."""

    __slots__ = (
        "carry",
        "ctx",
        "deleted",
        "dev",
        "discarding",
        "disk_path",
        "factory",
        "fd",
        "fp",
        "head",
        "head_off",
        "ino",
        "key",
        "last_growth",
        "ledger",
        "link",
        "parser",
        "path",
        "pos",
        "rotated",
        "saved",
        "size",
    )

    def __init__(self, link: str, path: str, fd: int, st: os.stat_result, fp: str) -> None:
        self.link = link
        self.path = path
        """The path reported in documents: the name the file had when it was opened."""
        self.disk_path = path
        """Where the file is now (after rotation renames it): checkpoints record this."""
        self.fd = fd
        self.dev = st.st_dev
        self.ino = st.st_ino
        self.fp = fp
        self.key = f"{st.st_dev}:{st.st_ino}:{fp}"
        self.size = st.st_size
        self.pos = 0
        self.carry = b""
        self.discarding = False
        self.head = b""
        self.head_off = 0
        self.rotated = False
        self.deleted = False
        self.last_growth = time.monotonic()
        self.ledger = AckLedger(0)
        self.saved = -1
        self.parser: LineParser = PlainParser(1)
        self.ctx: FileContext | None = None
        self.factory: ContextFactory | None = None


def _make_parser(fmt: str, first: bytes, max_size: int) -> LineParser:
    if fmt == "plain":
        return PlainParser(max_size)
    if first[:1] == b"{":
        return DockerJsonParser(max_size)
    return CriParser(max_size)


class Tailer:
    def __init__(
        self, settings: TailSettings, checkpoints: CheckpointStore, metrics: Metrics
    ) -> None:
        self.s = settings
        self.checkpoints = checkpoints
        self.metrics = metrics
        self.cm = ComponentMetrics(metrics, settings.source_id, "source", settings.source_type)
        self.files: list[TailedFile] = []
        self.by_link: dict[str, TailedFile] = {}
        self.by_inode: dict[tuple[int, int], TailedFile] = {}
        self.rows: dict[str, Checkpoint] = {}
        self.finished: dict[str, Checkpoint] = {}
        self._deleted_keys: list[str] = []
        self._pending_finished: list[Checkpoint] = []
        self._ignored: set[str] = set()
        """Rotated files that were already there at the first start (not ours to read)."""
        self._line_cap = settings.max_line_size + 1024
        self._started = False
        self._last_gc = 0.0
        metrics.add_collector(self._gauges)

    # -- lifecycle ---------------------------------------------------------------------

    def prepare(self) -> None:
        """The first scan: checkpoints loaded, files (and unfinished rotated ones) opened.
        Done before the pipeline reports ready, so that files created after /readyz
        answers are never mistaken for history."""
        if not self._started:
            self._startup()
            self._started = True

    async def run(self, out: Output, stopping: asyncio.Event) -> None:
        s = self.s
        self.prepare()
        loop = asyncio.get_running_loop()
        next_scan = loop.time() + s.glob_interval
        next_ckpt = loop.time() + s.checkpoint_interval
        while not stopping.is_set():
            now = loop.time()
            if now >= next_scan:
                self._scan()
                next_scan = now + s.glob_interval
            progressed = False
            for f in list(self.files):
                if stopping.is_set():
                    break
                if f.fd < 0:
                    continue
                batch = self._read(f)
                if batch is not None:
                    progressed = True
                    await out.send(batch)
                elif f.rotated or f.deleted:
                    released = self._maybe_release(f)
                    if released is not None:
                        await out.send(released)
            self._forget_released()
            if now >= next_ckpt:
                self.save_checkpoints()
                next_ckpt = now + s.checkpoint_interval
            if progressed:
                await asyncio.sleep(0)
            else:
                try:
                    await asyncio.wait_for(stopping.wait(), s.poll_interval)
                except TimeoutError:
                    pass

    def close(self) -> None:
        """Write the final checkpoints (after sinks drained) and close every file."""
        self.save_checkpoints()
        for f in self.files:
            if f.fd >= 0:
                os.close(f.fd)
                f.fd = -1
        self.files.clear()

    # -- discovery ---------------------------------------------------------------------

    def _matches(self) -> list[tuple[str, ContextFactory]]:
        s = self.s
        seen: set[str] = set()
        out: list[tuple[str, ContextFactory]] = []
        for pattern in s.include:
            for p in sorted(glob.glob(pattern)):
                if p in seen or p.endswith(_SKIP_SUFFIXES):
                    continue
                if any(fnmatchcase(p, ex) for ex in s.exclude) or not s.accept(p):
                    continue
                seen.add(p)
                out.append((p, s.context_factory))
        for p, factory in s.extra_paths():
            if p not in seen and not any(fnmatchcase(p, ex) for ex in s.exclude):
                seen.add(p)
                out.append((p, factory))
        return out

    def _startup(self) -> None:
        s = self.s
        self.rows = self.checkpoints.load(s.source_id)
        followed_dirs = {os.path.dirname(r.path) for r in self.rows.values()}
        used: set[str] = set()
        for link, factory in self._matches():
            real = os.path.realpath(link)
            # Rotated siblings first: finish what was left before the stop.
            for sib in self._siblings(real):
                f = self._open(sib, sib, factory, rotated=True)
                if f is None:
                    continue
                row = self.rows.get(f.key) or self._row_of_copy(f)
                if row is not None and row.finished and row.offset >= f.size:
                    self._discard(f)
                    used.add(f.key)
                    continue
                if row is None and os.path.dirname(real) not in followed_dirs:
                    # First start: history before us is not ours to read.
                    self._ignored.add(f.key)
                    self._discard(f)
                    continue
                self._activate(f, row.offset if row else 0)
                used.add(f.key)
            f = self._open(link, real, factory, rotated=False)
            if f is None:
                continue
            row = self.rows.get(f.key)
            if row is not None:
                start = row.offset
            elif s.read_from == "end" and os.path.dirname(real) not in followed_dirs:
                start = self._last_line_start(f)
            else:
                start = 0
            self._activate(f, start)
            used.add(f.key)
        for key, row in list(self.rows.items()):
            if key in used:
                continue
            if self._still_exists(row):
                if row.finished:
                    self.finished[key] = row
                continue
            if not row.finished and row.size > row.offset:
                self._lost(row.path, row.size - row.offset, "was removed while kubelogs was down")
            self._deleted_keys.append(key)
            del self.rows[key]

    def _row_of_copy(self, f: TailedFile) -> Checkpoint | None:
        """A copytruncate copy has the content (so the fingerprint) of a file we followed:
        it resumes where that file's checkpoint stood."""
        for row in self.rows.values():
            if row.file_key.endswith(":" + f.fp) and row.file_key != f.key:
                return row
        return None

    def _siblings(self, real: str) -> list[str]:
        d, base = os.path.split(real)
        try:
            names = os.listdir(d)
        except OSError:
            return []
        prefix = base + "."
        return [
            os.path.join(d, n)
            for n in sorted(names)
            if n.startswith(prefix) and not n.endswith(_SKIP_SUFFIXES)
        ]

    @staticmethod
    def _locate(file_key: str, path: str) -> str | None:
        """Where the file of `file_key` is now: `path`, or a new name in the same
        directory (rotation renames files; logrotate renames them again)."""
        dev_s, ino_s, _ = file_key.split(":", 2)
        dev, ino = int(dev_s), int(ino_s)
        try:
            st = os.stat(path)
            if st.st_dev == dev and st.st_ino == ino:
                return path
        except OSError:
            pass
        d = os.path.dirname(path)
        try:
            with os.scandir(d) as entries:
                for e in entries:
                    if (
                        e.inode() == ino
                        and e.is_file(follow_symlinks=False)
                        and e.stat(follow_symlinks=False).st_dev == dev
                    ):
                        return e.path
        except OSError:
            return None
        return None

    def _still_exists(self, row: Checkpoint) -> bool:
        where = self._locate(row.file_key, row.path)
        if where is not None:
            row.path = where
        return where is not None

    def _scan(self) -> None:
        matched = self._matches()
        current = set()
        for link, factory in matched:
            current.add(link)
            try:
                st = os.stat(link)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            have = self.by_link.get(link)
            if have is not None and (have.dev, have.ino) == (st.st_dev, st.st_ino):
                continue
            if (st.st_dev, st.st_ino) in self.by_inode:
                continue  # already followed through another path
            real = os.path.realpath(link)
            f = self._open(link, real, factory, rotated=False)
            if f is None:
                continue  # no complete first line yet: try again next scan
            if have is not None:
                self._mark_rotated(have)
            row = self.rows.get(f.key)
            self._activate(f, row.offset if row else 0)
            if have is not None:
                self._adopt_unseen_rotations(real, factory)
        for link, f in list(self.by_link.items()):
            if link not in current:
                self._mark_rotated(f)
        for f in self.files:
            if f.fd >= 0:
                self._check_health(f)
        now = time.monotonic()
        if now - self._last_gc > 10 * self.s.glob_interval:
            self._last_gc = now
            for key, row in list(self.finished.items()):
                if not self._still_exists(row):
                    del self.finished[key]
                    self.rows.pop(key, None)
                    self._deleted_keys.append(key)

    def _adopt_unseen_rotations(self, real: str, factory: ContextFactory) -> None:
        """A file can be created and rotated away again between two scans (a busy
        container, a small rotate size): it was never seen under its live name. Every
        rotated sibling that is not open, not finished and not ignored is such a file."""
        for sib in self._siblings(real):
            try:
                st = os.stat(sib)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in self.by_inode:
                continue
            f = self._open(sib, sib, factory, rotated=True)
            if f is None:
                continue
            row = self.rows.get(f.key) or self._row_of_copy(f)
            if (
                f.key in self._ignored
                or f.key in self.finished
                or (row is not None and row.finished)
            ):
                self._discard(f)
                continue
            log.info("reading %s, rotated before it was seen under its live name", sib)
            self._activate(f, row.offset if row is not None else 0)

    def _mark_rotated(self, f: TailedFile) -> None:
        f.rotated = True
        f.disk_path = self._locate(f.key, f.disk_path) or f.disk_path
        f.saved = -1  # record the new name with the next checkpoint write
        if self.by_link.get(f.link) is f:
            del self.by_link[f.link]

    def _open(
        self, link: str, real: str, factory: ContextFactory, *, rotated: bool
    ) -> TailedFile | None:
        try:
            fd = os.open(real, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            log.warning("cannot open %s: %s", real, exc.strerror)
            self.cm.error("open_failed", "receiving")
            return None
        try:
            st = os.fstat(fd)
            fp = fingerprint(fd) if stat.S_ISREG(st.st_mode) else None
        except OSError:
            fp = None
        if fp is None:
            os.close(fd)
            return None
        f = TailedFile(link, real, fd, st, fp)
        f.rotated = rotated
        f.factory = factory
        return f

    def _activate(self, f: TailedFile, start: int) -> None:
        from kubelogs.pipeline.event import make_id_prefix

        assert f.factory is not None
        if start > f.size:
            # The file is shorter than its checkpoint: truncated while we were down.
            start = 0
        f.pos = start
        f.ledger = AckLedger(start)
        f.saved = start if f.key in self.rows else -1
        head = os.pread(f.fd, 1, 0)
        f.parser = _make_parser(self.s.format, head, self.s.max_line_size)
        f.ctx = f.factory(f.link, f.path, f.key, make_id_prefix(self.s.node_name, f.key))
        self.files.append(f)
        log.debug("following %s from %d%s", f.path, start, " (rotated)" if f.rotated else "")
        self.by_inode[(f.dev, f.ino)] = f
        if not f.rotated:
            self.by_link[f.link] = f
        self.finished.pop(f.key, None)

    def _discard(self, f: TailedFile) -> None:
        os.close(f.fd)
        f.fd = -1

    def _last_line_start(self, f: TailedFile) -> int:
        """`read_from: end`: start after the last complete line."""
        size = f.size
        pos = max(0, size - 65536)
        tail = os.pread(f.fd, size - pos, pos)
        nl = tail.rfind(b"\n")
        return pos + nl + 1 if nl >= 0 else 0

    def _check_health(self, f: TailedFile) -> None:
        try:
            st = os.fstat(f.fd)
        except OSError:
            return
        if st.st_nlink == 0:
            f.deleted = True
        if st.st_size > f.size:
            f.last_growth = time.monotonic()
        truncated = st.st_size < f.pos
        if not truncated and not f.deleted and f.pos > 0 and f.fp != "pending":
            truncated = fingerprint(f.fd) != f.fp
        old_size = f.size
        f.size = st.st_size
        if truncated:
            self._restart_truncated(f, old_size)

    def _restart_truncated(self, f: TailedFile, old_size: int) -> None:
        from kubelogs.pipeline.event import make_id_prefix

        copied = self._finish_from_copy(f)
        lost = max(0, old_size - f.pos)
        if lost and not copied:
            self._lost(f.path, lost, "was truncated before it was read")
        log.info("%s was truncated (copytruncate); reading it again from the start", f.path)
        old_key = f.key
        self.rows.pop(old_key, None)
        self._deleted_keys.append(old_key)
        fp = fingerprint(f.fd)
        f.pos = 0
        f.carry = b""
        f.discarding = False
        f.parser.reset()
        f.ledger = AckLedger(0)
        f.saved = -1
        if fp is None:
            # Nothing complete written yet: wait with an identity that cannot match.
            f.fp = "pending"
            f.key = f"{f.dev}:{f.ino}:pending"
        else:
            f.fp = fp
            f.key = f"{f.dev}:{f.ino}:{fp}"
        assert f.factory is not None
        f.ctx = f.factory(f.link, f.path, f.key, make_id_prefix(self.s.node_name, f.key))

    def _finish_from_copy(self, f: TailedFile) -> bool:
        """copytruncate copied the file before truncating it: the bytes we had not read
        yet are in the copy. Find it next to the file (same first line) and read it on
        from where we were."""
        if f.pos == 0 or f.fp == "pending":
            return False
        for sib in self._siblings(f.path):
            try:
                st = os.stat(sib)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in self.by_inode or st.st_size < f.pos:
                continue
            assert f.factory is not None
            copy = self._open(sib, sib, f.factory, rotated=True)
            if copy is None:
                continue
            if copy.fp != f.fp:
                self._discard(copy)
                continue
            self._activate(copy, f.pos - len(f.carry) if not f.discarding else f.head_off)
            log.info("reading the rest of %s from its copy %s", f.path, sib)
            return True
        return False

    def _lost(self, path: str, nbytes: int, why: str) -> None:
        log.warning("%d bytes of %s %s; they are lost", nbytes, path, why)
        self.metrics.lost_bytes.labels(self.s.source_id, path).inc(nbytes)

    # -- reading -----------------------------------------------------------------------

    def _read(self, f: TailedFile) -> Batch | None:
        if f.fp == "pending":
            fp = fingerprint(f.fd)
            if fp is None:
                return None
            f.fp = fp
            f.pos = 0
            self._restart_truncated(f, 0)  # now with a real identity
        try:
            data = os.pread(f.fd, self.s.read_chunk, f.pos)
        except OSError as exc:
            log.warning("cannot read %s: %s", f.path, exc.strerror)
            self.cm.error("read_failed", "receiving")
            return None
        if not data:
            return None
        n = len(data)
        f.pos += n
        if f.pos > f.size:
            f.size = f.pos
            f.last_growth = time.monotonic()
        self.cm.received_bytes.inc(n)
        buf = f.carry + data if f.carry else data
        base = f.pos - len(buf)
        cols = Columns()
        parser = f.parser
        if f.discarding:
            nl = buf.find(b"\n")
            if nl < 0:
                return self._emit(f, cols)
            parser.feed([f.head], f.head_off, cols, truncated=True)
            f.discarding = False
            f.head = b""
            buf = buf[nl + 1 :]
            base += nl + 1
        last = buf.rfind(b"\n")
        if last >= 0:
            parser.feed(buf[:last].split(b"\n"), base, cols)
            carry = buf[last + 1 :]
            carry_off = base + last + 1
        else:
            carry = buf
            carry_off = base
        if len(carry) > self._line_cap:
            f.head = carry[: self._line_cap]
            f.head_off = carry_off
            f.discarding = True
            carry = b""
        f.carry = carry
        return self._emit(f, cols)

    def _end_offset(self, f: TailedFile) -> int:
        end = f.head_off if f.discarding else f.pos - len(f.carry)
        pending = f.parser.pending_offset
        if pending is not None and pending < end:
            end = pending
        return end

    def _emit(self, f: TailedFile, cols: Columns) -> Batch | None:
        end = self._end_offset(f)
        if not cols.messages:
            if end > f.ledger.committed:
                if f.ledger.in_flight == 0:
                    f.ledger.committed = end
                else:
                    f.ledger.track(end).resolve()
            return None
        assert f.ctx is not None
        self.cm.received_events.inc(len(cols.messages))
        return Batch(
            ctx=f.ctx,
            times=cols.times,
            messages=cols.messages,
            streams=cols.streams,
            offsets=cols.offsets,
            flags=cols.flags or None,
            fields=None,
            ack=f.ledger.track(end),
            end_offset=end,
            tstrs=cols.tstrs,
        )

    def _maybe_release(self, f: TailedFile) -> Batch | None:
        """A rotated or deleted file at its end: release it once nothing more can come."""
        if not f.deleted and time.monotonic() - f.last_growth < self.s.rotate_wait:
            return None
        try:
            size = os.fstat(f.fd).st_size
        except OSError:
            size = f.pos
        if size > f.pos:
            return None  # more to read
        cols = Columns()
        if f.discarding:
            f.parser.feed([f.head], f.head_off, cols, truncated=True)
            f.discarding = False
        if f.carry:
            # The file ended for good without a final newline: emit what is there.
            f.parser.feed([f.carry], f.pos - len(f.carry), cols)
            f.carry = b""
        f.parser.flush(cols)
        batch = self._emit(f, cols)
        os.close(f.fd)
        log.debug("released %s at %d", f.disk_path, f.pos)
        f.fd = -1
        self.by_inode.pop((f.dev, f.ino), None)
        if self.by_link.get(f.link) is f:
            del self.by_link[f.link]
        return batch

    def _forget_released(self) -> None:
        keep = []
        for f in self.files:
            if f.fd < 0 and f.ledger.in_flight == 0:
                if f.deleted:
                    self.rows.pop(f.key, None)
                    self._deleted_keys.append(f.key)
                else:
                    row = Checkpoint(
                        f.key, f.disk_path, f.ledger.committed, f.pos, True, time.time()
                    )
                    self.rows[f.key] = row
                    self.finished[f.key] = row
                    self._pending_finished.append(row)
                continue
            keep.append(f)
        self.files = keep

    # -- checkpoints and metrics -------------------------------------------------------

    def save_checkpoints(self) -> None:
        rows: list[Checkpoint] = self._pending_finished
        self._pending_finished = []
        now = time.time()
        for f in self.files:
            committed = f.ledger.committed
            if committed != f.saved and f.fp != "pending":
                row = Checkpoint(f.key, f.disk_path, committed, max(f.size, f.pos), False, now)
                rows.append(row)
                self.rows[f.key] = row
                f.saved = committed
        deleted, self._deleted_keys = self._deleted_keys, []
        try:
            self.checkpoints.save(self.s.source_id, rows, deleted)
        except Exception as exc:
            log.error("cannot write checkpoints to %s: %s", self.checkpoints.path, exc)
            self.cm.error("checkpoint_write_failed", "processing")
            for f in self.files:
                f.saved = -1
            self._deleted_keys.extend(deleted)

    def _gauges(self) -> list[Any]:
        from prometheus_client.core import GaugeMetricFamily

        sid = self.s.source_id
        lag = GaugeMetricFamily(
            "kubelogs_file_lag_bytes",
            "File size minus the acknowledged checkpoint.",
            labels=["component_id", "file"],
        )
        age = GaugeMetricFamily(
            "kubelogs_checkpoint_age_seconds",
            "Seconds since the oldest file's checkpoint last moved, among files with lag.",
            labels=["component_id"],
        )
        open_files = GaugeMetricFamily(
            "kubelogs_files_open", "Files being followed.", labels=["component_id"]
        )
        oldest = 0.0
        now = time.time()
        n_open = 0
        for f in list(self.files):
            if f.fd >= 0:
                n_open += 1
            behind = max(f.size, f.pos) - f.ledger.committed
            lag.add_metric([sid, f.path], float(max(0, behind)))
            row = self.rows.get(f.key)
            if behind > 0 and row is not None:
                oldest = max(oldest, now - row.updated)
        age.add_metric([sid], oldest)
        open_files.add_metric([sid], float(n_open))
        return [lag, age, open_files]
