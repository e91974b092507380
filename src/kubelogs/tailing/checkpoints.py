"""Crash-safe file checkpoints in SQLite (WAL).

What a checkpoint promises: every byte of the file before `offset` has been delivered or
made durable by every sink that received it (the ack ledger only moves it past resolved
batches). After `kill -9` the agent resumes at `offset` and resends at most the batches
that were in flight; sinks with deterministic ids make that resend a no-op.

A row is keyed by (source id, file key). The file key is the *logical* identity of a
stream of log bytes: ``<device>:<inode>:<fingerprint>`` of the file where those bytes were
first seen (``…:g<N>`` for the N-th content the same inode held with the same first
line, after copytruncate). Event ids and the local store's high-water marks use it, so it
never changes while the bytes are read — also when a copytruncate copy (another inode)
holds the rest of them. Where the bytes are *now* is in the row's own columns: `dev`,
`ino`, `path`, and the content checks `fp` (head fingerprint) and `anchor` (hash of the
bytes before `offset`, `fingerprint.py`). A checkpoint applies to a file only if all of
them agree. `size` is the last size seen, used to count bytes lost when a file
disappears before it was finished.

The `sources` table records that a source has started once, durably and before anything
was read: `read_from` applies to that first start only.

`stages` records the multiline/parser settings the bytes after `offset` were read with,
when they changed there: a JSON list of ``[offset, key]`` (the settings' key from
`tailing.stages`, in force from that offset on), the first entry in force at `offset`.
Empty when one setting covers everything after `offset` (nearly always): a restart then
reads with the settings of the moment. When a setting changed on an open file, the
restart re-reads the bytes after the checkpoint with the settings they were first read
with and switches at the same offsets, so the lines are grouped as they were the first
time (the store dropped or kept them by that grouping).

Format 2 added `dev`, `ino`, `fp`, `anchor` and the `sources` table; format 3 (this
one) adds `stages`. An older database is upgraded in place when opened (format 1 rows
keep working, checked by size instead of anchor until they are next saved; rows
without `stages` read as empty). An older kubelogs can still open a format 3 database:
it names its columns, and `stages` has a default.
Writes are batched: `save` takes many rows in one transaction, called about once a second
and at shutdown; a key that is both saved and deleted in one call ends up saved.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

FORMAT = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    source_id TEXT NOT NULL,
    file_key TEXT NOT NULL,
    path TEXT NOT NULL,
    offset INTEGER NOT NULL,
    size INTEGER NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL,
    dev INTEGER NOT NULL DEFAULT 0,
    ino INTEGER NOT NULL DEFAULT 0,
    fp TEXT NOT NULL DEFAULT '',
    anchor TEXT NOT NULL DEFAULT '',
    stages TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (source_id, file_key)
);
CREATE TABLE IF NOT EXISTS sources (
    source_id TEXT PRIMARY KEY,
    started REAL NOT NULL
);
"""


class CheckpointStoreError(OSError):
    """The checkpoint database cannot be opened (the message names the path and why)."""


@dataclass
class Checkpoint:
    file_key: str
    path: str
    offset: int
    size: int
    finished: bool
    updated: float
    dev: int = 0
    ino: int = 0
    fp: str = ""
    anchor: str = ""
    stages: str = ""
    """The settings the bytes after `offset` were read with, when they changed there
    (see the module docstring); empty otherwise."""

    def __post_init__(self) -> None:
        if not self.fp:
            # A key made as <dev>:<inode>:<fp>: where the file was first seen.
            parts = self.file_key.split(":")
            if len(parts) >= 3 and parts[0].isdigit() and parts[1].isdigit():
                self.dev, self.ino, self.fp = int(parts[0]), int(parts[1]), parts[2]


class CheckpointStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._upgrade()
        except (OSError, sqlite3.Error) as exc:
            why = getattr(exc, "strerror", None) or str(exc)
            raise CheckpointStoreError(f"cannot open checkpoint database {path}: {why}") from exc

    def _upgrade(self) -> None:
        db = self._db
        cols = {r[1] for r in db.execute("PRAGMA table_info(checkpoints)").fetchall()}
        if cols and "anchor" not in cols:
            # Format 1: add the columns; rows get dev/ino/fp from their keys on load.
            for name, decl in (
                ("dev", "INTEGER NOT NULL DEFAULT 0"),
                ("ino", "INTEGER NOT NULL DEFAULT 0"),
                ("fp", "TEXT NOT NULL DEFAULT ''"),
                ("anchor", "TEXT NOT NULL DEFAULT ''"),
            ):
                db.execute(f"ALTER TABLE checkpoints ADD COLUMN {name} {decl}")
        if cols and "stages" not in cols:
            # Format 2 (or the format 1 columns just added): rows read as empty.
            db.execute("ALTER TABLE checkpoints ADD COLUMN stages TEXT NOT NULL DEFAULT ''")
        db.executescript(_SCHEMA)
        if cols and "anchor" not in cols:
            # A format 1 source with rows had started before.
            db.execute(
                "INSERT OR IGNORE INTO sources (source_id, started) "
                "SELECT DISTINCT source_id, ? FROM checkpoints",
                (time.time(),),
            )
        db.execute(f"PRAGMA user_version={FORMAT}")

    def load(self, source_id: str) -> dict[str, Checkpoint]:
        rows = self._db.execute(
            "SELECT file_key, path, offset, size, finished, updated, dev, ino, fp, anchor, "
            "stages FROM checkpoints WHERE source_id = ?",
            (source_id,),
        ).fetchall()
        return {
            r[0]: Checkpoint(
                r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7], r[8], r[9], r[10]
            )
            for r in rows
        }

    def has_started(self, source_id: str) -> bool:
        """Whether `source_id` has run before (its first start was recorded)."""
        row = self._db.execute("SELECT 1 FROM sources WHERE source_id = ?", (source_id,)).fetchone()
        return row is not None

    def save(
        self,
        source_id: str,
        rows: list[Checkpoint],
        deleted: list[str],
        *,
        mark_started: bool = False,
    ) -> None:
        """Write `rows`, remove `deleted` keys (unless also in `rows`), and with
        `mark_started` record the source's first start, all in one transaction."""
        if not rows and not deleted and not mark_started:
            return
        now = time.time()
        kept = {r.file_key for r in rows}
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany(
                "DELETE FROM checkpoints WHERE source_id = ? AND file_key = ?",
                [(source_id, k) for k in deleted if k not in kept],
            )
            db.executemany(
                "INSERT INTO checkpoints (source_id, file_key, path, offset, size, finished, "
                "updated, dev, ino, fp, anchor, stages) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (source_id, file_key) DO "
                "UPDATE SET path=excluded.path, offset=excluded.offset, size=excluded.size, "
                "finished=excluded.finished, updated=excluded.updated, dev=excluded.dev, "
                "ino=excluded.ino, fp=excluded.fp, anchor=excluded.anchor, "
                "stages=excluded.stages",
                [
                    (
                        source_id,
                        r.file_key,
                        r.path,
                        r.offset,
                        r.size,
                        int(r.finished),
                        now,
                        r.dev,
                        r.ino,
                        r.fp,
                        r.anchor,
                        r.stages,
                    )
                    for r in rows
                ],
            )
            if mark_started:
                db.execute(
                    "INSERT OR IGNORE INTO sources (source_id, started) VALUES (?, ?)",
                    (source_id, now),
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back already (disk full)
                db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()


def shared_checkpoint_store(shared: dict[str, object], data_dir: Path) -> CheckpointStore:
    """One store per process, shared by every file-reading source (one SQLite file)."""
    key = "checkpoints"
    store = shared.get(key)
    if not isinstance(store, CheckpointStore):
        store = CheckpointStore(data_dir / "checkpoints.db")
        shared[key] = store
    return store
