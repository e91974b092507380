"""One search on several CPU cores: forked processes, each reading a share of the blocks.

A word search is bound by decompressing and lower-casing message columns (about 1 GB/s
each on one core), so on 2M lines it takes most of a second on one core. The blocks
are independent: each process reads one contiguous range of block ids holding about as
many documents as the others' (`shard_ranges`; ids modulo ``n`` would not do, since the
writer often alternates full blocks with small remainders), all with the same snapshot
(`PreparedQuery.until_block`), and the results are combined: counts add up, and the
newest ``limit`` hits of the union are the newest ``limit`` of the shards' newest
``limit``.

Why ``fork`` and not threads: zstd releases the GIL but ``bytes.lower`` and
``bytes.find`` do not, so threads do not run them in parallel (measured: no gain). Each
child opens its own `StoreReader` (SQLite connections must not cross a fork), sends its
result back through a pipe as a pickle (trusted: it is our own child) and leaves with
``os._exit``. Forking is only safe in a process without other threads, which is why
`kubelogs search` calls this and the library's `StoreReader` does not.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from kubelogs.store.errors import StoreError
from kubelogs.store.reader import StoreReader

T = TypeVar("T")

MAX_WORKERS = 4


def cpu_workers() -> int:
    """The CPUs this process may run on (container limits included), at most
    `MAX_WORKERS`."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_WORKERS))


def shard_ranges(sizes: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """At most `n` inclusive ranges of block ids covering `sizes` ((id, documents) by
    id), each holding about the same number of documents."""
    total = sum(docs for _, docs in sizes)
    ranges: list[tuple[int, int]] = []
    first = None
    seen = 0
    for block_id, docs in sizes:
        if first is None:
            first = block_id
        seen += docs
        if seen * n >= total * (len(ranges) + 1) and len(ranges) < n - 1:
            ranges.append((first, block_id))
            first = None
    if first is not None:
        ranges.append((first, sizes[-1][0]))
    return ranges


def run_sharded(
    path: Path,
    work: Callable[[StoreReader, tuple[int, int]], T],
    shards: list[tuple[int, int]],
) -> list[tuple[T, int]]:
    """`work(reader, shard)` for each shard (a range of block ids), each in a process
    of its own (the first in this one) with a reader of its own; returns each shard's
    result and its count of damaged blocks, in shard order. A failure in any shard
    raises `StoreError` naming it."""
    if not shards:
        return []
    children: list[tuple[int, int]] = []  # (pid, read end)
    try:
        for k in range(1, len(shards)):
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: never returns
                os.close(read_end)
                _child(path, work, shards[k], write_end)
            os.close(write_end)
            children.append((pid, read_end))
        with StoreReader(path) as reader:
            results = [(work(reader, shards[0]), reader.corrupt_blocks)]
    finally:
        payloads = [_read_all(fd) for _, fd in children]
        for pid, _ in children:
            os.waitpid(pid, 0)
    for k, payload in enumerate(payloads, 1):
        try:
            ok, value = pickle.loads(payload)
        except Exception:  # a child that died without a word
            raise StoreError(f"{path}: search process {k + 1} of {len(shards)} failed") from None
        if not ok:
            raise StoreError(f"{path}: search process {k + 1} of {len(shards)} failed: {value}")
        results.append(value)
    return results


def _child(
    path: Path,
    work: Callable[[StoreReader, tuple[int, int]], T],
    shard: tuple[int, int],
    fd: int,
) -> None:
    code = 0
    try:
        try:
            with StoreReader(path) as reader:
                payload = pickle.dumps((True, (work(reader, shard), reader.corrupt_blocks)))
        except BaseException as exc:  # reported to the parent
            payload = pickle.dumps((False, str(exc) or type(exc).__name__))
            code = 1
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os._exit(code)


def _read_all(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)
