"""Retention deletes whole segments, oldest first, by age and by total size."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubelogs.store import ECS_LAYOUT, StoreReader, StoreWriter
from kubelogs.store.index import SEGMENTS_DIR
from support.store_docs import Dataset, make_dataset

DAY = 86400.0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return make_dataset(seed=21, containers=4, lines=1200, per_batch=100)


def stored(path: Path) -> list[bytes]:
    with StoreReader(path) as reader:
        return [h.doc for h in reader.search("", limit=0)]


def test_segments_older_than_retention_are_deleted(tmp_path: Path, dataset: Dataset) -> None:
    clock = FakeClock(1_000_000.0)
    path = tmp_path / "s"
    half = len(dataset.groups) // 2
    old_docs = dataset.docs_of(dataset.groups[:half])
    new_docs = dataset.docs_of(dataset.groups[half:])
    with StoreWriter(
        path, layout=ECS_LAYOUT, retention=7 * DAY, clock=clock, segment_span=3600
    ) as writer:
        writer.write(dataset.groups[:half])
        clock.now += 2 * DAY  # a new segment: the first one's span is over
        writer.write(dataset.groups[half:])
        assert 0 == writer.enforce_retention()
        clock.now += 6 * DAY  # first segment is 8 days old, the second 6

        deleted = writer.enforce_retention()

    assert 1 == deleted
    assert 1 == len(list((path / SEGMENTS_DIR).glob("*.seg")))
    assert sorted(new_docs) == sorted(stored(path))
    assert not set(old_docs) & set(stored(path))


def test_oldest_segments_go_first_when_over_max_size(tmp_path: Path, dataset: Dataset) -> None:
    path = tmp_path / "s"
    max_size = 120_000
    with StoreWriter(
        path, layout=ECS_LAYOUT, max_size=max_size, segment_bytes=20_000, block_docs=200
    ) as writer:
        for group in dataset.groups:
            writer.write([group])
            writer.enforce_retention()

    segments = sorted((path / SEGMENTS_DIR).glob("*.seg"))
    kept = stored(path)
    assert sum(s.stat().st_size for s in segments) <= max_size
    assert 0 < len(kept) < len(dataset.docs)
    # What is left is the most recently written data.
    assert set(dataset.docs_of(dataset.groups[-1:])) <= set(kept)
    assert not set(dataset.docs_of(dataset.groups[:1])) & set(kept)


def test_retention_runs_during_writes_at_its_interval(tmp_path: Path, dataset: Dataset) -> None:
    clock = FakeClock(5_000_000.0)
    path = tmp_path / "s"
    with StoreWriter(
        path, layout=ECS_LAYOUT, retention=DAY, clock=clock, retention_interval=60
    ) as writer:
        writer.write(dataset.groups[:3])
        clock.now += 2 * DAY

        writer.write(dataset.groups[3:6])  # the write itself triggers retention

    assert sorted(dataset.docs_of(dataset.groups[3:6])) == sorted(stored(path))


def test_reader_survives_segments_deleted_under_it(tmp_path: Path, dataset: Dataset) -> None:
    path = tmp_path / "s"
    clock = FakeClock(1_000_000.0)
    with StoreWriter(path, layout=ECS_LAYOUT, clock=clock, retention=DAY) as writer:
        writer.write(dataset.groups[:4])
        with StoreReader(path) as reader:
            assert stored(path)
            before = reader.search("", limit=5)  # segment descriptor now open
            clock.now += 3 * DAY
            writer.enforce_retention()

            after = reader.search("", limit=0)
            count = reader.count("")

    assert 5 == len(before)
    assert [] == after
    assert 0 == count
