"""`LineWriter`: numbered lines appended to a file from a thread, for tests that reload,
restart or kill an agent while a file grows and then count every line once."""

from __future__ import annotations

import threading
from pathlib import Path


class LineWriter:
    """Appends ``line 0000000``, ``line 0000001``, ... in bursts of 20 until stopped
    (across agent restarts); `written` is how many lines the file holds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with open(self.path, "a") as f:
            while not self._stop.is_set():
                for _ in range(20):
                    f.write(f"line {self.written:07d}\n")
                    self.written += 1
                f.flush()
                self._stop.wait(0.005)

    def __enter__(self) -> LineWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
