"""Which checkpoint a file is: rows are matched to files by device, inode, first line
and the anchor before their offset, never by one of them alone (checkpoints.py)."""

from __future__ import annotations

import os

from kubelogs.tailing.checkpoints import Checkpoint
from kubelogs.tailing.core import TailerCore, _holds_at
from kubelogs.tailing.discovery import Match, is_rotated_name, rotated_names
from kubelogs.tailing.files import TailedFile
from kubelogs.tailing.fingerprint import holds, same_head


class TailerIdentity(TailerCore):
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
