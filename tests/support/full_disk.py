"""A full disk behind the store writer's one write function, for unit tests."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from kubelogs.store import writer as writer_module
from kubelogs.store.index import SEGMENTS_DIR


class FakeDisk:
    """Segment files may hold `capacity` bytes in all; a write that does not fit writes
    what fits of it (a short write) and then fails with ENOSPC, as a real disk does."""

    def __init__(self, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.dir = store / SEGMENTS_DIR
        self.capacity: int | None = None
        self.failures = 0
        self.peak = 0
        real = writer_module._write_all

        def write_all(fd: int, parts: list[bytes], offset: int) -> None:
            need = sum(map(len, parts))
            used = self.used()
            if self.capacity is not None and used + need > self.capacity:
                self.failures += 1
                room = max(0, self.capacity - used)
                if room:
                    os.pwrite(fd, b"".join(parts)[:room], offset)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(fd, parts, offset)
            self.peak = max(self.peak, self.used())

        monkeypatch.setattr(writer_module, "_write_all", write_all)

    def used(self) -> int:
        if not self.dir.exists():
            return 0
        return sum(p.stat().st_size for p in self.dir.glob("*.seg"))
