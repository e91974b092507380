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
import os
import stat
import time
from collections.abc import Iterator

from kubelogs.codecs.columns import Columns
from kubelogs.pipeline.event import Batch
from kubelogs.pipeline.runtime import Output
from kubelogs.tailing.checkpoints import Checkpoint
from kubelogs.tailing.core import TailSettings, log
from kubelogs.tailing.discovery import ContextFactory, Match, rotated_names
from kubelogs.tailing.files import TAIL_BYTES, LineParser, TailedFile
from kubelogs.tailing.fingerprint import same_head
from kubelogs.tailing.startup import TailerStartup

__all__ = ["ContextFactory", "LineParser", "TailSettings", "Tailer"]


class Tailer(TailerStartup):
    """The engine a file-reading source runs (see the module docstring)."""

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
            self._refresh_stages()
        yield from self._take_outbox()
        for f in list(self.files):
            if f.fd < 0 or not self._may_read(f):
                continue
            if self._stages_changed:
                # A file's settings changed: where, durable before a line read with
                # the new ones leaves (a restart re-reads with the old ones up to there).
                self._stages_changed = False
                self.save_checkpoints()
            batch = self._read(f)
            if batch is None and f.eof:
                batch = self._expire_groups(f)
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
        """Write the final checkpoints (after sinks drained) and close every file.
        A file with nothing in flight gets a row without recorded settings: nothing
        after its checkpoint was sent, so a restart reads on with the settings of then."""
        self._closing = True
        for f in self.files:
            row = self.rows.get(f.key)
            if row is not None and row.stages and f.ledger.in_flight == 0 and not f.replay:
                f.saved = -1  # written again, without its record
        self.save_checkpoints()
        for f in self.files:
            f.close()
        self.files.clear()

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
        want = self.s.read_chunk
        if f.replay:
            if f.replay[0][0] <= f.pos:
                self._replay_due(f)  # its batches leave before anything read after it
                return None
            # A recorded settings switch ahead: read up to it, no further (it is the
            # start of a line), so the lines before it are fed with the old settings.
            want = min(want, f.replay[0][0] - f.pos)
        try:
            data = os.pread(f.fd, want + len(tail), f.pos - len(tail))
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
        batch = self._emit(f, cols, data, f.pos)
        if f.replay and f.replay[0][0] <= f.pos:
            self._replay_due(f)  # its batches follow this one (`poll`)
        return batch

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
