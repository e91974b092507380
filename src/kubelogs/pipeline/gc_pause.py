"""The cyclic garbage collector around column-wise work: paused while a batch is built,
and a higher young-generation threshold for the agent's process.

Stages that build a container or two per line (a parser's fields, the store's per-row
extras) allocate thousands of objects per batch that stay alive until the batch is
delivered. With the collector's default threshold (700 allocations) that means a young
collection every few hundred lines and, as the survivors pile up, full collections that
walk every live object: measured, a quarter of the JSON parser's cost and a third of
the local store's write of parsed events. These objects form no reference cycles, so
collecting while they are built finds nothing; `gc_paused` lets the batch be built
first.

Pausing alone is not enough: the parsed batch is still alive in the channels when the
collector runs next, so every batch of a few hundred JSON lines still cost a young
collection, every tenth a middle one, and the objects promoted with them triggered a
full collection (walking every batch in flight) every ~130 batches. Measured in the
agent draining the 2M-line tree with ``parse: json`` (CPU time inside the collector,
from `gc.callbacks`): 0.92 CPU-s, ~0.45 µs per line, a third of the parser's whole cost;
with a threshold of 10,000 0.04 CPU-s (10 young collections, no full one). Into the
local store, whose pending block keeps every row's fields alive until it is written,
10,000 still meant ~200 young collections walking them (0.44 CPU-s); 50,000 (a block is
written and freed before the count gets there) 0.04 CPU-s, and 0.2-0.4 CPU-s per 1M
lines less for the whole agent. `collector_tuned` sets `AGENT_THRESHOLD` for
`kubelogs run`: garbage that does form cycles (asyncio's exceptions and tracebacks) is
still collected, after 50,000 net allocations of containers instead of 700 (a few MiB
at most waiting; Python 3.13's default is 2,000); a young collection then takes a few
milliseconds.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["AGENT_THRESHOLD", "collector_tuned", "gc_paused"]

AGENT_THRESHOLD = (50_000, 10, 10)
"""`gc.set_threshold` for the agent: young collections after 50,000 net allocations of
containers, the older generations' multipliers as CPython's defaults."""


@contextmanager
def gc_paused() -> Iterator[None]:
    """Automatic collection off inside the block, on again after it (also on an
    exception); a collector someone else turned off stays off."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@contextmanager
def collector_tuned() -> Iterator[None]:
    """`AGENT_THRESHOLD` inside the block, the previous thresholds after it (the CLI
    also runs in-process, in tests). A threshold someone raised further is kept."""
    before = gc.get_threshold()
    if before[0] >= AGENT_THRESHOLD[0]:
        yield
        return
    gc.set_threshold(*AGENT_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*before)
