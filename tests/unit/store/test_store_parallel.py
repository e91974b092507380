"""Searches shared by forked processes give the answers of one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubelogs.store import ECS_LAYOUT, StoreError, StoreReader, StoreWriter
from kubelogs.store.parallel import run_sharded, shard_ranges
from support.store_docs import Dataset, make_dataset


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return make_dataset(seed=5, containers=4, lines=1500, per_batch=100)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, dataset: Dataset) -> Path:
    path = tmp_path_factory.mktemp("parallel") / "s"
    with StoreWriter(path, layout=ECS_LAYOUT, block_docs=150) as writer:
        for i in range(0, len(dataset.groups), 3):
            writer.write(dataset.groups[i : i + 3])  # full blocks and small remainders
    return path


def test_ranges_cover_every_block_once_with_balanced_documents() -> None:
    sizes = [(i, 1000 if i % 2 else 10) for i in range(1, 101)]

    ranges = shard_ranges(sizes, 3)

    covered = [i for lo, hi in ranges for i in range(lo, hi + 1)]
    assert [i for i, _ in sizes] == covered
    per_range = [sum(n for i, n in sizes if lo <= i <= hi) for lo, hi in ranges]
    assert 3 == len(ranges)
    assert max(per_range) - min(per_range) <= 1010
    assert [(7, 7)] == shard_ranges([(7, 5)], 4)
    assert [] == shard_ranges([], 2)


def counted(store: Path, query: str, shards: list[tuple[int, int]]) -> list[tuple[Any, int]]:
    def work(reader: StoreReader, block_range: tuple[int, int]) -> tuple[int, int]:
        q = reader.prepare(query)
        q.block_range = block_range
        return reader.count(q), os.getpid()

    return run_sharded(store, work, shards)


@pytest.mark.parametrize("query", ["", "orders", "kubernetes.namespace:payments or error"])
def test_shards_add_up_to_the_whole(store: Path, query: str) -> None:
    with StoreReader(store) as reader:
        whole = reader.count(query)
        sizes = reader.block_sizes(reader.last_block())
    assert len(sizes) >= 16

    results = counted(store, query, shard_ranges(sizes, 3))

    assert whole == sum(n for (n, _), _ in results)
    assert 3 == len({pid for (_, pid), _ in results})  # three processes did the work


def test_a_failing_shard_is_reported(store: Path) -> None:
    parent = os.getpid()

    def work(reader: StoreReader, block_range: tuple[int, int]) -> int:
        if os.getpid() != parent:
            raise RuntimeError("disk on fire")
        return 0

    with pytest.raises(StoreError, match=r"search process 2 of 2 failed: disk on fire"):
        run_sharded(store, work, [(1, 5), (6, 10)])


def search(store: Path, workers: int, *args: str) -> bytes:
    env = {**os.environ, "KUBELOGS_SEARCH_WORKERS": str(workers)}
    return subprocess.run(
        [sys.executable, "-m", "kubelogs", "search", "--store", str(store), *args],
        env=env,
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--count", "error"],
        ["--count", ""],
        ["--limit", "7", "--output", "json", "orders"],
        ["--limit", "250", "--output", "json", ""],
    ],
)
def test_cli_answers_the_same_in_one_process_and_in_several(store: Path, args: list[str]) -> None:
    one = search(store, 1, *args)

    assert one == search(store, 3, *args)
    assert one.strip()
