"""Exactly-once writes, crash recovery, damaged files and refusals with clear errors."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import msgspec
import pytest

from kubelogs.store import (
    ECS_LAYOUT,
    FLUENTD_LAYOUT,
    StoreCorruptError,
    StoreLayoutError,
    StoreLockedError,
    StoreNotFound,
    StoreReader,
    StoreVersionError,
    StoreWriter,
    WriteGroup,
)
from kubelogs.store.index import INDEX_NAME, SEGMENTS_DIR
from support.store_docs import Dataset, make_dataset


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return make_dataset(seed=11, containers=4, lines=600, per_batch=100)


def all_docs(path: Path) -> list[bytes]:
    with StoreReader(path) as reader:
        return [h.doc for h in reader.search("", limit=0)]


def segment_files(path: Path) -> list[Path]:
    return sorted((path / SEGMENTS_DIR).glob("*.seg"))


class TestExactlyOnce:
    def test_writing_the_same_groups_twice_stores_one_copy(
        self, tmp_path: Path, dataset: Dataset
    ) -> None:
        with StoreWriter(tmp_path / "s", layout=ECS_LAYOUT) as writer:
            first = writer.write(dataset.groups)
            second = writer.write(dataset.groups)

        assert len(dataset.docs) == first.written
        assert 0 == second.written
        assert len(dataset.docs) == second.skipped
        assert sorted(dataset.docs) == sorted(all_docs(tmp_path / "s"))

    def test_resend_after_restart_is_a_no_op(self, tmp_path: Path, dataset: Dataset) -> None:
        """The marks are committed with the blocks, so they survive a new process."""
        half = len(dataset.groups) // 2
        with StoreWriter(tmp_path / "s", layout=ECS_LAYOUT) as writer:
            writer.write(dataset.groups[:half])
        with StoreWriter(tmp_path / "s", layout=ECS_LAYOUT) as writer:
            result = writer.write(dataset.groups)  # resend from the start

        assert len(dataset.docs) - sum(len(g.offsets) for g in dataset.groups[:half]) == (
            result.written
        )
        assert sorted(dataset.docs) == sorted(all_docs(tmp_path / "s"))

    def test_overlapping_resend_stores_only_the_new_tail(self, tmp_path: Path) -> None:
        docs = [b'{"message":"m%d"}' % i for i in range(10)]

        def group(lo: int, hi: int) -> WriteGroup:
            return WriteGroup("file-a", list(range(lo, hi)), list(range(lo, hi)), docs[lo:hi])

        with StoreWriter(tmp_path / "s", layout=ECS_LAYOUT) as writer:
            writer.write([group(0, 6)])
            result = writer.write([group(3, 10)])
            mark = writer.high_water("file-a")

        assert 4 == result.written
        assert 3 == result.skipped
        assert 9 == mark
        assert sorted(docs) == sorted(all_docs(tmp_path / "s"))

    def test_groups_without_a_source_key_are_always_stored(self, tmp_path: Path) -> None:
        group = WriteGroup("", [0], [1], [b'{"message":"x"}'])
        with StoreWriter(tmp_path / "s", layout=ECS_LAYOUT) as writer:
            writer.write([group])
            writer.write([group])

        assert 2 == len(all_docs(tmp_path / "s"))


class TestCrashRecovery:
    def _write_two(self, path: Path, dataset: Dataset) -> tuple[list[bytes], list[bytes]]:
        half = len(dataset.groups) // 2
        first, second = dataset.groups[:half], dataset.groups[half:]
        with StoreWriter(path, layout=ECS_LAYOUT) as writer:
            writer.write(first)
            writer.write(second)
        return dataset.docs_of(first), dataset.docs_of(second)

    def test_garbage_after_the_last_block_is_cut_off(
        self, tmp_path: Path, dataset: Dataset
    ) -> None:
        """A torn append (data written, index not committed) is never served."""
        path = tmp_path / "s"
        self._write_two(path, dataset)
        (seg,) = segment_files(path)
        size = seg.stat().st_size
        with open(seg, "ab") as f:
            f.write(b"\x28\xb5\x2f\xfd torn block that never got its index row" * 50)

        readable_before_repair = sorted(all_docs(path))
        StoreWriter(path, layout=ECS_LAYOUT).close()

        assert sorted(dataset.docs) == readable_before_repair
        assert size == seg.stat().st_size
        assert sorted(dataset.docs) == sorted(all_docs(path))

    def test_segment_cut_mid_block_serves_the_earlier_blocks(
        self, tmp_path: Path, dataset: Dataset
    ) -> None:
        path = tmp_path / "s"
        first, _second = self._write_two(path, dataset)
        (seg,) = segment_files(path)
        with sqlite3.connect(path / INDEX_NAME) as db:
            (last_offset,) = db.execute("SELECT max(offset) FROM blocks").fetchone()
        os.truncate(seg, last_offset + 40)  # inside the last block's filter or frame

        with StoreReader(path) as reader:
            served = [h.doc for h in reader.search("", limit=0)]
            corrupt = reader.corrupt_blocks
        StoreWriter(path, layout=ECS_LAYOUT).close()  # reopening must not fail either

        assert 1 == corrupt
        assert set(first) <= set(served)
        assert set(served) <= set(dataset.docs)

    def test_flipped_byte_is_detected_by_the_checksum(
        self, tmp_path: Path, dataset: Dataset
    ) -> None:
        path = tmp_path / "s"
        self._write_two(path, dataset)
        (seg,) = segment_files(path)
        with sqlite3.connect(path / INDEX_NAME) as db:
            offset, text_len, data_len = db.execute(
                "SELECT offset, text_len, data_len FROM blocks ORDER BY id LIMIT 1"
            ).fetchone()
        with open(seg, "r+b") as f:
            f.seek(offset + text_len + data_len // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))

        with StoreReader(path) as reader:
            served = [h.doc for h in reader.search("", limit=0)]
            corrupt = reader.corrupt_blocks

        assert 1 == corrupt
        assert 0 < len(served) < len(dataset.docs)
        assert set(served) <= set(dataset.docs)

    def test_damaged_message_column_skips_only_its_block(
        self, tmp_path: Path, dataset: Dataset
    ) -> None:
        """The message column holds the block's messages: a column that fails its
        checksum makes its block unreadable (skipped and counted), never a source of
        wrong documents; the other blocks answer as before."""
        path = tmp_path / "s"
        self._write_two(path, dataset)
        (seg,) = segment_files(path)
        with sqlite3.connect(path / INDEX_NAME) as db:
            offset, text_len = db.execute(
                "SELECT offset, text_len FROM blocks ORDER BY id LIMIT 1"
            ).fetchone()
        with open(seg, "r+b") as f:
            f.seek(offset + text_len // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))
        messages = [msgspec.json.decode(d)["message"].lower() for d in dataset.docs]
        word = re.findall(r"\w+", messages[len(messages) // 2])[0]
        pairs = zip(dataset.docs, messages, strict=True)
        expected = [d for d, m in pairs if word in re.findall(r"\w+", m)]

        with StoreReader(path) as reader:
            served = [h.doc for h in reader.search("", limit=0)]
            corrupt_after_all = reader.corrupt_blocks
            found = [h.doc for h in reader.search(word, limit=0)]
            corrupt_after_word = reader.corrupt_blocks

        assert (1, 2) == (corrupt_after_all, corrupt_after_word)
        assert 0 < len(served) < len(dataset.docs)
        assert set(served) <= set(dataset.docs)
        intact = set(served)
        assert sorted(d for d in expected if d in intact) == sorted(found)
        assert found

    def test_segment_without_index_rows_is_deleted(self, tmp_path: Path, dataset: Dataset) -> None:
        """A segment created by a write that crashed before its first commit."""
        path = tmp_path / "s"
        self._write_two(path, dataset)
        orphan = path / SEGMENTS_DIR / "00000099.seg"
        orphan.write_bytes(b"KLSEG\x00\x00\x00" + bytes(100))

        StoreWriter(path, layout=ECS_LAYOUT).close()

        assert not orphan.exists()
        assert sorted(dataset.docs) == sorted(all_docs(path))

    def test_failed_commit_leaves_nothing_behind(self, tmp_path: Path, dataset: Dataset) -> None:
        path = tmp_path / "s"
        with StoreWriter(path, layout=ECS_LAYOUT) as writer:
            writer.write(dataset.groups[:2])
            (seg,) = segment_files(path)
            size = seg.stat().st_size
            original = writer._commit

            def fail(*args: object) -> None:
                raise sqlite3.OperationalError("disk I/O error")

            writer._commit = fail  # type: ignore[method-assign, assignment]
            with pytest.raises(sqlite3.OperationalError):
                writer.write(dataset.groups[2:])
            writer._commit = original  # type: ignore[method-assign]
            assert size == seg.stat().st_size
            result = writer.write(dataset.groups[2:])

        assert sum(len(g.offsets) for g in dataset.groups[2:]) == result.written
        assert sorted(dataset.docs) == sorted(all_docs(path))


class TestRefusals:
    def test_missing_store_is_store_not_found(self, tmp_path: Path) -> None:
        with pytest.raises(StoreNotFound, match="no such store"):
            StoreReader(tmp_path / "nope")
        (tmp_path / "empty").mkdir()
        with pytest.raises(StoreNotFound, match="not a kubelogs store"):
            StoreReader(tmp_path / "empty")

    def test_older_development_format_is_refused(self, tmp_path: Path) -> None:
        """Development builds wrote format 1 (documents beside a lower-cased column)."""
        path = tmp_path / "s"
        StoreWriter(path, layout=ECS_LAYOUT).close()
        with sqlite3.connect(path / INDEX_NAME) as db:
            db.execute("UPDATE meta SET value = '1' WHERE key = 'format_version'")

        with pytest.raises(StoreVersionError, match=r"development version.*format 1.*delete"):
            StoreReader(path)
        with pytest.raises(StoreVersionError, match="development version"):
            StoreWriter(path, layout=ECS_LAYOUT)

    def test_newer_format_version_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "s"
        StoreWriter(path, layout=ECS_LAYOUT).close()
        with sqlite3.connect(path / INDEX_NAME) as db:
            db.execute("UPDATE meta SET value = '99' WHERE key = 'format_version'")

        with pytest.raises(StoreVersionError, match="newer kubelogs"):
            StoreReader(path)
        with pytest.raises(StoreVersionError):
            StoreWriter(path, layout=ECS_LAYOUT)

    def test_index_that_is_not_sqlite_is_corrupt(self, tmp_path: Path) -> None:
        path = tmp_path / "s"
        path.mkdir()
        (path / INDEX_NAME).write_bytes(b"this is not a database" * 100)

        with pytest.raises(StoreCorruptError, match="cannot be read"):
            StoreReader(path)

    def test_index_without_tables_is_corrupt(self, tmp_path: Path) -> None:
        path = tmp_path / "s"
        path.mkdir()
        sqlite3.connect(path / INDEX_NAME).close()

        with pytest.raises(StoreCorruptError):
            StoreReader(path)

    def test_second_writer_is_refused(self, tmp_path: Path) -> None:
        with (
            StoreWriter(tmp_path / "s", layout=ECS_LAYOUT),
            pytest.raises(StoreLockedError, match="another process"),
        ):
            StoreWriter(tmp_path / "s", layout=ECS_LAYOUT)

    def test_other_schema_is_refused(self, tmp_path: Path) -> None:
        StoreWriter(tmp_path / "s", layout=ECS_LAYOUT).close()

        with pytest.raises(StoreLayoutError, match="schema"):
            StoreWriter(tmp_path / "s", layout=FLUENTD_LAYOUT)

    def test_unknown_label_field_is_a_programming_error(self, tmp_path: Path) -> None:
        group = WriteGroup("f", [0], [0], [b"{}"], labels={"nope": "x"})
        with (
            StoreWriter(tmp_path / "s", layout=ECS_LAYOUT) as writer,
            pytest.raises(ValueError, match="not label fields"),
        ):
            writer.write([group])
