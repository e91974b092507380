"""A full disk never wedges the store: it evicts its oldest segments to make room, stays
under `max_size` after every write, and refuses (keeping nothing) only when it holds
nothing more to evict. The disk is simulated behind the writer's one write function."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from kubelogs.store import ECS_LAYOUT, StoreFullError, StoreReader, StoreWriter
from kubelogs.store.index import SEGMENTS_DIR
from kubelogs.store.segments import SEGMENT_HEADER_SIZE
from support.full_disk import FakeDisk
from support.store_docs import Dataset, make_dataset


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return make_dataset(seed=31, containers=4, lines=1200, per_batch=100)


def stored(path: Path) -> list[bytes]:
    with StoreReader(path) as reader:
        return [h.doc for h in reader.search("", limit=0)]


def test_full_disk_evicts_the_oldest_segments_and_the_write_succeeds(
    tmp_path: Path, dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s"
    disk = FakeDisk(path, monkeypatch)
    evicted: list[tuple[str, int, int]] = []
    groups = dataset.groups
    with StoreWriter(
        path,
        layout=ECS_LAYOUT,
        segment_bytes=20_000,
        block_docs=200,
        on_evict=lambda *e: evicted.append(e),
    ) as writer:
        for group in groups[:-1]:
            writer.write([group])
        segments_before = len(list(disk.dir.glob("*.seg")))
        disk.capacity = disk.used() + 1000  # the next block does not fit

        result = writer.write(groups[-1:])

        assert len(groups[-1].offsets) == result.written
        assert writer.evicted_segments == len(evicted)
    kept = stored(path)

    assert segments_before >= 4
    assert disk.failures >= 1
    assert evicted
    assert {"disk_full"} == {reason for reason, _, _ in evicted}
    assert disk.used() <= disk.capacity
    assert set(dataset.docs_of(groups[-1:])) <= set(kept)
    assert not set(dataset.docs_of(groups[:1])) & set(kept)  # the oldest went first
    assert set(kept) <= set(dataset.docs)
    assert len(kept) == len(set(kept))
    # The index and the files agree after a restart (no torn or orphaned bytes).
    with StoreWriter(path, layout=ECS_LAYOUT):
        pass
    assert sorted(kept) == sorted(stored(path))


def test_nothing_to_evict_refuses_the_write_and_keeps_nothing_until_space_returns(
    tmp_path: Path, dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s"
    disk = FakeDisk(path, monkeypatch)
    disk.capacity = 0
    with StoreWriter(path, layout=ECS_LAYOUT) as writer:
        for _ in range(3):
            with pytest.raises(StoreFullError, match="disk is full"):
                writer.write(dataset.groups[:4])
        assert [] == list(disk.dir.glob("*.seg"))
        assert [] == stored(path)
        disk.capacity = None  # space returns

        result = writer.write(dataset.groups[:4])
        again = writer.write(dataset.groups[:4])  # a resend stores nothing twice

    assert sum(len(g.offsets) for g in dataset.groups[:4]) == result.written
    assert 0 == again.written
    assert sorted(dataset.docs_of(dataset.groups[:4])) == sorted(stored(path))


def test_a_full_index_on_commit_also_evicts(
    tmp_path: Path, dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite reports a full disk as SQLITE_FULL, not ENOSPC: the same remedy applies."""
    path = tmp_path / "s"
    with StoreWriter(path, layout=ECS_LAYOUT, segment_bytes=20_000, block_docs=200) as writer:
        writer.write(dataset.groups[:-1])
        real_commit = writer._commit
        calls: list[int] = []

        def commit(*args: Any) -> None:
            calls.append(1)
            if len(calls) == 1:
                exc = sqlite3.OperationalError("database or disk is full")
                exc.sqlite_errorcode = 13
                raise exc
            real_commit(*args)

        monkeypatch.setattr(writer, "_commit", commit)
        writer.write(dataset.groups[-1:])
        evicted = writer.evicted_segments

    assert 2 == len(calls)
    assert 1 == evicted
    assert set(dataset.docs_of(dataset.groups[-1:])) <= set(stored(path))


def test_max_size_holds_after_every_write_and_within_one_write_during_it(
    tmp_path: Path, dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Size retention runs after each write that went over, not every 10 s."""
    path = tmp_path / "s"
    disk = FakeDisk(path, monkeypatch)
    max_size = 80_000
    evicted: list[tuple[str, int, int]] = []
    largest = 0
    with StoreWriter(
        path,
        layout=ECS_LAYOUT,
        max_size=max_size,
        block_docs=100,
        on_evict=lambda *e: evicted.append(e),
    ) as writer:
        for group in dataset.groups:
            result = writer.write([group])
            largest = max(largest, result.bytes)
            assert disk.used() <= max_size

    assert disk.peak <= max_size + largest + SEGMENT_HEADER_SIZE
    assert largest < max_size // 4
    assert evicted
    assert {"max_size"} == {reason for reason, _, _ in evicted}
    assert set(dataset.docs_of(dataset.groups[-1:])) <= set(stored(path))


def test_an_oversized_store_shrinks_when_a_writer_opens_it(
    tmp_path: Path, dataset: Dataset
) -> None:
    """A restart with a smaller `max_size` (or onto a store left too big) frees space at
    once, before the first write needs it."""
    path = tmp_path / "s"
    with StoreWriter(path, layout=ECS_LAYOUT, segment_bytes=20_000, block_docs=200) as writer:
        writer.write(dataset.groups)

    with StoreWriter(path, layout=ECS_LAYOUT, max_size=60_000) as writer:
        evicted = writer.evicted_segments

    assert evicted > 0
    assert sum(p.stat().st_size for p in (path / SEGMENTS_DIR).glob("*.seg")) <= 60_000


def test_when_not_even_the_index_can_change_the_oldest_file_is_freed_first(
    tmp_path: Path, dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So full that the eviction's own transaction fails: the segment file is unlinked
    first (readers skip it), the write goes on, and its index rows go with a later
    eviction - counted once."""
    path = tmp_path / "s"
    disk = FakeDisk(path, monkeypatch)
    groups = dataset.groups
    with StoreWriter(path, layout=ECS_LAYOUT, segment_bytes=20_000, block_docs=200) as writer:
        for group in groups[:-2]:
            writer.write([group])
        oldest = sorted(disk.dir.glob("*.seg"))[0]
        real_delete = writer._delete_segments
        index_full = [True]

        def delete(*args: Any) -> None:
            if index_full[0]:
                exc = sqlite3.OperationalError("database or disk is full")
                exc.sqlite_errorcode = 13
                raise exc
            real_delete(*args)

        monkeypatch.setattr(writer, "_delete_segments", delete)
        disk.capacity = disk.used() + 1000
        writer.write(groups[-2:-1])
        after_first = writer.evicted_segments
        kept_meanwhile = stored(path)  # the index still lists the unlinked segment
        index_full[0] = False
        disk.capacity = disk.used() + 1000
        writer.write(groups[-1:])
        after_second = writer.evicted_segments
        segment_rows = writer._require_conn().execute("SELECT count(*) FROM segments").fetchone()

    assert not oldest.exists()
    assert 1 == after_first
    assert set(dataset.docs_of(groups[-2:-1])) <= set(kept_meanwhile)
    assert 2 == after_second  # the unlinked segment is not counted twice
    assert len(list(disk.dir.glob("*.seg"))) == segment_rows[0]
    assert set(dataset.docs_of(groups[-1:])) <= set(stored(path))
