"""Chaos for the tailing engine: a writer thread appends, copytruncates (numbered and
dateext copies) and renames while the engine, in-process, is killed and restarted at
random points - the races of real copytruncate (a copy being made while it is listed, a
truncation between opening a file and checking it) that sequential tests never hit.

Every line is stored exactly once in a store that drops resends by high-water mark, and
no byte is counted as lost (the copies all stay on disk).
"""

from __future__ import annotations

import os
import random
import shutil
import threading
from pathlib import Path

import pytest

from support.tailsim import Node
from support.waiting import wait_for

T = "2025-01-15T10:00:00.000000001Z"


class _Writer:
    def __init__(self, logs: Path, seed: int) -> None:
        self.app = logs / "app.log"
        self.app.touch()
        self.logs = logs
        self.written: list[str] = []
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-writer")

    def _run(self) -> None:
        rng, n, r = self._rng, 0, 0
        while not self._stop.is_set():
            k = rng.randint(1, 30)
            with open(self.app, "ab") as f:
                f.write(b"".join(f"{T} stdout F m{n + i}\n".encode() for i in range(k)))
            self.written.extend(f"m{n + i}" for i in range(k))
            n += k
            roll = rng.random()
            if roll < 0.08:
                r += 1
                name = f"app.log.{r}" if rng.random() < 0.5 else f"app.log-2025{r:06d}"
                shutil.copyfile(self.app, self.logs / name)
                os.truncate(self.app, 0)
            elif roll < 0.1:
                r += 1
                os.rename(self.app, self.logs / f"app.log.2025-{r:06d}")
                self.app.touch()
            self._stop.wait(0.001)

    def __enter__(self) -> _Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_and_restart_while_a_writer_copytruncates(tmp_path: Path, seed: int) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    node = Node(tmp_path, [str(logs / "*.log")], fmt="auto")
    rng = random.Random(seed + 100)
    with _Writer(logs, seed) as writer:
        for _ in range(60):
            t = node.start()
            for _ in range(rng.randint(1, 30)):
                for batch in t.poll(scan=rng.random() < 0.5):
                    node.deliver(batch)
                if rng.random() < 0.3:
                    t.save_checkpoints()
            node.kill()
        # Enough happened for the test to mean something.
        wait_for(lambda: len(writer.written) > 5000, what="5000 lines written")
    node.start()
    node.pump()
    node.stop()
    counts = node.counts()
    rotated = len(list(logs.glob("app.log?*")))

    assert [] == [m for m in writer.written if counts[m] != 1]
    assert len(writer.written) == sum(counts.values())
    assert 0 == node.lost
    assert rotated > 10
