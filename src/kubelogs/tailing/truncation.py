"""copytruncate: noticing that a file no longer holds what was read from it, finding
its copy, and moving the file's identity, ack ledger and parser state to the copy."""

from __future__ import annotations

import os
import time

from kubelogs.tailing.core import _holds_at, log
from kubelogs.tailing.discovery import rotated_names
from kubelogs.tailing.files import TAIL_BYTES, TailedFile
from kubelogs.tailing.fingerprint import ANCHOR_BYTES, anchor_hash, same_head
from kubelogs.tailing.identity import TailerIdentity


class TailerTruncation(TailerIdentity):
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
