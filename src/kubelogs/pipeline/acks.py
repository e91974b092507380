"""End-to-end acknowledgement: a source's checkpoint moves only past durable data.

A batch carries one `AckToken`. Fan-out to N consumers calls `fork()` N-1 times; every
sink calls `resolve()` once the data is durable (delivered, in a disk buffer, committed in
the local store, or written to the dead-letter queue); a transform that drops a batch
resolves it at once. When the last share resolves, the token's callback runs - for a file
source that marks the batch done in the file's `AckLedger`, which advances the committed
offset to the end of the longest fully resolved prefix (batches finish out of order).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class AckToken:
    """A reference count shared by the copies of one batch."""

    __slots__ = ("_on_done", "_refs")

    def __init__(self, on_done: Callable[[], None]) -> None:
        self._refs = 1
        self._on_done = on_done

    def fork(self, n: int = 1) -> None:
        """Account for `n` more consumers of the same batch."""
        self._refs += n

    def resolve(self) -> None:
        """One consumer is finished with the batch (durable, or intentionally dropped)."""
        self._refs -= 1
        if self._refs == 0:
            self._on_done()
        elif self._refs < 0:
            raise RuntimeError("ack token resolved more often than it was shared")

    @property
    def pending(self) -> int:
        return self._refs


class AckLedger:
    """Per-file list of in-flight batches, in the order they were read.

    `committed` is the offset up to which every batch has been resolved: the only offset
    that may be written as a checkpoint.
    """

    __slots__ = ("_inflight", "committed")

    def __init__(self, committed: int) -> None:
        self.committed = committed
        self._inflight: deque[list[int]] = deque()  # [end_offset, done(0/1)]

    def track(self, end_offset: int) -> AckToken:
        entry = [end_offset, 0]
        self._inflight.append(entry)

        def done() -> None:
            entry[1] = 1
            self._advance()

        return AckToken(done)

    def _advance(self) -> None:
        inflight = self._inflight
        while inflight and inflight[0][1]:
            self.committed = max(self.committed, inflight.popleft()[0])

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def reset(self, committed: int) -> None:
        """Forget in-flight batches (the file was truncated and is read again from 0)."""
        self._inflight.clear()
        self.committed = committed
