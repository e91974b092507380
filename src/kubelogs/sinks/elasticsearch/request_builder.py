"""Bulk items -> ``_bulk`` requests, and the bookkeeping that turns item results into acks.

A request holds parallel lists (`actions`, `docs`, `owners`): item ``i`` is one event,
``owners[i]`` the `BatchTracker` of the batch it came from. A batch is acknowledged
upstream when every one of its items is settled — indexed, found already there (409), or
written to the dead-letter queue — whatever requests its items travelled in and in what
order they finished. A retry resends a *subset* of a request's items (`subset`), so
items travel by index, never by re-encoding.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat

from kubelogs.pipeline.event import Batch
from kubelogs.sinks.elasticsearch.encoder import EncodedBatch

try:  # python-isal: gzip at a fraction of zlib's CPU (PERFORMANCE.md), when installed
    from isal import isal_zlib as _gzip_lib  # type: ignore[import-not-found,unused-ignore]

    GZIP_IMPL = "isal"
except ImportError:  # pragma: no cover - depends on the environment
    _gzip_lib = zlib
    GZIP_IMPL = "zlib"


class BatchTracker:
    """Items of one batch still unsettled; resolves the batch's ack at zero."""

    __slots__ = ("batch", "remaining")

    def __init__(self, batch: Batch, remaining: int) -> None:
        self.batch = batch
        self.remaining = remaining

    def settle(self, n: int = 1) -> None:
        self.remaining -= n
        if self.remaining == 0 and self.batch.ack is not None:
            self.batch.ack.resolve()
        elif self.remaining < 0:
            raise RuntimeError("bulk item settled twice")


@dataclass(slots=True)
class BulkRequest:
    actions: list[bytes] = field(default_factory=list)
    docs: list[bytes] = field(default_factory=list)
    owners: list[BatchTracker] = field(default_factory=list)
    nbytes: int = 0
    """Body size before compression (two newlines per item included)."""

    def __len__(self) -> int:
        return len(self.docs)

    def add(self, encoded: EncodedBatch, tracker: BatchTracker) -> None:
        self.actions.extend(encoded.actions)
        self.docs.extend(encoded.docs)
        self.owners.extend(repeat(tracker, len(encoded.docs)))
        self.nbytes += (
            sum(map(len, encoded.actions)) + sum(map(len, encoded.docs)) + 2 * len(encoded.docs)
        )

    def subset(self, rows: Sequence[int]) -> BulkRequest:
        """A request of only `rows` (the items to retry)."""
        actions = [self.actions[i] for i in rows]
        docs = [self.docs[i] for i in rows]
        nbytes = sum(map(len, actions)) + sum(map(len, docs)) + 2 * len(docs)
        return BulkRequest(actions, docs, [self.owners[i] for i in rows], nbytes)

    def body(self) -> bytes:
        n = len(self.docs)
        nl = repeat(b"\n", n)
        return b"".join(
            chain.from_iterable(zip(self.actions, nl, self.docs, repeat(b"\n", n), strict=True))
        )


def gzip_body(body: bytes, level: int = 1) -> bytes:
    """gzip framing (``Content-Encoding: gzip``), with isal when it is installed."""
    c = _gzip_lib.compressobj(level, _gzip_lib.DEFLATED, 31)
    return bytes(c.compress(body) + c.flush())
