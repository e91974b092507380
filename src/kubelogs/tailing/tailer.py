"""The tailing engine shared by the `kubernetes_logs` and `file` sources.

Problem: follow thousands of files that are appended to, rotated by rename
(kubelet: ``0.log`` -> ``0.log.<timestamp>`` and a new ``0.log``), rotated by copytruncate
(logrotate: the file is copied to ``app.log.1`` or ``app.log-<date>``, then truncated),
deleted, and re-created with reused inodes - without losing or repeating a line across
restarts and ``kill -9``.

Identity (checkpoints.py, fingerprint.py). A file's checkpoint row names the logical
stream of bytes (its key, used in event ids and the local store's high-water marks) and
where those bytes are now (device, inode, path) with two content checks: the hash of the
first line and the hash of the 64 bytes before the checkpoint offset (the *anchor*). A row
applies to a file only if device, inode, first line and anchor all agree, so inode reuse
(also with the same first line) never inherits an offset, and a truncated-and-regrown
file is told from an appended one.

Truncation (copytruncate). While running, every read also reads the 16 bytes before the
read position and compares them with what was read there; every scan compares the size
and the first line. A truncated file's unread bytes are in its copy, if the copy sits
next to it under a rotated name (`discovery.py`), starts with the same first line and
holds the same bytes before the read position: the file's state - identity, ack ledger,
parser with its pending partial line, read position - moves to the copy, which is read
to its end under the *same* identity (so a resend after a crash is recognised), and the
truncated file is followed anew under a new identity (``…:g2`` when its first line is the
same). Without a copy the unread bytes are counted in ``kubelogs_lost_bytes_total``. At
start the same decision is made from the checkpoint rows: a row whose file no longer
holds its anchor is given to the rotated sibling that does, else its unread bytes are
counted as lost.

First start. ``read_from`` applies to the source's very first start only: ``beginning``
reads every file found then, rotated ones included; ``end`` starts each live file after
its last complete line and records every rotated file found then as finished (history,
not read). The first start and where every file starts are written to the checkpoint
database in one transaction *before* anything is read, so a crash before the first
regular checkpoint does not make the next start a "first" one. Every file found after
that - a new pod, a rotated file of a pod created while the agent was down - is read
from its beginning.

Rotation by rename. When a name points to a new file, the old one is read to its end
first (the new one waits, so a container's lines stay in order), released once it is
deleted or has not grown for `rotate_wait`; a rotated sibling that was never seen under
the live name (created and rotated between two scans) is read from its start. A line
split by the rotation (first parts in the old file, last in the new) is not joined: both
halves are flagged ``partial`` (codecs/partials.py says why).

Reading. Files are read in chunks, round-robin so a noisy container cannot starve the
others; complete lines go to the format's parser; the incomplete tail waits for its
newline. One read becomes one `Batch` with an ack token from the file's `AckLedger`; the
checkpoint only ever stores the ledger's committed offset, which never sits inside a
pending partial line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from kubelogs.codecs.columns import Columns
from kubelogs.pipeline.event import Batch, make_id_prefix
from kubelogs.pipeline.runtime import Output
from kubelogs.tailing.checkpoints import Checkpoint, CheckpointStore
from kubelogs.tailing.discovery import (
    ContextFactory,
    Match,
    find_matches,
    is_rotated_name,
    rotated_names,
    unmatched_patterns,
)
from kubelogs.tailing.files import TAIL_BYTES, LineParser, TailedFile, make_parser
from kubelogs.tailing.fingerprint import (
    ANCHOR_BYTES,
    anchor_hash,
    file_key,
    head_fingerprint,
    holds,
    same_head,
)
from kubelogs.telemetry.metrics import ComponentMetrics, Metrics

__all__ = ["ContextFactory", "LineParser", "TailSettings", "Tailer"]

log = logging.getLogger("kubelogs.tail")


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
    extra_paths: Callable[[], Iterable[Match]] = lambda: ()
    """Additional files found by other means (pod annotations), with their format."""


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
        self._outbox: list[Batch] = []
        self._predecessor: dict[str, TailedFile] = {}
        """Per name, the rotated file that the next file under that name waits for."""
        self._scan_now = False
        self._moved = False
        """An identity moved to a copytruncate copy since the last checkpoint write."""
        self._line_cap = settings.max_line_size + 1024
        self._started = False
        self._last_gc = 0.0
        metrics.lost_bytes.labels(settings.source_id, "").inc(0)
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
            scan = now >= next_scan
            if scan:
                next_scan = now + s.glob_interval
            progressed = False
            for batch in self.poll(scan=scan):
                progressed = True
                await out.send(batch)
                if stopping.is_set():
                    break
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

    def poll(self, *, scan: bool) -> Iterator[Batch]:
        """One pass: a scan when asked (or when a truncation asks for one), then one
        read of every file. Lazy, so that the caller's backpressure holds between reads;
        tests drive the engine step by step with it."""
        if scan or self._scan_now:
            self._scan_now = False
            n_files = len(self.files)
            self._scan()
            if len(self.files) != n_files or self._moved:
                # A file's identity is durable before its first line leaves: a crash
                # then finds the same identity for the same bytes (no duplicate).
                self._moved = False
                self.save_checkpoints()
        yield from self._take_outbox()
        for f in list(self.files):
            if f.fd < 0 or not self._may_read(f):
                continue
            batch = self._read(f)
            if batch is not None:
                yield batch
            elif f.rotated or f.deleted:
                released = self._maybe_release(f)
                if released is not None:
                    yield released
            yield from self._take_outbox()
        self._forget_released()

    def _take_outbox(self) -> list[Batch]:
        batches, self._outbox = self._outbox, []
        return batches

    def close(self) -> None:
        """Write the final checkpoints (after sinks drained) and close every file."""
        self.save_checkpoints()
        for f in self.files:
            f.close()
        self.files.clear()

    # -- start -------------------------------------------------------------------------

    def _matches(self) -> list[Match]:
        s = self.s
        return find_matches(
            s.include, s.exclude, s.accept, s.context_factory, s.format, s.extra_paths()
        )

    def _startup(self) -> None:
        s = self.s
        self.rows = self.checkpoints.load(s.source_id)
        first = not self.checkpoints.has_started(s.source_id)
        claimed: set[str] = set()
        unknown: list[TailedFile] = []
        owner: dict[tuple[int, int], TailedFile] = {}
        """The live file next to each unknown rotated file."""
        matches = self._matches()
        for m in matches:
            real = os.path.realpath(m.path)
            f = self._open(m.path, real, m.factory, m.format, rotated=False)
            if f is not None and f.inode in self.by_inode:
                f.close()  # the same file through another path (a symlink and its target)
                f = None
            if f is not None:
                row, f = self._identify(f, claimed, m, real)
            if f is not None:
                if row is not None:
                    f.key = row.file_key
                    self._activate(f, row.offset, row)
                else:
                    f.key = self._new_key(f)
                    start = 0
                    if first and s.read_from == "end":
                        start = self._last_line_start(f)
                    self._activate(f, start)
                claimed.add(f.key)
            for sib in rotated_names(real):
                g = self._open(sib, sib, m.factory, m.format, rotated=True)
                if g is None:
                    continue
                if g.inode in self.by_inode:
                    g.close()
                    continue
                row = self._row_for(g, claimed)
                if row is None:
                    unknown.append(g)
                    if f is not None:
                        owner[g.inode] = f
                    self.by_inode[g.inode] = g  # reserved until decided below
                    continue
                claimed.add(row.file_key)
                g.key = row.file_key
                if row.finished and row.offset >= g.size:
                    g.close()
                    self.finished[row.file_key] = row
                    continue
                self._activate(g, row.offset, row)
        for g in unknown:
            del self.by_inode[g.inode]
        # A copytruncate between opening a file and listing its rotated files: the copy
        # is the truncated file's, not a file of its own.
        for g in list(unknown):
            f = owner.get(g.inode)
            if f is not None and self._claims(f, g):
                unknown.remove(g)
                g.close()
        self._settle_unclaimed_rows(claimed, unknown)
        new_rows: list[Checkpoint] = []
        for g in unknown:
            g.key = self._new_key(g)
            if first and s.read_from == "end":
                # History from before the agent's first start, which was told to skip it.
                row = Checkpoint(
                    g.key,
                    g.disk_path,
                    g.size,
                    g.size,
                    True,
                    time.time(),
                    g.dev,
                    g.ino,
                    g.fp,
                    anchor_hash(os.pread(g.fd, ANCHOR_BYTES, max(0, g.size - ANCHOR_BYTES))),
                )
                g.close()
                self.rows[g.key] = row
                self.finished[g.key] = row
                new_rows.append(row)
                continue
            if not first:
                log.info(
                    "reading %s from its start (a rotated file with no checkpoint)", g.disk_path
                )
            self._activate(g, 0)
        for f in self.files:
            row = self._row_of(f)
            self.rows[f.key] = row
            new_rows.append(row)
            f.saved = f.ledger.committed
        # Durable before anything is read: the first start, and where every file starts.
        self.checkpoints.save(s.source_id, new_rows, self._deleted_keys, mark_started=first)
        self._deleted_keys = []
        self._report_start(matches, first)

    def _settle_unclaimed_rows(self, claimed: set[str], unknown: list[TailedFile]) -> None:
        """Rows no followed file took: a copytruncate copy holds the rest (it continues
        under the row's identity), or the file moved (read on), or it is gone (its unread
        bytes are lost)."""
        for key, row in list(self.rows.items()):
            if key in claimed:
                continue
            copy = self._copy_for(row, unknown)
            if copy is None and not row.finished:
                strays = self._strays(row)
                copy = self._copy_for(row, strays)
                for g in strays:
                    if g is not copy:
                        g.close()
            if copy is not None:
                if copy in unknown:
                    unknown.remove(copy)
                copy.key = key
                log.info(
                    "reading the rest of %s from its copy %s (truncated while kubelogs was down)",
                    row.path,
                    copy.disk_path,
                )
                self._activate(copy, row.offset, row)
                claimed.add(key)
                continue
            moved = self._locate(row)
            if moved is not None:
                if row.finished:
                    self.finished[key] = row
                    continue
                f = self._open(moved, moved, self.s.context_factory, self.s.format, rotated=True)
                if f is not None and f.inode not in self.by_inode:
                    f.key = key
                    self._activate(f, row.offset, row)
                    claimed.add(key)
                    continue
                if f is not None:
                    f.close()
            if not row.finished and row.size > row.offset:
                self._lost(
                    row.path,
                    row.size - row.offset,
                    "was removed or truncated while kubelogs was down before it was read",
                )
            self._deleted_keys.append(key)
            del self.rows[key]

    def _report_start(self, matches: list[Match], first: bool) -> None:
        s = self.s
        live = sum(1 for f in self.files if not f.rotated)
        rotated = len(self.files) - live
        log.info(
            "source %s: following %d files (%d rotated ones to finish) matching %s%s",
            s.source_id,
            live,
            rotated,
            ", ".join(s.include),
            f" (first start: read_from {s.read_from})" if first else "",
        )
        for pattern in unmatched_patterns(s.include):
            d = os.path.dirname(pattern)
            why = f"directory {d} does not exist" if d and not os.path.isdir(d) else "no file yet"
            log.warning("source %s: %s matches no file (%s)", s.source_id, pattern, why)

    # -- identity ----------------------------------------------------------------------

    def _identify(
        self, f: TailedFile, claimed: set[str], m: Match, real: str
    ) -> tuple[Checkpoint | None, TailedFile | None]:
        """The checkpoint of a live file just opened, if any. A file truncated between
        being opened and being checked would look like new content under the old first
        line: it is opened again, so that its identity is that of what it holds now."""
        for _ in range(3):
            row = self._row_for(f, claimed)
            if row is not None or (
                same_head(f.fd, f.fp, f.fp_len) and _holds_at(f.fd, f.seen, f.seen_tail)
            ):
                return row, f
            f.close()
            again = self._open(m.path, real, m.factory, m.format, rotated=False)
            if again is None:
                return None, None
            f = again
        return None, f

    def _row_for(self, f: TailedFile, claimed: set[str]) -> Checkpoint | None:
        """The checkpoint of exactly this content: same inode, first line and anchor."""
        for row in self.rows.values():
            if (
                row.ino == f.ino
                and row.dev == f.dev
                and row.fp == f.fp
                and row.file_key not in claimed
                and holds(f.fd, row.fp, row.offset, row.anchor)
            ):
                return row
        return None

    def _copy_for(self, row: Checkpoint, candidates: list[TailedFile]) -> TailedFile | None:
        """The copytruncate copy of the file `row` was reading: a rotated name of it, in
        its directory, holding the same first line and the same bytes before the offset."""
        if row.finished:
            return None
        d, base = os.path.split(row.path)
        for g in candidates:
            gd, gname = os.path.split(g.disk_path)
            if (
                gd == d
                and is_rotated_name(gname, base)
                and g.fp == row.fp
                and holds(g.fd, row.fp, row.offset, row.anchor)
            ):
                return g
        return None

    def _strays(self, row: Checkpoint) -> list[TailedFile]:
        """Rotated files of a row's file that no include glob led to (the live file is
        gone): candidates for its copy."""
        out = []
        for sib in rotated_names(row.path):
            g = self._open(sib, sib, self.s.context_factory, self.s.format, rotated=True)
            if g is None:
                continue
            if g.inode in self.by_inode:
                g.close()
                continue
            out.append(g)
        return out

    def _new_key(self, f: TailedFile) -> str:
        """A key no row and no followed file has: ``dev:ino:fp``, else ``…:g<N>`` (the
        same inode holding new content with the same first line)."""
        base = file_key(f.dev, f.ino, f.fp)
        used = {g.key for g in self.files} | set(self.rows)
        if base not in used:
            return base
        n = 2
        while f"{base}:g{n}" in used:
            n += 1
        return f"{base}:g{n}"

    def _locate(self, row: Checkpoint) -> str | None:
        """Where the file of `row` is now - its path or a new name in the same directory
        (rotation renames files; logrotate renames them again) - if it still holds the
        content of the row (an inode taken by a new file does not count)."""
        dev, ino = row.dev, row.ino
        found: str | None = None
        try:
            st = os.stat(row.path)
            if st.st_dev == dev and st.st_ino == ino:
                found = row.path
        except OSError:
            pass
        if found is None:
            try:
                with os.scandir(os.path.dirname(row.path)) as entries:
                    for e in entries:
                        if (
                            e.inode() == ino
                            and e.is_file(follow_symlinks=False)
                            and e.stat(follow_symlinks=False).st_dev == dev
                        ):
                            found = e.path
                            break
            except OSError:
                return None
        if found is None:
            return None
        try:
            fd = os.open(found, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            same = holds(fd, row.fp, row.offset, row.anchor)
        finally:
            os.close(fd)
        return found if same else None

    # -- discovery while running -------------------------------------------------------

    def _scan(self) -> None:
        # Truncations first: a truncated file claims its copy before the copy could be
        # taken for a rotated file never seen (and read again under another identity).
        for f in list(self.files):
            if f.fd >= 0:
                self._check_health(f)
        matched = self._matches()
        current = set()
        for m in matched:
            link = m.path
            current.add(link)
            try:
                st = os.stat(link)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            have = self.by_link.get(link)
            if have is not None and have.inode == (st.st_dev, st.st_ino):
                continue
            if (st.st_dev, st.st_ino) in self.by_inode:
                continue  # already followed through another path
            real = os.path.realpath(link)
            if have is not None:
                # The name points to another file: the old one was rotated.
                self._mark_rotated(have)
                self._predecessor[link] = have
                log.info("%s was rotated; reading the new file after the old one", link)
            new = self._open(link, real, m.factory, m.format, rotated=False)
            row = None
            if new is not None:
                row, new = self._identify(new, {g.key for g in self.files}, m, real)
            if new is None:
                # No complete first line yet (try again next scan); but what was rotated
                # away meanwhile (a copy of what this file held) is read now.
                self._adopt_unseen_rotations(real, m)
                continue
            new.key = row.file_key if row is not None else self._new_key(new)
            new.after = self._predecessor.pop(link, None)
            self._activate(new, row.offset if row is not None else 0, row)
            # Rotated files of a new name, or rotated away since the last scan, that were
            # never seen under the live name.
            self._adopt_unseen_rotations(real, m)
        for link, f in list(self.by_link.items()):
            if link not in current:
                self._mark_rotated(f)
        now = time.monotonic()
        if now - self._last_gc > 10 * self.s.glob_interval:
            self._last_gc = now
            for key, row in list(self.finished.items()):
                if self._locate(row) is None:
                    del self.finished[key]
                    self.rows.pop(key, None)
                    self._deleted_keys.append(key)

    def _adopt_unseen_rotations(self, real: str, m: Match) -> None:
        """A file can be created and rotated away again between two scans (a busy
        container, a small rotate size): it was never seen under its live name. Every
        rotated sibling that is not followed and has no checkpoint is such a file."""
        in_use = {g.key for g in self.files}
        for sib in rotated_names(real):
            try:
                st = os.stat(sib)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in self.by_inode:
                continue
            g = self._open(sib, sib, m.factory, m.format, rotated=True)
            if g is None:
                continue
            live = self.by_link.get(m.path)
            if live is not None and self._claims(live, g):
                g.close()
                continue
            known = any(
                r.dev == g.dev and r.ino == g.ino and r.fp == g.fp for r in self.rows.values()
            )
            if known or self._row_for(g, in_use) is not None:
                g.close()
                continue
            log.info("reading %s, rotated before it was seen under its live name", sib)
            g.key = self._new_key(g)
            self._activate(g, 0)

    def _mark_rotated(self, f: TailedFile) -> None:
        f.rotated = True
        f.disk_path = self._where(f) or f.disk_path
        f.saved = -1  # record the new name with the next checkpoint write
        if self.by_link.get(f.link) is f:
            del self.by_link[f.link]

    @staticmethod
    def _where(f: TailedFile) -> str | None:
        d = os.path.dirname(f.disk_path)
        try:
            st = os.stat(f.disk_path)
            if (st.st_dev, st.st_ino) == f.inode:
                return f.disk_path
        except OSError:
            pass
        try:
            with os.scandir(d) as entries:
                for e in entries:
                    if e.inode() == f.ino and e.is_file(follow_symlinks=False):
                        return e.path
        except OSError:
            pass
        return None

    def _open(
        self, link: str, real: str, factory: ContextFactory, fmt: str, *, rotated: bool
    ) -> TailedFile | None:
        try:
            fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            log.warning("cannot open %s: %s", real, exc.strerror)
            self.cm.error("open_failed", "receiving")
            return None
        try:
            st = os.fstat(fd)
            found = head_fingerprint(fd) if stat.S_ISREG(st.st_mode) else None
        except OSError:
            found = None
        if found is None:
            os.close(fd)
            return None
        f = TailedFile(link, real, fd, st, found[0], found[1], factory, fmt)
        f.rotated = rotated
        return f

    def _activate(self, f: TailedFile, start: int, row: Checkpoint | None = None) -> None:
        assert f.key
        f.pos = start
        f.ledger.reset(start)
        if start > 0:
            before = os.pread(f.fd, min(ANCHOR_BYTES, start), start - min(ANCHOR_BYTES, start))
            f.ledger.committed_mark = before
            f.tail = before[-TAIL_BYTES:]
        f.saved = start if row is not None and row.offset == start else -1
        head = os.pread(f.fd, 1, 0)
        f.parser = make_parser(f.fmt, head, self.s.max_line_size)
        f.ctx = f.factory(f.link, f.path, f.key, make_id_prefix(self.s.node_name, f.key))
        self.files.append(f)
        log.debug("following %s from %d%s", f.path, start, " (rotated)" if f.rotated else "")
        self.by_inode[f.inode] = f
        if not f.rotated:
            self.by_link[f.link] = f
        self.finished.pop(f.key, None)

    def _last_line_start(self, f: TailedFile) -> int:
        """`read_from: end`: start after the last complete line."""
        size = f.size
        pos = max(0, size - 65536)
        tail = os.pread(f.fd, size - pos, pos)
        nl = tail.rfind(b"\n")
        return pos + nl + 1 if nl >= 0 else 0

    # -- truncation ----------------------------------------------------------------------

    def _check_health(self, f: TailedFile) -> None:
        try:
            st = os.fstat(f.fd)
        except OSError:
            return
        if st.st_nlink == 0:
            f.deleted = True
        if st.st_size > f.size:
            f.last_growth = time.monotonic()
        truncated = (
            st.st_size < max(f.pos, f.seen)
            or not same_head(f.fd, f.fp, f.fp_len)
            or not _holds_at(f.fd, f.seen, f.seen_tail)
        )
        f.size = max(f.size, st.st_size)
        if truncated:
            self._on_truncated(f)
        elif st.st_size != f.seen:
            n = min(TAIL_BYTES, st.st_size)
            f.seen, f.seen_tail = st.st_size, os.pread(f.fd, n, st.st_size - n)

    def _on_truncated(self, f: TailedFile) -> None:
        """`f` no longer holds the bytes it was read from (copytruncate, or a plain
        truncate). Its unread bytes continue in its copy if there is one; the truncated
        file is followed anew under a new identity."""
        was_live = self.by_link.get(f.link) is f
        copy = None if f.deleted else self._find_copy(f)
        self.by_inode.pop(f.inode, None)
        if was_live:
            del self.by_link[f.link]
        if copy is not None and copy.size < f.pos:
            # Copied before we read up to here: the copy has nothing new for us. It is
            # remembered as finished, so that it is never read as a file of its own.
            copy.key = self._new_key(copy)
            row = self._row_of(copy, finished=True)
            row.offset = copy.size
            row.anchor = anchor_hash(
                os.pread(copy.fd, ANCHOR_BYTES, max(0, copy.size - ANCHOR_BYTES))
            )
            self.rows[copy.key] = self.finished[copy.key] = row
            self._pending_finished.append(row)
            copy.close()
            copy = None
            log.info("%s was truncated (copytruncate) after it was read", f.disk_path)
            self._retire(f)
        elif copy is not None:
            log.info(
                "%s was truncated (copytruncate); reading the rest from its copy %s",
                f.disk_path,
                copy.disk_path,
            )
            f.close()
            f.fd, f.dev, f.ino, f.disk_path = copy.fd, copy.dev, copy.ino, copy.disk_path
            f.size, f.seen, f.seen_tail = copy.size, copy.seen, copy.seen_tail
            copy.fd = -1
            self._moved = True
        else:
            lost = max(0, f.size - f.pos)
            if lost:
                self._lost(f.disk_path, lost, "was truncated before it was read")
            else:
                log.info("%s was truncated; reading it again from the start", f.disk_path)
            self._retire(f)
        f.rotated = True
        f.saved = -1
        if f.fd >= 0:
            self.by_inode[f.inode] = f
        self._scan_now = self._scan_now or was_live or self._moved

    def _claims(self, f: TailedFile, g: TailedFile) -> bool:
        """Whether the rotated file `g` belongs to the followed file `f`: a copy of it
        still being made (copytruncate before its truncate, or logrotate's `copy`), whose
        bytes are read from `f` - or a copy made by a truncation of `f` that happened
        since `f` was last checked, which `f` then takes over. The order of the two
        checks leaves no gap: a copy is a prefix of `f` until `f` is truncated, and a
        truncation is seen by the check that follows."""
        if f.fd < 0 or g.fp != f.fp:
            return False
        if _is_copy_of(g, f):
            return True
        self._check_health(f)
        return g.inode in self.by_inode

    def _find_copy(self, f: TailedFile) -> TailedFile | None:
        known = {(r.dev, r.ino) for r in self.rows.values()}
        for sib in rotated_names(f.disk_path):
            try:
                st = os.stat(sib)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in self.by_inode or (st.st_dev, st.st_ino) in known:
                continue
            g = self._open(sib, sib, f.factory, f.fmt, rotated=True)
            if g is None:
                continue
            if (
                g.fp == f.fp
                and (g.size < f.pos or _holds_at(g.fd, f.pos, f.tail))
                and (g.size < f.seen or _holds_at(g.fd, f.seen, f.seen_tail))
            ):
                return g
            g.close()
        return None

    def _retire(self, f: TailedFile) -> None:
        """End `f` for good: what its parser holds is emitted as it is, and its row goes
        once its batches are acknowledged."""
        cols = Columns()
        self._finish_parser(f, cols)
        batch = self._emit(f, cols)
        if batch is not None:
            self._outbox.append(batch)
        f.close()
        f.deleted = True

    def _lost(self, path: str, nbytes: int, why: str) -> None:
        log.warning("%d bytes of %s %s; they are lost", nbytes, path, why)
        self.metrics.lost_bytes.labels(self.s.source_id, path).inc(nbytes)

    # -- reading -----------------------------------------------------------------------

    def _may_read(self, f: TailedFile) -> bool:
        """A file that replaced another under the same name waits until that one was
        read to its end; then learns which streams had a line split by the rotation."""
        prev = f.after
        if prev is None:
            return True
        if prev.fd >= 0 and not prev.eof:
            return False
        streams = prev.parser.open_streams | prev.ended_open
        if streams:
            f.parser.continue_streams(streams)
        f.after = None
        return True

    def _read(self, f: TailedFile) -> Batch | None:
        tail = f.tail
        if not tail and not same_head(f.fd, f.fp, f.fp_len):
            # Truncated before anything was read (no bytes before the position to check).
            self._on_truncated(f)
            return None
        try:
            data = os.pread(f.fd, self.s.read_chunk + len(tail), f.pos - len(tail))
        except OSError as exc:
            log.warning("cannot read %s: %s", f.path, exc.strerror)
            self.cm.error("read_failed", "receiving")
            return None
        if tail:
            if data[: len(tail)] != tail:
                self._on_truncated(f)  # truncated, perhaps regrown past where we were
                return None
            data = data[len(tail) :]
        if not data:
            f.eof = True
            return None
        f.eof = False
        n = len(data)
        f.pos += n
        f.tail = data[-TAIL_BYTES:] if n >= TAIL_BYTES else (tail + data)[-TAIL_BYTES:]
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
        return self._emit(f, cols, data, f.pos)

    def _end_offset(self, f: TailedFile) -> int:
        end = f.head_off if f.discarding else f.pos - len(f.carry)
        pending = f.parser.pending_offset
        if pending is not None and pending < end:
            end = pending
        return end

    def _mark(self, f: TailedFile, end: int, data: bytes, data_end: int) -> bytes:
        """The bytes before `end` (for the checkpoint's anchor): from the data just read
        when it holds them, else read again."""
        want = min(ANCHOR_BYTES, end)
        start = data_end - len(data)
        if end <= data_end and end - want >= start:
            return data[end - want - start : end - start]
        if f.fd < 0 or want == 0:
            return f.ledger.committed_mark if end == f.ledger.committed else b""
        return os.pread(f.fd, want, end - want)

    def _emit(
        self, f: TailedFile, cols: Columns, data: bytes = b"", data_end: int = 0
    ) -> Batch | None:
        end = self._end_offset(f)
        if not cols.messages:
            if end > f.ledger.committed:
                f.ledger.advance_idle(end, self._mark(f, end, data, data_end))
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
            ack=f.ledger.track(end, self._mark(f, end, data, data_end)),
            end_offset=end,
            tstrs=cols.tstrs,
        )

    def _finish_parser(self, f: TailedFile, cols: Columns) -> None:
        """The file ended for good: what is left is emitted as it is."""
        if f.discarding:
            f.parser.feed([f.head], f.head_off, cols, truncated=True)
            f.discarding = False
        if f.carry:
            # The file ended without a final newline: emit what is there.
            f.parser.feed([f.carry], f.pos - len(f.carry), cols)
            f.carry = b""
        f.ended_open = f.parser.open_streams
        f.parser.flush(cols)

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
        self._finish_parser(f, cols)
        batch = self._emit(f, cols, b"", 0)
        f.close()
        log.debug("released %s at %d", f.disk_path, f.pos)
        self.by_inode.pop(f.inode, None)
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
                    row = self._row_of(f, finished=True)
                    self.rows[f.key] = row
                    self.finished[f.key] = row
                    self._pending_finished.append(row)
                continue
            keep.append(f)
        self.files = keep

    # -- checkpoints and metrics -------------------------------------------------------

    def _row_of(self, f: TailedFile, *, finished: bool = False) -> Checkpoint:
        committed = f.ledger.committed
        return Checkpoint(
            f.key,
            f.disk_path,
            committed,
            max(f.size, f.pos),
            finished,
            time.time(),
            f.dev,
            f.ino,
            f.fp,
            anchor_hash(f.ledger.committed_mark) if committed else "",
        )

    def save_checkpoints(self) -> None:
        rows: list[Checkpoint] = self._pending_finished
        self._pending_finished = []
        changed: list[TailedFile] = []
        for f in self.files:
            if f.fd < 0:
                continue
            known = self.rows.get(f.key)
            # A new offset, or new bytes seen: the size tells how much would be lost.
            if f.ledger.committed != f.saved or known is None or known.size < f.size:
                row = self._row_of(f)
                rows.append(row)
                self.rows[f.key] = row
                changed.append(f)
        deleted, self._deleted_keys = self._deleted_keys, []
        try:
            self.checkpoints.save(self.s.source_id, rows, deleted)
        except Exception as exc:
            log.error("cannot write checkpoints to %s: %s", self.checkpoints.path, exc)
            self.cm.error("checkpoint_write_failed", "processing")
            # Nothing was written: try all of it again next time.
            self._pending_finished = [r for r in rows if r.finished] + self._pending_finished
            self._deleted_keys = deleted + self._deleted_keys
            return
        for f in changed:
            f.saved = self.rows[f.key].offset

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


def _holds_at(fd: int, end: int, tail: bytes) -> bool:
    """Whether the file has `tail` just before `end`."""
    return not tail or os.pread(fd, len(tail), end - len(tail)) == tail


def _is_copy_of(g: TailedFile, f: TailedFile) -> bool:
    """Whether `g` holds a prefix of what `f` holds now: a copy being made (copytruncate
    before its truncate) or logrotate's `copy`. Its bytes are read from `f`; if `f` is
    truncated later, the copy is found then and read from where `f` was."""
    if g.fp != f.fp or g.size > os.fstat(f.fd).st_size:
        return False
    if g.size <= f.fp_len:
        return True  # the same first line and nothing after it yet
    n = min(ANCHOR_BYTES, g.size)
    return os.pread(g.fd, n, g.size - n) == os.pread(f.fd, n, g.size - n)
