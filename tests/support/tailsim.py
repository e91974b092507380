"""Drive the tailing engine in-process, step by step, with a store that keeps
high-water marks like the local store, and `kill -9` as dropping the engine.

`Node` owns the checkpoint database path and the delivered events; `start()` builds a
`Tailer` as a source would; `pump()` runs passes until nothing moves; `kill()` forgets
the engine without saving (batches not acknowledged are lost in flight, as after
``kill -9``); acknowledgement can be held back to keep batches in flight.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.tailing.checkpoints import CheckpointStore
from kubelogs.tailing.stages import StageResolver
from kubelogs.tailing.tailer import Tailer, TailSettings
from kubelogs.telemetry.metrics import Metrics


def ctx(link: str, real: str, key: str, prefix: str) -> FileContext:
    return FileContext(source_id="t", path=real, file_key=key, id_prefix=prefix)


@dataclass
class Node:
    root: Path
    include: list[str]
    fmt: str = "plain"
    read_from: str = "beginning"
    read_chunk: int = 4096
    ack: bool = True
    """Resolve batches as they arrive (False: keep them in flight)."""
    stored: list[tuple[str, int, str, str, tuple[str, ...]]] = field(default_factory=list)
    """(file key, offset, message, stream, flags) that the store kept."""
    marks: dict[str, int] = field(default_factory=dict)
    in_flight: list[Batch] = field(default_factory=list)
    tailer: Tailer | None = None
    metrics: Metrics | None = None
    lost: float = 0.0
    stages: StageResolver | None = None
    """Per-file multiline / parser choice, as a source would give it."""

    def start(self) -> Tailer:
        self.metrics = Metrics()
        settings = TailSettings(
            source_id="t",
            source_type="file",
            include=self.include,
            exclude=[],
            read_from=self.read_from,
            max_line_size=1 << 20,
            format=self.fmt,
            node_name="n",
            context_factory=ctx,
            read_chunk=self.read_chunk,
            rotate_wait=0.0,
            stages=self.stages,
        )
        store = CheckpointStore(self.root / "checkpoints.db")
        self.tailer = Tailer(settings, store, self.metrics)
        self.tailer.prepare()
        return self.tailer

    def deliver(self, batch: Batch) -> None:
        """The local store's rule: events at or below the file's mark are resends."""
        key = batch.ctx.file_key
        mark = self.marks.get(key, -1)
        for i, off in enumerate(batch.offsets):
            if off > mark:
                flags = (batch.flags or {}).get(i, ())
                self.stored.append((key, off, batch.messages[i], batch.streams[i], flags))
                mark = off
        self.marks[key] = mark
        if batch.ack is not None:
            batch.ack.resolve()

    def pump(self, rounds: int = 200) -> None:
        """Scan and read until a pass moves nothing (files released, acks in)."""
        t = self.tailer
        assert t is not None
        idle = 0
        for _ in range(rounds):
            before = [(f.key, f.pos, f.fd) for f in t.files]
            got = list(t.poll(scan=True))
            moved = before != [(f.key, f.pos, f.fd) for f in t.files]
            for b in got:
                if self.ack:
                    self.deliver(b)
                else:
                    self.in_flight.append(b)
            t.save_checkpoints()
            idle = idle + 1 if not got and not moved else 0
            if idle >= 2:
                return
        raise AssertionError("the tailer never went idle")

    def release(self) -> None:
        """Acknowledge what was held in flight."""
        for b in self.in_flight:
            self.deliver(b)
        self.in_flight.clear()

    def kill(self) -> None:
        """kill -9: no final checkpoint; batches in flight never reach the store."""
        t = self.tailer
        assert t is not None
        self._collect_lost()
        for f in t.files:
            if f.fd >= 0:
                os.close(f.fd)
        t.checkpoints.close()
        self.tailer = None
        self.in_flight.clear()

    def stop(self) -> None:
        t = self.tailer
        assert t is not None
        self._collect_lost()
        t.close()
        t.checkpoints.close()
        self.tailer = None

    def _collect_lost(self) -> None:
        assert self.metrics is not None
        text = self.metrics.render().decode()
        for line in text.splitlines():
            if line.startswith("kubelogs_lost_bytes_total{"):
                self.lost += float(line.rsplit(" ", 1)[1])

    def messages(self) -> list[str]:
        return [m for _, _, m, _, _ in self.stored]

    def counts(self) -> Counter[str]:
        return Counter(self.messages())
