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


class _Entry:
    __slots__ = ("done", "end", "mark")

    def __init__(self, end: int, mark: bytes) -> None:
        self.end = end
        self.mark = mark
        self.done = False


class AckLedger:
    """Per-file list of in-flight batches, in the order they were read.

    `committed` is the offset up to which every batch has been resolved: the only offset
    that may be written as a checkpoint. Each batch may carry a `mark` (for files: the
    bytes just before its end offset); `committed_mark` is the mark of the batch that
    moved `committed` last, so a checkpoint can record what the file held there.
    """

    __slots__ = ("_inflight", "committed", "committed_mark")

    def __init__(self, committed: int, mark: bytes = b"") -> None:
        self.committed = committed
        self.committed_mark = mark
        self._inflight: deque[_Entry] = deque()

    def track(self, end_offset: int, mark: bytes = b"") -> AckToken:
        entry = _Entry(end_offset, mark)
        self._inflight.append(entry)

        def done() -> None:
            entry.done = True
            self._advance()

        return AckToken(done)

    def advance_idle(self, end_offset: int, mark: bytes = b"") -> None:
        """Move past bytes that produced no event (blank lines, a skipped tail): at once
        when nothing is in flight, else behind the batches before it."""
        if end_offset <= self.committed:
            return
        if not self._inflight:
            self.committed = end_offset
            self.committed_mark = mark
        else:
            self.track(end_offset, mark).resolve()

    def _advance(self) -> None:
        inflight = self._inflight
        while inflight and inflight[0].done:
            entry = inflight.popleft()
            if entry.end > self.committed:
                self.committed = entry.end
                self.committed_mark = entry.mark

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def reset(self, committed: int) -> None:
        """Forget in-flight batches (the file was truncated and is read again from 0)."""
        self._inflight.clear()
        self.committed = committed
        self.committed_mark = b""
