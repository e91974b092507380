"""Per-block field lists and column-answered offsets (issue 10: silent zeros, speed)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from kubelogs.store import ECS_LAYOUT, StoreReader, StoreWriter
from kubelogs.store.block import DecodedBlock
from kubelogs.store.index import INDEX_NAME
from support.store_docs import Dataset, counting_reads, make_dataset


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return make_dataset(seed=13, containers=4, lines=1200, per_batch=100)


@pytest.fixture(scope="module")
def store(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fields") / "store"
    with StoreWriter(path, layout=ECS_LAYOUT, block_docs=200) as writer:
        writer.write(dataset.groups)
    return path


class TestFieldLists:
    def test_a_field_no_document_has_reads_no_block(self, store: Path) -> None:
        with StoreReader(store) as reader:
            reads = counting_reads(reader)
            count = reader.count("kubernetes.namspace:payments")
            hits = reader.search("kubernetes.namspace:payments", limit=10)

        assert (0, []) == (count, hits)
        assert [] == reads

    def test_unknown_fields_come_with_the_closest_name(self, store: Path) -> None:
        with StoreReader(store) as reader:
            typo = reader.unknown_fields("kubernetes.namspace:payments and level:error")
            fine = reader.unknown_fields("kubernetes.namespace:payments and log.offset > 3")
            nested = reader.unknown_fields("http.status >= 500 and kubernetes.pod:*")
            short = reader.unknown_fields("namespace:payments")
            unlike = reader.unknown_fields("kubernetes.labels.tier:web")

        assert [("kubernetes.namspace", "kubernetes.namespace")] == typo
        assert [("namespace", "kubernetes.namespace")] == short
        assert "kubernetes.labels.app" == unlike[0][1]  # a sibling, not the object
        assert [] == fine
        assert [] == nested

    def test_parsed_fields_are_listed(self, store: Path) -> None:
        with StoreReader(store) as reader:
            assert [] == reader.unknown_fields("level:error or user_id:*")
            assert [("levle", "level")] == reader.unknown_fields("levle:error")

    def test_a_store_without_field_lists_stays_readable_and_gets_them(
        self, tmp_path: Path, dataset: Dataset
    ) -> None:
        """Stores written before field lists: read as "any field", and a writer that
        opens one adds the lists for the blocks it writes."""
        path = tmp_path / "old"
        half = len(dataset.groups) // 2
        with StoreWriter(path, layout=ECS_LAYOUT, block_docs=200) as writer:
            writer.write(dataset.groups[:half])
        with sqlite3.connect(path / INDEX_NAME) as db:
            db.execute("ALTER TABLE blocks DROP COLUMN field_set")
            db.execute("DROP TABLE field_sets")
        with StoreReader(path) as reader:
            old_count = reader.count("level:error")
            old_unknown = reader.unknown_fields("nosuch:1")
        with StoreWriter(path, layout=ECS_LAYOUT, block_docs=200) as writer:
            writer.write(dataset.groups[half:])
        with StoreReader(path) as reader:
            reads = counting_reads(reader)
            new_count = reader.count("level:error")
            none = reader.count("nosuch:1")
            still_unknown = reader.unknown_fields("nosuch:1")
        with sqlite3.connect(path / INDEX_NAME) as db:
            listed = db.execute("SELECT count(*) FROM blocks WHERE field_set IS NULL").fetchone()

        expected = sum(b'"level":"error"' in d for d in dataset.docs)
        assert old_count > 0
        assert [] == old_unknown
        assert expected == new_count
        assert 0 == none
        assert [] == still_unknown  # old blocks have no list: nothing is claimed
        assert 0 < listed[0] < len(reads)


class TestOffsetsFromTheColumn:
    def test_offset_ranges_render_no_document(
        self, store: Path, dataset: Dataset, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import msgspec

        offsets = [msgspec.json.decode(d)["log"]["offset"] for d in dataset.docs]
        middle = sorted(offsets)[len(offsets) // 2]
        rendered: list[int] = []
        original = DecodedBlock._render

        def render(self: DecodedBlock, run: int, rows: Any) -> list[bytes]:
            rendered.append(len(rows))
            return original(self, run, rows)

        monkeypatch.setattr(DecodedBlock, "_render", render)
        with StoreReader(store) as reader:
            above = reader.count(f"log.offset > {middle}")
            exact = reader.count(f"log.offset:{middle}")
            mixed = reader.count(f"log.offset <= {middle} and not stream:stderr")

        assert sum(o > middle for o in offsets) == above
        assert sum(o == middle for o in offsets) == exact
        assert mixed == sum(
            o <= middle and b'"stream":"stderr"' not in d
            for o, d in zip(offsets, dataset.docs, strict=True)
        )
        assert [] == rendered
