"""The first scan of a start: every checkpoint row matched to the file that holds its
bytes now (or to the copy that does, or counted as lost), the source's first start and
where every file starts written durably before anything is read."""

from __future__ import annotations

import os
import time

from kubelogs.tailing.checkpoints import Checkpoint
from kubelogs.tailing.core import log
from kubelogs.tailing.discovery import Match, rotated_names, unmatched_patterns
from kubelogs.tailing.files import TailedFile
from kubelogs.tailing.fingerprint import ANCHOR_BYTES, anchor_hash
from kubelogs.tailing.truncation import TailerTruncation


class TailerStartup(TailerTruncation):
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
            elif not row.finished:
                # Read to its known end, but lines appended after kubelogs stopped went
                # with it: how many is unknowable, that it happened is not (a pod deleted,
                # or a copy rotated away, during a restart). Said, so never silent.
                log.warning(
                    "%s was removed or truncated while kubelogs was down (read to byte %d); "
                    "lines written to it after kubelogs stopped, if any, were not read",
                    row.path,
                    row.offset,
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
