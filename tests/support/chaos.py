"""Kill the agent at random moments while pods keep writing and rotating."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path

from support.agent import Agent
from support.podlogs import PodLog
from support.waiting import wait_for


class RotatingWriter:
    """Appends uniquely numbered lines to several pods, rotating now and then (a thread)."""

    def __init__(self, pods: list[PodLog], seed: int, copytruncate: float = 0.0) -> None:
        """`copytruncate`: the share of rotations done by logrotate's copytruncate (half
        of them with `dateext` names) instead of kubelet's rename."""
        self.pods = pods
        self.copytruncate = copytruncate
        self.written: list[str] = []
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rotating-writer")

    def _run(self) -> None:
        n = 0
        rng = self._rng
        while not self._stop.is_set():
            for p in self.pods:
                batch = [f"{p.pod}-{n + i}" for i in range(rng.randint(1, 40))]
                p.write(*batch)
                self.written.extend(batch)
                n += len(batch)
                if rng.random() < 0.05:
                    if rng.random() < self.copytruncate:
                        p.copytruncate(dateext=rng.random() < 0.5)
                    else:
                        p.rotate()
            self._stop.wait(0.005)

    def __enter__(self) -> RotatingWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def kill9_cycles(
    config: Path, logs: Path, progress: Callable[[], int], *, cycles: int, seed: int, spread: int
) -> None:
    """Start the agent, wait for progress, let up to `spread` more units through at
    random, `kill -9` it; `cycles` times."""
    rng = random.Random(seed)
    for cycle in range(cycles):
        agent = Agent(config, logs / f"agent{cycle}.log").start()
        before = progress()
        wait_for(lambda b=before: progress() > b, timeout=60, what="progress")
        target = progress() + rng.randint(0, spread)
        wait_for(
            lambda d=target, a=agent: progress() >= d or a.proc.poll() is not None,  # type: ignore[union-attr]
            timeout=30,
            what="more progress",
        )
        agent.kill9()
