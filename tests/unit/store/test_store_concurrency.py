"""A reader in one process sees only whole commits while a writer process appends."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kubelogs.store import ECS_LAYOUT, StoreNotFound, StoreReader, StoreWriter, WriteGroup
from support.waiting import wait_for

WRITES = 60
PER_WRITE = 250

_WRITER = textwrap.dedent(
    """
    import sys
    from kubelogs.store import ECS_LAYOUT, StoreWriter, WriteGroup

    path, writes, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with StoreWriter(path, layout=ECS_LAYOUT, block_docs=100) as writer:
        for w in range(writes):
            lo = w * per
            docs = [b'{"message":"event %d of write %d"}' % (i, w) for i in range(lo, lo + per)]
            writer.write([WriteGroup("f", list(range(lo, lo + per)), list(range(lo, lo + per)),
                                     docs, streams=["stdout"] * per)])
    """
)


def test_reader_sees_whole_commits_while_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "s"
    StoreWriter(path, layout=ECS_LAYOUT).close()  # exists before the reader starts
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), str(WRITES), str(PER_WRITE)],
        stderr=subprocess.PIPE,
    )
    seen: list[int] = []
    try:
        with StoreReader(path) as reader:

            def observe() -> bool:
                seen.append(reader.count("stream:stdout"))
                return seen[-1] == WRITES * PER_WRITE

            wait_for(observe, timeout=60, interval=0.01, what="all writes to be visible")
            hits = reader.search("event", limit=0)
        _, err = writer.communicate(timeout=60)
    finally:
        writer.kill()
        writer.wait()

    assert 0 == writer.returncode, err
    assert seen == sorted(seen)
    assert all(n % PER_WRITE == 0 for n in seen)  # never half a commit
    assert len(set(seen)) > 2  # it really read while the writer wrote
    assert WRITES * PER_WRITE == len(hits) == len({h.doc for h in hits})


def test_reader_and_writer_in_one_process(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with StoreWriter(path, layout=ECS_LAYOUT) as writer, StoreReader(path) as reader:
        position = reader.last_block()
        writer.write([WriteGroup("f", [1, 2], [10, 20], [b'{"message":"a"}', b'{"message":"b"}'])])
        hits, position = reader.poll("a or b", position)
        writer.write([WriteGroup("f", [3], [30], [b'{"message":"c"}'])])
        more, _ = reader.poll("", position)

    assert [b'{"message":"a"}', b'{"message":"b"}'] == [h.doc for h in hits]
    assert [b'{"message":"c"}'] == [h.doc for h in more]


def test_reader_of_a_store_not_yet_created_is_told_so(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFound, match="later"):
        StoreReader(tmp_path / "later")
