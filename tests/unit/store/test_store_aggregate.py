"""Store aggregations (`store.aggregate`): histogram and top values agree with counting
the documents `search` returns, one process and several."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from kubelogs.store import ECS_LAYOUT, StoreReader, StoreWriter
from kubelogs.store.aggregate import Buckets, aggregate, aggregate_parallel
from kubelogs.store.matcher import get_field, is_missing
from support.store_docs import Dataset, make_dataset

FIELDS = [
    "kubernetes.namespace",
    "kubernetes.pod.name",
    "stream",
    "log.file.path",
    "level",
    "message",
    "kubernetes.labels.app",
]


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return make_dataset(seed=5, containers=5, lines=3000, per_batch=200)


@pytest.fixture(scope="module")
def store(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("agg") / "store"
    with StoreWriter(path, layout=ECS_LAYOUT, block_docs=700) as writer:
        writer.write(dataset.groups)
    return path


def brute(reader: StoreReader, query: str, buckets: Buckets) -> tuple[list[int], dict[str, Any]]:
    counts = [0] * buckets.count
    top: dict[str, Counter[Any]] = {f: Counter() for f in FIELDS}
    for hit in reader.search(query, limit=0):
        counts[buckets.index(hit.time_ns)] += 1
        doc = msgspec.json.decode(hit.doc)
        for f in FIELDS:
            value = get_field(doc, f)
            if not is_missing(value):
                for v in value if isinstance(value, list) else [value]:
                    top[f][v] += 1
    return counts, top


@pytest.mark.parametrize(
    "query",
    [
        "",
        "stream:stderr",
        "error or timeout",
        "not kubernetes.namespace:payments",
        "level:*",
        "log.offset > 1000",
    ],
)
def test_histogram_and_top_values_match_the_documents(store: Path, query: str) -> None:
    with StoreReader(store) as reader:
        stats = reader.stats()
        assert stats.min_time is not None
        assert stats.max_time is not None
        buckets = Buckets.for_range(stats.min_time, stats.max_time)
        q = reader.prepare(query)
        got = aggregate(reader, q, buckets=buckets, fields=FIELDS)
        counts, top = brute(reader, query, buckets)

    assert sum(counts) == got.total
    assert counts == got.counts
    for f in FIELDS:
        assert dict(top[f]) == dict(got.top[f]), f
    assert got.total > 0


def test_a_sub_range_counts_only_its_events(store: Path) -> None:
    with StoreReader(store) as reader:
        stats = reader.stats()
        assert stats.min_time is not None
        assert stats.max_time is not None
        lo = stats.min_time + (stats.max_time - stats.min_time) // 3
        hi = lo + (stats.max_time - stats.min_time) // 4
        q = reader.prepare("", since_ns=lo, until_ns=hi)
        buckets = Buckets.for_range(lo, hi)
        got = aggregate(reader, q, buckets=buckets, fields=["kubernetes.namespace"])
        expected = reader.count(q)

    assert expected == got.total == sum(got.counts)
    assert expected == sum(got.top["kubernetes.namespace"].values())
    assert 0 < expected


def test_several_processes_add_up_to_one(store: Path) -> None:
    with StoreReader(store) as reader:
        stats = reader.stats()
        assert stats.min_time is not None
        assert stats.max_time is not None
        buckets = Buckets.for_range(stats.min_time, stats.max_time)
        one = aggregate(reader, reader.prepare("error"), buckets=buckets, fields=FIELDS)
        many, bad = aggregate_parallel(
            reader, reader.prepare("error"), 3, buckets=buckets, fields=FIELDS
        )

    assert 0 == bad
    assert one.total == many.total
    assert one.counts == many.counts
    assert one.top == many.top


@pytest.mark.parametrize(
    ("span_ms", "step_ms"),
    [(900_000, 10_000), (3_600_000, 60_000), (86_400_000, 900_000), (604_800_000, 7_200_000),
     (59_000, 500), (8_000, 100)],
)  # fmt: skip
def test_buckets_are_round_and_between_48_and_120(span_ms: int, step_ms: int) -> None:
    lo = 1_700_000_123_456_789_012
    hi = lo + span_ms * 10**6
    b = Buckets.for_range(lo, hi)

    assert step_ms * 10**6 == b.step
    assert 0 == b.start % b.step
    assert b.start <= lo
    assert hi < b.start + b.count * b.step
    assert 48 <= b.count <= 120
