"""Crash-safe file checkpoints in SQLite (WAL).

What a checkpoint promises: every byte of the file before `offset` has been delivered or
made durable by every sink that received it (the ack ledger only moves it past resolved
batches). After `kill -9` the agent resumes at `offset` and resends at most the batches
that were in flight; sinks with deterministic ids make that resend a no-op.

A row is keyed by (source id, file key) where the file key is
``<device>:<inode>:<fingerprint of the first line>``, so a renamed (rotated) file keeps its
checkpoint and a reused inode with other content does not inherit one. `size` is the last
size seen, used to count bytes lost when a file disappears before it was finished.
Writes are batched: `save` takes many rows in one transaction, called about once a second
and at shutdown.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    source_id TEXT NOT NULL,
    file_key TEXT NOT NULL,
    path TEXT NOT NULL,
    offset INTEGER NOT NULL,
    size INTEGER NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL,
    PRIMARY KEY (source_id, file_key)
);
"""


@dataclass
class Checkpoint:
    file_key: str
    path: str
    offset: int
    size: int
    finished: bool
    updated: float


class CheckpointStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def load(self, source_id: str) -> dict[str, Checkpoint]:
        rows = self._db.execute(
            "SELECT file_key, path, offset, size, finished, updated FROM checkpoints "
            "WHERE source_id = ?",
            (source_id,),
        ).fetchall()
        return {r[0]: Checkpoint(r[0], r[1], r[2], r[3], bool(r[4]), r[5]) for r in rows}

    def save(self, source_id: str, rows: list[Checkpoint], deleted: list[str]) -> None:
        if not rows and not deleted:
            return
        now = time.time()
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT INTO checkpoints (source_id, file_key, path, offset, size, finished, "
                "updated) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source_id, file_key) DO "
                "UPDATE SET path=excluded.path, offset=excluded.offset, size=excluded.size, "
                "finished=excluded.finished, updated=excluded.updated",
                [
                    (source_id, r.file_key, r.path, r.offset, r.size, int(r.finished), now)
                    for r in rows
                ],
            )
            db.executemany(
                "DELETE FROM checkpoints WHERE source_id = ? AND file_key = ?",
                [(source_id, k) for k in deleted],
            )
            db.execute("COMMIT")
        except BaseException:
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
