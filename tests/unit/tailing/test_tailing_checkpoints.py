"""`CheckpointStore`: per-file offsets in SQLite that survive a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubelogs.tailing.checkpoints import Checkpoint, CheckpointStore, shared_checkpoint_store


def cp(key: str, offset: int, *, size: int = 0, finished: bool = False) -> Checkpoint:
    return Checkpoint(
        file_key=key,
        path=f"/var/log/pods/ns_pod_uid/c/{key}.log",
        offset=offset,
        size=size,
        finished=finished,
        updated=0.0,
    )


def summary(rows: dict[str, Checkpoint]) -> dict[str, tuple[str, int, int, bool]]:
    """Everything but the `updated` wall-clock time."""
    return {k: (c.path, c.offset, c.size, c.finished) for k, c in rows.items()}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "checkpoints.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[CheckpointStore]:
    s = CheckpointStore(db_path)
    yield s
    s.close()


class TestCheckpointStore:
    def test_empty_store_loads_nothing(self, store: CheckpointStore) -> None:
        """A new store has no checkpoints for any source."""
        expected_rows = {}
        assert expected_rows == store.load("containers")

    def test_saved_rows_load_back(self, store: CheckpointStore) -> None:
        """Rows saved for a source come back keyed by file key."""
        before = time.time()
        store.save("containers", [cp("a", 10, size=20), cp("b", 0, finished=True)], [])

        loaded = store.load("containers")

        after = time.time()
        expected_rows = {
            "a": ("/var/log/pods/ns_pod_uid/c/a.log", 10, 20, False),
            "b": ("/var/log/pods/ns_pod_uid/c/b.log", 0, 0, True),
        }
        assert expected_rows == summary(loaded)
        assert all(before <= c.updated <= after for c in loaded.values())
        expected = {"a": "a", "b": "b"}
        assert expected == {k: c.file_key for k, c in loaded.items()}

    def test_saving_a_key_again_updates_it(self, store: CheckpointStore) -> None:
        """A later save of the same file replaces offset, size, path and finished."""
        store.save("containers", [cp("a", 10)], [])
        moved = Checkpoint("a", "/var/log/pods/ns_pod_uid/c/0.log.20250101", 99, 120, True, 0.0)

        store.save("containers", [moved], [])

        expected_rows = {"a": ("/var/log/pods/ns_pod_uid/c/0.log.20250101", 99, 120, True)}
        assert expected_rows == summary(store.load("containers"))

    def test_deleted_keys_are_removed(self, store: CheckpointStore) -> None:
        """Keys listed as deleted disappear; the others stay."""
        store.save("containers", [cp("a", 1), cp("b", 2), cp("c", 3)], [])

        store.save("containers", [], ["a", "c", "never-saved"])

        expected_rows = {"b": ("/var/log/pods/ns_pod_uid/c/b.log", 2, 0, False)}
        assert expected_rows == summary(store.load("containers"))

    def test_save_and_delete_in_one_call(self, store: CheckpointStore) -> None:
        """One call can update some rows and delete others."""
        store.save("containers", [cp("a", 1), cp("b", 2)], [])

        store.save("containers", [cp("c", 3)], ["a"])

        expected_keys = ["b", "c"]
        assert expected_keys == sorted(store.load("containers"))

    def test_sources_are_kept_apart(self, store: CheckpointStore) -> None:
        """The same file key under two sources is two independent checkpoints."""
        store.save("containers", [cp("a", 10)], [])
        store.save("node", [cp("a", 77)], [])

        store.save("node", [], ["a"])

        expected = ({"a": 10}, {})
        assert expected == (
            {k: c.offset for k, c in store.load("containers").items()},
            store.load("node"),
        )

    def test_checkpoints_survive_closing_and_reopening(self, db_path: Path) -> None:
        """What was saved is there after the process reopens the database."""
        first = CheckpointStore(db_path)
        first.save("containers", [cp("a", 10, size=11), cp("b", 5)], [])
        first.save("containers", [cp("a", 12, size=13)], ["b"])
        first.close()

        second = CheckpointStore(db_path)
        try:
            loaded = second.load("containers")
        finally:
            second.close()

        expected_rows = {"a": ("/var/log/pods/ns_pod_uid/c/a.log", 12, 13, False)}
        assert expected_rows == summary(loaded)

    def test_checkpoints_are_visible_to_a_second_open_store(self, db_path: Path) -> None:
        """A save is committed at once (what a crash right after it would find)."""
        writer = CheckpointStore(db_path)
        reader = CheckpointStore(db_path)
        try:
            writer.save("containers", [cp("a", 42)], [])
            loaded = reader.load("containers")
        finally:
            writer.close()
            reader.close()

        expected = {"a": 42}
        assert expected == {k: c.offset for k, c in loaded.items()}

    def test_large_offsets_round_trip(self, store: CheckpointStore) -> None:
        """Offsets beyond 32 bits (multi-GiB files) are stored exactly."""
        big = 2**40 + 7
        store.save("containers", [cp("a", big, size=big + 1)], [])

        assert ("/var/log/pods/ns_pod_uid/c/a.log", big, big + 1, False) == summary(
            store.load("containers")
        )["a"]

    def test_shared_store_is_one_per_process(self, tmp_path: Path) -> None:
        """Every file-reading source of a process gets the same store object."""
        shared: dict[str, object] = {}

        first = shared_checkpoint_store(shared, tmp_path)
        second = shared_checkpoint_store(shared, tmp_path)
        first.close()

        assert first is second
        assert tmp_path / "checkpoints.db" == first.path


FORMAT_2 = """
CREATE TABLE checkpoints (
    source_id TEXT NOT NULL, file_key TEXT NOT NULL, path TEXT NOT NULL,
    offset INTEGER NOT NULL, size INTEGER NOT NULL, finished INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL, dev INTEGER NOT NULL DEFAULT 0, ino INTEGER NOT NULL DEFAULT 0,
    fp TEXT NOT NULL DEFAULT '', anchor TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (source_id, file_key)
);
CREATE TABLE sources (source_id TEXT PRIMARY KEY, started REAL NOT NULL);
INSERT INTO checkpoints VALUES ('logs', '1:2:ab', '/var/log/x.log', 10, 20, 0, 0, 1, 2, 'ab', 'h');
INSERT INTO sources VALUES ('logs', 0);
PRAGMA user_version=2;
"""


class TestRecordedSettings:
    def test_settings_round_trip(self, store: CheckpointStore) -> None:
        row = cp("a", 10)
        row.stages = '[[10,"java"],[30,null]]'
        store.save("logs", [row], [])

        assert '[[10,"java"],[30,null]]' == store.load("logs")["a"].stages

    def test_a_format_2_database_is_upgraded_and_its_rows_load(self, db_path: Path) -> None:
        import sqlite3

        db_path.parent.mkdir(parents=True)
        old = sqlite3.connect(db_path)
        old.executescript(FORMAT_2)
        old.close()

        store = CheckpointStore(db_path)
        (row,) = store.load("logs").values()
        loaded = (row.offset, row.anchor, row.dev, row.ino, row.stages)
        row.stages = '[[10,"java"]]'
        store.save("logs", [row], [])
        again = store.load("logs")["1:2:ab"]
        started = store.has_started("logs")
        store.close()

        assert (10, "h", 1, 2, "") == loaded
        assert started
        assert '[[10,"java"]]' == again.stages
        version = sqlite3.connect(db_path).execute("PRAGMA user_version").fetchone()[0]
        assert 3 == version

    def test_an_older_kubelogs_can_still_write_and_read_the_database(self, db_path: Path) -> None:
        """A rollback: format 2 code names its columns; `stages` has a default."""
        import sqlite3

        store = CheckpointStore(db_path)
        row = cp("a", 10)
        row.stages = '[[10,"java"]]'
        store.save("logs", [row], [])
        store.close()
        old = sqlite3.connect(db_path)
        old.execute(
            "INSERT INTO checkpoints (source_id, file_key, path, offset, size, finished, "
            "updated, dev, ino, fp, anchor) VALUES ('logs', 'b', '/b', 5, 5, 0, 0, 0, 0, '', '')"
        )
        old.commit()
        got = old.execute(
            "SELECT file_key, offset FROM checkpoints WHERE source_id = 'logs' ORDER BY 1"
        ).fetchall()
        old.close()

        assert [("a", 10), ("b", 5)] == got
        assert "" == CheckpointStore(db_path).load("logs")["b"].stages
